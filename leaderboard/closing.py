"""Closing a guarded benchmark (issue 13): final selections, the closing, and the private scores.

Writes only, as in leaderboard/services.py: the API, the web pages, the admin and the command all
call these. During the competition nothing reads the private rows: a PrivateScore is made only
when the owner closes the benchmark, and the worker refuses to read the private rows of a
benchmark that is not closed (workers/evaluation.py, `_test_set`). Closing fixes which
submissions count:

- each submitter's chosen final submissions (at most `final_selections`);
- for a submitter who chose none, the submission their Ladder released as best on the primary
  metric (LadderEntry "primary"), so nobody loses their standing for not choosing;
- every succeeded submission when `final_selections` is 0;
- the baselines, as reference points, as on the public board.

Submissions still being evaluated at the closing finish on the public board but do not count:
the counted set is what had succeeded when the owner closed.
"""

import functools
import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from leaderboard.errors import Conflict, NotAllowed
from leaderboard.models import Benchmark, LadderEntry, PrivateScore, Submission

log = logging.getLogger(__name__)

PRIVATE_TASK = "holdout.evaluate_private"
# Private scores run with the evaluations, on their queue and its workers.
PRIVATE_QUEUE = "evaluate"


def closed_at_words(benchmark: Benchmark) -> str:
    return f"{benchmark.closed_at:%Y-%m-%d %H:%M:%S} UTC"


# --- Final selections ---------------------------------------------------------------------------


def final_select(submission: Submission, *, by, final: bool = True) -> Submission:
    """Mark (or unmark) one of `by`'s succeeded submissions as final for the private board.

    The benchmark's row is locked, so selections are counted one at a time and none lands after
    the closing has read them."""
    with transaction.atomic():
        benchmark = Benchmark.objects.select_for_update().get(pk=submission.benchmark_id)
        locked = Submission.objects.select_for_update().select_related("owner").get(pk=submission.pk)
        _final_check(locked, benchmark, by)
        if final and not locked.final:
            _final_limit_check(locked, benchmark)
        if locked.final != final:
            locked.final = final
            locked.save(update_fields=["final"])
    locked.benchmark = benchmark
    return locked


def _final_check(submission: Submission, benchmark: Benchmark, by) -> None:
    if submission.owner_id != getattr(by, "pk", None):
        raise NotAllowed(
            f"submission {submission.pk} is {submission.owner.username}'s: only its submitter chooses their final "
            "submissions.",
            field="submission",
        )
    if not benchmark.is_guarded:
        raise Conflict(
            f"'{benchmark.slug}' is an open benchmark: it has one board and no private part, so there is no final "
            "submission to choose.",
            field="submission",
        )
    if benchmark.is_closed:
        raise Conflict(
            f"'{benchmark.slug}' was closed at {closed_at_words(benchmark)}: the final submissions were fixed then.",
            field="submission",
        )
    if benchmark.final_selections == 0:
        raise Conflict(
            f"every succeeded submission on '{benchmark.slug}' counts on the private board (its owner set no limit), "
            "so there is nothing to choose.",
            field="submission",
        )
    if submission.is_baseline:
        raise Conflict("a baseline is the benchmark's reference point, not a competitor's entry.", field="submission")
    if submission.status != Submission.Status.SUCCEEDED:
        wait = "wait until it succeeds" if not submission.is_finished else "choose one that succeeded"
        raise Conflict(
            f"submission {submission.pk} is {submission.status}: only a succeeded submission can be final; {wait}.",
            field="submission",
        )


def _final_limit_check(submission: Submission, benchmark: Benchmark) -> None:
    chosen = list(
        Submission.objects.filter(benchmark=benchmark, owner_id=submission.owner_id, final=True).values_list(
            "name", "pk"
        )
    )
    if len(chosen) >= benchmark.final_selections:
        names = ", ".join(f"'{name}' ({pk})" for name, pk in chosen)
        raise Conflict(
            f"you have chosen {len(chosen)} final submissions, the most '{benchmark.slug}' allows: {names}. "
            "Unselect one first (DELETE /api/v1/submissions/<id>/final/, or its page).",
            field="submission",
        )


# --- Closing ------------------------------------------------------------------------------------


def benchmark_close(benchmark: Benchmark, *, by=None) -> tuple[Benchmark, list[PrivateScore]]:
    """Close a guarded benchmark: refuse new submissions from now on and measure every counted
    submission on the private rows. `by` is the staff member closing it (None: the command line)."""
    if by is not None and not by.is_staff:
        raise NotAllowed("only staff can close a benchmark.", field="benchmark")
    with transaction.atomic():
        locked = Benchmark.objects.select_for_update().get(pk=benchmark.pk)
        if not locked.is_guarded:
            raise Conflict(
                f"'{locked.slug}' is an open benchmark: every score is already released and there is no private part "
                "to reveal.",
                field="benchmark",
            )
        if locked.is_closed:
            raise Conflict(
                f"'{locked.slug}' was already closed at {closed_at_words(locked)}; its private board is being or has "
                "been computed.",
                field="benchmark",
            )
        now = timezone.now()
        locked.closed_at = now
        locked.save(update_fields=["closed_at"])
        scores = [
            PrivateScore.objects.create(
                submission=submission, counted_as=counted_as, sent_at=now, deadline_at=_deadline(locked, now)
            )
            for submission, counted_as in counted_submissions(locked)
        ]
        for score in scores:
            _send_on_commit(score)
    log.info("closed %s; %d submissions to measure on the private rows", locked.slug, len(scores))
    return locked, scores


def counted_submissions(benchmark: Benchmark) -> list[tuple[Submission, str]]:
    """The succeeded submissions the private board ranks, each with why it counts (module docstring)."""
    succeeded = Submission.objects.filter(benchmark=benchmark, status=Submission.Status.SUCCEEDED).order_by(
        "created_at", "pk"
    )
    counted = [(submission, PrivateScore.Counted.BASELINE) for submission in succeeded.filter(is_baseline=True)]
    competitors = succeeded.filter(is_baseline=False)
    if benchmark.final_selections == 0:
        return counted + [(submission, PrivateScore.Counted.ALL) for submission in competitors]
    chosen = list(competitors.filter(final=True))
    counted += [(submission, PrivateScore.Counted.CHOSEN) for submission in chosen]
    best = (
        LadderEntry.objects.filter(benchmark=benchmark, target="primary", best_submission__in=competitors)
        .exclude(owner_id__in={submission.owner_id for submission in chosen})
        .select_related("best_submission")
        .order_by("best_submission__created_at")
    )
    return counted + [(entry.best_submission, PrivateScore.Counted.DEFAULT) for entry in best]


def _deadline(benchmark: Benchmark, now):
    return now + timedelta(seconds=benchmark.time_limit_seconds)


def _send_on_commit(score: PrivateScore) -> None:
    """Send once the row is committed; a failed send leaves sent_at None, which the sweep sends at once."""
    sent_at = score.sent_at

    def send() -> None:
        try:
            current_app.send_task(PRIVATE_TASK, args=[score.pk], queue=PRIVATE_QUEUE)
        except Exception:  # noqa: BLE001 - the database is the record; the sweep retries.
            log.exception("could not send the private score %s; the next sweep sends it", score.pk)
            PrivateScore.objects.filter(pk=score.pk, sent_at=sent_at).update(sent_at=None)

    transaction.on_commit(send)


# --- The private scores' lifecycle (the worker's side is workers/evaluation.py) ------------------


def private_score_start(score_id) -> PrivateScore | None:
    """Claim a private score; None when it is finished or another delivery is working on it."""
    now = timezone.now()
    with transaction.atomic():
        score = (
            PrivateScore.objects.select_for_update()
            .select_related("submission__benchmark", "submission__owner")
            .filter(pk=score_id)
            .first()
        )
        if score is None or score.is_finished:
            return None
        if score.status == PrivateScore.Status.RUNNING and score.deadline_at and score.deadline_at > now:
            return None
        if score.attempts >= settings.HOLDOUT_MAX_ATTEMPTS:
            _fail_locked(score, _out_of_attempts(score))
            return None
        score.status = PrivateScore.Status.RUNNING
        score.attempts += 1
        score.started_at = now
        score.deadline_at = _deadline(score.submission.benchmark, now)
        score.save()
    return score


def private_score_succeed(
    score: PrivateScore, *, metrics: dict, intervals: dict, resamples: bytes | None, resample_keys: list, errors: dict
) -> None:
    with transaction.atomic():
        locked = _locked_if_current(score)
        if locked is None:
            return
        locked.metrics, locked.intervals = metrics, intervals
        locked.resamples, locked.resample_keys = resamples, resample_keys
        locked.evaluator_errors = errors
        locked.status = PrivateScore.Status.SUCCEEDED
        locked.finished_at = timezone.now()
        locked.deadline_at = None
        locked.save()


def private_score_fail(score: PrivateScore, message: str) -> None:
    with transaction.atomic():
        locked = _locked_if_current(score)
        if locked is not None:
            _fail_locked(locked, message)


def _locked_if_current(score: PrivateScore) -> PrivateScore | None:
    """The row, locked, unless it finished or another attempt claimed it since `score` was: a
    worker the sweep gave up on must not overwrite the attempt that replaced it."""
    locked = PrivateScore.objects.select_for_update().get(pk=score.pk)
    if locked.is_finished or locked.attempts != score.attempts:
        return None
    return locked


def _fail_locked(score: PrivateScore, message: str) -> None:
    score.status = PrivateScore.Status.FAILED
    score.error = message
    score.finished_at = timezone.now()
    score.deadline_at = None
    score.save()


def _out_of_attempts(score: PrivateScore) -> str:
    limit = score.submission.benchmark.time_limit_seconds
    return (
        f"measuring the private rows was started {score.attempts} times and never finished; each attempt was stopped "
        f"by the {limit} s time limit or lost with its worker."
    )


def private_scores_sweep(*, queue_empty=None) -> dict:
    """Send again the private scores whose message or worker was lost; fail those out of attempts.

    Simpler than the submissions' sweep on purpose (there are few private scores, once per
    benchmark): a running score past its deadline lost its worker, since the sandbox stops a
    model at 0.8 of the time limit; a queued one past its deadline is sent again only when its
    send failed or the evaluate queue is empty (its message was lost), so a long backlog at the
    closing is left to drain rather than doubled. A duplicate delivery is dropped by the claim.
    """
    from leaderboard.services import broker_queue_empty

    now = timezone.now()
    queue_empty = queue_empty or functools.cache(broker_queue_empty)
    counts = {"private_requeued": 0, "private_failed": 0}
    due = PrivateScore.objects.filter(
        status__in=[PrivateScore.Status.QUEUED, PrivateScore.Status.RUNNING], deadline_at__lt=now
    )
    unsent = PrivateScore.objects.filter(status=PrivateScore.Status.QUEUED, sent_at__isnull=True)
    for pk in set(due.values_list("pk", flat=True)) | set(unsent.values_list("pk", flat=True)):
        with transaction.atomic():
            score = PrivateScore.objects.select_for_update().select_related("submission__benchmark").get(pk=pk)
            outcome = _sweep_one(score, now, queue_empty)
            if outcome:
                counts[outcome] += 1
    return counts


def _sweep_one(score: PrivateScore, now, queue_empty) -> str | None:
    if score.is_finished:
        return None
    if score.status == PrivateScore.Status.QUEUED and score.sent_at is not None:
        if queue_empty(PRIVATE_QUEUE) is not True:
            return None  # waiting behind a backlog, or the broker cannot say
    if score.status == PrivateScore.Status.RUNNING and score.attempts >= settings.HOLDOUT_MAX_ATTEMPTS:
        _fail_locked(score, _out_of_attempts(score))
        return "private_failed"
    log.warning("private score %s (%s) was lost; sending it again", score.pk, score.status)
    score.status = PrivateScore.Status.QUEUED
    score.sent_at = now
    score.deadline_at = _deadline(score.submission.benchmark, now)
    score.save()
    _send_on_commit(score)
    return "private_requeued"
