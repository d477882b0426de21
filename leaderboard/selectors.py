"""Reads: what the web pages and the API show, computed once here for both."""

from dataclasses import dataclass

from django.db.models import Count, Q

from leaderboard.boards import benchmark_objectives
from leaderboard.models import Benchmark, Submission
from leaderboard.tables import table_from_parquet


def benchmarks_with_counts():
    return Benchmark.objects.annotate(
        submission_count=Count("submissions"),
        succeeded_count=Count("submissions", filter=Q(submissions__status=Submission.Status.SUCCEEDED)),
    )


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
