"""Two submissions of one benchmark compared objective by objective, with paired 95% intervals.

Every submission of a benchmark is measured on the same seeded bootstrap resamples of the test
rows, so resample b of one minus resample b of the other is a draw of their difference (so is it
for an objective timed on independent draws): its spread is the noise of the comparison, usually
far smaller than either interval suggests, because the luck of the test rows is shared. The API's compare
endpoint and the CLI's --max-regression read this; the web compare view is meant to as well.
"""

from dataclasses import dataclass

import numpy as np

from leaderboard.withholding import reads_labels, released_metrics, withholding_in_force
from leaderboard.boards import benchmark_objectives
from leaderboard.errors import Rejected
from leaderboard.models import Submission

INTERVAL_PERCENTILES = (2.5, 97.5)  # as the evaluators' intervals


@dataclass(frozen=True)
class ObjectiveDifference:
    key: str
    higher_is_better: bool
    value: float | None
    reference_value: float | None
    # value - reference_value in the objective's direction: positive when the submission is better.
    difference: float | None
    interval: list[float] | None  # 95% percentile interval of the paired difference over the resamples
    significant: bool | None  # the interval excludes 0 (an exact difference: it is not 0); None if unknown
    exact: bool  # measured on both, neither with sampling noise (size_bytes, say): the difference is exact
    paired_resamples: int  # resamples where both are defined, behind the interval
    note: str  # why there is no interval, or what it leaves out; "" when there is nothing to say


@dataclass(frozen=True)
class Comparison:
    submission: Submission
    reference: Submission
    resamples: int  # the benchmark's resamples per objective
    objectives: list[ObjectiveDifference]


# A paired interval on a guarded benchmark's exact public figures would pin them.
WITHHELD_NOTE = (
    "guarded benchmark: the released values are compared (the primary metric as each submitter's Ladder released "
    "it, the others rounded); the paired interval and its significance are withheld until the benchmark closes"
)

def submission_resamples(submission: Submission) -> dict[str, np.ndarray]:
    """{key: B float32 values on the benchmark's shared resamples}; a matrix stored for another
    number of resamples was drawn on other rows and pairs with nothing, so it is left out."""
    keys = submission.resample_keys or []
    data = bytes(submission.resamples or b"")
    resamples = submission.benchmark.bootstrap_resamples
    if not keys or len(data) != len(keys) * resamples * 4:
        return {}
    matrix = np.frombuffer(data, dtype=np.float32).reshape(len(keys), resamples)
    return dict(zip(keys, matrix))


def paired_differences(submission: Submission, reference: Submission) -> Comparison:
    """Each of the benchmark's objectives: both values, the paired difference and its interval."""
    if submission.benchmark_id != reference.benchmark_id:
        raise Rejected(
            f"submission {reference.pk} is on benchmark {reference.benchmark.slug} and submission {submission.pk} "
            f"on {submission.benchmark.slug}; only submissions of one benchmark share resamples: compare with a "
            f"submission of {submission.benchmark.slug}.",
            field="other_id",
        )
    sampled = submission_resamples(submission), submission_resamples(reference)
    objectives = [
        _objective_difference(objective.key, objective.higher_is_better, submission, reference, *sampled)
        for objective in benchmark_objectives(submission.benchmark)
    ]
    return Comparison(submission, reference, submission.benchmark.bootstrap_resamples, objectives)


def _objective_difference(
    key: str, higher_is_better: bool, submission: Submission, reference: Submission, *sampled: dict
) -> ObjectiveDifference:
    sides = (submission, reference)
    withheld = withholding_in_force(submission.benchmark) and reads_labels(key)
    shown = [released_metrics(side) if withheld else side.metrics for side in sides]
    value, reference_value = points = tuple(metrics.get(key) for metrics in shown)
    measured = None not in points
    exact = measured and all(key not in side.intervals and key not in found for side, found in zip(sides, sampled))

    def compared(difference=None, interval=None, significant=None, paired=0, note="") -> ObjectiveDifference:
        return ObjectiveDifference(
            key, higher_is_better, value, reference_value, difference, interval, significant, exact, paired, note
        )

    if not measured:
        missing = " and ".join(str(side.pk) for side, point in zip(sides, points) if point is None)
        return compared(note=f"{key} was not measured for submission {missing}")
    sign = 1.0 if higher_is_better else -1.0
    difference = sign * (value - reference_value)
    if withheld:
        return ObjectiveDifference(
            key, higher_is_better, value, reference_value, difference, None, None, False, 0, WITHHELD_NOTE
        )
    if exact:
        return compared(difference, significant=difference != 0)
    unpaired = [side for side, found in zip(sides, sampled) if key not in found]
    if len(unpaired) == 2:
        return compared(
            difference, note=f"neither submission kept resamples of {key}: the noise of the difference is unknown"
        )
    # A side without resamples of a sampled objective (an evaluation from before they were kept)
    # counts with its point value on every resample, as on the leaderboard's ties; the note says
    # that the interval then holds the other side's noise only.
    resamples = submission.benchmark.bootstrap_resamples
    draws = [
        found[key].astype(float) if key in found else np.full(resamples, point) for found, point in zip(sampled, points)
    ]
    drawn = sign * (draws[0] - draws[1])
    defined = drawn[np.isfinite(drawn)]
    if not defined.size:
        return compared(
            difference,
            note=f"no resample where both submissions have a value of {key}: the noise of the difference is unknown",
        )
    low, high = (float(bound) for bound in np.percentile(defined, INTERVAL_PERCENTILES))
    note = ""
    if unpaired:
        note = (
            f"submission {unpaired[0].pk} kept no resamples of {key}: its point value stands on every resample, "
            "so the interval leaves its noise out"
        )
    return compared(difference, [low, high], low > 0 or high < 0, int(defined.size), note)
