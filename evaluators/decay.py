"""How fast a model goes stale: its primary metric window by window through the test period.

The test rows are put in time order and split into windows (calendar months, or equal-count
windows). Each window is scored by `performance_objectives` on its own rows, so its figures are
the performance evaluator's; the trend is a least-squares line through the windows' primary
metric. Beside it, each window's feature distributions are compared with the first fitted
window's by the population stability index (PSI), so a reviewer can tell whether the inputs moved
(data drift) or the same inputs are now scored worse (the world the model learnt has changed).
"""

import dataclasses
import warnings
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning

from .base import EvaluationInput, EvaluatorError, EvaluatorResult
from .performance import INTERVAL_PERCENTILES, performance_objectives

DEFAULT_OPTIONS = {
    # "month": one window per calendar month that has test rows. An integer N: N windows of equal
    # row counts (differing by at most one row) in time order, for test periods that are short,
    # uneven or sparse.
    "windows": "month",
    # A window with fewer rows is shown and flagged but left out of the trend: its metric is too
    # noisy to pull the line (accuracy on 100 rows has a standard error of up to 0.05).
    "min_window_rows": 100,
    # Quantile bins per numeric feature for the PSI, cut at the reference window's quantiles.
    "psi_bins": 10,
    # The last day (YYYY-MM-DD) of the benchmark's public training split, set when the benchmark is
    # created: the training cutoff of a submission that declares none, since that is the data it had.
    "training_split_end": None,
}

DAYS_PER_PERIOD = 30
DAYS_PER_MONTH = 365.2425 / 12
# An empty bucket counts as this share so that the PSI's log stays finite; a bucket empty in
# both windows then contributes exactly 0. At 1e-4, a bucket that held a tenth of the reference
# rows and empties adds 0.69: clearly major, yet finite.
PSI_EPSILON = 1e-4
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
UNSEEN = "other/unseen"
MISSING = "missing"


@dataclass
class _Window:
    label: str
    start: pd.Timestamp
    end: pd.Timestamp
    midpoint: pd.Timestamp
    rows: np.ndarray  # positions in the test set, in time order


@dataclass
class _Scored:
    window: _Window
    metrics: dict[str, float]  # every performance metric's point value
    value: float  # the primary metric's
    interval: list[float] | None
    resamples: np.ndarray  # the primary metric on each resample that defines it


class DecayEvaluator:
    name = "decay"
    probes = ()
    queue = "evaluate"

    def applies(self, data: EvaluationInput) -> bool:
        return data.times is not None

    def probe_params(self, data: EvaluationInput) -> dict[str, dict]:
        return {}

    def evaluate(self, data: EvaluationInput) -> EvaluatorResult:
        options = _options(data.options)
        times = _naive(pd.DatetimeIndex(data.times))
        windows = _split(times, options["windows"])
        scored = [_score(data, window, seed=data.seed + index) for index, window in enumerate(windows)]
        fitted = [entry for entry in scored if _fit_exclusion(entry, options, data.primary_metric) is None]
        origin = windows[0].start
        trend = _trend(fitted, data.primary_metric, data.primary_higher_is_better, origin)
        cutoff, cutoff_report = _training_cutoff(data.metadata, windows, options["training_split_end"])
        # The first fitted window is the baseline for drift as for relative_drop.
        reference = fitted[0].window if fitted else windows[0]
        drift = _drift(data.features, windows, reference, options["psi_bins"])
        document = {
            "primary_metric": data.primary_metric,
            "higher_is_better": data.primary_higher_is_better,
            "rows": len(times),
            "rows_without_time": int(times.isna().sum()),
            "windows": [
                _window_report(
                    entry,
                    excluded_because=_fit_exclusion(entry, options, data.primary_metric),
                    origin=origin,
                    cutoff=cutoff,
                    drift=window_drift,
                )
                for entry, window_drift in zip(scored, drift["windows"])
            ],
            "trend": trend["report"],
            "training_cutoff": cutoff_report,
            "drift": drift["summary"],
            "methodology": _methodology(data, options),
        }
        return EvaluatorResult(metrics=trend["metrics"], intervals=trend["intervals"], document=document)


def _options(given: dict) -> dict:
    options = {**DEFAULT_OPTIONS, **given}
    windows = options["windows"]
    if windows != "month" and not (_is_int(windows) and windows >= 1):
        raise EvaluatorError(f'the decay option "windows" must be "month" or a positive integer, not {windows!r}')
    end = options["training_split_end"]
    if end is not None and not (isinstance(end, str) and _is_iso_date(end)):
        raise EvaluatorError(f'the decay option "training_split_end" must be a date YYYY-MM-DD or null, not {end!r}')
    for key, minimum in (("min_window_rows", 1), ("psi_bins", 2)):
        if not (_is_int(options[key]) and options[key] >= minimum):
            raise EvaluatorError(
                f'the decay option "{key}" must be an integer of at least {minimum}, not {options[key]!r}'
            )
    return options


def _is_iso_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_int(value) -> bool:
    # JSON options give plain ints; True is an int to Python but never a window count.
    return isinstance(value, int) and not isinstance(value, bool)


def _naive(times: pd.DatetimeIndex) -> pd.DatetimeIndex:
    # Local wall-clock time decides which calendar month a row falls in.
    return times.tz_localize(None) if times.tz is not None else times


def _split(times: pd.DatetimeIndex, windows) -> list[_Window]:
    dated = np.flatnonzero(~times.isna())
    if dated.size == 0:
        raise EvaluatorError("the time column has no values, so the test rows cannot be put in time order")
    # Stable, so rows recorded at the same moment keep their test-set order.
    order = dated[np.argsort(times[dated].asi8, kind="stable")]
    if windows == "month":
        return _month_windows(times, order)
    if windows > order.size:
        raise EvaluatorError(f"{windows} equal-count windows need at least {windows} dated test rows, not {order.size}")
    parts = np.array_split(order, windows)
    return [_span_window(times, rows, f"{index + 1}/{windows}") for index, rows in enumerate(parts)]


def _month_windows(times: pd.DatetimeIndex, order: np.ndarray) -> list[_Window]:
    months = times[order].to_period("M")
    firsts = np.flatnonzero(np.r_[True, months.asi8[1:] != months.asi8[:-1]])
    windows = []
    for first, rows in zip(firsts, np.split(order, firsts[1:])):
        month = months[first]
        start, stop = month.start_time, (month + 1).start_time
        windows.append(_Window(str(month), start, month.end_time, start + (stop - start) / 2, rows))
    return windows


def _span_window(times: pd.DatetimeIndex, rows: np.ndarray, label: str) -> _Window:
    start, end = times[rows[0]], times[rows[-1]]
    return _Window(label, start, end, start + (end - start) / 2, rows)


def _score(data: EvaluationInput, window: _Window, *, seed: int) -> _Scored:
    rows = window.rows
    predictions = dataclasses.replace(
        data.predictions,
        labels=np.asarray(data.predictions.labels)[rows],
        probabilities=None if data.predictions.probabilities is None else data.predictions.probabilities[rows],
    )
    with warnings.catch_warnings():
        # A small window may hold one class only; its AUC is then undefined and reported as such.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        performance = performance_objectives(
            y_true=np.asarray(data.y_true)[rows],
            predictions=predictions,
            task=data.task,
            classes=data.classes,
            positive_label=data.positive_label,
            resamples=data.resamples,
            seed=seed,
        )
    if data.primary_metric not in performance["metrics"]:
        raise EvaluatorError(
            f"the primary metric {data.primary_metric} is not measured for this submission "
            "(roc_auc and log_loss need predicted probabilities)"
        )
    return _Scored(
        window=window,
        metrics=performance["metrics"],
        value=performance["metrics"][data.primary_metric],
        interval=performance["intervals"].get(data.primary_metric),
        resamples=_defined(performance["resample_values"][data.primary_metric]),
    )


def _defined(values: list) -> np.ndarray:
    """The resamples on which the metric is defined (performance marks the others None)."""
    return np.array([value for value in values if value is not None], dtype=float)


def _days(moment: pd.Timestamp, origin: pd.Timestamp) -> float:
    return (moment - origin) / pd.Timedelta(days=1)


def _trend(fitted: list[_Scored], metric: str, higher_is_better: bool, origin: pd.Timestamp) -> dict:
    if len(fitted) < 2:
        reason = (
            f"{len(fitted)} window{'' if len(fitted) == 1 else 's'} large enough to fit, and a trend needs two: "
            "decay_per_30d and relative_drop are not reported."
        )
        return {"metrics": {}, "intervals": {}, "report": {"fitted_windows": len(fitted), "reason": reason}}
    days = np.array([_days(entry.window.midpoint, origin) for entry in fitted])
    values = np.array([entry.value for entry in fitted])
    # Positive means getting worse, whichever way the metric points.
    worse = -1.0 if higher_is_better else 1.0
    decay = worse * DAYS_PER_PERIOD * _slopes(days, values[:, None])[0]
    drop = _relative_drops(values[:, None], worse)[0]
    # Windows are resampled independently, so pairing each window's r-th resample is one draw
    # of the whole test period; a window whose metric is undefined on some resamples has fewer,
    # and the shortest list sets how many such draws there are.
    paired = min(entry.resamples.size for entry in fitted)
    resampled = np.array([entry.resamples[:paired] for entry in fitted])
    decay_interval = _interval(worse * DAYS_PER_PERIOD * _slopes(days, resampled))
    drop_interval = _interval(_relative_drops(resampled, worse))
    metrics = {"decay_per_30d": float(decay)}
    if np.isfinite(drop):
        metrics["relative_drop"] = float(drop)
    intervals = {
        key: interval
        for key, interval in (("decay_per_30d", decay_interval), ("relative_drop", drop_interval))
        if key in metrics and interval is not None
    }
    report = {
        "fitted_windows": len(fitted),
        "first_window": fitted[0].window.label,
        "last_window": fitted[-1].window.label,
        "decay_per_30d": float(decay),
        "decay_per_30d_interval": decay_interval,
        "relative_drop": _json_float(drop),
        "relative_drop_interval": drop_interval if "relative_drop" in metrics else None,
        "paired_resamples": paired,
    }
    if "relative_drop" not in metrics:
        report["relative_drop_reason"] = f"the first fitted window's {metric} is 0, so no relative drop is defined."
    return {"metrics": metrics, "intervals": intervals, "report": report}


def _slopes(days: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares slope per column of `values` (windows x draws) against `days`."""
    centred = days - days.mean()
    return centred @ (values - values.mean(axis=0)) / (centred @ centred)


def _relative_drops(values: np.ndarray, worse: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return worse * (values[-1] - values[0]) / np.abs(values[0])


def _interval(draws: np.ndarray) -> list[float] | None:
    draws = draws[np.isfinite(draws)]
    return np.percentile(draws, INTERVAL_PERCENTILES).tolist() if draws.size else None


def _training_cutoff(
    metadata: dict, windows: list[_Window], training_split_end: str | None
) -> tuple[pd.Timestamp | None, dict]:
    """The submission's declared cutoff, else the end of the benchmark's public training split."""
    value = metadata.get("training_cutoff")
    source = "metadata"
    if value is None and training_split_end:
        value, source = training_split_end, "training split"
    if value is None:
        note = (
            "The submission's metadata declares no training_cutoff (an ISO date, YYYY-MM-DD), so the "
            "windows are not placed relative to the end of its training data."
        )
        return None, {"date": None, "source": None, "note": note}
    try:
        cutoff = pd.Timestamp(date.fromisoformat(value))
    except (TypeError, ValueError):
        note = f"The metadata's training_cutoff {value!r} is not an ISO date (YYYY-MM-DD), so it is not used."
        return None, {"date": None, "source": None, "note": note}
    notes = []
    if source == "training split":
        notes.append(
            f"The submission declares no training_cutoff; the benchmark's public training split ends on "
            f"{cutoff.date().isoformat()}, which is taken as the cutoff."
        )
    # A model may have been trained on these rows' period, which flatters its early windows.
    early = [window.label for window in windows if window.start < cutoff]
    if early:
        notes.append(f"Windows starting before the training cutoff: {', '.join(early)}.")
    return cutoff, {"date": cutoff.date().isoformat(), "source": source, "note": " ".join(notes) or None}


def _drift(features: pd.DataFrame, windows: list[_Window], reference: _Window, bins: int) -> dict:
    """PSI of every feature, for every window against the reference window."""
    window_of_row = np.full(len(features), -1)
    for index, window in enumerate(windows):
        window_of_row[window.rows] = index
    dated = window_of_row >= 0
    psi, described = {}, []
    for column in features.columns:
        codes, buckets, kind = _buckets(features[column], reference.rows, bins)
        cells = window_of_row[dated] * len(buckets) + codes[dated]
        counts = np.bincount(cells, minlength=len(windows) * len(buckets)).reshape(len(windows), len(buckets))
        reference_counts = np.bincount(codes[reference.rows], minlength=len(buckets))
        psi[column] = [_psi(reference_counts, row) for row in counts]
        described.append({"feature": column, "kind": kind, "buckets": buckets})
    per_window = [_window_drift({column: values[i] for column, values in psi.items()}) for i in range(len(windows))]
    for entry in described:
        values = psi[entry["feature"]]
        worst = int(np.argmax(values))
        entry.update(max_psi=values[worst], max_window=windows[worst].label, level=_level(values[worst]))
    summary = {
        "reference_window": reference.label,
        "thresholds": {"moderate": PSI_MODERATE, "major": PSI_MAJOR},
        "features": sorted(described, key=lambda entry: -entry["max_psi"]),
    }
    return {"windows": per_window, "summary": summary}


def _buckets(column: pd.Series, reference_rows: np.ndarray, bins: int) -> tuple[np.ndarray, list[str], str]:
    """Each row's bucket code, the bucket names, and the feature's kind; buckets come from the
    reference window only, so a later window's new values show up as drift."""
    missing = column.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=float, na_value=np.nan)
        known = values[reference_rows][~missing[reference_rows]]
        # Ties (counts, rounded amounts) give repeated quantiles; each repeated edge is one cut.
        edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1])) if known.size else np.empty(0)
        codes = np.searchsorted(edges, values, side="left")
        names = [f"<= {edges[0]:g}"] if edges.size else ["all"]
        names += [f"({low:g}, {high:g}]" for low, high in zip(edges[:-1], edges[1:])]
        names += [f"> {edges[-1]:g}"] if edges.size else []
        kind = "numeric"
    else:
        categories = sorted(set(column.iloc[reference_rows][~missing[reference_rows]]), key=str)
        codes = pd.Index(categories, dtype=object).get_indexer(column.astype(object))
        codes = np.where(codes < 0, len(categories), codes)
        names = [str(category) for category in categories] + [UNSEEN]
        kind = "categorical"
    codes = np.where(missing, len(names), codes)
    return codes, names + [MISSING], kind


def _psi(reference_counts: np.ndarray, window_counts: np.ndarray) -> float:
    expected = np.maximum(reference_counts / reference_counts.sum(), PSI_EPSILON)
    actual = np.maximum(window_counts / window_counts.sum(), PSI_EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _window_drift(psi: dict[str, float]) -> dict:
    if not psi:
        return {"max_psi": None, "max_feature": None, "level": None, "psi": {}}
    feature = max(psi, key=psi.get)
    # The reference window, and any window identical to it, has no feature that drifted most.
    return {
        "max_psi": psi[feature],
        "max_feature": feature if psi[feature] > 0 else None,
        "level": _level(psi[feature]),
        "psi": psi,
    }


def _level(psi: float) -> str:
    return "major" if psi >= PSI_MAJOR else "moderate" if psi >= PSI_MODERATE else "stable"


def _fit_exclusion(entry: _Scored, options: dict, metric: str) -> str | None:
    """Why this window is left out of the trend, or None when it is fitted."""
    if len(entry.window.rows) < options["min_window_rows"]:
        return f"{len(entry.window.rows)} rows, fewer than min_window_rows ({options['min_window_rows']})"
    if not np.isfinite(entry.value):
        return f"{metric} is undefined on this window's rows (e.g. a single class)"
    return None


def _window_report(
    entry: _Scored, *, excluded_because: str | None, origin: pd.Timestamp, cutoff: pd.Timestamp | None, drift: dict
) -> dict:
    window = entry.window
    report = {
        "label": window.label,
        "start": window.start.date().isoformat(),
        "end": window.end.date().isoformat(),
        "midpoint_days": _days(window.midpoint, origin),
        "rows": len(window.rows),
        "in_fit": excluded_because is None,
        "excluded_because": excluded_because,
        "value": _json_float(entry.value),
        "interval": entry.interval,
        "metrics": {key: _json_float(value) for key, value in entry.metrics.items()},
        "days_since_cutoff": None,
        "months_since_cutoff": None,
        "drift": drift,
    }
    if cutoff is not None:
        days = _days(window.midpoint, cutoff)
        report.update(days_since_cutoff=round(days, 1), months_since_cutoff=round(days / DAYS_PER_MONTH, 1))
    return report


def _json_float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _methodology(data: EvaluationInput, options: dict) -> dict:
    windows = (
        "one window per calendar month that has test rows; start and end are the month's first and last day"
        if options["windows"] == "month"
        else f"{options['windows']} windows of equal row counts (differing by at most one) in time order; start "
        "and end are the dates of a window's first and last row"
    )
    return {
        "options": options,
        "windows": (
            f"Test rows with a time, sorted by it (ties keep test-set order), split into {windows}. Rows "
            "without a time are left out."
        ),
        "window_metrics": (
            "Each window's metrics are the performance evaluator's (scikit-learn's) on that window's rows. "
            f"Its 95% interval is the 2.5th-97.5th percentile over {data.resamples} bootstrap resamples of its "
            f"own rows, drawn with seed {data.seed} + the window's 0-based index, so every submission gets "
            "the same resampled rows; a resample on which the metric is undefined is skipped."
        ),
        "fit": (
            f"Windows with at least {options['min_window_rows']} rows and a defined {data.primary_metric} are "
            f"fitted by least squares: {data.primary_metric} against midpoint_days, the window's midpoint "
            "(the middle of its calendar month, or halfway between its first and last rows' times) in "
            "days since the first window's start."
        ),
        "decay_per_30d": (
            f"The fitted slope times {DAYS_PER_PERIOD}, signed so that positive means getting worse. Its 95% "
            "interval is the 2.5th-97.5th percentile of the slopes fitted to each paired draw: the r-th "
            "resample of every fitted window (windows are resampled independently)."
        ),
        "relative_drop": (
            "(first - last) / |first| over the first and last fitted windows when higher is better, "
            "(last - first) / |first| when lower is better: positive means worse. Its interval comes from "
            "the same paired draws."
        ),
        "psi": (
            "Population stability index of each feature in each window against the reference window (the "
            "first fitted one, or the first window when none is fitted): sum over buckets of (window share - "
            "reference share) * ln(window share / reference share), an empty bucket counting as a share of "
            f"{PSI_EPSILON:g}. Numeric features are "
            f"cut at the reference window's {options['psi_bins']}-quantiles (repeated cuts merged, bins closed "
            f"on the right); categorical features get one bucket per reference category and one for "
            f"'{UNSEEN}'; both have a '{MISSING}' bucket. Levels: stable below {PSI_MODERATE}, moderate "
            f"below {PSI_MAJOR}, major from {PSI_MAJOR}."
        ),
        "cutoff_distance": (
            "days_since_cutoff runs from the metadata's training_cutoff (00:00 that day) to the window's "
            f"midpoint; months_since_cutoff divides it by {DAYS_PER_MONTH:.4f}, the mean calendar month."
        ),
    }
