import tempfile

import numpy as np
import onnxruntime
import pandas as pd
import pytest

from evaluators.sandbox import Limits, ModelFailure, predict_in_sandbox
from tests import model_factories as factories

GENEROUS = Limits(memory_bytes=2 * 2**30, cpu_seconds=60, wall_seconds=60)


@pytest.fixture(scope="module")
def census():
    return factories.census(n_rows=300, seed=1)


def predict(tmp_path, data: bytes, features: pd.DataFrame, *, artifact_format="onnx", task="binary", limits=GENEROUS):
    path = tmp_path / f"model.{artifact_format}"
    path.write_bytes(data)
    return predict_in_sandbox(
        artifact_path=str(path),
        artifact_format=artifact_format,
        features=features,
        task=task,
        skops_trusted=factories.DEFAULT_TRUSTED,
        limits=limits,
    )


def failure(tmp_path, data: bytes, features: pd.DataFrame, **options) -> str:
    with pytest.raises(ModelFailure) as failed:
        predict(tmp_path, data, features, **options)
    return str(failed.value)


def ages(*values) -> pd.DataFrame:
    return pd.DataFrame({"age": np.asarray(values, dtype=np.float64)})


@pytest.mark.parametrize(
    "build", [factories.logistic_pipeline, factories.random_forest, factories.hist_gradient_boosting]
)
def test_skops_predictions_equal_the_models_own(tmp_path, census, build):
    features, labels = census
    model = build(features, labels)
    result = predict(tmp_path, factories.skops_bytes(model), features, artifact_format="skops")
    np.testing.assert_array_equal(result.labels, model.predict(features))
    np.testing.assert_array_equal(result.probabilities, model.predict_proba(features))
    assert result.classes == model.classes_.tolist() == ["<=50K", ">50K"]
    assert result.labels.dtype.kind == "U" and result.predict_seconds > 0


@pytest.mark.parametrize("zipmap", [True, False])
def test_onnx_pipeline_predictions_equal_onnxruntimes_with_a_column_per_input(tmp_path, census, zipmap):
    features, labels = census
    model = factories.logistic_pipeline(features, labels)
    data = factories.onnx_from_pipeline(model, features, zipmap=zipmap)
    result = predict(tmp_path, data, features)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = {
        "age": features[["age"]].to_numpy(np.float32),
        "hours_per_week": features[["hours_per_week"]].to_numpy(np.float32),
        "education": features[["education"]].to_numpy(object),
        "occupation": features[["occupation"]].to_numpy(object),
    }
    expected_labels, expected_probabilities = session.run(None, feeds)
    if zipmap:
        expected_probabilities = [[row["<=50K"], row[">50K"]] for row in expected_probabilities]
    np.testing.assert_array_equal(result.labels, expected_labels)
    np.testing.assert_array_equal(result.probabilities, np.asarray(expected_probabilities, np.float64))
    assert result.classes == ["<=50K", ">50K"]
    np.testing.assert_allclose(result.probabilities, model.predict_proba(features), atol=1e-5)


def test_onnx_single_float_input_gets_the_numeric_columns_in_order(tmp_path, census):
    features, labels = census
    model = factories.numeric_logistic(features, labels)
    result = predict(tmp_path, factories.onnx_from_numeric_model(model, features, zipmap=False), features)
    numeric = features[factories.NUMERIC].to_numpy(np.float32)
    np.testing.assert_array_equal(result.labels, model.predict(numeric))
    # Without a ZipMap the class order comes from the graph's LinearClassifier node.
    assert result.classes == ["<=50K", ">50K"]
    np.testing.assert_allclose(result.probabilities, model.predict_proba(numeric), atol=1e-5)


def test_onnx_regression_predictions_are_floats_one_per_row(tmp_path, census):
    features, _ = census
    target = features.age * 2.0 + features.hours_per_week
    model = factories.numeric_linear_regression(features, target)
    result = predict(tmp_path, factories.onnx_from_numeric_model(model, features), features, task="regression")
    assert result.labels.shape == (len(features),) and result.labels.dtype == np.float64
    assert result.probabilities is None and result.classes is None
    np.testing.assert_allclose(result.labels, target, rtol=1e-4)


def test_a_model_predicting_nan_fails_and_counts_the_rows(tmp_path):
    message = failure(tmp_path, factories.square_root_regressor(), ages(4, -1, 9, -2), task="regression")
    assert message == "the model predicted NaN for 2 of 4 rows"


def test_a_model_returning_the_wrong_number_of_rows_fails(tmp_path):
    message = failure(tmp_path, factories.first_three_rows_regressor(), ages(*range(10)), task="regression")
    assert message == "the model returned 3 predictions for 10 rows"


def test_probabilities_that_do_not_sum_to_one_fail(tmp_path):
    message = failure(tmp_path, factories.threshold_classifier(), ages(0.2, 0.5, 0.7))
    assert message == "the model's probabilities do not sum to 1 for 2 of 3 rows (row 0 sums to 0.4)"


def test_probabilities_with_a_column_per_unknown_class_fail(tmp_path):
    # The graph names no classes, so its three columns are three classes (labels 0 and 1 index
    # them), not the two it happened to predict; its rows (3 x age) are then no distribution.
    message = failure(tmp_path, factories.threshold_classifier(probability_columns=3), ages(0.2, 0.7))
    assert message == "the model's probabilities do not sum to 1 for 2 of 2 rows (row 0 sums to 0.6)"


def test_an_onnx_input_that_matches_no_column_is_explained(tmp_path, census):
    message = failure(tmp_path, factories.regressor_reading("salary"), census[0], task="regression")
    assert "The model expects: salary (tensor(float))" in message
    assert "The benchmark's feature columns are: age, hours_per_week, education, occupation" in message
    assert "Missing from the benchmark: salary." in message
    assert "Not used by the model: age, hours_per_week, education, occupation." in message
    assert "As a single 2-D float input, salary takes 1 numeric features per row, but the benchmark has 2." in message
    assert "numeric features in this order: age, hours_per_week" in message


def test_an_error_raised_while_predicting_is_reported_with_its_type(tmp_path):
    message = failure(tmp_path, factories.reshaping_regressor(7), ages(*range(10)), task="regression")
    assert message.startswith("the model failed while predicting: Fail: [ONNXRuntimeError]")
    assert "Reshape" in message and len(message) <= 500


def test_a_skops_model_asking_for_missing_columns_fails_while_predicting(tmp_path, census):
    features, labels = census
    model = factories.logistic_pipeline(features, labels)
    without_education = features.drop(columns="education")
    message = failure(tmp_path, factories.skops_bytes(model), without_education, artifact_format="skops")
    assert message.startswith("the model failed while predicting: ValueError:")
    assert "education" in message


def test_a_skops_type_outside_the_allowlist_fails_while_loading(tmp_path, census):
    path = tmp_path / "model.skops"
    path.write_bytes(factories.skops_bytes(factories.random_forest(*census)))
    with pytest.raises(ModelFailure) as failed:
        predict_in_sandbox(
            artifact_path=str(path),
            artifact_format="skops",
            features=census[0],
            task="binary",
            skops_trusted=[],
            limits=GENEROUS,
        )
    message = str(failed.value)
    assert message.startswith("the model failed while loading the model: UntrustedTypesFoundException")


def test_a_crafted_tree_that_crashes_the_process_fails_only_its_evaluation(tmp_path):
    message = failure(
        tmp_path,
        factories.crashing_tree_skops(),
        pd.DataFrame({"age": [1.0, 2.0], "hours_per_week": [3.0, 4.0]}),
        artifact_format="skops",
    )
    assert message == "the model process crashed (signal SIGSEGV)"


def test_a_model_that_never_finishes_is_stopped_at_the_wall_clock_limit_and_cleaned_up(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    limits = Limits(memory_bytes=2 * 2**30, cpu_seconds=60, wall_seconds=2.5)
    message = failure(tmp_path, factories.endless_loop_regressor(), ages(1, 2), task="regression", limits=limits)
    assert message == "the model did not finish within 2.5 s (wall-clock limit)"
    assert list(scratch.iterdir()) == []


def test_a_model_that_keeps_the_cpu_busy_is_stopped_at_the_cpu_limit(tmp_path):
    limits = Limits(memory_bytes=2 * 2**30, cpu_seconds=2, wall_seconds=60)
    message = failure(tmp_path, factories.endless_loop_regressor(), ages(1, 2), task="regression", limits=limits)
    assert message == "the model process used more than 2 s of CPU time (CPU limit)"


def test_a_model_that_outgrows_the_memory_limit_fails_while_it_fits_on_fewer_rows(tmp_path):
    limits = Limits(memory_bytes=1024 * 2**20, cpu_seconds=60, wall_seconds=60)
    data = factories.memory_hungry_regressor(floats_per_row=25_000_000)  # 100 MB per row
    fits = predict(tmp_path, data, ages(1.0), task="regression", limits=limits)
    np.testing.assert_allclose(fits.labels, [25_000_000.0])
    message = failure(tmp_path, data, ages(*range(40)), task="regression", limits=limits)
    assert message == "the model process ran out of its 1024 MB memory limit"


def run_with_probes(tmp_path, data: bytes, features: pd.DataFrame, seen: list, artifact_format="skops"):
    from evaluators.sandbox import run_in_sandbox

    path = tmp_path / f"model.{artifact_format}"
    path.write_bytes(data)
    return run_in_sandbox(
        artifact_path=str(path),
        artifact_format=artifact_format,
        features=features,
        task="binary",
        skops_trusted=factories.DEFAULT_TRUSTED,
        limits=GENEROUS,
        probes={"inspect": {}},
        on_probe=seen.append,
    )


@pytest.mark.parametrize("server", ["1", "0"])
def test_both_ways_of_starting_a_model_process_predict_alike_and_say_when_a_probe_starts(
    tmp_path, census, monkeypatch, server
):
    from evaluators.sandbox import FORK_SERVER_VARIABLE, ModelServer

    monkeypatch.setenv(FORK_SERVER_VARIABLE, server)
    features, labels = census
    model = factories.logistic_pipeline(features, labels)
    seen = []
    run = run_with_probes(tmp_path, factories.skops_bytes(model), features, seen)
    np.testing.assert_array_equal(run.predictions.labels, model.predict(features))
    assert seen == ["inspect"] and run.probes["inspect"].error is None
    assert run.isolation["network"]["summary"].startswith("network:")
    if server == "1":
        assert ModelServer._servers["skops"].process.poll() is None


def test_the_model_server_is_kept_its_model_processes_are_not_and_a_dead_one_is_replaced(tmp_path, census):
    import os

    from evaluators.sandbox import ModelServer

    features, labels = census
    data = factories.skops_bytes(factories.logistic_pipeline(features, labels))
    for attempt in range(2):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        assert run_with_probes(folder, data, features, []).probes["inspect"].error is None
    server = ModelServer.for_format("skops")
    assert server.process.poll() is None, "kept for the next model"
    # Each model ran in a process of its own, which has ended: only the server is left.
    children = [int(pid) for pid in open(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read().split()]
    assert children == []
    os.kill(server.process.pid, 9)
    server.process.wait()
    assert ModelServer.for_format("skops").process.poll() is None, "a dead server is replaced"


def test_a_running_probes_progress_is_heard_when_it_changes(tmp_path):
    from evaluators.probes import probe_files
    from evaluators.sandbox import _ProbeWatch

    heard = []
    watch = _ProbeWatch(tmp_path, ["inspect", "latency"], None, lambda name, fraction: heard.append((name, fraction)))
    watch()
    assert heard == []  # nothing started
    probe_files(tmp_path, "inspect").started.touch()
    probe_files(tmp_path, "latency").started.touch()
    watch()
    assert heard == []  # latency runs now, and has said nothing yet
    for fraction in ("0.2500", "0.2500", "0.7500", "garbage", "1.0000"):
        probe_files(tmp_path, "latency").progress.write_text(fraction)
        watch()
    assert heard == [("latency", 0.25), ("latency", 0.75), ("latency", 1.0)]


def test_the_latency_probe_reports_its_blocks_through_the_sandbox(tmp_path, census):
    from evaluators.sandbox import run_in_sandbox
    from tests.test_latency import SMALL_BUDGET

    features, labels = census
    path = tmp_path / "model.skops"
    path.write_bytes(factories.skops_bytes(factories.logistic_pipeline(features, labels)))
    heard = []
    run = run_in_sandbox(
        artifact_path=str(path),
        artifact_format="skops",
        features=features,
        task="binary",
        skops_trusted=factories.DEFAULT_TRUSTED,
        limits=GENEROUS,
        predict=False,
        probes={"latency": SMALL_BUDGET},
        on_progress=lambda name, fraction: heard.append(fraction),
    )
    assert run.probes["latency"].error is None
    assert heard and heard == sorted(heard) and heard[-1] == 1.0
