"""A guarded benchmark (issue 13) on real components: what a submitter sees is computed on the public part only."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from leaderboard.holdout_split import public_rows
from leaderboard.models import Benchmark
from leaderboard.tables import table_from_parquet
from tests.conftest import baseline_named
from tests.test_evaluation import submit_over_http, wait_until_finished


@pytest.fixture
def guarded_benchmark(adult_benchmark):
    """The Adult test benchmark, guarded with a public part drawn as benchmark_create draws it."""
    with adult_benchmark.test_data.open("rb") as handle:
        test = table_from_parquet(handle.read())
    positions = public_rows(
        test, target_column=adult_benchmark.target_column, task=adult_benchmark.task, seed=adult_benchmark.bootstrap_seed
    )
    Benchmark.objects.filter(pk=adult_benchmark.pk).update(holdout_policy="guarded", public_rows=positions.tobytes())
    adult_benchmark.refresh_from_db()
    return adult_benchmark, test, positions


def test_a_guarded_benchmark_evaluates_the_public_rows_only(
    live_server, celery_worker, user, guarded_benchmark, adult_baselines
):
    import onnxruntime

    from leaderboard.demo.baselines import onnx_inputs

    benchmark, test, positions = guarded_benchmark
    model = baseline_named(adult_baselines, "onnx:")
    created = submit_over_http(live_server, user, benchmark, model.filename, model.data)
    body = wait_until_finished(created["url"])
    assert body["status"] == "succeeded", body["error"]
    assert set(body["reports"]) == set(benchmark.evaluators), body["report_errors"]

    public = test.iloc[positions]
    assert len(public) == round(0.3 * len(test))
    session = onnxruntime.InferenceSession(model.data, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, onnx_inputs(public[benchmark.feature_columns]))
    y = public[benchmark.target_column].to_numpy()
    positive = probabilities.astype(np.float64)[:, benchmark.class_labels.index(">50K")]
    assert body["metrics"]["accuracy"] == accuracy_score(y, labels), "the public rows' accuracy, not the whole set's"
    assert body["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(y == ">50K", positive), rel=1e-12)
    report = requests_json(body["reports"]["performance"])
    assert report["document"]["rows"] == len(public)


def requests_json(url: str) -> dict:
    import requests

    return requests.get(url, timeout=10).json()
