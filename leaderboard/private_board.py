"""The private board of a closed guarded benchmark (issue 13): the counted submissions ranked by the
primary metric measured on the private rows, beside what the public board released of them.

Ranks are the public board's (leaderboard/ranking.py, `rank_board`): 1 + how many are
significantly better on the paired resamples, here the benchmark's shared bootstrap resamples of
the private rows (the performance evaluator draws them with the benchmark's seed for whatever
rows it is given, so every private score is resampled alike). Before the benchmark closes there
is no private board to read: `private_board_get` refuses, and no PrivateScore exists
(leaderboard/closing.py).
"""

import math
from dataclasses import dataclass

import numpy as np

from leaderboard.closing import closed_at_words
from leaderboard.errors import Conflict
from leaderboard.models import Benchmark, PrivateScore
from leaderboard.ranking import ObjectiveSpec, RankedBoard, rank_board

SEALED = "the private board is revealed when the owner closes the benchmark"
COUNTED_WORDS = {
    PrivateScore.Counted.CHOSEN: "chosen",
    PrivateScore.Counted.DEFAULT: "by default: the released best",
    PrivateScore.Counted.ALL: "every submission counts",
    PrivateScore.Counted.BASELINE: "baseline",
}


@dataclass(frozen=True)
class PrivateEntry:
    rank: int | None  # None until it is measured, or when it failed
    rank_interval: list[int] | None
    tied: bool
    submission: dict  # id, name, owner, is_baseline, created_at
    counted_as: str  # PrivateScore.Counted
    status: str
    private_value: float | None
    private_interval: list[float] | None
    public_value: float | None  # what the Ladder released when it succeeded; None for a baseline
    public_improved: bool | None
    error: str

    @property
    def counted_words(self) -> str:
        return COUNTED_WORDS[self.counted_as]


@dataclass(frozen=True)
class PrivateBoard:
    benchmark: Benchmark
    metric: str
    higher_is_better: bool
    private_rows: int
    entries: list[PrivateEntry]  # measured, best first
    pending: list[PrivateEntry]  # queued or running
    failed: list[PrivateEntry]

    @property
    def counted(self) -> int:
        return len(self.entries) + len(self.pending) + len(self.failed)

    @property
    def done(self) -> int:
        return len(self.entries) + len(self.failed)

    @property
    def complete(self) -> bool:
        return not self.pending

    @property
    def closed_words(self) -> str:
        return closed_at_words(self.benchmark)


def private_board_get(benchmark: Benchmark) -> PrivateBoard:
    """The private board; Conflict (409) on an open benchmark or before the closing."""
    if not benchmark.is_guarded:
        raise Conflict(
            f"'{benchmark.slug}' is an open benchmark: its one board shows every score, and it has no private part.",
            field="benchmark",
        )
    if not benchmark.is_closed:
        raise Conflict(
            f"{SEALED}; '{benchmark.slug}' is still open for submissions, and its public board is at "
            f"/api/v1/benchmarks/{benchmark.slug}/leaderboard/.",
            field="benchmark",
        )
    key = benchmark.primary_metric
    scores = list(
        PrivateScore.objects.filter(submission__benchmark=benchmark).select_related("submission__owner")
    )
    measured = [
        score for score in scores if score.status == PrivateScore.Status.SUCCEEDED and _value(score, key) is not None
    ]
    ranked = _ranked(benchmark, measured) if measured else None
    entries = [_entry(measured[row], key, ranked, row) for row in (ranked.order if ranked is not None else [])]
    unmeasured = [score for score in scores if score not in measured]
    return PrivateBoard(
        benchmark=benchmark,
        metric=key,
        higher_is_better=benchmark.primary_objective.higher_is_better,
        private_rows=len(benchmark.private_positions),
        entries=entries,
        pending=[_entry(score, key) for score in unmeasured if not score.is_finished],
        failed=[_entry(score, key) for score in unmeasured if score.is_finished],
    )


def _value(score: PrivateScore, key: str) -> float | None:
    value = score.metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _resampled(score: PrivateScore, key: str, resamples: int) -> np.ndarray:
    """The score's `key` on the shared resamples of the private rows; its point value repeated
    when none were kept (no noise to tie by, as on the public board)."""
    keys = score.resample_keys or []
    data = bytes(score.resamples or b"")
    if key in keys and len(data) == 4 * resamples * len(keys):
        return np.frombuffer(data, dtype=np.float32).reshape(len(keys), resamples)[keys.index(key)].astype(float)
    return np.full(resamples, _value(score, key))


def _ranked(benchmark: Benchmark, scores: list[PrivateScore]) -> RankedBoard:
    """The scores ranked on the primary metric alone, with paired ranks over the resamples.

    The utility's bounds enclose every value and resample, so the score is an affine map of the
    metric (nothing is clipped) and the ranks are the metric's own paired ranks."""
    key, objective = benchmark.primary_metric, benchmark.primary_objective
    values = np.array([[_value(score, key)] for score in scores], dtype=float)
    samples = np.array([_resampled(score, key, benchmark.bootstrap_resamples) for score in scores])
    finite = np.concatenate([values.ravel(), samples[np.isfinite(samples)]])
    low, high = float(finite.min()), float(finite.max())
    high = high if high > low else low + 1.0
    worst, best = (low, high) if objective.higher_is_better else (high, low)
    spec = ObjectiveSpec(key=key, higher_is_better=objective.higher_is_better, worst=worst, best=best)
    return rank_board(
        values, [spec], np.array([1.0]), method="utility", primary=key, resamples=[samples], window=(0, len(scores))
    )


def _entry(score: PrivateScore, key: str, ranked: RankedBoard | None = None, row: int | None = None) -> PrivateEntry:
    submission = score.submission
    released = (submission.released or {}).get("primary") or {}
    interval = score.intervals.get(key)
    ranked_here = ranked is not None and bool(ranked.ranks[row])
    return PrivateEntry(
        rank=int(ranked.ranks[row]) if ranked_here else None,
        rank_interval=[int(place) for place in ranked.rank_intervals[row]] if ranked_here else None,
        tied=bool(ranked.tied[row]) if ranked_here else False,
        submission={
            "id": str(submission.pk),
            "name": submission.name,
            "owner": submission.owner.username,
            "is_baseline": submission.is_baseline,
            "created_at": submission.created_at,
        },
        counted_as=score.counted_as,
        status=score.status,
        private_value=_value(score, key),
        private_interval=[float(bound) for bound in interval] if interval and None not in interval else None,
        public_value=released.get("value"),
        public_improved=released.get("improved"),
        error=score.error or ("" if ranked_here or not score.is_finished else f"no {key} was measured"),
    )
