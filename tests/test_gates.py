"""Gates judged with the noise, and the paired comparison of two submissions, through the API on the
real database: `?gates=` on a submission, `compare/{other_id}/` with `?max_regression=`."""

import numpy as np
import pytest

from leaderboard.comparisons import Comparison, ObjectiveDifference, paired_differences
from leaderboard.gates import regression_verdicts, regressions_parse, threshold_verdicts
from leaderboard.models import Submission
from leaderboard.ranking import Constraint
from tests.conftest import baseline_named, succeeded_submission


@pytest.fixture
def onnx(adult_baselines):
    return baseline_named(adult_baselines, "onnx:")


def stored(submission, key: str) -> np.ndarray:
    """A key's row of the submission's stored float32 matrix, read as the database holds it."""
    row = Submission.objects.get(pk=submission.pk)
    matrix = np.frombuffer(bytes(row.resamples), dtype=np.float32).reshape(len(row.resample_keys), -1)
    return matrix[row.resample_keys.index(key)]


@pytest.fixture
def pair(adult_benchmark, user, onnx):
    """Two submissions on the shared resamples: correlated noise, a few undefined resamples, an exact
    objective (size_bytes) and an objective one of them kept no resamples of (roc_auc)."""
    draws = adult_benchmark.bootstrap_resamples
    generator = np.random.default_rng(5)
    shared = generator.normal(0, 0.01, draws)  # the test rows' luck, common to both
    accuracy_a = 0.85 + shared + generator.normal(0, 0.002, draws)
    accuracy_b = 0.84 + shared + generator.normal(0, 0.002, draws)
    accuracy_a[3] = np.nan
    accuracy_b[[3, 7]] = np.nan
    log_loss_a, log_loss_b = 0.30 - shared, 0.31 - shared + generator.normal(0, 0.001, draws)
    roc_auc = 0.9 + shared

    def interval(values):
        return np.nanpercentile(values, [2.5, 97.5]).tolist()

    a = succeeded_submission(
        adult_benchmark, user, onnx, "a",
        {"accuracy": 0.85, "log_loss": 0.30, "roc_auc": 0.9, "size_bytes": 1000},
        intervals={"accuracy": interval(accuracy_a), "log_loss": interval(log_loss_a), "roc_auc": interval(roc_auc)},
        resamples={"accuracy": accuracy_a, "log_loss": log_loss_a, "roc_auc": roc_auc},
    )  # fmt: skip
    b = succeeded_submission(
        adult_benchmark, user, onnx, "b",
        {"accuracy": 0.84, "log_loss": 0.31, "roc_auc": 0.88, "size_bytes": 1500},
        intervals={"accuracy": interval(accuracy_b), "log_loss": interval(log_loss_b), "roc_auc": [0.86, 0.9]},
        resamples={"accuracy": accuracy_b, "log_loss": log_loss_b},
    )  # fmt: skip
    return Submission.objects.get(pk=a.pk), Submission.objects.get(pk=b.pk)


def test_the_compare_endpoint_gives_the_paired_differences_numpy_gives_on_the_stored_resamples(api_client, pair):
    a, b = pair
    response = api_client.get(f"/api/v1/submissions/{a.pk}/compare/{b.pk}/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["submission"]["id"] == str(a.pk) and body["reference"]["id"] == str(b.pk)
    assert body["regressions"] is None and body["benchmark"] == "adult"
    objectives = {objective["key"]: objective for objective in body["objectives"]}

    for key, sign in (("accuracy", 1.0), ("log_loss", -1.0)):
        drawn = sign * (stored(a, key).astype(float) - stored(b, key).astype(float))
        defined = drawn[np.isfinite(drawn)]
        compared = objectives[key]
        assert compared["difference"] == pytest.approx(sign * (a.metrics[key] - b.metrics[key]))
        assert compared["interval"] == pytest.approx(np.percentile(defined, [2.5, 97.5]).tolist(), abs=1e-12)
        assert compared["paired_resamples"] == defined.size
        low, high = np.percentile(defined, [2.5, 97.5])
        assert compared["significant"] is bool(low > 0 or high < 0)
        assert compared["exact"] is False and compared["note"] == ""
    assert objectives["accuracy"]["paired_resamples"] == a.benchmark.bootstrap_resamples - 2
    # The shared luck cancels: the paired interval is far narrower than either submission's own.
    own = a.intervals["accuracy"]
    paired = objectives["accuracy"]["interval"]
    assert paired[1] - paired[0] < (own[1] - own[0]) / 3
    assert objectives["accuracy"]["significant"] is True

    size = objectives["size_bytes"]
    assert size["exact"] is True and size["interval"] is None and size["difference"] == 500  # lower is better
    assert size["significant"] is True and body["exact"] == ["size_bytes"]

    # b kept no resamples of roc_auc: its point value stands on every resample, and the note says so.
    roc_auc = objectives["roc_auc"]
    expected = np.percentile(stored(a, "roc_auc").astype(float) - 0.88, [2.5, 97.5]).tolist()
    assert roc_auc["interval"] == pytest.approx(expected) and str(b.pk) in roc_auc["note"]
    assert objectives["latency_p99_ms"]["difference"] is None and "not measured" in objectives["latency_p99_ms"]["note"]


def test_a_submission_compared_with_itself_differs_by_exactly_zero_on_every_resample(api_client, pair):
    a, _ = pair
    body = api_client.get(f"/api/v1/submissions/{a.pk}/compare/{a.pk}/?max_regression=accuracy=0.001").json()
    accuracy = next(objective for objective in body["objectives"] if objective["key"] == "accuracy")
    assert accuracy["difference"] == 0 and accuracy["interval"] == [0, 0] and accuracy["significant"] is False
    (verdict,) = body["regressions"]["verdicts"]
    assert verdict["passed"] and verdict["within_noise"] is False and verdict["decided_by"] == "point"


def test_a_regression_allowance_inside_the_paired_interval_is_within_noise_and_strict_fails_it(api_client, pair):
    a, b = pair
    compared = api_client.get(f"/api/v1/submissions/{b.pk}/compare/{a.pk}/").json()
    accuracy = next(objective for objective in compared["objectives"] if objective["key"] == "accuracy")
    low = accuracy["interval"][0]
    assert low < accuracy["difference"] < 0
    allowance = -(low + accuracy["difference"]) / 2  # -allowance lies between the low end and the point

    def judged(strict: str) -> dict:
        url = f"/api/v1/submissions/{b.pk}/compare/{a.pk}/?max_regression=accuracy={allowance!r}&strict={strict}"
        response = api_client.get(url)
        assert response.status_code == 200, response.json()
        return response.json()["regressions"]

    default = judged("false")
    (verdict,) = default["verdicts"]
    assert default["passed"] and verdict["within_noise"] is True and verdict["decided_by"] == "point"
    assert "within noise" in verdict["warning"] and verdict["interval"] == accuracy["interval"]
    strict = judged("true")
    (verdict,) = strict["verdicts"]
    assert not strict["passed"] and verdict["within_noise"] is True and verdict["decided_by"] == "pessimistic bound"
    assert verdict["margin"] == pytest.approx(-allowance - low) and "pessimistic bound" in verdict["reason"]

    tight = api_client.get(f"/api/v1/submissions/{b.pk}/compare/{a.pk}/?max_regression=accuracy=0.001").json()
    (verdict,) = tight["regressions"]["verdicts"]
    assert not verdict["passed"] and verdict["within_noise"] is False and "over by" in verdict["reason"]


def test_gates_on_a_submission_say_whether_the_threshold_lies_inside_the_interval(api_client, pair):
    a, _ = pair
    low, high = a.intervals["accuracy"]
    inside = (low + a.metrics["accuracy"]) / 2
    gates = f"accuracy>={inside!r},accuracy>=0.5,size_bytes<=2000,log_loss<0.2,latency_p99_ms<=5"

    def judged(strict: str) -> dict:
        response = api_client.get(f"/api/v1/submissions/{a.pk}/", {"gates": gates, "strict": strict})
        assert response.status_code == 200, response.json()
        return response.json()["gates"]

    default = judged("0")
    noisy, far, exact, failing, unmeasured = default["verdicts"]
    assert noisy["passed"] and noisy["within_noise"] is True and noisy["decided_by"] == "point"
    assert noisy["interval"] == pytest.approx([low, high]) and "within noise" in noisy["warning"]
    assert far["passed"] and far["within_noise"] is False and far["warning"] == ""
    assert exact["passed"] and exact["within_noise"] is False and exact["decided_by"] == "exact value"
    assert exact["interval"] is None
    assert not failing["passed"] and failing["margin"] == pytest.approx(0.1) and "over by" in failing["reason"]
    assert not unmeasured["passed"] and unmeasured["reason"] == "latency_p99_ms was not measured"
    assert default["passed"] is False and default["strict"] is False

    strict = judged("1")
    noisy, far, exact = strict["verdicts"][:3]
    assert not noisy["passed"] and noisy["decided_by"] == "pessimistic bound"
    assert noisy["margin"] == pytest.approx(inside - low)
    assert far["passed"] and far["decided_by"] == "pessimistic bound" and exact["decided_by"] == "exact value"
    assert api_client.get(f"/api/v1/submissions/{a.pk}/").json()["gates"] is None


@pytest.mark.parametrize(
    "query, field, words",
    [
        ({"gates": "accuracy=>0.8"}, "gates", "gate 'accuracy=>0.8' has operator '=>'"),
        ({"gates": "accuracyy>=0.8"}, "gates", "unknown objective 'accuracyy'"),
        ({"gates": ""}, "gates", "no gate given"),
        ({"gates": "accuracy>=0.8", "strict": "ture"}, "strict", "send true or false"),
    ],
)
def test_a_gate_the_server_cannot_read_is_a_400_naming_it(api_client, pair, query, field, words):
    response = api_client.get(f"/api/v1/submissions/{pair[0].pk}/", query)
    assert response.status_code == 400
    assert words in response.json()[field][0]


def test_comparing_across_benchmarks_or_with_an_unknown_submission_is_refused_in_json(
    api_client, pair, adult_frames, onnx, user
):
    from leaderboard.demo.seeding import benchmark_from_spec
    from leaderboard.demo.synthetic import ADULT_SPEC

    a, _ = pair
    again = benchmark_from_spec({**ADULT_SPEC, "slug": "adult-again"}, *adult_frames, time_limit_seconds=60)
    elsewhere = succeeded_submission(again, user, onnx, "other", {"accuracy": 0.7})
    across = api_client.get(f"/api/v1/submissions/{a.pk}/compare/{elsewhere.pk}/")
    assert across.status_code == 400
    message = across.json()["other_id"][0]
    assert "adult-again" in message and "on adult" in message and "one benchmark" in message

    unknown = "00000000-0000-4000-8000-000000000000"
    for url in (f"/api/v1/submissions/{a.pk}/compare/{unknown}/", f"/api/v1/submissions/{unknown}/compare/{a.pk}/"):
        missing = api_client.get(url)
        assert missing.status_code == 404 and missing.json() == {"detail": f"There is no submission {unknown}."}

    for allowed, words in (("accuracy", "needs the form key=delta"), ("accuracy=-1", "finite non-negative"), ("nope=1", "nope")):
        refused = api_client.get(f"/api/v1/submissions/{a.pk}/compare/{a.pk}/", {"max_regression": allowed})
        assert refused.status_code == 400 and words in refused.json()["max_regression"][0]


def test_a_regression_of_exactly_the_allowance_passes_and_direction_decides_what_worse_means(pair):
    a, b = pair
    b.metrics = {**b.metrics, "accuracy": 0.86}  # 0.85 - 0.86 is a little more than 0.01 worse in floats
    a.resample_keys = b.resample_keys = []
    a.intervals = b.intervals = {}
    comparison = paired_differences(a, b)
    accuracy = next(objective for objective in comparison.objectives if objective.key == "accuracy")
    assert accuracy.difference == pytest.approx(-0.01)
    (verdict,) = regression_verdicts(comparison, regressions_parse("accuracy=0.01", a.benchmark), strict=False)
    assert verdict.passed

    slower = ObjectiveDifference("latency_p99_ms", False, 7.5, 5.0, -2.5, None, True, True, 0, "")
    latency = regressions_parse("latency_p99_ms=1", a.benchmark)
    (verdict,) = regression_verdicts(Comparison(a, b, comparison.resamples, [slower]), latency, strict=False)
    assert not verdict.passed and verdict.margin == pytest.approx(1.5) and "over by 1.5" in verdict.reason
    (missing,) = threshold_verdicts(a, [Constraint("latency_p50_ms", "<", 1.0)], strict=False)
    assert not missing.passed and missing.reason == "latency_p50_ms was not measured"
