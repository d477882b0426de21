"""Fairness: how the model's errors and selections differ between groups of people.

Every sensitive column, and every pair of them, splits the test rows into groups; each group gets
the primary metric and the rates fairness is judged on, compared with the whole test set and with
a reference group. fairlearn's disparity measures summarise each column, the four-fifths rule
checks selection rates, and the weakest slices of every feature show where the model does worst
whether or not anyone declared that feature sensitive.

Everything is computed from weighted counts, as in performance.py: a group's value on a bootstrap
resample is its metric over that resample's draws of the group's rows, which one matrix product
gives for a whole block of resamples. Element 0 of every value array is the test set itself (each
row drawn once) and the rest are the resamples, so point values and intervals come from one code
path. The tests hold the point values equal to fairlearn's and scikit-learn's, and the resample
values equal to the same metrics on the resampled rows.
"""

import re
import warnings
from collections import defaultdict
from dataclasses import dataclass
from importlib import metadata
from itertools import chain, combinations, islice

import numpy as np
import pandas as pd

from .base import EvaluationInput, EvaluatorError, EvaluatorResult
from .performance import (
    INTERVAL_PERCENTILES,
    ClassificationObjectives,
    label_codes,
    RegressionObjectives,
    resample_weights,
    bootstrap_indices,
)
from .sandbox import Predictions

DEFAULT_OPTIONS: dict = {
    # Groups with fewer test rows are listed and flagged "small" but left out of the worst-group,
    # gap and four-fifths figures: a rate over a handful of rows is too noisy to rank a model on.
    "min_group_size": 30,
    # {sensitive column, or "a & b" for an intersection: group label} to compare every group
    # with. A column not named uses its largest group; an intersection not named uses the pair
    # of its columns' reference groups when that pair occurs, else its largest group.
    "reference_groups": {},
    # How many of the weakest feature slices the report lists.
    "max_slices": 10,
    # The fewest test rows a feature slice needs to be listed; None means max(50, 1% of the rows).
    "slice_min_size": None,
    # Numeric columns with more distinct values than this are cut into this many quantile bins;
    # those with fewer are sliced by value.
    "numeric_bins": 5,
    # Whether each pair of sensitive columns is also reported as intersectional groups.
    "intersections": True,
}

MISSING = "(missing)"
# Recorded in each report's methodology so a reviewer can reproduce it with the same libraries.
RECORDED_LIBRARIES = ("fairlearn", "scikit-learn", "numpy", "pandas")
FOUR_FIFTHS = 0.8
PROBABILITY_METRICS = ("roc_auc", "log_loss")
PRIMARY_METRICS = {
    "binary": ("accuracy", "balanced_accuracy", "f1_macro", *PROBABILITY_METRICS),
    "multiclass": ("accuracy", "balanced_accuracy", "f1_macro", *PROBABILITY_METRICS),
    "regression": ("rmse", "mae", "r2"),
}
BINARY_ONLY = ("demographic_parity_difference", "equalized_odds_difference")
CANONICAL = (*BINARY_ONLY, "worst_group_accuracy", "accuracy_gap")
DISPARITIES = {
    "binary": (*CANONICAL, "selection_rate_ratio"),
    "multiclass": ("worst_group_accuracy", "accuracy_gap"),
    "regression": ("worst_group_mae", "mae_gap"),
}

DEFINITIONS = {
    "balanced_accuracy": "mean recall over the classes present (scikit-learn's balanced_accuracy_score)",
    "f1_macro": "unweighted mean of per-class F1 (scikit-learn's f1_score, average='macro')",
    "roc_auc": "area under the ROC curve of the positive label's score (one-vs-rest macro for multiclass)",
    "log_loss": "mean negative log-likelihood of the true class (scikit-learn's log_loss)",
    "rmse": "root mean squared error",
    "r2": "coefficient of determination (scikit-learn's r2_score)",
    "accuracy": "share of rows whose predicted label is the true label",
    "selection_rate": "share of rows predicted as the positive label (fairlearn's selection_rate)",
    "true_positive_rate": "share of truly positive rows predicted positive; undefined without positive rows",
    "false_positive_rate": "share of truly negative rows predicted positive; undefined without negative rows",
    "false_negative_rate": "share of truly positive rows predicted negative; undefined without positive rows",
    "recall[c]": "share of rows of true class c predicted as c; undefined without rows of class c",
    "selection_rate[c]": "share of rows predicted as class c",
    "mae": "mean absolute error",
    "mean_prediction": "mean predicted value",
    "vs_overall": "the group's value minus (difference) and divided by (ratio) the whole test set's",
    "vs_reference": "the group's value minus (difference) and divided by (ratio) the reference group's",
    "demographic_parity_difference": (
        "largest minus smallest group selection rate (fairlearn's demographic_parity_difference, "
        "method='between_groups')"
    ),
    "equalized_odds_difference": (
        "the larger of the true-positive-rate and false-positive-rate differences between groups "
        "(fairlearn's equalized_odds_difference, agg='worst_case')"
    ),
    "worst_group_accuracy": "accuracy of the group with the lowest accuracy",
    "accuracy_gap": "largest minus smallest group accuracy",
    "selection_rate_ratio": "smallest divided by largest group selection rate (the four-fifths rule's ratio)",
    "worst_group_mae": "mean absolute error of the group with the largest one",
    "mae_gap": "largest minus smallest group mean absolute error",
}


class FairnessEvaluator:
    """Group metrics, disparities and worst slices over the benchmark's sensitive columns."""

    name = "fairness"
    probes = ()
    queue = "evaluate"

    def applies(self, data: EvaluationInput) -> bool:
        return len(data.sensitive.columns) > 0

    def probe_params(self, data: EvaluationInput) -> dict[str, dict]:
        return {}

    def evaluate(self, data: EvaluationInput) -> EvaluatorResult:
        if data.predictions is None:
            raise EvaluatorError("fairness needs the model's predictions on the test set")
        return _Report(data, {**DEFAULT_OPTIONS, **data.options}).result()


# --- Splitting rows into groups ------------------------------------------------------------


@dataclass
class _Partition:
    """One way of splitting the test rows: a column's values or quantile bins, or the
    intersection of two such splits."""

    name: str
    columns: list[str]
    codes: np.ndarray  # each row's group
    labels: list[str]  # each group's label, every group non-empty

    def rows(self) -> list[np.ndarray]:
        order = np.argsort(self.codes, kind="stable")
        return np.split(order, np.cumsum(np.bincount(self.codes, minlength=len(self.labels)))[:-1])


def _column_partition(column: pd.Series, bins: int) -> _Partition:
    if pd.api.types.is_numeric_dtype(column) and column.nunique() > bins:
        codes, labels = _quantile_bins(column, bins)
    else:
        codes, labels = _value_codes(column)
    return _partition(str(column.name), [str(column.name)], codes, labels)


def _intersection(a: _Partition, b: _Partition) -> _Partition:
    labels = [f"{a.name}={label_a} & {b.name}={label_b}" for label_a in a.labels for label_b in b.labels]
    return _partition(f"{a.name} & {b.name}", a.columns + b.columns, a.codes * len(b.labels) + b.codes, labels)


def _partition(name: str, columns: list[str], codes: np.ndarray, labels: list[str]) -> _Partition:
    """Drops the groups no row falls in (an empty quantile bin or pair of values)."""
    used, codes = np.unique(codes, return_inverse=True)
    return _Partition(name, columns, codes.ravel(), [labels[code] for code in used])


def _value_codes(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    codes, uniques = pd.factorize(column, sort=True)
    return _with_missing(codes, [str(value) for value in uniques], codes < 0)


def _quantile_bins(column: pd.Series, bins: int) -> tuple[np.ndarray, list[str]]:
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values)
    edges = np.unique(np.quantile(values[~missing], np.linspace(0, 1, bins + 1)))
    # Right-closed bins, the first also closed on the left, as pandas.qcut makes them.
    codes = np.searchsorted(edges[1:-1], values, side="left")
    labels = [f"[{edges[0]:g}, {edges[1]:g}]"] + [f"({low:g}, {high:g}]" for low, high in zip(edges[1:-1], edges[2:])]
    return _with_missing(codes, labels, missing)


def _with_missing(codes: np.ndarray, labels: list[str], missing: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Missing values form a group of their own rather than vanishing from the report."""
    if missing.any():
        return np.where(missing, len(labels), codes), [*labels, MISSING]
    return codes, labels


# --- Measuring groups on the test set and on every resample --------------------------------


@dataclass(frozen=True)
class _Rates:
    """Group metrics that are one weighted count over another: per row, the counts; per metric,
    the columns of its numerator and denominator."""

    columns: np.ndarray
    ratios: dict[str, tuple[int, int]]


def _rates(counts: dict[str, np.ndarray], ratios: dict[str, tuple[str, str]]) -> _Rates:
    names = list(counts)
    return _Rates(
        np.column_stack([counts[name] for name in names]).astype(np.float64),
        {metric: (names.index(num), names.index(den)) for metric, (num, den) in ratios.items()},
    )


def _binary_rates(actual: np.ndarray, selected: np.ndarray) -> _Rates:
    counts = {
        "rows": np.ones(len(actual)),
        "correct": actual == selected,
        "selected": selected,
        "positive": actual,
        "negative": ~actual,
        "true_positive": actual & selected,
        "false_positive": ~actual & selected,
        "false_negative": actual & ~selected,
    }
    return _rates(
        counts,
        {
            "accuracy": ("correct", "rows"),
            "selection_rate": ("selected", "rows"),
            "true_positive_rate": ("true_positive", "positive"),
            "false_positive_rate": ("false_positive", "negative"),
            "false_negative_rate": ("false_negative", "positive"),
        },
    )


def _multiclass_rates(true_codes: np.ndarray, pred_codes: np.ndarray, classes: list) -> _Rates:
    counts = {"rows": np.ones(len(true_codes)), "correct": true_codes == pred_codes}
    ratios = {"accuracy": ("correct", "rows")}
    for code, label in enumerate(classes):
        counts[f"true {label}"] = true_codes == code
        counts[f"hit {label}"] = (true_codes == code) & (pred_codes == code)
        counts[f"predicted {label}"] = pred_codes == code
        ratios[f"recall[{label}]"] = (f"hit {label}", f"true {label}")
        ratios[f"selection_rate[{label}]"] = (f"predicted {label}", "rows")
    return _rates(counts, ratios)


def _regression_rates(y_true: np.ndarray, y_pred: np.ndarray) -> _Rates:
    counts = {"rows": np.ones(len(y_true)), "absolute_error": np.abs(y_pred - y_true), "prediction": y_pred}
    return _rates(counts, {"mae": ("absolute_error", "rows"), "mean_prediction": ("prediction", "rows")})


class _GroupMetrics:
    """The metrics of one set of test rows, on any weighting of all the rows."""

    def __init__(self, rows: np.ndarray | slice, objectives, primary: str, rates: _Rates | None):
        self.rows, self.objectives, self.primary = rows, objectives, primary
        self.rate_columns = None if rates is None else rates.columns[rows]
        self.ratios = {} if rates is None else rates.ratios

    def __call__(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        drawn = weights[:, self.rows]
        values = {self.primary: self.objectives.resample_values(drawn)[self.primary]}
        if self.rate_columns is not None:
            sums = drawn @ self.rate_columns
            values.update({metric: sums[:, num] / sums[:, den] for metric, (num, den) in self.ratios.items()})
        return values


class _Measures:
    """Makes the metrics of any set of test rows: the primary metric through performance.py's
    vectorised objectives, and the fairness rates from the task's count columns."""

    def __init__(self, data: EvaluationInput, primary: str):
        self.data, self.primary = data, primary
        self.y_true = np.asarray(data.y_true)
        self.labels = np.asarray(data.predictions.labels)
        # Only the metrics that need probabilities pay for ranking and log losses.
        self.probabilities = None
        if primary in PROBABILITY_METRICS:
            self.probabilities = np.asarray(data.predictions.probabilities)
        # Built first: the objectives refuse labels outside the benchmark's classes with a
        # message for the submitter, and the rates below can then assume there are none.
        overall_objectives = self._objectives(slice(None))
        self.rates = self._task_rates()
        self.overall = _GroupMetrics(slice(None), overall_objectives, primary, self.rates)

    def _task_rates(self) -> _Rates:
        if self.data.task == "regression":
            return _regression_rates(self.y_true.astype(np.float64), self.labels.astype(np.float64))
        classes = sorted(self.data.classes)
        true_codes, pred_codes = label_codes(self.y_true, classes), label_codes(self.labels, classes)
        if self.data.task == "binary":
            positive = label_codes([self.data.positive_label], classes)[0]
            return _binary_rates(true_codes == positive, pred_codes == positive)
        return _multiclass_rates(true_codes, pred_codes, classes)

    def _objectives(self, rows):
        predictions = Predictions(
            labels=self.labels[rows],
            probabilities=None if self.probabilities is None else self.probabilities[rows],
            classes=self.data.predictions.classes,
            predict_seconds=0.0,
        )
        if self.data.task == "regression":
            return RegressionObjectives(self.y_true[rows], predictions)
        return ClassificationObjectives(
            self.y_true[rows], predictions, self.data.task, self.data.classes, self.data.positive_label
        )

    def for_rows(self, rows: np.ndarray | slice, *, with_rates: bool = True) -> _GroupMetrics:
        return _GroupMetrics(rows, self._objectives(rows), self.primary, self.rates if with_rates else None)

    def metric_names(self) -> list[str]:
        return [self.primary, *(metric for metric in self.rates.ratios if metric != self.primary)]


def _resampled(groups: list[_GroupMetrics], indices: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Each group's metrics on the test set itself (element 0), then on each resample."""
    parts = [defaultdict(list) for _ in groups]
    everything_once = np.ones((1, indices.shape[1]))
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        # A resample that draws none of a group's rows (or none of a class) leaves its metric
        # undefined: 0 / 0 or a mean of nothing, NaN, which the intervals skip.
        warnings.simplefilter("ignore", RuntimeWarning)
        for weights in chain([everything_once], resample_weights(indices)):
            for group, part in zip(groups, parts):
                for metric, values in group(weights).items():
                    part[metric].append(values)
    return [{metric: np.concatenate(arrays) for metric, arrays in part.items()} for part in parts]


# --- Comparing groups ----------------------------------------------------------------------


@dataclass
class _Disparity:
    values: np.ndarray  # the test set's value, then each resample's
    groups: dict  # which groups give the test set's value


def _extremes(matrix: np.ndarray, labels: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """The smallest and largest group value on the test set and on each resample, over the
    groups defined there (NaN with fewer than two to compare), and which groups give them on
    the test set."""
    comparable = np.isfinite(matrix).sum(axis=0) >= 2
    low = np.where(comparable, np.fmin.reduce(matrix, axis=0), np.nan)
    high = np.where(comparable, np.fmax.reduce(matrix, axis=0), np.nan)
    if not comparable[0]:
        return low, high, {"lowest": None, "highest": None}
    groups = {"lowest": _label_of(np.nanargmin, matrix, labels), "highest": _label_of(np.nanargmax, matrix, labels)}
    return low, high, groups


def _spread(matrix: np.ndarray, labels: list[str]) -> _Disparity:
    """Largest minus smallest group value: fairlearn's difference(method="between_groups")."""
    low, high, groups = _extremes(matrix, labels)
    return _Disparity(high - low, groups)


def _ratio_of_extremes(matrix: np.ndarray, labels: list[str]) -> _Disparity:
    """Smallest over largest group value: fairlearn's ratio(method="between_groups")."""
    low, high, groups = _extremes(matrix, labels)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _Disparity(low / high, groups)


def _worst(matrix: np.ndarray, labels: list[str], *, higher_is_better: bool) -> _Disparity:
    if higher_is_better:
        return _Disparity(np.fmin.reduce(matrix, axis=0), {"worst": _label_of(np.nanargmin, matrix, labels)})
    return _Disparity(np.fmax.reduce(matrix, axis=0), {"worst": _label_of(np.nanargmax, matrix, labels)})


def _label_of(pick, matrix: np.ndarray, labels: list[str]) -> str | None:
    point = matrix[:, 0]
    return labels[int(pick(point))] if np.isfinite(point).any() else None


def _disparities(task: str, labels: list[str], values: dict[str, np.ndarray]) -> dict[str, _Disparity]:
    """The gap measures of one partition, over its groups large enough to rank; `values` holds
    one (groups, 1 + resamples) matrix per metric."""
    if task == "regression":
        return {
            "worst_group_mae": _worst(values["mae"], labels, higher_is_better=False),
            "mae_gap": _spread(values["mae"], labels),
        }
    found = {
        "worst_group_accuracy": _worst(values["accuracy"], labels, higher_is_better=True),
        "accuracy_gap": _spread(values["accuracy"], labels),
    }
    if task == "binary":
        found = {
            "demographic_parity_difference": _spread(values["selection_rate"], labels),
            "equalized_odds_difference": _equalized_odds(values, labels),
            **found,
            "selection_rate_ratio": _ratio_of_extremes(values["selection_rate"], labels),
        }
    return found


def _equalized_odds(values: dict[str, np.ndarray], labels: list[str]) -> _Disparity:
    """The larger of the two rate differences, naming the rate and groups that give it."""
    spreads = {rate: _spread(values[rate], labels) for rate in ("true_positive_rate", "false_positive_rate")}
    points = {rate: spread.values[0] for rate, spread in spreads.items() if np.isfinite(spread.values[0])}
    rate = max(points, key=points.get, default="true_positive_rate")
    combined = np.fmax(*(spread.values for spread in spreads.values()))
    return _Disparity(combined, {"rate": rate, **spreads[rate].groups})


def _worst_column(by_column: dict[str, _Disparity], key: str) -> _Disparity:
    """The worst of one disparity over the sensitive columns, on the test set and per resample
    (a resample's worst column may differ from the test set's)."""
    columns = list(by_column)
    matrix = np.array([by_column[column].values for column in columns])
    if key == "worst_group_accuracy":
        worst, pick = np.fmin.reduce(matrix, axis=0), np.nanargmin
    else:
        worst, pick = np.fmax.reduce(matrix, axis=0), np.nanargmax
    if not np.isfinite(matrix[:, 0]).any():
        return _Disparity(worst, {"column": None, "groups": None})
    column = columns[int(pick(matrix[:, 0]))]
    return _Disparity(worst, {"column": column, "groups": by_column[column].groups})


# --- The report ----------------------------------------------------------------------------


def _json_float(value) -> float | None:
    return float(value) if np.isfinite(value) else None


def _interval(values: np.ndarray) -> list[float] | None:
    finite = values[np.isfinite(values)]
    return [float(bound) for bound in np.percentile(finite, INTERVAL_PERCENTILES)] if finite.size else None


def _estimate(values: np.ndarray) -> dict:
    return {"value": _json_float(values[0]), "interval": _interval(values[1:])}


def _compared(values: np.ndarray, overall: np.ndarray, reference: np.ndarray) -> dict:
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            **_estimate(values),
            "vs_overall": {"difference": _estimate(values - overall), "ratio": _estimate(values / overall)},
            "vs_reference": {"difference": _estimate(values - reference), "ratio": _estimate(values / reference)},
        }


class _Report:
    """One fairness report: every group and the worst slices, measured in one pass over the
    resamples."""

    def __init__(self, data: EvaluationInput, options: dict):
        self.data, self.options = data, options
        self.n_rows = len(data.y_true)
        self.min_group_size = int(options["min_group_size"])
        self.bins = int(options["numeric_bins"])
        self.slice_min_size = (
            max(50, int(np.ceil(0.01 * self.n_rows)))
            if options["slice_min_size"] is None
            else int(options["slice_min_size"])
        )
        self.primary, self.primary_note = _primary_metric(data)
        # The fallback, accuracy, is higher-is-better whatever the requested metric was.
        self.higher_is_better = data.primary_higher_is_better if self.primary_note is None else True
        self.measures = _Measures(data, self.primary)
        self.indices = bootstrap_indices(self.n_rows, resamples=data.resamples, seed=data.seed)
        self.references: dict[str, str] = {}  # by grouping name, filled as groupings are built

    def result(self) -> EvaluatorResult:
        partitions = self._partitions()
        group_rows = [partition.rows() for partition in partitions]
        candidates = self._slice_candidates()
        slices = self._worst_slices(candidates)
        measured = [
            self.measures.overall,
            *(self.measures.for_rows(rows) for rows_list in group_rows for rows in rows_list),
            *(group for *_, group in slices),
        ]
        overall, *rest = _resampled(measured, self.indices)
        values = iter(rest)

        groupings, by_column = [], defaultdict(dict)
        for partition, rows_list in zip(partitions, group_rows):
            grouping, disparities = self._grouping(partition, rows_list, list(islice(values, len(rows_list))), overall)
            groupings.append(grouping)
            if len(partition.columns) == 1:
                for key, disparity in disparities.items():
                    by_column[key][partition.name] = disparity
        worst = {
            key: _worst_column(by_column[key], key)
            for key in DISPARITIES[self.data.task]
            # The four-fifths section reports the selection-rate ratio per column, with a verdict.
            if by_column[key] and key != "selection_rate_ratio"
        }
        scalars = {key: {**_estimate(found.values), **found.groups} for key, found in worst.items()}
        metrics = {key: scalars[key]["value"] for key in CANONICAL if scalars.get(key, {}).get("value") is not None}
        intervals = {key: scalars[key]["interval"] for key in metrics if scalars[key]["interval"] is not None}
        document = {
            "task": self.data.task,
            "rows": self.n_rows,
            "primary_metric": {
                "requested": self.data.primary_metric,
                "used": self.primary,
                "higher_is_better": self.higher_is_better,
                "note": self.primary_note,
            },
            "methodology": self._methodology(),
            "overall": {metric: _estimate(overall[metric]) for metric in self.measures.metric_names()},
            "groupings": groupings,
            "scalars": scalars,
            # Aligned with the resamples (null where undefined), so two submissions' values pair.
            "resample_values": {key: [_json_float(value) for value in worst[key].values[1:]] for key in metrics},
            "four_fifths": self._four_fifths(by_column["selection_rate_ratio"]),
            "worst_slices": self._slices_document(slices, list(values), overall, len(candidates)),
            "not_reported": self._not_reported(metrics),
        }
        return EvaluatorResult(metrics=metrics, intervals=intervals, document=document)

    def _partitions(self) -> list[_Partition]:
        sensitive = self.data.sensitive
        columns = [_column_partition(sensitive[column], self.bins) for column in sensitive.columns]
        pairs = [_intersection(a, b) for a, b in combinations(columns, 2)] if self.options["intersections"] else []
        partitions = columns + pairs
        unknown = set(self.options["reference_groups"]) - {partition.name for partition in partitions}
        if unknown:
            raise EvaluatorError(
                f"reference_groups names {', '.join(sorted(map(str, unknown)))}, which is not a sensitive column "
                f"or intersection of this benchmark ({', '.join(partition.name for partition in partitions)})"
            )
        return partitions

    def _grouping(self, partition: _Partition, rows_list, group_values, overall) -> tuple[dict, dict]:
        counts = [len(rows) for rows in rows_list]
        reference, chosen_by = self._reference(partition, counts)
        self.references[partition.name] = partition.labels[reference]
        names = self.measures.metric_names()
        groups = [
            {
                "label": label,
                "count": count,
                "share": count / self.n_rows,
                "small": count < self.min_group_size,
                "metrics": {
                    metric: _compared(values[metric], overall[metric], group_values[reference][metric])
                    for metric in names
                },
            }
            for label, count, values in zip(partition.labels, counts, group_values)
        ]
        grouping = {
            "name": partition.name,
            "columns": partition.columns,
            "kind": "column" if len(partition.columns) == 1 else "intersection",
            "reference": {"group": partition.labels[reference], "chosen_by": chosen_by},
            "groups": groups,
        }
        ranked = [position for position, count in enumerate(counts) if count >= self.min_group_size]
        if len(ranked) < 2:
            grouping["disparities"] = None
            grouping["disparities_note"] = (
                f"fewer than two groups have at least {self.min_group_size} rows, so there is no gap to measure"
            )
            return grouping, {}
        labels = [partition.labels[position] for position in ranked]
        matrices = {metric: np.array([group_values[position][metric] for position in ranked]) for metric in names}
        disparities = _disparities(self.data.task, labels, matrices)
        grouping["disparities"] = {
            key: {**_estimate(found.values), **found.groups} for key, found in disparities.items()
        }
        return grouping, disparities

    def _reference(self, partition: _Partition, counts: list[int]) -> tuple[int, str]:
        requested = self.options["reference_groups"].get(partition.name)
        if requested is not None:
            if str(requested) not in partition.labels:
                raise EvaluatorError(
                    f"the reference group {requested!r} for {partition.name} is not one of its groups "
                    f"({', '.join(partition.labels)})"
                )
            return partition.labels.index(str(requested)), "the reference_groups option"
        if len(partition.columns) == 2:
            pair = " & ".join(f"{column}={self.references[column]}" for column in partition.columns)
            if pair in partition.labels:
                return partition.labels.index(pair), "the reference groups of its columns"
        return int(np.argmax(counts)), "the largest group"

    def _slice_candidates(self) -> list[tuple[str, str, int, np.ndarray]]:
        """(column, value, count, rows) of every feature slice big enough to list. A slice of
        every row is left out: it would only repeat the overall value."""
        candidates = []
        for column in self.data.features.columns:
            partition = _column_partition(self.data.features[column], self.bins)
            for label, rows in zip(partition.labels, partition.rows()):
                if self.slice_min_size <= len(rows) < self.n_rows:
                    candidates.append((str(column), label, len(rows), rows))
        return candidates

    def _worst_slices(self, candidates) -> list[tuple[str, str, int, _GroupMetrics]]:
        """The slices with the worst primary metric on the test set; only these are resampled."""
        groups = [self.measures.for_rows(rows, with_rates=False) for *_, rows in candidates]
        points = [values[self.primary][0] for values in _resampled(groups, self.indices[:0])]
        defined = [position for position, point in enumerate(points) if np.isfinite(point)]
        sign = 1 if self.higher_is_better else -1
        # Worst first; of equally bad slices, the larger matters more.
        defined.sort(key=lambda position: (sign * points[position], -candidates[position][2]))
        worst = defined[: int(self.options["max_slices"])]
        return [(*candidates[position][:3], groups[position]) for position in worst]

    def _slices_document(self, slices, slice_values, overall, considered: int) -> dict:
        primary_overall = overall[self.primary]
        return {
            "metric": self.primary,
            "higher_is_better": self.higher_is_better,
            "min_size": self.slice_min_size,
            "considered": considered,
            "note": (
                f"each value of every text or categorical feature and each of up to {self.bins} quantile bins of "
                f"every numeric one, with at least {self.slice_min_size} rows, ranked by {self.primary}, worst "
                "first; slices on which it is undefined are skipped"
            ),
            "slices": [
                {
                    "column": column,
                    "value": label,
                    "count": count,
                    "share": count / self.n_rows,
                    self.primary: _estimate(values[self.primary]),
                    "overall": _json_float(primary_overall[0]),
                    "difference": _estimate(values[self.primary] - primary_overall),
                }
                for (column, label, count, _), values in zip(slices, slice_values)
            ],
        }

    def _four_fifths(self, ratios: dict[str, _Disparity]) -> dict | None:
        if self.data.task != "binary":
            return None
        columns = {}
        for column, found in ratios.items():
            ratio = _json_float(found.values[0])
            columns[column] = {
                "ratio": _estimate(found.values),
                **found.groups,
                "passes": None if ratio is None else ratio >= FOUR_FIFTHS,
            }
        verdicts = [entry["passes"] for entry in columns.values() if entry["passes"] is not None]
        return {
            "threshold": FOUR_FIFTHS,
            "rule": (
                "per sensitive column, the lowest group selection rate divided by the highest, over groups of "
                f"at least {self.min_group_size} rows, passes at {FOUR_FIFTHS} or more; overall passes when every "
                "column with a verdict does. A column that selects nobody, or has fewer than two such groups, "
                "has no verdict."
            ),
            "columns": columns,
            "passes": all(verdicts) if verdicts else None,
        }

    def _not_reported(self, metrics: dict) -> dict[str, str]:
        reasons = {}
        for key in CANONICAL:
            if key in metrics:
                continue
            if self.data.task == "regression" and key not in BINARY_ONLY:
                reasons[key] = "does not apply to regression; scalars has worst_group_mae and mae_gap instead"
            elif self.data.task != "binary" and key in BINARY_ONLY:
                reasons[key] = (
                    "fairlearn defines it for binary classification only: it needs one positive label to "
                    "select and to count true and false positives; the groups carry per-class rates instead"
                )
            else:
                reasons[key] = (
                    f"undefined: no sensitive column has two groups of at least {self.min_group_size} rows with a "
                    "value for it"
                )
        if self.data.task != "binary":
            reasons["four_fifths"] = "the four-fifths rule compares selection rates of a positive label: binary only"
        return reasons

    def _methodology(self) -> dict:
        # One definition for all the per-class metrics of a multiclass task.
        metrics = [re.sub(r"\[.*\]$", "[c]", metric) for metric in self.measures.metric_names()]
        defined = dict.fromkeys([*metrics, "vs_overall", "vs_reference", *DISPARITIES[self.data.task]])
        return {
            "resamples": self.data.resamples,
            "seed": self.data.seed,
            "interval": (
                "95% percentile bootstrap interval: the 2.5th and 97.5th percentiles over resamples of the test "
                "rows drawn with replacement, the same rows for every submission of this benchmark so that "
                "differences between submissions pair. A group's value on a resample is its metric over that "
                "resample's draws of the group's rows; resamples on which a value is undefined are skipped."
            ),
            "min_group_size": self.min_group_size,
            "small_groups": (
                f"groups with fewer than {self.min_group_size} rows are listed and flagged small, but left out of "
                "every worst-group, gap and four-fifths figure"
            ),
            "reference_groups": dict(self.references),
            "worst_over_columns": (
                "each scalar is the worst over the single sensitive columns, on the test set and on each "
                "resample; intersections report the same disparities in their groupings but do not feed the "
                "scalars"
            ),
            "numeric_bins": self.bins,
            "intersections": bool(self.options["intersections"]),
            "missing_values": f"a missing value forms a group, or a slice, of its own, labelled {MISSING}",
            "null_values": (
                "null marks an undefined value: a rate over no rows (the true positive rate of a group without "
                "positive rows, say), a ratio to zero, a gap with fewer than two groups to compare, or an "
                "interval that no resample defined"
            ),
            "definitions": {key: DEFINITIONS[key] for key in defined},
            "library_versions": _library_versions(),
        }


def _library_versions() -> dict[str, str | None]:
    versions = {}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _primary_metric(data: EvaluationInput) -> tuple[str, str | None]:
    """The metric groups are ranked on, and why it differs from the benchmark's, if it does."""
    requested = data.primary_metric
    if requested not in PRIMARY_METRICS[data.task]:
        raise EvaluatorError(
            f"the primary metric {requested!r} does not apply to a {data.task} task "
            f"(one of {', '.join(PRIMARY_METRICS[data.task])})"
        )
    if requested in PROBABILITY_METRICS and data.predictions.probabilities is None:
        return "accuracy", (
            f"{requested} needs predicted probabilities, which this model does not give; accuracy is used instead"
        )
    return requested, None
