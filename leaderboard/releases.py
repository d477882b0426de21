"""What a guarded benchmark releases of a succeeded submission's score: the Ladder, per submitter.

The pure rule is leaderboard/ladder.py; this module keeps each submitter's ladder in the database
(LadderEntry, locked while a submission is judged, so two submissions finishing at once are judged
one after the other) and pairs the candidate with the submitter's released best on the
benchmark's shared bootstrap resamples, whose spread is the standard error of their difference
(the primary metric may be ROC AUC, which is not a mean over rows).
"""

import math

import numpy as np

from leaderboard.comparisons import submission_resamples
from leaderboard.ladder import LadderState, default_step, ladder_release, paired_standard_error
from leaderboard.models import LadderEntry, Submission

# The fixed-step Ladder's default step assumes up to this many submissions per submitter.
DEFAULT_SUBMISSIONS_FOR_STEP = 1000


def primary_release(submission: Submission) -> dict:
    """Judge the submission's primary metric on its owner's ladder; call inside a transaction."""
    benchmark = submission.benchmark
    key = benchmark.primary_metric
    value = submission.metrics.get(key)
    if value is None or not math.isfinite(value):
        return {"metric": key, "value": None, "improved": False, "reason": f"no {key} was measured: nothing is released"}
    entry, _ = LadderEntry.objects.select_for_update().get_or_create(
        benchmark=benchmark, owner=submission.owner, target="primary"
    )
    public_rows = len(benchmark.public_positions)
    state = LadderState(
        best=entry.best,
        best_key=str(entry.best_submission_id) if entry.best_submission_id else None,
        steps=entry.steps,
        submissions=entry.submissions,
    )
    release = ladder_release(
        state,
        float(value),
        higher_is_better=benchmark.primary_objective.higher_is_better,
        key=str(submission.pk),
        variant=benchmark.ladder_variant,
        step=ladder_step(benchmark),
        standard_error=_paired_error(submission, entry, key),
        resolution=1 / public_rows if benchmark.ladder_variant == "parameter-free" else None,
    )
    entry.best, entry.steps, entry.submissions = release.state.best, release.state.steps, release.state.submissions
    if release.improved:
        entry.best_submission = submission
    entry.save()
    return {
        "metric": key,
        "value": release.released,
        "improved": release.improved,
        "reason": release.reason,
        "threshold": release.threshold,
        "steps": release.state.steps,
    }


def ladder_step(benchmark) -> float | None:
    if benchmark.ladder_variant != "fixed":
        return None
    limit = benchmark.holdout_budget or DEFAULT_SUBMISSIONS_FOR_STEP
    return benchmark.ladder_step or default_step(len(benchmark.public_positions), limit)


def _paired_error(submission: Submission, entry: LadderEntry, key: str) -> float | None:
    """One standard error of the candidate minus the released best; None before a first release.

    A side whose resamples are gone (deleted, or drawn for another resample count) pairs with
    nothing: then the other's own bootstrap spread stands in (wider than the paired one, so a
    stricter margin), and with neither, the largest standard error a mean of values in [0, 1] can
    have on the public rows, 0.5 / sqrt(n)."""
    benchmark = submission.benchmark
    if entry.best is None or benchmark.ladder_variant != "parameter-free":
        return None
    candidate = submission_resamples(submission).get(key)
    best = submission_resamples(entry.best_submission).get(key) if entry.best_submission else None
    if candidate is not None and best is not None:
        return paired_standard_error(candidate, best, kind="resamples")
    alone = candidate if candidate is not None else best
    if alone is None:
        return 0.5 / math.sqrt(len(benchmark.public_positions))
    return float(np.nanstd(alone, ddof=1))
