"""Classifiers that predict one class on every row, or NaN, run end to end through the sandbox
(issue 12).

A constant model is a valid model, the baseline every other is measured against: its classes are
the ones it declares (skl2onnx's classlabels_* attributes, ZipMap's keys) or, for a graph that
declares none, one per column of its probability output, never only the classes it predicted.
NaN probabilities are the model's fault and are refused with a message that says NaN: every
probability-based objective (ROC AUC, log loss) and the explainer need them, and labels alone
would rank the model on half its objectives.
"""

import numpy as np
import pytest
from onnx import TensorProto, helper

from evaluators.performance import performance_objectives
from evaluators.sandbox import Limits, ModelFailure, predict_in_sandbox
from tests import model_factories as factories

GENEROUS = Limits(memory_bytes=2 * 2**30, cpu_seconds=60, wall_seconds=60)


def softmax_classifier(first_column: float) -> bytes:
    """What a network exported from PyTorch looks like: probabilities from arithmetic on 'age'
    (here always [first_column, 1 - first_column]) and the label as their ArgMax; no class names."""
    nodes = [
        helper.make_node("Mul", ["age", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "first"], ["p0"]),
        helper.make_node("Sub", ["one", "p0"], ["p1"]),
        helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    initializers = [
        factories.constant("zero", 0.0),
        factories.constant("one", 1.0),
        factories.constant("first", first_column),
    ]
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
        factories.float_output("probabilities", shape=(None, 2)),
    ]
    model = factories.graph_model(nodes, [factories.column_input()], outputs, initializers=initializers)
    return model.SerializeToString()


def constant_logistic(features, labels, *, zipmap: bool) -> bytes:
    """skl2onnx's export of a logistic regression with no weights and a huge intercept: '<=50K' always."""
    model = factories.numeric_logistic(features, labels)
    model.coef_[:] = 0.0
    model.intercept_[:] = -50.0
    return factories.onnx_from_numeric_model(model, features, zipmap=zipmap)


def predict(tmp_path, data: bytes, features, *, task="binary"):
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    return predict_in_sandbox(
        artifact_path=str(path), artifact_format="onnx", features=features, task=task,
        skops_trusted=factories.DEFAULT_TRUSTED, limits=GENEROUS,
    )


@pytest.fixture(scope="module")
def census():
    return factories.census(n_rows=400, seed=3)


@pytest.mark.parametrize("zipmap", [True, False], ids=["zipmap", "tensor"])
def test_a_constant_skl2onnx_classifier_is_evaluated_with_the_majority_share(tmp_path, census, zipmap):
    features, labels = census
    predictions = predict(tmp_path, constant_logistic(features, labels, zipmap=zipmap), features)
    assert set(predictions.labels) == {"<=50K"}
    assert predictions.classes == ["<=50K", ">50K"]
    measured = performance_objectives(
        y_true=labels, predictions=predictions, task="binary", classes=["<=50K", ">50K"],
        positive_label=">50K", resamples=20, seed=1,
    )["metrics"]
    assert measured["accuracy"] == pytest.approx(np.mean(labels == "<=50K"))
    assert measured["balanced_accuracy"] == pytest.approx(0.5)
    assert measured["roc_auc"] == pytest.approx(0.5)


def test_a_constant_network_without_class_names_has_a_class_per_probability_column(tmp_path, census):
    features, labels = census
    binary = np.where(labels == ">50K", 1, 0)
    predictions = predict(tmp_path, softmax_classifier(0.9), features[["age"]].astype(np.float32))
    assert set(predictions.labels.tolist()) == {0}
    assert predictions.classes == [0, 1]
    measured = performance_objectives(
        y_true=binary, predictions=predictions, task="binary", classes=[0, 1], positive_label=1,
        resamples=20, seed=1,
    )["metrics"]
    assert measured["accuracy"] == pytest.approx(np.mean(binary == 0))
    assert measured["roc_auc"] == pytest.approx(0.5)


def test_nan_probabilities_are_refused_as_the_models_fault_naming_nan(tmp_path, census):
    features, _ = census
    with pytest.raises(ModelFailure) as failed:
        predict(tmp_path, softmax_classifier(float("nan")), features[["age"]].astype(np.float32))
    assert str(failed.value) == f"the model predicted NaN probabilities for {len(features)} of {len(features)} rows"


def test_columns_the_model_does_not_name_and_its_labels_cannot_are_refused_saying_so():
    from evaluators.model_runner import ModelOutputUnclear, _column_classes

    assert _column_classes((5, 3), np.array([2, 2, 2])) == [0, 1, 2]
    assert _column_classes((5, 2), np.array(["no", "yes", "no"])) == ["no", "yes"]
    with pytest.raises(ModelOutputUnclear, match="has 2 columns but the model does not say which class each is"):
        _column_classes((5, 2), np.array(["no", "no"]))
