"""What a guarded benchmark releases of a succeeded submission's score: the Ladders, per submitter.

Two Ladders per submitter and benchmark: one on the primary metric, one on the default board's
utility (its default weights and utility bounds, the score the public board ranks by). The pure
rule is leaderboard/ladder.py; this module keeps each submitter's ladders in the database
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
from leaderboard.ranking import metric_value, utility_samples

# The fixed-step Ladder's default step assumes up to this many submissions per submitter.
DEFAULT_SUBMISSIONS_FOR_STEP = 1000


def submission_releases(submission: Submission) -> dict:
    """Everything the Ladders release of a succeeded submission; call inside a transaction."""
    released = {"primary": primary_release(submission)}
    utility = utility_release(submission)
    if utility is not None:
        released["utility"] = utility
    return released


def primary_release(submission: Submission) -> dict:
    """Judge the submission's primary metric on its owner's ladder."""
    benchmark = submission.benchmark
    key = benchmark.primary_metric
    value = submission.metrics.get(key)
    if value is None or not math.isfinite(value):
        return {"metric": key, "value": None, "improved": False, "reason": f"no {key} was measured: nothing is released"}

    def samples(side: Submission) -> np.ndarray | None:
        return submission_resamples(side).get(key)

    higher = benchmark.primary_objective.higher_is_better
    return {"metric": key, **_judged(submission, "primary", float(value), samples, higher_is_better=higher)}


def utility_release(submission: Submission) -> dict | None:
    """Judge the submission's utility under the benchmark's default weights on its owner's second
    ladder; None when the default board cannot score it (a missing weighted objective)."""
    scorer = _DefaultUtility(submission.benchmark)
    value, own = scorer.scores(submission)
    if value is None:
        return None

    def samples(side: Submission) -> np.ndarray | None:
        return own if side.pk == submission.pk else scorer.scores(side)[1]

    return {"metric": "utility", "weights": scorer.weights, **_judged(submission, "utility", value, samples)}


def _judged(submission: Submission, target: str, value: float, samples, *, higher_is_better: bool = True) -> dict:
    benchmark = submission.benchmark
    entry, _ = LadderEntry.objects.select_for_update().get_or_create(
        benchmark=benchmark, owner=submission.owner, target=target
    )
    state = LadderState(
        best=entry.best,
        best_key=str(entry.best_submission_id) if entry.best_submission_id else None,
        steps=entry.steps,
        submissions=entry.submissions,
    )
    release = ladder_release(
        state,
        value,
        higher_is_better=higher_is_better,
        key=str(submission.pk),
        variant=benchmark.ladder_variant,
        step=ladder_step(benchmark),
        standard_error=_paired_error(submission, entry, samples),
        resolution=1 / len(benchmark.public_positions) if benchmark.ladder_variant == "parameter-free" else None,
    )
    entry.best, entry.steps, entry.submissions = release.state.best, release.state.steps, release.state.submissions
    if release.improved:
        entry.best_submission = submission
    entry.save()
    return {
        "value": release.released,
        "improved": release.improved,
        "reason": release.reason,
        "threshold": release.threshold,
        "steps": release.state.steps,
    }


class _DefaultUtility:
    """The default board's utility of single submissions, with the board's weights and bounds."""

    def __init__(self, benchmark):
        from leaderboard.board_columns import board_columns
        from leaderboard.boards import benchmark_objectives, board_query_parse, objective_bounds, objective_specs

        self.benchmark = benchmark
        self.objectives = benchmark_objectives(benchmark)
        query = board_query_parse({}, benchmark)
        self.weights = {key: weight for key, weight in query.weights.items() if weight > 0}
        columns = board_columns(benchmark, [objective.key for objective in self.objectives])
        bounds = objective_bounds(benchmark, self.objectives, columns.values[columns.baseline])
        self.specs = objective_specs(self.objectives, bounds)
        self.scorable = all(None not in bounds[key] for key in self.weights)

    def scores(self, submission: Submission) -> tuple[float | None, np.ndarray | None]:
        """(utility, its values on the shared resamples); (None, None) when it cannot be scored."""
        if not self.scorable:
            return None, None
        keys = [objective.key for objective in self.objectives]
        values = np.array([[metric_value(submission.metrics.get(key)) for key in keys]])
        sampled = submission_resamples(submission)
        resamples = [
            sampled[key][None, :].astype(float) if key in sampled and key in self.weights else None for key in keys
        ]
        weights = np.array([self.weights.get(key, 0.0) for key in keys])
        points, samples = utility_samples(
            values, self.specs, weights, primary=self.benchmark.primary_metric, resamples=resamples
        )
        if not math.isfinite(points[0]):
            return None, None
        return float(points[0]), (samples[0] if samples.shape[1] > 1 else None)


def ladder_step(benchmark) -> float | None:
    if benchmark.ladder_variant != "fixed":
        return None
    limit = benchmark.holdout_budget or DEFAULT_SUBMISSIONS_FOR_STEP
    return benchmark.ladder_step or default_step(len(benchmark.public_positions), limit)


def _paired_error(submission: Submission, entry: LadderEntry, samples) -> float | None:
    """One standard error of the candidate minus the released best; None before a first release.

    A side whose resamples are gone (deleted, or drawn for another resample count) pairs with
    nothing: then the other's own bootstrap spread stands in (wider than the paired one, so a
    stricter margin), and with neither, the largest standard error a mean of values in [0, 1] can
    have on the public rows, 0.5 / sqrt(n)."""
    benchmark = submission.benchmark
    if entry.best is None or benchmark.ladder_variant != "parameter-free":
        return None
    candidate = samples(submission)
    best = samples(entry.best_submission) if entry.best_submission else None
    if candidate is not None and best is not None:
        return paired_standard_error(candidate, best, kind="resamples")
    alone = candidate if candidate is not None else best
    if alone is None:
        return 0.5 / math.sqrt(len(benchmark.public_positions))
    return float(np.nanstd(alone, ddof=1))
