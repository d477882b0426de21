"""Reads: what the web pages and the API show, computed once here for both."""

import math
from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Q

from leaderboard.errors import Rejected
from leaderboard.models import Benchmark, Submission
from leaderboard.objectives import OBJECTIVES, Objective
from leaderboard.ranking import rank_submissions
from leaderboard.tables import table_from_parquet


@dataclass(frozen=True)
class LeaderboardEntry:
    rank: int
    tied: bool
    submission: Submission
    score: float | None
    metrics: dict


@dataclass(frozen=True)
class Leaderboard:
    benchmark: Benchmark
    objectives: list[Objective]
    weights: dict[str, float]
    entries: list[LeaderboardEntry]


def benchmark_objectives(benchmark: Benchmark) -> list[Objective]:
    return [OBJECTIVES[key] for key in benchmark.objectives if key in OBJECTIVES]


def benchmarks_with_counts():
    return Benchmark.objects.annotate(
        submission_count=Count("submissions"),
        succeeded_count=Count("submissions", filter=Q(submissions__status=Submission.Status.SUCCEEDED)),
    )


def weights_parse(text: str, benchmark: Benchmark) -> dict[str, float]:
    """`accuracy:4,latency_p99_ms:1` -> weights over the benchmark's objectives; unnamed ones get 0."""
    keys = [objective.key for objective in benchmark_objectives(benchmark)]
    weights = dict.fromkeys(keys, 0.0)
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, separator, number = item.partition(":")
        key = key.strip()
        if not separator:
            raise Rejected(f"weight '{item}' needs the form key:number, e.g. accuracy:2.", field="weights")
        if key not in weights:
            raise Rejected(
                f"unknown objective '{key}' in weights; this benchmark has: {', '.join(keys)}.", field="weights"
            )
        try:
            value = float(number)
        except ValueError:
            raise Rejected(f"weight of '{key}' is '{number.strip()}', not a number.", field="weights") from None
        if not math.isfinite(value) or value < 0:
            raise Rejected(f"weight of '{key}' must be a non-negative number, not {number.strip()}.", field="weights")
        weights[key] = value
    if not any(weights.values()):
        raise Rejected("at least one weight must be above zero.", field="weights")
    return weights


def leaderboard_get(benchmark: Benchmark, *, weights: dict[str, float] | None = None) -> Leaderboard:
    """The benchmark's succeeded submissions ranked by the reader's weights (the benchmark's by default)."""
    objectives = benchmark_objectives(benchmark)
    if weights is None:
        weights = {objective.key: float(benchmark.objectives.get(objective.key, 0.0)) for objective in objectives}
        if not any(weights.values()):
            weights[benchmark.primary_metric] = 1.0
    submissions = list(
        Submission.objects.filter(benchmark=benchmark, status=Submission.Status.SUCCEEDED)
        .select_related("owner")
        .order_by("created_at")
    )
    if not submissions:
        return Leaderboard(benchmark, objectives, weights, [])
    values = np.array(
        [[_number(submission.metrics.get(o.key)) for o in objectives] for submission in submissions], dtype=float
    ).reshape(len(submissions), len(objectives))
    ranking = rank_submissions(
        values,
        higher_is_better=np.array([o.higher_is_better for o in objectives]),
        weights=np.array([weights[o.key] for o in objectives]),
    )
    entries = [
        LeaderboardEntry(
            rank=int(ranking.ranks[row]),
            tied=bool(ranking.tied[row]),
            submission=submissions[row],
            score=None if np.isnan(ranking.scores[row]) else float(ranking.scores[row]),
            metrics=submissions[row].metrics,
        )
        for row in ranking.order
    ]
    return Leaderboard(benchmark, objectives, weights, entries)


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else np.nan


def benchmark_train_csv(benchmark: Benchmark) -> bytes:
    """The public training split as CSV; the test split is never served."""
    with benchmark.train_data.open("rb") as handle:
        frame = table_from_parquet(handle.read())
    return frame.to_csv(index=False).encode()


@dataclass(frozen=True)
class SubmissionSection:
    """One evaluator's part of a submission: its objectives, or why it is missing."""

    evaluator: str
    state: str  # "measured", "failed" (error says why), or "pending"
    error: str
    seconds: float | None
    rows: list[dict]


def submission_sections(submission: Submission) -> list[SubmissionSection]:
    benchmark = submission.benchmark
    reports = {report.evaluator: report for report in submission.reports.all()}
    objectives = benchmark_objectives(benchmark)
    sections = []
    for evaluator in dict.fromkeys(["performance", *benchmark.evaluators]):
        report = reports.get(evaluator)
        rows = [
            {"objective": o, "value": submission.metrics.get(o.key), "interval": submission.intervals.get(o.key)}
            for o in objectives
            if o.evaluator == evaluator and o.key in submission.metrics
        ]
        if report is None:
            state = "pending"
        else:
            state = "failed" if report.error else "measured"
        sections.append(
            SubmissionSection(
                evaluator=evaluator,
                state=state,
                error=report.error if report else "",
                seconds=report.seconds if report else None,
                rows=rows,
            )
        )
    return sections
