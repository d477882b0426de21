from celery import shared_task
from django.conf import settings

from leaderboard.boards import boards_seal
from leaderboard.closing import private_scores_sweep
from leaderboard.services import submissions_sweep
from workers.evaluation import private_score_evaluate, submission_evaluate, submission_measure_latency


@shared_task(name="holdout.evaluate_submission", acks_late=True)
def evaluate_submission(submission_id: str) -> None:
    submission_evaluate(submission_id)


@shared_task(name="holdout.measure_latency", acks_late=True)
def measure_latency(submission_id: str) -> None:
    submission_measure_latency(submission_id)


# On its own queue (workers/app.py); a sweep not run within one interval is dropped rather than
# run late in a burst with the next.
@shared_task(
    name="holdout.sweep_stuck_submissions", expires=float(settings.HOLDOUT_SWEEP_INTERVAL_SECONDS), acks_late=False
)
def sweep_stuck_submissions() -> dict:
    from workers.cleanup import leftovers_remove

    leftovers_remove()  # on the sweep's machine, orphans are found within one interval
    return {**submissions_sweep(), **private_scores_sweep(), **boards_seal()}


@shared_task(name="holdout.evaluate_private", acks_late=True)
def evaluate_private(score_id: int) -> None:
    """A counted submission on a closed benchmark's private rows, on the evaluate queue (leaderboard/closing.py)."""
    private_score_evaluate(score_id)
