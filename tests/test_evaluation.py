"""End to end on real components: HTTP upload, a Celery worker process over Redis, PostgreSQL."""

import signal
from datetime import timedelta

import numpy as np
import onnx
import onnxruntime
import pytest
import requests
from django.utils import timezone
from onnx import TensorProto, helper
from rest_framework.authtoken.models import Token
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss, roc_auc_score

from leaderboard.demo.baselines import onnx_inputs
from leaderboard.models import Submission
from leaderboard.services import submissions_sweep
from tests.conftest import baseline_named, wait_for, worker_kill, worker_start


def submit_over_http(live_server, user, benchmark, filename, data, name="model"):
    token = Token.objects.get_or_create(user=user)[0].key
    response = requests.post(
        f"{live_server.url}/api/v1/benchmarks/{benchmark.slug}/submissions/",
        headers={"Authorization": f"Token {token}"},
        files={"artifact": (filename, data)},
        data={"name": name},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()


def wait_until_finished(url: str, timeout: float = 120.0) -> dict:
    def finished():
        body = requests.get(url, timeout=10).json()
        return body if body["status"] in ("succeeded", "failed") else None

    return wait_for(finished, timeout=timeout, interval=0.25, what=f"{url} to finish")


def test_an_onnx_model_posted_over_http_is_evaluated_and_its_numbers_equal_sklearns(
    live_server, celery_worker, user, adult_benchmark, adult_baselines, adult_frames
):
    model = baseline_named(adult_baselines, "onnx:")
    created = submit_over_http(live_server, user, adult_benchmark, model.filename, model.data)
    body = wait_until_finished(created["url"])
    assert body["status"] == "succeeded", body["error"]
    assert body["progress"] == 1.0 and body["started_at"] and body["finished_at"]

    stored = Submission.objects.get(pk=created["id"])
    assert stored.status == "succeeded" and stored.metrics == body["metrics"]

    _, test = adult_frames
    session = onnxruntime.InferenceSession(model.data, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, onnx_inputs(test[adult_benchmark.feature_columns]))
    # Holdout measures in float64 whatever precision the model answers in.
    probabilities = probabilities.astype(np.float64)
    y = test["income"].to_numpy()
    positive = probabilities[:, adult_benchmark.class_labels.index(">50K")]
    assert body["metrics"]["accuracy"] == accuracy_score(y, labels)
    assert body["metrics"]["balanced_accuracy"] == balanced_accuracy_score(y, labels)
    assert body["metrics"]["f1_macro"] == f1_score(y, labels, average="macro")
    assert body["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(y == ">50K", positive), rel=1e-12)
    with pytest.warns(UserWarning, match="do not sum to one"):
        expected_log_loss = log_loss(y, probabilities, labels=adult_benchmark.class_labels)
    assert body["metrics"]["log_loss"] == pytest.approx(expected_log_loss, rel=1e-12)
    for key, (low, high) in body["intervals"].items():
        assert low <= body["metrics"][key] <= high, key

    report = requests.get(body["reports"]["performance"], timeout=10).json()
    assert report["document"]["metrics"].items() <= body["metrics"].items()
    assert set(body["reports"]) == set(adult_benchmark.evaluators), body["report_errors"]

    board = requests.get(f"{live_server.url}/api/v1/benchmarks/{adult_benchmark.slug}/leaderboard/", timeout=10).json()
    assert [entry["submission"]["id"] for entry in board["entries"]] == [created["id"]]


def onnx_with_inputs(names: list[str]) -> bytes:
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1]) for name in names]
    output = helper.make_tensor_value_info("label", TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph([helper.make_node("Identity", [names[0]], ["label"])], "g", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_models_that_do_not_fit_the_benchmark_fail_with_errors_that_say_why(
    live_server, celery_worker, user, adult_benchmark
):
    wrong_inputs = submit_over_http(
        live_server, user, adult_benchmark, "wrong.onnx", onnx_with_inputs(["salary", "age"]), name="wrong"
    )
    body = wait_until_finished(wrong_inputs["url"])
    assert body["status"] == "failed"
    assert "salary" in body["error"] and body["stage"] == "predicting"
    assert Submission.objects.get(pk=wrong_inputs["id"]).fault == "model"


def test_a_worker_killed_mid_evaluation_does_not_lose_the_submission(
    live_server, transactional_db, broker, user, adult_benchmark, adult_baselines
):
    from django.db import connection

    worker = worker_start(connection.settings_dict["NAME"])
    model = baseline_named(adult_baselines, "Random forest")
    created = submit_over_http(live_server, user, adult_benchmark, model.filename, model.data)
    wait_for(
        lambda: Submission.objects.filter(pk=created["id"], status="running").exists(),
        timeout=60,
        interval=0.02,
        what="the evaluation to start",
    )
    worker_kill(worker, signal.SIGKILL)
    stuck = Submission.objects.get(pk=created["id"])
    assert stuck.status == "running" and stuck.attempts == 1

    # The deadline is the benchmark's time limit; move it instead of waiting that long.
    Submission.objects.filter(pk=stuck.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    assert submissions_sweep() == {"requeued": 1, "failed": 0}
    assert Submission.objects.get(pk=stuck.pk).status == "queued"

    replacement = worker_start(connection.settings_dict["NAME"])
    try:
        body = wait_until_finished(created["url"])
    finally:
        worker_kill(replacement, signal.SIGTERM)
    assert body["status"] == "succeeded", body["error"]
    assert Submission.objects.get(pk=stuck.pk).attempts == 2
