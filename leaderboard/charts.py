"""Server-drawn SVG charts of evaluation reports, each with the numbers it draws as a table.

The submission and leaderboard pages inline these SVGs in their HTML, so every chart is built to
be inlined: matplotlib's object API only (a `Figure` per chart, never pyplot, whose global figure
registry is not safe in a multi-threaded web server), text kept as text (`svg.fonttype: none`) so
it is selectable and scales, no XML prologue or DOCTYPE, `width="100%"` over the kept viewBox so
it shrinks to a phone's width, `role="img"` with an aria-label, <title> and <desc>, and every id
prefixed per chart, since matplotlib numbers its ids (`patch_1`, clip paths) the same way in every
figure and several charts share one page. The same input gives byte-identical output: no dates
in the metadata, a fixed hash salt, and ids derived from the drawing itself.

Colours are the Okabe-Ito palette (`OKABE_ITO`), which stays distinguishable under the common
colour-vision deficiencies, and nothing is told by colour alone: reference groups, small groups,
sensitive columns, baselines and excluded windows also differ by hatch, marker or a label suffix.

Each `Chart` carries `columns` and `rows`: the numbers the chart draws (four significant digits,
as drawn), for screen readers and copy-paste; templates/_chart.html renders both.

Missing data, one rule throughout: a function raises `MissingData` (a `ValueError`), saying what
is missing, when the document lacks what the chart is about (an unknown grouping or metric, an
empty histogram, no windows, no point with both values); what a chart that can still be drawn
leaves out (an undefined group value, a point without a value, a window outside the fit) is said
in its caption.

Text comes from people: submission names, column names and group labels of a benchmark. None of
it is read as markup: mathtext (`$...$`) and TeX are off for every text drawn (`_RC`), so a name
like `$\\foo$` is drawn as those six characters. And any other failure while drawing is a bug, not
a property of the data: each public function logs it and returns a placeholder that says the chart
could not be drawn (`_guarded`), so one chart never takes its page down.
"""

import functools
import hashlib
import io
import logging
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from xml.sax.saxutils import escape, quoteattr

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.textpath import text_to_path
from matplotlib.ticker import FuncFormatter, NullLocator
from matplotlib.transforms import blended_transform_factory

from leaderboard.objectives import OBJECTIVES

log = logging.getLogger(__name__)

# Okabe & Ito (2008), "Color Universal Design": eight colours told apart by most readers with a
# colour-vision deficiency.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
# Yellow is left out of series: too faint as a line on white.
SERIES_COLOURS = tuple(OKABE_ITO[name] for name in ("blue", "orange", "bluish_green", "vermillion", "reddish_purple"))
SERIES_COLOURS += (OKABE_ITO["sky_blue"], OKABE_ITO["black"])
# Eight markers against seven colours: a colour and marker pair repeats only after 56 series.
SERIES_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
INK = "#1d2430"  # the site's --ink, --muted and --line (site.css)
MUTED = "#5b6472"
GRID = "#d9dee6"

# 720 units wide at 72 units per inch: one viewBox unit is one CSS pixel in the page's ~720 px
# column, and fonts of 13 units stay legible when a phone scales the chart down.
WIDTH_INCHES = 10.0
DPI = 72
MAX_LABELLED_POINTS = 10
RASTERIZE_ABOVE = 400  # points on a Pareto chart
RASTER_DPI = 144  # sharp on a high-density phone screen; only rasterized points use it
LOG_SCALE_SPAN = 1e3  # largest / smallest beyond which a positive axis goes logarithmic

# Margins in points (viewBox units), set by hand: matplotlib's constrained layout measures every
# text twice and doubled the time a chart took.
BOTTOM_AXIS = 50  # tick labels and a one-line axis label
LABEL_LINE = 17  # one more line of axis label
LEGEND_ROW = 22
LEFT_TWO_LINE_AXIS = 84  # a two-line vertical axis label and tick labels like 0.85
RIGHT = 18
TOP = 12

_RC = {
    # Labels are people's text (submission names, columns, groups): a "$" must stay a dollar sign.
    # Text objects read this when they are made, and every one is made inside the rc_context.
    "text.parse_math": False,
    "text.usetex": False,
    "svg.fonttype": "none",
    # Without a salt matplotlib hashes ids with a random uuid, and output would differ per call.
    "svg.hashsalt": "holdout",
    "font.size": 13,
    "axes.labelsize": 13,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": INK,
    "axes.labelcolor": INK,
    "text.color": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "hatch.linewidth": 1.0,
    "legend.frameon": False,
}
# A white backing keeps a label readable where it crosses a line or a bar.
_HALO = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "boxstyle": "square,pad=0.15"}
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
# rc_context changes matplotlib's global rcParams, and matplotlib is not thread-safe: one chart is
# drawn at a time per process. A chart takes tens of milliseconds, so the wait stays short.
_RENDER_LOCK = threading.Lock()
_ID_REFERENCE = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


@dataclass
class Chart:
    title: str
    svg: str
    caption: str
    columns: list[str]
    rows: list[list]
    # False for the placeholder of a chart that failed: nothing should keep it as the chart.
    drawn: bool = True


class MissingData(ValueError):
    """The document lacks what the chart is about; the message says what. Pages show no chart."""


NOT_DRAWN = "This chart could not be drawn."


def _guarded(title: str, placeholder: Callable[[str], object] | None = None):
    """A chart function that never raises anything but `MissingData`: any other failure is logged
    with its traceback and answered with a placeholder, so the page around the chart still renders."""

    def decorate(function):
        @functools.wraps(function)
        def guarded(*arguments, **keywords):
            try:
                return function(*arguments, **keywords)
            except MissingData:
                raise
            except Exception:
                log.exception("The chart %r (%s) could not be drawn", title, function.__name__)
                return (placeholder or _placeholder_chart)(title)

        return guarded

    return decorate


def _placeholder_chart(title: str) -> Chart:
    caption = f"{NOT_DRAWN} The error was logged for the site's maintainers; the numbers are in the reports."
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 720 40" role="img" '
        f"aria-label={quoteattr(title)}><title>{escape(title)}</title><desc>{escape(caption)}</desc>"
        f'<text x="8" y="25" font-size="14" fill="{MUTED}">{escape(NOT_DRAWN)}</text></svg>'
    )
    return Chart(title=title, svg=svg, caption=caption, columns=[], rows=[], drawn=False)


def _placeholder_table(title: str) -> tuple[list[str], list[list]]:
    return ["Note"], [[f"The {title.lower()} could not be made; the error was logged for the site's maintainers."]]


# --- fairness ---------------------------------------------------------------------------------


@dataclass
class _GroupBar:
    label: str
    count: int | None
    value: float | None
    low: float | None
    high: float | None
    vs_reference: float | None
    reference: bool
    small: bool


@_guarded("Metric by group")
def group_metric_chart(fairness_document: dict, grouping: str, metric: str) -> Chart:
    """One bar per group of `grouping` (a sensitive column or an intersection such as "sex & race")
    for `metric` (accuracy, selection_rate, ...), with 95% whiskers and the overall value."""
    found = _find_grouping(fairness_document, grouping)
    bars = _group_bars(found, grouping, metric)
    label = _metric_label(metric)
    overall = _value(_dig(fairness_document, "overall", metric, "value"))
    reference = _dig(found, "reference", "group")
    min_size = _dig(fairness_document, "methodology", "min_group_size")
    title = f"{label} by {grouping}"
    caption = _group_caption(bars, grouping=grouping, label=label, overall=overall, min_size=min_size)
    svg = _render(
        lambda figure: _draw_group_bars(figure, bars, label=label, overall=overall, reference=reference),
        height=1.6 + 0.42 * len(bars),
        title=title,
        caption=caption,
    )
    columns = ["Group", "Rows", label, "95% low", "95% high", f"Difference vs reference ({reference})", "Note"]
    rows = [
        [bar.label, bar.count, *map(_fmt, (bar.value, bar.low, bar.high, bar.vs_reference)), _group_note(bar)]
        for bar in bars
    ]
    return Chart(title=title, svg=svg, caption=caption, columns=columns, rows=rows)


def _find_grouping(document: dict, grouping: str) -> dict:
    groupings = (document or {}).get("groupings") or []
    for found in groupings:
        if found.get("name") == grouping:
            return found
    names = ", ".join(repr(found.get("name")) for found in groupings) or "none"
    raise MissingData(f"the fairness document has no grouping {grouping!r} (it has: {names})")


def _group_bars(found: dict, grouping: str, metric: str) -> list[_GroupBar]:
    groups = found.get("groups") or []
    if not groups:
        raise MissingData(f"the grouping {grouping!r} has no groups")
    if not any(metric in (group.get("metrics") or {}) for group in groups):
        known = sorted({key for group in groups for key in (group.get("metrics") or {})})
        raise MissingData(f"the groups of {grouping!r} carry no {metric!r} (they carry: {', '.join(known) or 'none'})")
    reference = _dig(found, "reference", "group")
    bars = []
    for group in groups:
        measured = (group.get("metrics") or {}).get(metric) or {}
        low, high = _interval(measured.get("interval"))
        bars.append(
            _GroupBar(
                label=str(group.get("label")),
                count=group.get("count"),
                value=_value(measured.get("value")),
                low=low,
                high=high,
                vs_reference=_value(_dig(measured, "vs_reference", "difference", "value")),
                reference=group.get("label") == reference,
                small=bool(group.get("small")),
            )
        )
    return bars


def _group_note(bar: _GroupBar) -> str:
    notes = ["reference"] * bar.reference + ["small group"] * bar.small + ["undefined"] * (bar.value is None)
    return ", ".join(notes)


def _group_tick(bar: _GroupBar) -> str:
    suffix = " (reference)" * bar.reference + " (small)" * bar.small
    return f"{bar.label}{suffix}"


def _group_caption(bars: list[_GroupBar], *, grouping: str, label: str, overall, min_size) -> str:
    parts = [
        f"{label} of each group of {grouping} on the test set, with its 95% bootstrap interval as a whisker; "
        f"the dashed line is the whole test set's {label.lower()} ({_fmt(overall)})."
    ]
    reference = [bar.label for bar in bars if bar.reference]
    if reference:
        parts.append(
            f"The reference group, {reference[0]}, which the differences in the table are taken against, "
            "is orange, dotted and marked (reference)."
        )
    small = [bar.label for bar in bars if bar.small]
    if small:
        fewer = f"fewer than {min_size} test rows" if min_size is not None else "too few test rows"
        parts.append(
            f"{_count(len(small), 'small group')} ({', '.join(small)}): {fewer}, so the value is noisy and the "
            "group is left out of every gap figure; hatched, lighter and marked (small)."
        )
    undefined = [bar.label for bar in bars if bar.value is None]
    if undefined:
        parts.append(f"No {label.lower()} is defined for {', '.join(undefined)} (no rows it applies to): no bar.")
    return " ".join(parts)


def _draw_group_bars(figure: Figure, bars: list[_GroupBar], *, label: str, overall, reference) -> None:
    ax = figure.add_subplot()
    # The first group at the top, as in the table below the chart.
    positions = list(range(len(bars)))[::-1]
    placed = list(zip(positions, bars))
    defined = [(y, bar) for y, bar in placed if bar.value is not None]
    # One barh call per look and one errorbar call for all: each call costs far more than a bar.
    for style in {_group_style(bar) for _, bar in defined}:
        chosen = [(y, bar) for y, bar in defined if _group_style(bar) == style]
        colour, hatch, alpha = style
        ax.barh(
            [y for y, _ in chosen],
            [bar.value for _, bar in chosen],
            height=0.62,
            color=colour,
            alpha=alpha,
            hatch=hatch,
            edgecolor=INK,
            linewidth=0.6,
        )
    whiskered = [(y, bar) for y, bar in defined if bar.low is not None and bar.high is not None]
    if whiskered:
        ax.errorbar(
            [bar.value for _, bar in whiskered],
            [y for y, _ in whiskered],
            xerr=[[bar.value - bar.low for _, bar in whiskered], [bar.high - bar.value for _, bar in whiskered]],
            fmt="none",
            ecolor=INK,
            elinewidth=1.2,
            capsize=4,
        )
    for y, bar in placed:
        if bar.value is None:
            ax.text(0, y, "  undefined", va="center", color=MUTED, fontstyle="italic")
        else:
            ax.text(
                max(bar.value, bar.high or bar.value), y, f" {_fmt(bar.value)}", va="center", fontsize=12, bbox=_HALO
            )
    if overall is not None:
        ax.axvline(overall, color=INK, linestyle="--", linewidth=1.2)
    ticks = [_group_tick(bar) for bar in bars]
    ax.set_yticks(positions, ticks)
    ax.set_ylim(-0.6, len(bars) - 0.4)
    _share_limits(ax, [v for bar in bars for v in (bar.value, bar.low, bar.high, overall) if v is not None])
    ax.set_xlabel(label)
    ax.grid(axis="x", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    handles = [Patch(facecolor=OKABE_ITO["blue"], edgecolor=INK, linewidth=0.6, label="group")]
    if reference is not None:
        handles.append(_group_patch(reference=True, small=False, text=f"reference: {reference}"))
    if any(bar.small for bar in bars):
        handles.append(_group_patch(reference=False, small=True, text="small group"))
    handles.append(Line2D([], [], color=INK, marker="|", markersize=10, label="95% interval"))
    if overall is not None:
        handles.append(Line2D([], [], color=INK, linestyle="--", label=f"overall {_fmt(overall)}"))
    legend_rows = _legend_below(figure, handles, columns=3)
    _place(figure, left=_widest(ticks) + 16, bottom=BOTTOM_AXIS + legend_rows * LEGEND_ROW)


def _group_style(bar: _GroupBar) -> tuple[str, str | None, float]:
    if bar.small:
        return OKABE_ITO["sky_blue"], "//", 0.7
    if bar.reference:
        return OKABE_ITO["orange"], "\\\\", 1.0
    return OKABE_ITO["blue"], None, 1.0


def _group_patch(*, reference: bool, small: bool, text: str) -> Patch:
    bar = _GroupBar("", None, None, None, None, None, reference=reference, small=small)
    colour, hatch, alpha = _group_style(bar)
    return Patch(facecolor=colour, alpha=alpha, hatch=hatch, edgecolor=INK, linewidth=0.6, label=text)


def _share_limits(ax, values: list[float]) -> None:
    """Shares and rates run from 0 to 1; anything else gets room to the right for the value labels."""
    low = min([0.0, *values])
    high = max([1.0, *values]) if all(0 <= v <= 1 for v in values) else max([0.0, *values])
    ax.set_xlim(low, high + 0.14 * ((high - low) or 1.0))


# --- interpretability -------------------------------------------------------------------------


@_guarded("Mean |SHAP| per input column")
def attribution_chart(interpretability_document: dict) -> Chart:
    """Mean |SHAP| per input column, largest first; sensitive columns stand out."""
    document = interpretability_document or {}
    entries = [entry for entry in document.get("mean_abs_shap") or [] if isinstance(entry, dict)]
    if not entries:
        raise MissingData("the interpretability document has no mean_abs_shap per column")
    sensitive = set(document.get("sensitive_features") or [])
    drawn = [(str(entry.get("column")), _value(entry.get("mean_abs_shap"))) for entry in entries]
    undefined = [column for column, value in drawn if value is None]
    drawn = sorted(((c, v) for c, v in drawn if v is not None), key=lambda item: -item[1])
    if not drawn:
        raise MissingData("no column of the interpretability document has a mean |SHAP| value")
    output = _output_phrase(document.get("output") or {})
    title = "Mean |SHAP| per input column"
    caption = _attribution_caption(document, output=output, sensitive=sensitive, undefined=undefined)
    svg = _render(
        lambda figure: _draw_attributions(figure, drawn, sensitive=sensitive, output=output),
        height=1.5 + 0.36 * len(drawn),
        title=title,
        caption=caption,
    )
    total = sum(value for _, value in drawn)
    rows = [
        [rank, column, _fmt(value), _fmt(value / total if total else None), "yes" if column in sensitive else ""]
        for rank, (column, value) in enumerate(drawn, start=1)
    ]
    rows += [[None, column, _fmt(None), _fmt(None), "yes" if column in sensitive else ""] for column in undefined]
    columns = ["Rank", "Column", "Mean |SHAP|", "Share of total", "Sensitive"]
    return Chart(title=title, svg=svg, caption=caption, columns=columns, rows=rows)


def _output_phrase(output: dict) -> str:
    kind = str(output.get("kind") or "output").replace("_", " ")
    phrase = f"{kind} of {output['of']}" if output.get("of") else kind
    return f"{phrase} ({output['class']})" if output.get("class") is not None else phrase


def _attribution_caption(document: dict, *, output: str, sensitive: set, undefined: list[str]) -> str:
    rows = document.get("rows_explained")
    over = f" over {rows} explained test rows" if rows is not None else ""
    parts = [
        f"How far each input column moves the model's output{over}, on average and in either direction "
        f"(mean absolute SHAP value), largest first. The output explained is the {output}, so the values "
        "are in its units."
    ]
    if sensitive:
        parts.append(
            f"Sensitive columns ({', '.join(sorted(sensitive))}) are vermillion, cross-hatched and marked (sensitive)."
        )
    if undefined:
        parts.append(f"No value for {', '.join(undefined)}: not drawn.")
    return " ".join(parts)


def _draw_attributions(figure: Figure, drawn: list[tuple[str, float]], *, sensitive: set, output: str) -> None:
    ax = figure.add_subplot()
    positions = list(range(len(drawn)))[::-1]
    for flagged in (False, True):
        chosen = [(y, value) for y, (column, value) in zip(positions, drawn) if (column in sensitive) == flagged]
        if chosen:
            ax.barh(
                [y for y, _ in chosen],
                [value for _, value in chosen],
                height=0.62,
                color=OKABE_ITO["vermillion"] if flagged else OKABE_ITO["blue"],
                hatch="xx" if flagged else None,
                edgecolor=INK,
                linewidth=0.6,
            )
    for y, (_, value) in zip(positions, drawn):
        ax.text(value, y, f"  {_fmt(value)}", va="center", fontsize=12)
    ticks = [f"{column} (sensitive)" if column in sensitive else column for column, _ in drawn]
    ax.set_yticks(positions, ticks)
    ax.set_ylim(-0.6, len(drawn) - 0.4)
    ax.set_xlim(0, max(value for _, value in drawn) * 1.16)
    ax.set_xlabel(f"mean |SHAP| ({output})")
    ax.grid(axis="x", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    _place(figure, left=_widest(ticks) + 16, bottom=BOTTOM_AXIS)


# --- latency ----------------------------------------------------------------------------------

_PERCENTILE_MARKS = (
    ("p50", OKABE_ITO["bluish_green"], "-"),
    ("p90", OKABE_ITO["orange"], "--"),
    ("p99", OKABE_ITO["vermillion"], ":"),
)


@_guarded("Latency of single-row calls")
def latency_chart(latency_document: dict) -> Chart:
    """The histogram of single-row call latencies with p50, p90 and p99 marked."""
    document = latency_document or {}
    edges, counts = _histogram(document)
    percentiles = document.get("percentiles_ms") or {}
    marks = [(name, _value(percentiles.get(name)), colour, style) for name, colour, style in _PERCENTILE_MARKS]
    marks = [mark for mark in marks if mark[1] is not None]
    log = (document.get("histogram") or {}).get("spacing") == "log" and edges[0] > 0
    title = "Latency of single-row calls"
    caption = _latency_caption(document, marks=marks, log=log, calls=sum(counts))
    svg = _render(
        lambda figure: _draw_latency(figure, edges, counts, marks=marks, log=log),
        height=4.4,
        title=title,
        caption=caption,
    )
    columns = ["From (ms)", "To (ms)", "Calls", "Percentiles in this bin"]
    rows = [
        [_fmt(low), _fmt(high), count, _marks_in_bin(marks, low, high, last=index == len(counts) - 1)]
        for index, (low, high, count) in enumerate(zip(edges, edges[1:], counts))
    ]
    return Chart(title=title, svg=svg, caption=caption, columns=columns, rows=rows)


def _histogram(document: dict) -> tuple[list[float], list[int]]:
    histogram = document.get("histogram") or {}
    edges, counts = histogram.get("edges_ms") or [], histogram.get("counts") or []
    if not counts or not sum(counts):
        raise MissingData("the latency document has an empty histogram (no timed calls)")
    if len(edges) != len(counts) + 1:
        raise MissingData(f"the latency histogram has {len(edges)} edges for {len(counts)} counts; it needs one more")
    return [float(edge) for edge in edges], [int(count) for count in counts]


def _marks_in_bin(marks, low: float, high: float, *, last: bool) -> str:
    # Bins are closed on the left, the last one on both sides, as numpy.histogram counts.
    inside = [(name, value) for name, value, *_ in marks if low <= value < high or (last and value == high)]
    return ", ".join(f"{name} = {_fmt(value)} ms" for name, value in inside)


def _latency_caption(document: dict, *, marks, log: bool, calls: int) -> str:
    parts = [f"How long {calls} single-row prediction calls took, in milliseconds"]
    parts[0] += ", on a logarithmic axis (the bins are log-spaced)." if log else "."
    if marks:
        parts.append("Percentiles: " + ", ".join(f"{name} {_fmt(value)} ms" for name, value, *_ in marks) + ".")
    missing = [name for name, *_ in _PERCENTILE_MARKS if name not in {mark[0] for mark in marks}]
    if missing:
        parts.append(f"Not in the document, so not marked: {', '.join(missing)}.")
    if document.get("mean_ms") is not None:
        parts.append(f"Mean {_fmt(document['mean_ms'])} ms.")
    conditions = _measurement_conditions(document)
    if conditions:
        parts.append(conditions)
    return " ".join(parts)


def _measurement_conditions(document: dict) -> str:
    """How isolated and how disturbed the measurement was, from a document that records it."""
    isolation, calibration = document.get("isolation") or {}, document.get("calibration") or {}
    if not isolation or not calibration:
        return ""
    where = f"pinned to CPU {isolation.get('cpu')}" if isolation.get("pinned") else "not pinned to a CPU"
    blocks = (document.get("bootstrap") or {}).get("blocks")
    text = f"Measured {where}, one thread, in {blocks} interleaved blocks; the intervals resample the blocks."
    text += (
        f" Calibration workload: median {_fmt(calibration.get('median_ms'))} ms "
        f"(range {_fmt(calibration.get('min_ms'))} to {_fmt(calibration.get('max_ms'))} ms); "
        f"{calibration.get('disturbed_blocks')} blocks disturbed, {calibration.get('remeasured_blocks')} re-measured, "
        f"{calibration.get('still_disturbed_blocks')} still disturbed."
    )
    speed = document.get("speed_calibration")
    if speed:
        low, high = speed["factor_range"]
        text += (
            f" Times are stated at this machine's usual speed (calibration {_fmt(speed['reference_ms'])} ms): "
            f"each block's multiplied by {_fmt(low)} to {_fmt(high)}; as timed, p99 was "
            f"{_fmt(speed['measured_percentiles_ms']['p99'])} ms."
        )
    load = document.get("machine_load") or {}
    if load.get("other_work_share") is not None:
        text += (
            f" Other work used {load['other_work_share']:.0%} of the pinned CPU and the hypervisor "
            f"took {load['steal_share']:.0%}."
        )
    off_core = document.get("off_core")
    if off_core:
        text += (
            f" Times are on-core: {off_core['share_of_wall']:.1%} of the calls' wall time went to other "
            f"processes and is left out ({off_core['calls']} of {off_core['of_calls']} calls)."
        )
    return text


def _draw_latency(figure: Figure, edges, counts, *, marks, log: bool) -> None:
    ax = figure.add_subplot()
    ax.stairs(counts, edges, fill=True, color=OKABE_ITO["sky_blue"], edgecolor=OKABE_ITO["blue"])
    ax.stairs(counts, edges, color=OKABE_ITO["blue"], linewidth=1.0)
    if log:
        ax.set_xscale("log")
    # Labels sit at falling heights so that close percentiles do not print over each other.
    labels_at = _x_data(ax)
    for step, (name, value, colour, style) in enumerate(marks):
        ax.axvline(value, color=colour, linestyle=style, linewidth=2)
        ax.annotate(
            f"{name} {_fmt(value)} ms",
            (value, 0.97 - 0.1 * step),
            xycoords=labels_at,
            xytext=(4, 0),
            textcoords="offset points",
            va="top",
            bbox=_HALO,
        )
    ax.set_xlim(edges[0], edges[-1])
    if log:
        _plain_log_ticks(ax.xaxis)
    # Headroom above the tallest bin for the percentile labels.
    ax.set_ylim(0, max(counts) * 1.4)
    ax.set_xlabel("milliseconds per call" + (" (log scale)" if log else ""))
    ax.set_ylabel("calls")
    _place(figure, left=64, bottom=BOTTOM_AXIS)


def _plain_log_ticks(axis) -> None:
    """Plain numbers on a log axis (matplotlib's 10ⁿ labels are mathtext, slow to lay out). Minor
    ticks are labelled only within a decade or two, where they are the only ticks there are."""
    low, high = sorted(v for v in axis.get_view_interval())
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    if low > 0 and high / low > 100:
        # Unlabelled minor ticks over many decades add nothing readable, and each tick costs a
        # few hundred microseconds to lay out.
        axis.set_minor_locator(NullLocator())
    else:
        axis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


@_guarded("Throughput table", _placeholder_table)
def throughput_table(latency_document: dict) -> tuple[list[str], list[list]]:
    """Rows per second at each batch size the latency probe timed, the best one marked."""
    batches = [batch for batch in (latency_document or {}).get("throughput") or [] if isinstance(batch, dict)]
    if not batches:
        raise MissingData("the latency document has no throughput measurements")
    best = (latency_document or {}).get("best_batch_size")
    if best is None:
        best = max(batches, key=lambda batch: batch.get("rows_per_s") or 0).get("batch_size")
    columns = ["Batch size", "Calls", "Rows", "Rows per second", "Wall ms per row", "Best"]
    rows = [
        [
            batch.get("batch_size"),
            batch.get("calls"),
            batch.get("rows"),
            _fmt(batch.get("rows_per_s")),
            _fmt(_scaled(batch.get("wall_seconds_per_row"), 1000)),
            "best" if batch.get("batch_size") == best else "",
        ]
        for batch in batches
    ]
    return columns, rows


# --- decay ------------------------------------------------------------------------------------


@dataclass
class _Window:
    label: str
    start: str
    end: str
    x: float
    rows: int | None
    value: float | None
    low: float | None
    high: float | None
    in_fit: bool
    excluded_because: str | None
    days_since_cutoff: float | None


@_guarded("Metric over time")
def decay_chart(decay_document: dict) -> Chart:
    """The primary metric per time window with its interval, the fitted trend and the training cutoff."""
    document = decay_document or {}
    windows = _windows(document)
    drawn = [window for window in windows if window.value is not None]
    if not drawn:
        raise MissingData("no window of the decay document has a value for its metric")
    metric = str(document.get("primary_metric") or "metric")
    higher = bool(document.get("higher_is_better", True))
    label = _metric_label(metric)
    trend = _trend_line(document, drawn, higher=higher)
    cutoff = _cutoff_x(document, windows)
    title = f"{label} over time"
    caption = _decay_caption(document, windows, label=label, trend=trend, cutoff=cutoff)
    svg = _render(
        lambda figure: _draw_decay(figure, windows, label=label, higher=higher, trend=trend, cutoff=cutoff),
        height=4.6,
        title=title,
        caption=caption,
    )
    columns = ["Window", "Start", "End", "Rows", label, "95% low", "95% high", "In fit", "Days since cutoff"]
    rows = [
        [
            w.label,
            w.start,
            w.end,
            w.rows,
            *map(_fmt, (w.value, w.low, w.high)),
            "yes" if w.in_fit else f"no: {w.excluded_because}" if w.excluded_because else "no",
            _fmt(w.days_since_cutoff),
        ]
        for w in windows
    ]
    return Chart(title=title, svg=svg, caption=caption, columns=columns, rows=rows)


def _windows(document: dict, *, offset: float = 0.0) -> list[_Window]:
    entries = [entry for entry in document.get("windows") or [] if isinstance(entry, dict)]
    if not entries:
        raise MissingData("the decay document has no time windows")
    windows = []
    for entry in entries:
        low, high = _interval(entry.get("interval"))
        windows.append(
            _Window(
                label=str(entry.get("label")),
                start=str(entry.get("start") or ""),
                end=str(entry.get("end") or ""),
                x=offset + float(entry.get("midpoint_days") or 0.0),
                rows=entry.get("rows"),
                value=_value(entry.get("value")),
                low=low,
                high=high,
                in_fit=bool(entry.get("in_fit")),
                excluded_because=entry.get("excluded_because"),
                days_since_cutoff=_value(entry.get("days_since_cutoff")),
            )
        )
    return windows


def _trend_line(document: dict, drawn: list[_Window], *, higher: bool) -> tuple[list[float], list[float], dict] | None:
    """The least-squares line the decay evaluator fitted: its slope from decay_per_30d (positive means
    worse), through the fitted windows' centroid, where every least-squares line passes."""
    trend = document.get("trend") or {}
    decay = _value(trend.get("decay_per_30d"))
    fitted = [window for window in drawn if window.in_fit]
    if decay is None or len(fitted) < 2:
        return None
    slope = (-decay if higher else decay) / 30.0
    mean_x = sum(w.x for w in fitted) / len(fitted)
    mean_y = sum(w.value for w in fitted) / len(fitted)
    xs = [fitted[0].x, fitted[-1].x]
    return xs, [mean_y + slope * (x - mean_x) for x in xs], trend


def _cutoff_x(document: dict, windows: list[_Window]) -> tuple[float, str] | None:
    cutoff = _dig(document, "training_cutoff", "date")
    if not cutoff or not windows[0].start:
        return None
    try:
        days = (date.fromisoformat(cutoff) - date.fromisoformat(windows[0].start)).days
    except ValueError:
        return None
    # midpoint_days counts from the first window's start (decay.py's methodology).
    return float(days), cutoff


def _decay_caption(document: dict, windows: list[_Window], *, label: str, trend, cutoff) -> str:
    parts = [f"{label} of each time window of the test set with its 95% bootstrap interval."]
    if trend is not None:
        found = trend[2]
        parts.append(
            f"The dashed line is the fitted trend over {found.get('first_window')}–{found.get('last_window')}: "
            f"{_fmt(found.get('decay_per_30d'))} worse per 30 days "
            f"(95% interval {_fmt_interval(found.get('decay_per_30d_interval'))}; positive means getting worse)."
        )
    else:
        reason = _dig(document, "trend", "reason")
        parts.append(f"No fitted trend{': ' + reason if reason else '.'}")
    if cutoff is not None:
        parts.append(f"The vertical dash-dot line is the model's training cutoff, {cutoff[1]}.")
    else:
        note = _dig(document, "training_cutoff", "note")
        parts.append(note or "No training cutoff is known.")
    excluded = [w for w in windows if not w.in_fit and w.value is not None]
    if excluded:
        listed = ", ".join(f"{w.label} ({w.excluded_because})" if w.excluded_because else w.label for w in excluded)
        parts.append(f"Left out of the fit, drawn as hollow grey squares: {listed}.")
    undefined = [w.label for w in windows if w.value is None]
    if undefined:
        parts.append(f"No value, not drawn: {', '.join(undefined)}.")
    return " ".join(parts)


def _draw_decay(figure: Figure, windows: list[_Window], *, label: str, higher: bool, trend, cutoff) -> None:
    ax = figure.add_subplot()
    for in_fit in (True, False):
        chosen = [w for w in windows if w.in_fit == in_fit and w.value is not None]
        if not chosen:
            continue
        colour = OKABE_ITO["blue"] if in_fit else MUTED
        ax.errorbar(
            [w.x for w in chosen],
            [w.value for w in chosen],
            yerr=_yerr(chosen),
            fmt="o" if in_fit else "s",
            color=colour,
            ecolor=colour,
            markerfacecolor=colour if in_fit else "white",
            markersize=6,
            capsize=3,
            elinewidth=1.1,
            label="window, in the fit" if in_fit else "window, left out of the fit",
        )
    if trend is not None:
        xs, ys, _ = trend
        ax.plot(xs, ys, color=OKABE_ITO["vermillion"], linestyle="--", linewidth=2, label="fitted trend")
    if cutoff is not None:
        ax.axvline(cutoff[0], color=OKABE_ITO["reddish_purple"], linestyle="-.", linewidth=2)
        ax.annotate(
            f"training cutoff {cutoff[1]}",
            (cutoff[0], 0.98),
            xycoords=_x_data(ax),
            xytext=(4, 0),
            textcoords="offset points",
            va="top",
            bbox=_HALO,
        )
    _window_ticks(ax, windows)
    ax.set_ylabel(_axis_label(label, "", higher))
    ax.grid(axis="y", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    handles = ax.get_legend_handles_labels()[0]
    if cutoff is not None:
        handles.append(Line2D([], [], color=OKABE_ITO["reddish_purple"], linestyle="-.", label="training cutoff"))
    legend_rows = _legend_below(figure, handles, columns=4)
    _place(figure, left=LEFT_TWO_LINE_AXIS, bottom=BOTTOM_AXIS + legend_rows * LEGEND_ROW)


def _yerr(windows: list[_Window]) -> list[list[float]]:
    # A window without an interval gets a zero-length whisker rather than a made-up one.
    below = [w.value - w.low if w.low is not None else 0.0 for w in windows]
    above = [w.high - w.value if w.high is not None else 0.0 for w in windows]
    return [below, above]


def _window_ticks(ax, windows: Sequence[_Window]) -> None:
    """At most eight window labels, evenly picked, so they never collide at the page's width."""
    step = max(1, math.ceil(len(windows) / 8))
    shown = list(windows)[::step]
    ax.set_xticks([w.x for w in shown], [w.label for w in shown])
    ax.set_xlabel("time window")


def _x_data(ax):
    return blended_transform_factory(ax.transData, ax.transAxes)


@_guarded("Metric over time of the top submissions")
def decay_overlay_chart(series: list[tuple[str, dict]]) -> Chart:
    """Several submissions' decay curves on one axis: (label, decay document) pairs."""
    if not series:
        raise MissingData("no decay series to overlay")
    metrics = {str((document or {}).get("primary_metric")) for _, document in series}
    if len(metrics) > 1:
        raise MissingData(f"the decay documents measure different metrics ({', '.join(sorted(metrics))})")
    origin = _overlay_origin(series)
    curves, empty = [], []
    for label, document in series:
        windows = [w for w in _windows(document or {}, offset=_offset(document, origin)) if w.value is not None]
        (curves if windows else empty).append((label, windows))
    if not curves:
        raise MissingData("none of the decay documents has a window with a value")
    metric = metrics.pop()
    higher = bool((series[0][1] or {}).get("higher_is_better", True))
    label = _metric_label(metric)
    title = f"{label} over time, {len(curves)} submissions"
    caption = (
        f"{label} per time window for each submission, one colour, marker and line style each; their 95% "
        "intervals are on each submission's own page and in its decay report."
    )
    if empty:
        caption += f" No window with a value, not drawn: {', '.join(name for name, _ in empty)}."
    svg = _render(
        lambda figure: _draw_overlay(figure, curves, label=label, higher=higher),
        height=4.8 + 0.3 * math.ceil(len(curves) / 3),
        title=title,
        caption=caption,
    )
    columns, rows = _overlay_table(curves)
    return Chart(title=title, svg=svg, caption=caption, columns=columns, rows=rows)


def _overlay_origin(series) -> date | None:
    starts = [_start_date(document) for _, document in series]
    starts = [start for start in starts if start is not None]
    return min(starts) if starts else None


def _start_date(document) -> date | None:
    windows = (document or {}).get("windows") or []
    try:
        return date.fromisoformat(windows[0]["start"]) if windows else None
    except (KeyError, TypeError, ValueError):
        return None


def _offset(document, origin: date | None) -> float:
    # Each document counts days from its own first window; a common origin aligns them.
    start = _start_date(document)
    return float((start - origin).days) if start and origin else 0.0


def _draw_overlay(figure: Figure, curves, *, label: str, higher: bool) -> None:
    ax = figure.add_subplot()
    styles = ("-", "--", "-.", ":")
    for index, (name, windows) in enumerate(curves):
        ax.plot(
            [w.x for w in windows],
            [w.value for w in windows],
            color=SERIES_COLOURS[index % len(SERIES_COLOURS)],
            marker=SERIES_MARKERS[index % len(SERIES_MARKERS)],
            linestyle=styles[index % len(styles)],
            markersize=6,
            linewidth=1.6,
            label=name,
        )
    by_x = {w.x: w for _, windows in curves for w in windows}
    _window_ticks(ax, [by_x[x] for x in sorted(by_x)])
    ax.set_ylabel(_axis_label(label, "", higher))
    ax.grid(axis="y", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    legend_rows = _legend_below(figure, ax.get_legend_handles_labels()[0], columns=3)
    _place(figure, left=LEFT_TWO_LINE_AXIS, bottom=BOTTOM_AXIS + legend_rows * LEGEND_ROW)


def _overlay_table(curves) -> tuple[list[str], list[list]]:
    order: dict[float, str] = {}
    for _, windows in curves:
        for w in windows:
            order.setdefault(w.x, w.label)
    values = [{w.x: w.value for w in windows} for _, windows in curves]
    rows = [[order[x], *(_fmt(by_x.get(x)) for by_x in values)] for x in sorted(order)]
    return ["Window", *(name for name, _ in curves)], rows


# --- leaderboard: two objectives and their Pareto frontier ------------------------------------


def pareto_front(
    xs: Sequence[float], ys: Sequence[float], *, x_higher_is_better: bool, y_higher_is_better: bool
) -> list[bool]:
    """Whether each point is beaten by no other: none at least as good on both and better on one.
    Equal points do not beat each other, so duplicates share the frontier. O(n log n)."""
    a = [x if x_higher_is_better else -x for x in xs]
    b = [y if y_higher_is_better else -y for y in ys]
    order = sorted(range(len(a)), key=lambda i: (-a[i], -b[i]))
    front = [False] * len(a)
    best_b = -math.inf  # best b among points strictly better on a
    start = 0
    while start < len(order):
        end = start
        while end < len(order) and a[order[end]] == a[order[start]]:
            end += 1
        # Within one value of a, only the best b can stand; it stands if nothing better on a
        # reaches its b.
        group_best = b[order[start]]
        if group_best > best_b:
            for i in order[start:end]:
                front[i] = b[i] == group_best
        best_b = max(best_b, group_best)
        start = end
    return front


@dataclass
class _Point:
    label: str
    x: float | None
    y: float | None
    rank: int | None
    baseline: bool
    front: bool = False


@_guarded("Two objectives and their Pareto frontier")
def pareto_chart(points: list[dict], x_key: str, y_key: str) -> Chart:
    """Submissions on two objectives, with the Pareto frontier of those two as a step line.

    points: {"label", "x", "y", "pareto", "rank", "baseline"} each; "pareto" (the frontier of the
    leaderboard's weighted objectives) is not used: the frontier drawn is that of x and y."""
    x_objective, y_objective = _objective(x_key), _objective(y_key)
    every = [_point(point) for point in points or []]
    if not every:
        raise MissingData("no submissions to draw")
    drawn = [point for point in every if point.x is not None and point.y is not None]
    if not drawn:
        raise MissingData(f"no submission has both {x_key} and {y_key}")
    flags = pareto_front(
        [p.x for p in drawn],
        [p.y for p in drawn],
        x_higher_is_better=x_objective.higher_is_better,
        y_higher_is_better=y_objective.higher_is_better,
    )
    for point, flag in zip(drawn, flags):
        point.front = flag
    log_x, log_y = _wants_log([p.x for p in drawn]), _wants_log([p.y for p in drawn])
    labelled = _labelled(drawn)
    title = f"{x_objective.label} against {y_objective.label}"
    caption = _pareto_caption(every, drawn, labelled, x_objective, y_objective, log_x=log_x, log_y=log_y)
    svg = _render(
        lambda figure: _draw_pareto(figure, drawn, labelled, x_objective, y_objective, log_x=log_x, log_y=log_y),
        height=5.6,
        title=title,
        caption=caption,
    )
    x_column = _axis_label(x_objective.label, x_objective.unit, None)
    y_column = _axis_label(y_objective.label, y_objective.unit, None)
    columns = ["Rank", "Submission", x_column, y_column, "On this frontier", "Baseline"]
    rows = [
        [
            p.rank,
            p.label,
            _fmt(p.x),
            _fmt(p.y),
            "not drawn: no value" if p.x is None or p.y is None else "yes" if p.front else "",
            "yes" if p.baseline else "",
        ]
        for p in sorted(every, key=_rank_order)
    ]
    return Chart(title=title, svg=svg, caption=caption, columns=columns, rows=rows)


def _objective(key: str):
    if key not in OBJECTIVES:
        raise MissingData(f"unknown objective {key!r}")
    return OBJECTIVES[key]


def _point(point: dict) -> _Point:
    rank = point.get("rank")
    return _Point(
        label=str(point.get("label", "")),
        x=_value(point.get("x")),
        y=_value(point.get("y")),
        rank=int(rank) if rank is not None else None,
        baseline=bool(point.get("baseline")),
    )


def _rank_order(point: _Point) -> tuple:
    return (point.rank is None, point.rank if point.rank is not None else 0, point.label)


def _labelled(drawn: list[_Point]) -> list[_Point]:
    """The top ranks get a label; with thousands of points a label each would be unreadable."""
    if len(drawn) <= MAX_LABELLED_POINTS:
        return list(drawn)
    ranked = sorted((p for p in drawn if p.rank is not None), key=_rank_order)
    return ranked[:MAX_LABELLED_POINTS]


def _wants_log(values: list[float]) -> bool:
    return min(values) > 0 and max(values) / min(values) > LOG_SCALE_SPAN


def _pareto_caption(every, drawn, labelled, x_objective, y_objective, *, log_x: bool, log_y: bool) -> str:
    front = sum(p.front for p in drawn)
    parts = [
        f"{_count(len(drawn), 'submission')} by {x_objective.label.lower()} ({x_objective.direction} is better) "
        f"and {y_objective.label.lower()} ({y_objective.direction} is better). The black step line joins the "
        f"{_count(front, 'submission')} that no other beats on both (the Pareto frontier of these two "
        "objectives, which can differ from the leaderboard's over all its weighted objectives); they are "
        "drawn larger with a black edge."
    ]
    if any(p.baseline for p in drawn):
        parts.append("Baselines are orange squares, other submissions blue circles.")
    if labelled and len(labelled) < len(drawn):
        parts.append(f"Labelled: the top {len(labelled)} by rank.")
    scales = [name for name, log in (("horizontal", log_x), ("vertical", log_y)) if log]
    if scales:
        parts.append(f"The {' and '.join(scales)} axis is logarithmic: the values span more than three decades.")
    skipped = len(every) - len(drawn)
    if skipped:
        parts.append(f"{_count(skipped, 'submission')} without both values not drawn.")
    return " ".join(parts)


def _draw_pareto(figure: Figure, drawn, labelled, x_objective, y_objective, *, log_x: bool, log_y: bool) -> None:
    ax = figure.add_subplot()
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    front = sorted((p for p in drawn if p.front), key=lambda p: (p.x, p.y))
    xs, ys = _step_path(front, x_objective.higher_is_better, y_objective.higher_is_better)
    ax.plot(xs, ys, color=INK, linewidth=1.6, zorder=2, label="Pareto frontier of these two")
    # One scatter call per kind of point: a collection each, fast with thousands of points.
    for baseline, marker, colour, name in (
        (False, "o", OKABE_ITO["blue"], "submission"),
        (True, "s", OKABE_ITO["orange"], "baseline"),
    ):
        for on_front in (False, True):
            chosen = [p for p in drawn if p.baseline == baseline and p.front == on_front]
            if chosen:
                ax.scatter(
                    np.array([p.x for p in chosen]),  # arrays: lists take a slow masked-array path
                    np.array([p.y for p in chosen]),
                    marker=marker,
                    s=70 if on_front else 34,
                    color=colour,
                    edgecolors=INK if on_front else "white",
                    linewidths=1.4 if on_front else 0.5,
                    zorder=3,
                    label=None if on_front else name,
                    # Thousands of vector markers cost ~40 µs each to write and bloat the page;
                    # past a few hundred the points off the frontier become one embedded image.
                    rasterized=not on_front and len(drawn) > RASTERIZE_ABOVE,
                )
    right_part = _right_part([p.x for p in drawn], log=log_x)
    for point in labelled:
        text = _shorten(f"#{point.rank} {point.label}" if point.rank is not None else point.label)
        # Labels of points in the right part of the plot go to their left, so they stay inside it.
        left = right_part(point.x)
        ax.annotate(
            text,
            (point.x, point.y),
            xytext=(-6 if left else 6, 5),
            textcoords="offset points",
            ha="right" if left else "left",
            fontsize=11,
        )
    ax.set_xlabel(_axis_label(x_objective.label, x_objective.unit, x_objective.higher_is_better))
    ax.set_ylabel(_axis_label(y_objective.label, y_objective.unit, y_objective.higher_is_better))
    ax.grid(color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    for axis, log in ((ax.xaxis, log_x), (ax.yaxis, log_y)):
        if log:
            _plain_log_ticks(axis)
    handles = ax.get_legend_handles_labels()[0]
    handles.append(
        Line2D(
            [], [], marker="o", linestyle="", color="white", markeredgecolor=INK, markersize=9, label="on the frontier"
        )
    )
    legend_rows = _legend_below(figure, handles, columns=4)
    # Both axis labels have two lines (the label, then which way is better).
    _place(figure, left=LEFT_TWO_LINE_AXIS + 10, bottom=BOTTOM_AXIS + LABEL_LINE + legend_rows * LEGEND_ROW)


def _right_part(xs: list[float], *, log: bool) -> Callable[[float], bool]:
    scale = math.log10 if log else float
    low, high = scale(min(xs)), scale(max(xs))
    return lambda x: high > low and (scale(x) - low) / (high - low) > 0.6


def _step_path(front: list[_Point], x_higher: bool, y_higher: bool) -> tuple[list[float], list[float]]:
    """Frontier points joined through the corner each pair dominates together: the worse x and the
    worse y of the two, so the line bounds what the frontier beats, whichever way each axis points."""
    if not front:
        return [], []
    xs, ys = [front[0].x], [front[0].y]
    for a, b in zip(front, front[1:]):
        xs.append(min(a.x, b.x) if x_higher else max(a.x, b.x))
        ys.append(min(a.y, b.y) if y_higher else max(a.y, b.y))
        xs.append(b.x)
        ys.append(b.y)
    return xs, ys


def _shorten(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- shared -----------------------------------------------------------------------------------


def _render(draw: Callable[[Figure], None], *, height: float, title: str, caption: str) -> str:
    """`draw` fills a fresh Figure (720 units wide, `height` inches tall); returns the inline SVG."""
    buffer = io.StringIO()
    with _RENDER_LOCK, matplotlib.rc_context(_RC):
        figure = Figure(figsize=(WIDTH_INCHES, height), dpi=DPI)
        draw(figure)
        figure.savefig(buffer, format="svg", metadata=_NO_METADATA, dpi=RASTER_DPI)
    return _inline_svg(buffer.getvalue(), title=title, caption=caption)


def _inline_svg(svg: str, *, title: str, caption: str) -> str:
    """matplotlib's SVG made fit to inline: no prologue, scalable, labelled, ids unique per chart."""
    svg = svg[svg.index("<svg") :]
    # The id prefix is a digest of the drawing: the same chart gets the same ids (deterministic
    # pages), and two different charts on one page get different ones.
    prefix = "c" + hashlib.sha1(svg.encode()).hexdigest()[:10]
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    svg = _ID_REFERENCE.sub(lambda m: f"{m[1]}{prefix}-{m[2]}" if m[2] in ids else m[0], svg)
    # matplotlib's <style> says *{...}: inlined, it would apply to the whole page.
    svg = svg.replace(">*{", f">#{prefix} *{{", 1)
    opening = svg[: svg.index(">") + 1]
    attributes = re.sub(r'\s(width|height)="[^"]*"', "", opening[len("<svg") : -1])
    labelled = (
        f'<svg id="{prefix}" width="100%"{attributes} role="img" aria-label={quoteattr(title)}>'
        f"<title>{escape(title)}</title><desc>{escape(caption)}</desc>"
    )
    return labelled + svg[len(opening) :]


def _place(figure: Figure, *, left: float, bottom: float, right: float = RIGHT, top: float = TOP) -> None:
    """Margins in points, turned into the figure fractions matplotlib takes."""
    width, height = (size * DPI for size in figure.get_size_inches())
    left = min(left, width * 0.5)  # very long labels get cut rather than squeeze the plot to nothing
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)


def _widest(texts: list[str], size: float = 12) -> float:
    """Width in points of the widest text, measured the way the SVG backend does, once."""
    if not texts:
        return 0.0
    longest = max(texts, key=len)
    properties = Text(text=longest, fontsize=size).get_fontproperties()
    return text_to_path.get_text_width_height_descent(longest, properties, ismath=False)[0]


def _legend_below(figure: Figure, handles: list, *, columns: int) -> int:
    """A legend along the bottom edge; returns how many rows it takes."""
    if not handles:
        return 0
    columns = min(columns, len(handles))
    figure.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=columns, borderaxespad=0.2)
    return math.ceil(len(handles) / columns)


def _metric_label(metric: str) -> str:
    if metric in OBJECTIVES:
        return OBJECTIVES[metric].label
    return metric.replace("_", " ").capitalize()


def _axis_label(label: str, unit: str, higher: bool | None) -> str:
    text = f"{label} ({unit})" if unit else label
    if higher is None:
        return text
    return f"{text}\n{'▲ higher is better' if higher else '▼ lower is better'}"


def _dig(document, *keys):
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _value(value) -> float | None:
    """A finite number, or None: the documents mark undefined values null, and callers may pass NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _interval(interval) -> tuple[float | None, float | None]:
    if not isinstance(interval, (list, tuple)) or len(interval) != 2:
        return None, None
    return _value(interval[0]), _value(interval[1])


def _scaled(value, factor: float) -> float | None:
    value = _value(value)
    return value * factor if value is not None else None


def _fmt(value) -> str:
    """Four significant digits, as the chart draws them; large numbers whole rather than 1.234e+05."""
    value = _value(value)
    if value is None:
        return "—"
    if 1e4 <= abs(value) < 1e15:
        return f"{value:.0f}"
    return f"{value:.4g}"


def _fmt_interval(interval) -> str:
    low, high = _interval(interval)
    return f"{_fmt(low)} to {_fmt(high)}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
