"""The performance objectives, each with a bootstrap 95% interval.

Point values come straight from scikit-learn. The bootstrap needs the same figures on hundreds
of resamples, so it computes them from counts: a resample is a vector of how often it draws each
row, and every metric here is a function of weighted sums over rows (confusion counts, losses,
rank statistics), which one matrix product gives for a whole block of resamples. The tests hold
each vectorised figure equal to scikit-learn's on the resampled rows.
"""

import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from .base import EvaluationInput, EvaluatorResult
from .sandbox import ModelFailure, Predictions

INTERVAL_PERCENTILES = (2.5, 97.5)
# Bounds the resample-by-row weight matrix of one block to about 32 MB.
_BLOCK_CELLS = 4_000_000


def bootstrap_indices(n_rows: int, *, resamples: int, seed: int) -> np.ndarray:
    """Row indices of each resample, shape (resamples, n_rows); a benchmark reuses its seed so
    that every submission is scored on the same resamples and differences between them pair."""
    return np.random.default_rng(seed).integers(0, n_rows, size=(resamples, n_rows))


def performance_objectives(
    *,
    y_true: np.ndarray,
    predictions: Predictions,
    task: str,
    classes: Sequence,
    positive_label,
    resamples: int,
    seed: int,
) -> dict:
    y_true = np.asarray(y_true)
    indices = bootstrap_indices(len(y_true), resamples=resamples, seed=seed)
    if task == "regression":
        objectives = RegressionObjectives(y_true, predictions)
    else:
        objectives = ClassificationObjectives(y_true, predictions, task, classes, positive_label)
    metrics = objectives.point_values()
    blocks = [objectives.resample_values(weights) for weights in resample_weights(indices)]
    resample_values, intervals = {}, {}
    for key in metrics:
        values = np.concatenate([block[key] for block in blocks]) if blocks else np.empty(0)
        # Kept in resample order, None where undefined (one class only, for roc_auc), so that
        # submissions pair resample by resample; the interval skips the undefined ones.
        defined = np.isfinite(values)
        resample_values[key] = [float(value) if ok else None for value, ok in zip(values, defined)]
        if defined.any():
            intervals[key] = np.percentile(values[defined], INTERVAL_PERCENTILES).tolist()
    return {
        "metrics": metrics,
        "intervals": intervals,
        "resamples": resamples,
        "seed": seed,
        "resample_values": resample_values,
    }


def resample_weights(indices: np.ndarray) -> Iterator[np.ndarray]:
    """For each block of resamples, how many times each resample draws each row."""
    n_resamples, n_rows = indices.shape
    block_size = max(1, _BLOCK_CELLS // max(n_rows, 1))
    for start in range(0, n_resamples, block_size):
        block = indices[start : start + block_size]
        flat = (block + np.arange(len(block))[:, None] * n_rows).ravel()
        counts = np.bincount(flat, minlength=block.size)
        yield counts.reshape(block.shape).astype(np.float64)


class RegressionObjectives:
    def __init__(self, y_true: np.ndarray, predictions: Predictions):
        self.y_true = y_true.astype(np.float64)
        self.y_pred = np.asarray(predictions.labels, dtype=np.float64)

    def point_values(self) -> dict[str, float]:
        return {
            "rmse": root_mean_squared_error(self.y_true, self.y_pred),
            "mae": mean_absolute_error(self.y_true, self.y_pred),
            "r2": r2_score(self.y_true, self.y_pred),
        }

    def resample_values(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        error = self.y_pred - self.y_true
        # Centring on the full-sample mean keeps the sum-of-squares formula for each
        # resample's total variance free of cancellation.
        centred = self.y_true - self.y_true.mean()
        sums = weights @ np.column_stack([error**2, np.abs(error), centred, centred**2])
        # Rows drawn per resample: a subset's weights (a group's, a window's) need not cover every row.
        n = weights.sum(axis=1)
        squared, absolute = sums[:, 0], sums[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            total = sums[:, 3] - sums[:, 2] ** 2 / n
            r2 = np.where(total > 0, 1 - squared / total, np.nan)
            return {"rmse": np.sqrt(squared / n), "mae": absolute / n, "r2": r2}


class ClassificationObjectives:
    def __init__(self, y_true, predictions: Predictions, task, classes, positive_label):
        # scikit-learn orders labels by sorting them (and multiclass roc_auc insists on it).
        self.classes = sorted(np.asarray(classes).tolist())
        true_codes = label_codes(y_true, self.classes)
        if (true_codes < 0).any():
            raise ValueError(f"y_true holds labels that are not among the classes {self.classes}")
        pred_codes = label_codes(predictions.labels, self.classes)
        if (pred_codes < 0).any():
            unknown = sorted({str(v) for v in np.asarray(predictions.labels)[pred_codes < 0]})
            raise ModelFailure(
                f"the model predicted labels that are not classes of this benchmark: "
                f"{', '.join(unknown[:10])} (the classes are {', '.join(map(str, self.classes))})"
            )
        labels = np.asarray(self.classes)
        self.y_true, self.y_pred = labels[true_codes], labels[pred_codes]
        self.binary = task == "binary"
        if self.binary:
            self.positive = label_codes([positive_label], self.classes)[0]
            if self.positive < 0:
                raise ValueError(f"positive label {positive_label!r} is not one of {self.classes}")
        # Per row: one-hot true class, one-hot predicted class, one-hot true class if correct.
        k = len(self.classes)
        true_onehot = np.eye(k)[true_codes]
        hits = true_onehot * (true_codes == pred_codes)[:, None]
        self._count_basis = np.hstack([true_onehot, np.eye(k)[pred_codes], hits])
        self.probabilities = None
        if predictions.probabilities is not None:
            self.probabilities = _benchmark_columns(predictions, self.classes)
            # scikit-learn clips probabilities to [eps, 1 - eps] of their dtype before the log.
            eps = np.finfo(self.probabilities.dtype).eps
            chosen = self.probabilities[np.arange(len(true_codes)), true_codes]
            self._row_log_losses = -np.log(np.clip(chosen, eps, 1 - eps))
            # One-vs-rest for multiclass: macro roc_auc is the mean of one AUC per class.
            scored = [self.positive] if self.binary else range(k)
            self._roc_aucs = [
                _ResampledRocAuc(self.probabilities[:, code], true_codes == code) for code in scored
            ]

    def point_values(self) -> dict[str, float]:
        values = {
            "accuracy": accuracy_score(self.y_true, self.y_pred),
            "balanced_accuracy": balanced_accuracy_score(self.y_true, self.y_pred),
            "f1_macro": f1_score(self.y_true, self.y_pred, average="macro"),
        }
        if self.probabilities is not None:
            if self.binary:
                values["roc_auc"] = roc_auc_score(
                    self.y_true == self.classes[self.positive], self.probabilities[:, self.positive]
                )
            else:
                values["roc_auc"] = roc_auc_score(
                    self.y_true,
                    self.probabilities,
                    multi_class="ovr",
                    average="macro",
                    labels=self.classes,
                )
            with warnings.catch_warnings():
                # A float32 model's rows sum to 1 within float32 precision, which the sandbox
                # accepts; scikit-learn warns about them but computes the same loss.
                warnings.filterwarnings("ignore", message="The y_prob values do not sum to one")
                values["log_loss"] = log_loss(self.y_true, self.probabilities, labels=self.classes)
        return {key: float(value) for key, value in values.items()}

    def resample_values(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        k = len(self.classes)
        counts = weights @ self._count_basis
        true_count, pred_count, tp = counts[:, :k], counts[:, k : 2 * k], counts[:, 2 * k :]
        n = weights.sum(axis=1)
        # A subset's resample may draw none of its rows: its figures are then NaN, so skipped.
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN row
            # As in scikit-learn: recall over the classes present in y_true, and F1 over the
            # classes present in either y_true or y_pred.
            recall = np.where(true_count > 0, tp / true_count, np.nan)
            f1 = np.where(true_count + pred_count > 0, 2 * tp / (true_count + pred_count), np.nan)
            values = {
                "accuracy": tp.sum(axis=1) / n,
                "balanced_accuracy": np.nanmean(recall, axis=1),
                "f1_macro": np.nanmean(f1, axis=1),
            }
            if self.probabilities is not None:
                # NaN, so skipped, when a resample lacks a class whose AUC the metric needs.
                values["roc_auc"] = np.mean([auc(weights) for auc in self._roc_aucs], axis=0)
                values["log_loss"] = weights @ self._row_log_losses / n
        return values


def label_codes(values, classes: list) -> np.ndarray:
    """Each value's position in `classes`, or -1. Label types differ between sources (int64
    from Parquet, str from an ONNX label tensor), so text equality is the fallback."""
    values = np.asarray(values).tolist()
    by_value = {label: code for code, label in enumerate(classes)}
    codes = np.array([by_value.get(value, -1) for value in values], dtype=np.intp)
    if (codes < 0).any():
        by_text = {str(label): code for code, label in enumerate(classes)}
        codes = np.array([by_text.get(str(value), -1) for value in values], dtype=np.intp)
    return codes


def _benchmark_columns(predictions: Predictions, classes: list) -> np.ndarray:
    """The model's probability columns, reordered to the benchmark's classes."""
    model_codes = label_codes(predictions.classes, classes)
    if sorted(model_codes.tolist()) != list(range(len(classes))):
        raise ModelFailure(
            "the model's probability columns do not match this benchmark's classes: "
            f"the model gives probabilities for {', '.join(map(str, predictions.classes))}, "
            f"the benchmark's classes are {', '.join(map(str, classes))}"
        )
    order = np.argsort(model_codes)
    return np.asarray(predictions.probabilities, dtype=np.float64)[:, order]


class _ResampledRocAuc:
    """ROC AUC of one score column on weighted resamples: the chance that a positive row
    outscores a negative one, ties counting half (the area under scikit-learn's ROC curve).
    Every sum is of whole or half counts, exact in float64, so only the last division rounds."""

    def __init__(self, scores: np.ndarray, positive: np.ndarray):
        self.order = np.argsort(scores, kind="stable")
        sorted_scores = scores[self.order]
        self.tie_groups = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        self.positive = positive[self.order]

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        sorted_weights = weights[:, self.order]
        pos = np.add.reduceat(sorted_weights * self.positive, self.tie_groups, axis=1)
        neg = np.add.reduceat(sorted_weights * ~self.positive, self.tie_groups, axis=1)
        neg_below = np.cumsum(neg, axis=1) - neg
        with np.errstate(divide="ignore", invalid="ignore"):
            # 0 / 0 = NaN when the resample has no positive or no negative row.
            return (pos * (neg_below + neg / 2)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


class PerformanceEvaluator:
    """Accuracy and friends (or RMSE, MAE, R²) on the one prediction pass, with paired intervals."""

    name = "performance"
    probes = ()
    queue = "evaluate"

    def applies(self, data: EvaluationInput) -> bool:
        return True

    def probe_params(self, data: EvaluationInput) -> dict[str, dict]:
        return {}

    def evaluate(self, data: EvaluationInput) -> EvaluatorResult:
        result = performance_objectives(
            y_true=data.y_true,
            predictions=data.predictions,
            task=data.task,
            classes=data.classes,
            positive_label=data.positive_label,
            resamples=data.resamples,
            seed=data.seed,
        )
        document = {
            **result,
            "rows": len(data.y_true),
            "predict_seconds": data.predictions.predict_seconds,
            "has_probabilities": data.predictions.probabilities is not None,
        }
        return EvaluatorResult(metrics=result["metrics"], intervals=result["intervals"], document=document)
