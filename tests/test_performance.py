import time

import numpy as np
import pytest
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

from evaluators.performance import bootstrap_indices, performance_objectives
from evaluators.sandbox import ModelFailure, Predictions

CLASSES = ["<=50K", ">50K"]
CHECKED_RESAMPLES = range(0, 40, 3)


def binary_case(n_rows: int, seed: int = 0, skill: float = 0.35):
    """Labels and a fair classifier's scores, rounded so that many scores tie."""
    rng = np.random.default_rng(seed)
    y_true = rng.choice(CLASSES, n_rows, p=[0.75, 0.25])
    score = np.clip((y_true == ">50K") * skill + rng.normal(0.35, 0.2, n_rows), 0, 1).round(2)
    predictions = Predictions(
        labels=np.where(score > 0.5, ">50K", "<=50K"),
        probabilities=np.column_stack([1 - score, score]),
        classes=list(CLASSES),
        predict_seconds=0.01,
    )
    return y_true, predictions


def multiclass_case(n_rows: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, n_rows)
    logits = rng.normal(size=(n_rows, 3)) + 1.5 * np.eye(3)[y_true]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predictions = Predictions(
        labels=probabilities.argmax(axis=1), probabilities=probabilities, classes=[0, 1, 2], predict_seconds=0.01
    )
    return y_true, predictions


def objectives(y_true, predictions, *, task="binary", classes=CLASSES, positive_label=">50K", resamples=40, seed=3):
    return performance_objectives(
        y_true=y_true,
        predictions=predictions,
        task=task,
        classes=classes,
        positive_label=positive_label,
        resamples=resamples,
        seed=seed,
    )


def sklearn_binary(y_true, labels, probabilities, positive=">50K"):
    column = CLASSES.index(positive)
    return {
        "accuracy": accuracy_score(y_true, labels),
        "balanced_accuracy": balanced_accuracy_score(y_true, labels),
        "f1_macro": f1_score(y_true, labels, average="macro"),
        "roc_auc": roc_auc_score(y_true == positive, probabilities[:, column]),
        "log_loss": log_loss(y_true, probabilities, labels=CLASSES),
    }


def sklearn_multiclass(y_true, labels, probabilities):
    return {
        "accuracy": accuracy_score(y_true, labels),
        "balanced_accuracy": balanced_accuracy_score(y_true, labels),
        "f1_macro": f1_score(y_true, labels, average="macro"),
        "roc_auc": roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro", labels=[0, 1, 2]),
        "log_loss": log_loss(y_true, probabilities, labels=[0, 1, 2]),
    }


def sklearn_regression(y_true, y_pred):
    return {
        "rmse": root_mean_squared_error(y_true, y_pred),
        "mae": mean_absolute_error(y_true, y_pred),
        "r2": r2_score(y_true, y_pred),
    }


def test_bootstrap_indices_are_seeded_and_shaped_resamples_by_rows():
    indices = bootstrap_indices(50, resamples=7, seed=11)
    assert indices.shape == (7, 50) and indices.min() >= 0 and indices.max() < 50
    np.testing.assert_array_equal(indices, bootstrap_indices(50, resamples=7, seed=11))
    assert not np.array_equal(indices, bootstrap_indices(50, resamples=7, seed=12))


def test_binary_point_values_equal_scikit_learns_exactly():
    y_true, predictions = binary_case(2000)
    result = objectives(y_true, predictions)
    assert result["metrics"] == sklearn_binary(y_true, predictions.labels, predictions.probabilities)


def test_binary_values_on_each_resample_equal_scikit_learns():
    y_true, predictions = binary_case(2000)
    result = objectives(y_true, predictions)
    indices = bootstrap_indices(len(y_true), resamples=40, seed=3)
    for r in CHECKED_RESAMPLES:
        rows = indices[r]
        expected = sklearn_binary(y_true[rows], predictions.labels[rows], predictions.probabilities[rows])
        for key, value in expected.items():
            assert result["resample_values"][key][r] == pytest.approx(value, rel=1e-12, abs=0), key


def test_roc_auc_scores_the_positive_labels_column_even_when_it_sorts_first():
    y_true, predictions = binary_case(500)
    result = objectives(y_true, predictions, positive_label="<=50K")
    expected = roc_auc_score(y_true == "<=50K", predictions.probabilities[:, 0])
    assert result["metrics"]["roc_auc"] == expected
    # What scoring that column against sorted labels (">50K" positive) would wrongly give:
    assert roc_auc_score(y_true, predictions.probabilities[:, 0]) == pytest.approx(1 - expected)


def test_multiclass_point_and_resample_values_equal_scikit_learns():
    y_true, predictions = multiclass_case()
    result = objectives(y_true, predictions, task="multiclass", classes=[2, 0, 1], positive_label=None)
    assert result["metrics"] == sklearn_multiclass(y_true, predictions.labels, predictions.probabilities)
    indices = bootstrap_indices(len(y_true), resamples=40, seed=3)
    for r in CHECKED_RESAMPLES:
        rows = indices[r]
        expected = sklearn_multiclass(y_true[rows], predictions.labels[rows], predictions.probabilities[rows])
        for key, value in expected.items():
            assert result["resample_values"][key][r] == pytest.approx(value, rel=1e-12, abs=0), key


def test_regression_point_and_resample_values_equal_scikit_learns():
    rng = np.random.default_rng(5)
    y_true = rng.normal(200_000, 50_000, 1500)
    y_pred = y_true + rng.normal(0, 20_000, 1500)
    predictions = Predictions(labels=y_pred, probabilities=None, classes=None, predict_seconds=0.01)
    result = objectives(y_true, predictions, task="regression", classes=[], positive_label=None)
    assert result["metrics"] == sklearn_regression(y_true, y_pred)
    indices = bootstrap_indices(len(y_true), resamples=40, seed=3)
    for r in CHECKED_RESAMPLES:
        rows = indices[r]
        for key, value in sklearn_regression(y_true[rows], y_pred[rows]).items():
            assert result["resample_values"][key][r] == pytest.approx(value, rel=1e-12, abs=0), key


def test_intervals_contain_the_point_value_for_a_decent_model():
    y_true, predictions = binary_case(3000, skill=0.5)
    result = objectives(y_true, predictions, resamples=200)
    assert set(result["intervals"]) == set(result["metrics"])
    for key, (low, high) in result["intervals"].items():
        assert low < result["metrics"][key] < high, key
        assert np.percentile(result["resample_values"][key], [2.5, 97.5]).tolist() == [low, high]


def test_the_report_records_its_budget():
    y_true, predictions = binary_case(300)
    result = objectives(y_true, predictions, resamples=25, seed=9)
    assert (result["resamples"], result["seed"]) == (25, 9)
    assert all(len(values) == 25 for values in result["resample_values"].values())


def test_resamples_where_roc_auc_is_undefined_are_marked_none_and_left_out_of_the_interval():
    y_true = np.array(["<=50K"] * 9 + [">50K"])
    probabilities = np.column_stack([np.linspace(1, 0, 10), np.linspace(0, 1, 10)])
    predictions = Predictions(
        labels=np.where(probabilities[:, 1] > 0.5, ">50K", "<=50K"),
        probabilities=probabilities,
        classes=list(CLASSES),
        predict_seconds=0.01,
    )
    result = objectives(y_true, predictions, resamples=100)
    indices = bootstrap_indices(10, resamples=100, seed=3)
    with_positive = int((y_true[indices] == ">50K").any(axis=1).sum())
    assert 0 < with_positive < 100
    roc_aucs = result["resample_values"]["roc_auc"]
    assert len(roc_aucs) == 100, "kept in resample order so that submissions pair"
    defined = (y_true[indices] == ">50K").any(axis=1)
    assert [value is not None for value in roc_aucs] == defined.tolist()
    assert sum(value is not None for value in roc_aucs) == with_positive
    kept = [value for value in roc_aucs if value is not None]
    assert result["intervals"]["roc_auc"] == np.percentile(kept, [2.5, 97.5]).tolist()
    assert len(result["resample_values"]["accuracy"]) == 100


def test_without_probabilities_only_the_label_metrics_are_reported():
    y_true, predictions = binary_case(300)
    predictions.probabilities = predictions.classes = None
    result = objectives(y_true, predictions)
    assert set(result["metrics"]) == {"accuracy", "balanced_accuracy", "f1_macro"}


def test_string_labels_from_a_model_match_integer_classes_of_the_benchmark():
    y_true, predictions = multiclass_case()
    as_text = Predictions(
        labels=predictions.labels.astype(str),
        probabilities=predictions.probabilities,
        classes=["0", "1", "2"],
        predict_seconds=0.01,
    )
    result = objectives(y_true, as_text, task="multiclass", classes=[0, 1, 2], positive_label=None)
    assert result["metrics"] == sklearn_multiclass(y_true, predictions.labels, predictions.probabilities)


def test_probability_columns_are_reordered_to_the_benchmarks_classes():
    y_true, predictions = binary_case(500)
    swapped = Predictions(
        labels=predictions.labels,
        probabilities=predictions.probabilities[:, ::-1].copy(),
        classes=CLASSES[::-1],
        predict_seconds=0.01,
    )
    assert objectives(y_true, swapped) == objectives(y_true, predictions)


def test_a_label_the_benchmark_does_not_have_is_a_model_failure_that_names_it():
    y_true, predictions = binary_case(50)
    predictions.labels = predictions.labels.copy()
    predictions.labels[3] = ">50K."
    with pytest.raises(ModelFailure, match=r"not classes of this benchmark: >50K\. \(the classes are <=50K, >50K\)"):
        objectives(y_true, predictions)


def test_probabilities_missing_a_benchmark_class_are_a_model_failure():
    y_true, predictions = binary_case(50)
    predictions.classes = ["<=50K", "unknown"]
    with pytest.raises(ModelFailure, match="model gives probabilities for <=50K, unknown"):
        objectives(y_true, predictions)


def test_the_bootstrap_of_a_binary_benchmark_is_fast():
    y_true, predictions = binary_case(16_000)
    start = time.perf_counter()
    objectives(y_true, predictions, resamples=200)
    assert time.perf_counter() - start < 2
