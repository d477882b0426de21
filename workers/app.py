import os
import sys
from pathlib import Path

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

# The sweep has a queue of its own, served by a worker that evaluates nothing, so it never waits
# behind a backlog of evaluations (README, "Production").
SWEEP_QUEUE = "sweep"

app = Celery("holdout")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = {"holdout.sweep_stuck_submissions": {"queue": SWEEP_QUEUE}}
app.autodiscover_tasks(["workers"])

if app.conf.broker_url.startswith("filesystem"):
    # The embedded broker is a pair of folders that every process on this machine shares.
    for folder in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        Path(app.conf.broker_transport_options[folder]).mkdir(parents=True, exist_ok=True)


@worker_init.connect
def _refuse_a_model_memory_limit_no_model_fits_in(**_) -> None:
    """Every model would fail on such a limit, one submission after another: say so once, at start."""
    from django.conf import settings

    from evaluators.sandbox import memory_limit_problem

    problem = memory_limit_problem(settings.HOLDOUT_MODEL_MEMORY_BYTES)
    if problem:
        print(f"holdout worker not started: {problem}", file=sys.stderr, flush=True)
        os._exit(2)  # a signal handler's exception would only be logged, and the worker would start


@worker_process_init.connect
def _remove_what_killed_workers_left(**_) -> None:
    # Every new pool process, also one replacing a killed one, so leftovers do not wait for a restart.
    from workers.cleanup import leftovers_remove

    leftovers_remove()


@worker_ready.connect
def _take_over_what_dead_workers_held(**_) -> None:
    """A worker restarted after a kill resumes its submissions now, not at the next sweep."""
    from django.db import connection

    from workers.cleanup import leftovers_remove
    from workers.tasks import sweep_stuck_submissions

    leftovers_remove()  # the solo pool starts no pool process
    try:
        sweep_stuck_submissions()
    finally:
        # Opened in the main process, which runs no tasks: it must not outlive this.
        connection.close()
