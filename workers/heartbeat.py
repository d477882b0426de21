"""The holder's heartbeat: while a task works on a submission, a thread says so every few seconds.

A worker that is killed stops beating, and the next delivery or sweep takes the submission over
(leaderboard/holders.py) instead of waiting out the time limit.
"""

import logging
import threading
from contextlib import contextmanager

from django.db import connection

from leaderboard.holders import HEARTBEAT_INTERVAL_SECONDS
from leaderboard.models import Submission
from leaderboard.services import submission_heartbeat

log = logging.getLogger(__name__)


@contextmanager
def heartbeat(submission: Submission, *, holder: str, interval: float = HEARTBEAT_INTERVAL_SECONDS):
    stop = threading.Event()
    thread = threading.Thread(
        target=_beat, args=(submission, holder, interval, stop), name=f"heartbeat-{submission.pk}", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _beat(submission: Submission, holder: str, interval: float, stop: threading.Event) -> None:
    try:
        while not stop.wait(interval):
            try:
                if not submission_heartbeat(submission, holder=holder):
                    # Finished, handed to the latency queue, or taken over by another worker.
                    log.info("submission %s is no longer held by this worker", submission.pk)
                    return
            except Exception:  # noqa: BLE001 - a database hiccup must not stop the beating
                log.warning("heartbeat of %s failed; trying again in %g s", submission.pk, interval, exc_info=True)
                # A broken connection stays broken: the next beat opens a new one.
                connection.close()
    finally:
        # This thread's own connection; Django would otherwise keep it open until the process ends.
        connection.close()
