from celery import shared_task

from leaderboard.services import submissions_sweep
from workers.evaluation import submission_evaluate


@shared_task(name="holdout.evaluate_submission", acks_late=True)
def evaluate_submission(submission_id: str) -> None:
    submission_evaluate(submission_id)


@shared_task(name="holdout.sweep_stuck_submissions")
def sweep_stuck_submissions() -> dict:
    return submissions_sweep()
