"""What a guarded benchmark shows a submitter while its competition runs (issue 13).

Every figure computed from the hidden labels is a query on them; releasing them exactly, next to
the Ladder, would undo it. So while a guarded benchmark is open for submissions:

- its primary metric is what the submitter's Ladder released (leaderboard/releases.py), and the
  default board's utility likewise;
- every other objective computed from the labels (the performance, fairness and decay
  evaluators') is rounded to the release resolution, and shown without its interval, whose ends
  would pin the exact value;
- objectives that do not read the labels (interpretability, latency, size, cost) are shown as
  measured: they tell nothing about the hidden rows' targets;
- the performance, fairness and decay reports are released coarsely (`coarse_document`): their
  numbers rounded the same way, per-resample values never, groups and slices under
  MIN_RELEASED_GROUP_ROWS public rows without figures.

The resolution is the fixed-step Ladder's step, or for the parameter-free Ladder 1/sqrt(n) on
the n public rows rounded up to 1, 2, 2.5 or 5 times a power of ten: twice the largest standard
error a share can have there, so a rounding step is about what the rows can resolve anyway.

Once the owner closes the benchmark, nothing more is learned from the public part, and it is
shown exactly beside the private board. Open benchmarks show everything exactly, always.
"""

import math

from leaderboard.ladder import round_to_step
from leaderboard.objectives import OBJECTIVES

# The evaluators whose figures are computed from the test rows' targets.
LABEL_EVALUATORS = frozenset({"performance", "fairness", "decay"})
# A group or slice with fewer public rows is listed without figures on a guarded benchmark: its
# few rows' targets would be read off its rates almost one by one.
MIN_RELEASED_GROUP_ROWS = 50
# Never released on a guarded benchmark: the values on each resample pin the exact figure.
NEVER_RELEASED = frozenset({"resample_values"})


def withholding_in_force(benchmark) -> bool:
    return benchmark.is_guarded and benchmark.closed_at is None


def holdout_facts(benchmark) -> dict | None:
    """What the benchmark page says of a guarded benchmark's split and releases."""
    if not benchmark.is_guarded:
        return None
    from leaderboard.releases import ladder_step

    public = len(benchmark.public_positions)
    return {
        "public_rows": public,
        "public_percent": f"{100 * public / max(1, benchmark.test_rows):.0f}",
        "private_rows": benchmark.test_rows - public,
        "step": f"{ladder_step(benchmark):.3g}" if ladder_step(benchmark) else None,
        "resolution": f"{release_resolution(benchmark):g}",
        "min_group_rows": MIN_RELEASED_GROUP_ROWS,
    }


def reads_labels(key: str) -> bool:
    objective = OBJECTIVES.get(key)
    # An unknown key (a report's extra figure) is treated as reading them: withheld is the safe side.
    return objective is None or objective.evaluator in LABEL_EVALUATORS


def release_resolution(benchmark) -> float:
    """The step every label-based figure is rounded to on a guarded benchmark."""
    from leaderboard.releases import ladder_step

    step = ladder_step(benchmark)
    if step:
        return step
    return nice_ceiling(1 / math.sqrt(max(1, len(benchmark.public_positions))))


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    for multiple in (1, 2, 2.5, 5, 10):
        if multiple * power >= value * (1 - 1e-12):
            return round(multiple * power, 12)
    return 10 * power


def coarse(value, resolution: float):
    """A finite float rounded to the resolution; anything else unchanged."""
    if isinstance(value, float) and math.isfinite(value):
        return round_to_step(value, resolution)
    return value


def released_metrics(submission) -> dict:
    """The submission's objectives as its submitter may see them."""
    metrics = dict(submission.metrics or {})
    benchmark = submission.benchmark
    if not withholding_in_force(benchmark):
        return metrics
    resolution = release_resolution(benchmark)
    shown = {key: coarse(value, resolution) if reads_labels(key) else value for key, value in metrics.items()}
    primary = (submission.released or {}).get("primary") or {}
    if benchmark.primary_metric in shown and not submission.is_baseline:
        shown[benchmark.primary_metric] = primary.get("value")
    return shown


def released_intervals(submission) -> dict:
    intervals = dict(submission.intervals or {})
    if not withholding_in_force(submission.benchmark):
        return intervals
    return {key: interval for key, interval in intervals.items() if not reads_labels(key)}


def withheld_keys(submission) -> list[str]:
    """The objectives not shown exactly: released through the Ladder, or rounded."""
    if not withholding_in_force(submission.benchmark):
        return []
    return [key for key in submission.metrics or {} if reads_labels(key)]


def report_shown(report):
    """The stored report as its submitter may see it: an unsaved copy on a guarded benchmark."""
    benchmark = report.submission.benchmark
    if not withholding_in_force(benchmark) or report.evaluator not in LABEL_EVALUATORS:
        return report
    resolution = release_resolution(benchmark)
    shown = type(report)(
        pk=report.pk,
        submission=report.submission,
        evaluator=report.evaluator,
        document=coarse_document(report.document, resolution),
        metrics={key: coarse(value, resolution) for key, value in report.metrics.items()},
        intervals={},
        error=report.error,
        seconds=report.seconds,
        created_at=report.created_at,
    )
    # Charts drawn from it are cached apart from the exact report's, which is shown once it closes.
    shown.released_as = f"coarse{resolution:g}"
    return shown


def coarse_document(document, resolution: float):
    """The document with every float rounded, per-resample values dropped, and the figures of
    groups and slices with fewer than MIN_RELEASED_GROUP_ROWS rows replaced by a note."""
    if isinstance(document, dict):
        if _is_small_group(document):
            return _figures_withheld(document)
        return {
            key: coarse_document(value, resolution) for key, value in document.items() if key not in NEVER_RELEASED
        }
    if isinstance(document, list):
        return [coarse_document(value, resolution) for value in document]
    return coarse(document, resolution)


def _is_small_group(item: dict) -> bool:
    # Groups and slices are the dicts that count their rows; a whole report counts them as "rows".
    count = item.get("count")
    return isinstance(count, int) and not isinstance(count, bool) and count < MIN_RELEASED_GROUP_ROWS


def _figures_withheld(group: dict) -> dict:
    """The group's shape kept (its label, size and share), every figure in it None."""
    return {
        **{key: _nulled(value) if key not in ("count", "share") else value for key, value in group.items()
           if key not in NEVER_RELEASED},
        "withheld": f"fewer than {MIN_RELEASED_GROUP_ROWS} public rows: figures are not released on a guarded benchmark",
    }


def _nulled(value):
    if isinstance(value, dict):
        return {key: _nulled(item) for key, item in value.items() if key not in NEVER_RELEASED}
    if isinstance(value, list):
        return [_nulled(item) for item in value]
    return None if isinstance(value, float) else value
