"""Reads: what the web pages and the API show, computed once here for both."""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from uuid import UUID

import pandas as pd
from django.core.cache import cache
from django.db.models import Count, Q
from django.utils import timezone

from leaderboard.withholding import (
    coarse_document,
    release_resolution,
    released_intervals,
    released_metrics,
    report_shown,
    withheld_keys,
    withholding_in_force,
)
from leaderboard.boards import benchmark_objectives
from leaderboard.models import Benchmark, Report, Submission
from leaderboard.tables import table_from_parquet


def benchmarks_with_counts():
    return Benchmark.objects.annotate(
        submission_count=Count("submissions"),
        succeeded_count=Count("submissions", filter=Q(submissions__status=Submission.Status.SUCCEEDED)),
    )


@dataclass(frozen=True)
class QuotaUsage:
    """How much of a benchmark's daily submission quota one person has used today (UTC)."""

    quota: int  # 0 means no limit
    used: int
    exempt: bool  # staff are not limited
    resets_at: datetime  # the next midnight UTC

    @property
    def limited(self) -> bool:
        return self.quota > 0 and not self.exempt

    @property
    def exhausted(self) -> bool:
        return self.limited and self.used >= self.quota

    @property
    def remaining(self) -> int | None:
        return max(self.quota - self.used, 0) if self.limited else None

    def seconds_to_reset(self, now: datetime | None = None) -> int:
        return max(1, math.ceil((self.resets_at - (now or timezone.now())).total_seconds()))


def quota_day_start(now: datetime) -> datetime:
    """The day a quota counts is the UTC day, the same for everyone wherever they are."""
    return now.astimezone(dt_timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def submission_quota_usage(*, benchmark: Benchmark, owner, now: datetime | None = None) -> QuotaUsage:
    """Today's submissions of `owner` to `benchmark` that count against its quota.

    A submission that failed through the platform's fault (a lost worker, storage) is not the
    submitter's doing, so it gives its slot back; one that failed because of the model does not.
    Baselines are the benchmark's reference points, submitted by the platform, not anyone's attempts.
    """
    day_start = quota_day_start(now or timezone.now())
    used = (
        Submission.objects.filter(benchmark=benchmark, owner=owner, created_at__gte=day_start, is_baseline=False)
        .exclude(status=Submission.Status.FAILED, fault="platform")
        .count()
    )
    return QuotaUsage(
        quota=benchmark.daily_submission_quota,
        used=used,
        exempt=bool(owner.is_staff),
        resets_at=day_start + timedelta(days=1),
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
    metrics, intervals = released_metrics(submission), released_intervals(submission)
    sections = []
    for evaluator in dict.fromkeys(["performance", *benchmark.evaluators]):
        report = reports.get(evaluator)
        rows = [
            {"objective": o, "value": metrics.get(o.key), "interval": intervals.get(o.key)}
            for o in objectives
            if o.evaluator == evaluator and o.key in metrics
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


@dataclass(frozen=True)
class SubmissionCharts:
    """What the submission page draws; a chart is None where its report is missing or failed."""

    groups: list  # per sensitive column and metric
    attribution: object | None
    latency: object | None
    throughput: tuple[list[str], list[list]] | None
    decay: object | None
    fairness_measured: bool  # a fairness report without error exists: the reviewers' report can be read


def submission_charts(submission: Submission) -> SubmissionCharts:
    """The charts of a submission's reports; each is drawn once per report and then cached."""
    from leaderboard import charts  # matplotlib is loaded by the pages that draw, not by every process

    reports = {report.evaluator: report_shown(report) for report in submission.reports.all() if not report.error}
    fairness = reports.get("fairness")
    by_grouping = fairness_group_charts(fairness, submission.benchmark.primary_metric) if fairness else {}
    latency = reports.get("latency")
    return SubmissionCharts(
        groups=[chart for drawn in by_grouping.values() for chart in drawn],
        attribution=report_chart(reports.get("interpretability"), "attribution", charts.attribution_chart),
        latency=report_chart(latency, "latency", charts.latency_chart),
        throughput=report_chart(latency, "throughput", charts.throughput_table),
        decay=report_chart(reports.get("decay"), "decay", charts.decay_chart),
        fairness_measured=fairness is not None,
    )


def fairness_group_charts(fairness: Report, primary_metric: str) -> dict[str, list]:
    """{sensitive column: charts}: its groups on the primary metric and, where there is one, the
    selection rate. A chart the document cannot draw is left out: the tables show every number."""
    from leaderboard import charts

    drawn = {}
    for grouping in fairness.document.get("groupings", []):
        if grouping.get("kind") != "column" or not grouping.get("groups"):
            continue
        name, available = grouping["name"], grouping["groups"][0].get("metrics", {})
        first = primary_metric if primary_metric in available else next(iter(available), None)
        metrics = [metric for metric in dict.fromkeys([first, "selection_rate"]) if metric in available]
        found = [
            report_chart(fairness, f"group:{name}:{metric}", charts.group_metric_chart, name, metric)
            for metric in metrics
        ]
        drawn[name] = [chart for chart in found if chart is not None]
    return drawn


def report_chart(report, name: str, draw, *arguments):
    """`draw(report.document, *arguments)`, kept in the cache: a stored report never changes."""
    if report is None:
        return None
    key = f"chart:v1:{report.pk}:{report.created_at.timestamp()}:{getattr(report, 'released_as', 'exact')}:{name}"
    found = cache.get(key)
    if found is None:
        try:
            found = ("drawn", draw(report.document, *arguments))
        except ValueError as error:
            found = ("missing", str(error))
        # A placeholder for a chart that failed is not cached: the next request tries again.
        if getattr(found[1], "drawn", True):
            cache.set(key, found)
    return found[1] if found[0] == "drawn" else None


def submission_reports_export(submission: Submission) -> dict:
    """Everything measured about a submission, as one JSON document for download."""
    return {
        "submission": {
            "id": str(submission.pk),
            "name": submission.name,
            "benchmark": submission.benchmark.slug,
            "owner": submission.owner.username,
            "status": submission.status,
            "stage": submission.stage,
            "error": submission.error,
            "created_at": submission.created_at.isoformat(),
            "finished_at": submission.finished_at.isoformat() if submission.finished_at else None,
            "artifact": {
                "format": submission.artifact_format,
                "bytes": submission.artifact_bytes,
                "sha256": submission.artifact_sha256,
            },
            "metadata": submission.metadata,
            "metrics": released_metrics(submission),
            "intervals": released_intervals(submission),
            "withheld": withheld_keys(submission),
        },
        "reports": {
            report.evaluator: {
                "seconds": report.seconds,
                "error": report.error,
                "metrics": report.metrics,
                "intervals": report.intervals,
                "document": report.document,
            }
            for report in map(report_shown, submission.reports.order_by("created_at"))
        },
    }


def decay_series(benchmark: Benchmark, entries, limit: int = 5) -> list[tuple[str, dict]]:
    """The decay documents of the first `limit` listed submissions that have one, for an overlay
    (released coarsely while a guarded benchmark is open)."""
    ids = [entry.submission["id"] for entry in entries[: 4 * limit]]
    documents = dict(
        Report.objects.filter(submission_id__in=ids, evaluator="decay", error="").values_list(
            "submission_id", "document"
        )
    )
    series = []
    for entry in entries[: 4 * limit]:
        document = documents.get(UUID(entry.submission["id"]))
        if document and withholding_in_force(benchmark):
            document = coarse_document(document, release_resolution(benchmark))
        if document and document.get("windows"):
            series.append((f"#{entry.rank} {entry.submission['name']}", document))
    return series[:limit]


def benchmark_time_span(benchmark: Benchmark) -> dict | None:
    """First and last moment of the training and the test split; None without a time column.

    Read from the stored splits once (they never change) and kept in the cache.
    """
    if not benchmark.time_column:
        return None
    key = f"time-span:v1:{benchmark.pk}:{benchmark.train_data.name}:{benchmark.test_data.name}"
    span = cache.get(key)
    if span is None:
        span = {}
        for split, stored in (("train", benchmark.train_data), ("test", benchmark.test_data)):
            with stored.open("rb") as handle:
                times = pd.to_datetime(pd.read_parquet(handle, columns=[benchmark.time_column])[benchmark.time_column])
            span[split] = (times.min(), times.max()) if len(times) else (None, None)
        cache.set(key, span)
    return span


def latency_calibrations_recent(*, host: str, limit: int) -> tuple[float, ...]:
    """The calibration medians (ms) of the latest latency sessions on `host`, newest first."""
    values = (
        Report.objects.filter(evaluator="latency", error="", document__environment__host=host)
        .order_by("-created_at")
        .values_list("document__calibration__median_ms", flat=True)[:limit]
    )
    return tuple(float(value) for value in values if isinstance(value, (int, float)) and value > 0)
