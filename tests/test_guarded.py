"""A guarded benchmark (issue 13) on real components: what a submitter sees is computed on the public part only."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from leaderboard.holdout_split import public_rows
from leaderboard.models import Benchmark, Submission
from leaderboard.withholding import release_resolution
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
    stored = Submission.objects.get(pk=body["id"])
    assert stored.metrics["accuracy"] == accuracy_score(y, labels), "the public rows' accuracy, not the whole set's"
    assert stored.metrics["roc_auc"] == pytest.approx(roc_auc_score(y == ">50K", positive), rel=1e-12)
    # What the submitter is shown: the Ladder's first release (the accuracy on the 1/600 grid), the rest rounded.
    assert body["metrics"]["accuracy"] == body["released"]["primary"]["value"]
    assert body["metrics"]["accuracy"] == pytest.approx(round(stored.metrics["accuracy"] * 600) / 600)
    resolution = release_resolution(benchmark)
    for key in body["withheld"]:
        if key != "accuracy" and body["metrics"][key] is not None:
            assert body["metrics"][key] == pytest.approx(round(body["metrics"][key] / resolution) * resolution)
    assert {"accuracy", "roc_auc", "log_loss", "demographic_parity_difference"} <= set(body["withheld"])
    assert not set(body["intervals"]) & set(body["withheld"])
    report = requests_json(body["reports"]["performance"])
    assert report["document"]["rows"] == len(public)
    assert "resample_values" not in report["document"]
    fairness = requests_json(body["reports"]["fairness"])["document"]
    small = [group for grouping in fairness["groupings"] for group in grouping["groups"] if group["count"] < 50]
    assert small and all(group["withheld"] and group["metrics"]["accuracy"]["value"] is None for group in small)

    # Every page and download of it answers, and none holds the exact public figures (the
    # accuracy's first release is exact: a share of 600 rows is on the Ladder's 1/600 grid).
    import requests

    exact = [f"{stored.metrics[key]:.4f}" for key in ("roc_auc", "log_loss", "balanced_accuracy")]
    base = f"{live_server.url}/submissions/{body['id']}"
    for path in ("/", "/body/", "/reports.json", "/fairness/", "/fairness.json", "/fairness.md"):
        answer = requests.get(base + path, timeout=30)
        assert answer.status_code == 200, (path, answer.text[:300])
        assert not [text for text in exact if text in answer.text], path
    board = requests.get(f"{live_server.url}/benchmarks/{benchmark.slug}/", timeout=30)
    assert board.status_code == 200 and not [text for text in exact if text in board.text]


def requests_json(url: str) -> dict:
    import requests

    return requests.get(url, timeout=10).json()


def ladder_submission(benchmark, owner, model, name, value, shared, spread, rng):
    """A succeeded submission whose primary metric is `value`, on resamples sharing `shared` noise."""
    from tests.conftest import succeeded_submission

    key = benchmark.primary_metric
    own = value + shared + rng.normal(0, spread, shared.size)
    submission = succeeded_submission(benchmark, owner, model, name, {key: value}, resamples={key: own})
    submission.refresh_from_db()
    return submission.released["primary"]


def test_the_ladder_releases_a_new_score_only_beyond_one_standard_error_per_submitter(
    guarded_benchmark, adult_baselines, user
):
    from django.contrib.auth import get_user_model

    from leaderboard.models import LadderEntry

    benchmark, _, positions = guarded_benchmark
    assert benchmark.primary_metric == "accuracy" and len(positions) == 600
    model = baseline_named(adult_baselines, "onnx:")
    rng = np.random.default_rng(11)
    shared = rng.normal(0, 0.01, benchmark.bootstrap_resamples)  # the luck of the rows, common to all

    first = ladder_submission(benchmark, user, model, "a", 0.80, shared, 0.001, rng)
    assert first["improved"] and first["value"] == 0.8 and first["steps"] == 1
    # 0.001 better, with paired differences spread about 0.0014: within noise, the 0.8 is released again.
    within = ladder_submission(benchmark, user, model, "b", 0.801, shared, 0.001, rng)
    assert not within["improved"] and within["value"] == 0.8 and within["steps"] == 1
    assert within["reason"].startswith("no significant improvement") and 0.001 < within["threshold"] < 0.002
    # 0.81 is 600 * 0.81 = 486 public rows' worth: released as it is.
    beyond = ladder_submission(benchmark, user, model, "c", 0.81, shared, 0.001, rng)
    assert beyond["improved"] and beyond["value"] == pytest.approx(0.81) and beyond["steps"] == 2

    other = get_user_model().objects.create_user("bob", "bob@example.com", "another horse battery")
    assert ladder_submission(benchmark, other, model, "d", 0.805, shared, 0.001, rng)["improved"], "a ladder each"
    entry = LadderEntry.objects.get(benchmark=benchmark, owner=user, target="primary")
    assert (entry.steps, entry.submissions, entry.best) == (2, 3, pytest.approx(0.81))


def test_an_open_benchmark_releases_through_no_ladder(adult_benchmark, adult_baselines, user):
    from leaderboard.models import LadderEntry
    from tests.conftest import succeeded_submission

    model = baseline_named(adult_baselines, "onnx:")
    submission = succeeded_submission(adult_benchmark, user, model, "open", {"accuracy": 0.8})
    submission.refresh_from_db()
    assert submission.released == {} and not LadderEntry.objects.exists()
