"""What a guarded benchmark shows while its competition runs (issue 13): released values only."""

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from leaderboard.ladder import round_to_step
from leaderboard.models import Benchmark, Submission
from leaderboard.withholding import MIN_RELEASED_GROUP_ROWS, coarse_document, release_resolution
from tests.conftest import baseline_named, succeeded_submission

RESAMPLES = 200


@pytest.fixture
def guarded(adult_benchmark):
    """The Adult test benchmark guarded on 600 public rows (positions need not be drawn here)."""
    Benchmark.objects.filter(pk=adult_benchmark.pk).update(
        holdout_policy="guarded", public_rows=np.arange(600, dtype="<i8").tobytes(), bootstrap_resamples=RESAMPLES
    )
    adult_benchmark.refresh_from_db()
    return adult_benchmark


def submit(benchmark, owner, model, name, accuracy, roc_auc, rng, *, baseline=False):
    shared = np.random.default_rng(5).normal(0, 0.015, RESAMPLES)  # the rows' luck, common to every model
    resamples = {
        "accuracy": accuracy + shared + rng.normal(0, 0.002, RESAMPLES),
        "roc_auc": roc_auc + shared + rng.normal(0, 0.002, RESAMPLES),
    }
    metrics = {"accuracy": accuracy, "roc_auc": roc_auc, "latency_p99_ms": 1.2345}
    intervals = {"accuracy": [accuracy - 0.03, accuracy + 0.03], "latency_p99_ms": [1.1, 1.4]}
    submission = succeeded_submission(
        benchmark, owner, model, name, metrics, baseline=baseline, intervals=intervals, resamples=resamples
    )
    submission.refresh_from_db()
    return submission


@pytest.fixture
def competition(guarded, adult_baselines, user):
    model = baseline_named(adult_baselines, "onnx:")
    rng = np.random.default_rng(3)
    bob = get_user_model().objects.create_user("bob", "bob@example.com", "another horse battery")
    submissions = {
        "baseline": submit(guarded, user, model, "baseline", 0.76, 0.70, rng, baseline=True),
        "a1": submit(guarded, user, model, "a1", 0.8123, 0.8871, rng),
        "a2": submit(guarded, user, model, "a2", 0.8131, 0.8890, rng),  # within noise of a1
        "a3": submit(guarded, user, model, "a3", 0.8412, 0.9012, rng),  # beyond it
        "b1": submit(guarded, bob, model, "b1", 0.8277, 0.8954, rng),
    }
    return guarded, submissions


def test_the_submission_resource_shows_what_the_ladder_released_and_rounds_the_rest(api_client, competition):
    benchmark, submissions = competition
    resolution = release_resolution(benchmark)
    assert resolution == 0.05, "1/sqrt(600) = 0.041, rounded up to 0.05"
    body = api_client.get(f"/api/v1/submissions/{submissions['a2'].pk}/").json()
    assert body["released"]["primary"]["improved"] is False
    # a2's exact accuracy (0.8131) is withheld: the released best, a1's 0.8123 (on the 1/600 grid), is shown.
    assert body["metrics"]["accuracy"] == body["released"]["primary"]["value"] == round_to_step(0.8123, 1 / 600)
    assert body["metrics"]["roc_auc"] == 0.9 and body["metrics"]["latency_p99_ms"] == 1.2345
    assert set(body["withheld"]) == {"accuracy", "roc_auc"}
    assert body["intervals"] == {"latency_p99_ms": [1.1, 1.4]}, "an interval on the exact value would pin it"
    assert Submission.objects.get(pk=submissions["a2"].pk).metrics["accuracy"] == 0.8131, "kept exactly inside"


def test_the_public_board_lists_each_submitters_released_best_by_released_utility(client, competition):
    benchmark, submissions = competition
    body = client.get(f"/api/v1/benchmarks/{benchmark.slug}/leaderboard/").json()
    listed = {entry["submission"]["name"]: entry for entry in body["entries"]}
    assert body["released"] is True
    assert set(listed) == {"baseline", "a3", "b1"}, "one row per submitter: the Ladder's best"
    for name in ("a3", "b1"):
        released = Submission.objects.get(pk=submissions[name].pk).released
        assert listed[name]["score"] == pytest.approx(released["utility"]["value"])
        assert listed[name]["metrics"]["accuracy"] == released["primary"]["value"]
        assert listed[name]["score_interval"] is None
    assert [entry["submission"]["name"] for entry in body["entries"]] == ["a3", "b1", "baseline"]
    # Another weighting scores the released values; no exact public value appears anywhere.
    other = client.get(f"/api/v1/benchmarks/{benchmark.slug}/leaderboard/?weights=roc_auc:1").json()
    assert {entry["metrics"]["roc_auc"] for entry in other["entries"]} <= {0.7, 0.9}
    page = client.get(f"/benchmarks/{benchmark.slug}/").content.decode()
    assert "0.8412" not in page and "0.9012" not in page and ">a2<" not in page


def test_gates_and_comparisons_are_judged_on_released_values(api_client, competition):
    benchmark, submissions = competition
    a2, b1 = submissions["a2"], submissions["b1"]
    gates = api_client.get(f"/api/v1/submissions/{a2.pk}/?gates=accuracy>=0.813").json()["gates"]
    verdict = gates["verdicts"][0]
    assert verdict["passed"] is False and verdict["value"] == round_to_step(0.8123, 1 / 600)
    assert verdict["reason"].startswith("released accuracy") and "guarded benchmark" in verdict["reason"]
    compared = api_client.get(f"/api/v1/submissions/{b1.pk}/compare/{a2.pk}/").json()
    accuracy = next(item for item in compared["objectives"] if item["key"] == "accuracy")
    assert accuracy["interval"] is None and accuracy["significant"] is None
    assert "withheld" in accuracy["note"]


def test_closing_releases_the_public_figures_exactly(api_client, competition):
    benchmark, submissions = competition
    Benchmark.objects.filter(pk=benchmark.pk).update(closed_at=timezone.now())
    body = api_client.get(f"/api/v1/submissions/{submissions['a2'].pk}/").json()
    assert body["metrics"]["accuracy"] == 0.8131 and body["withheld"] == []
    assert body["intervals"]["accuracy"] == [pytest.approx(0.7831), pytest.approx(0.8431)]


def test_a_coarse_report_rounds_drops_resample_values_and_blanks_small_groups():
    document = {
        "rows": 600,
        "metrics": {"accuracy": 0.8131},
        "resample_values": {"accuracy": [0.81, 0.82]},
        "groups": [
            {"label": "White", "count": 510, "share": 0.85, "metrics": {"accuracy": {"value": 0.8212, "interval": [0.79, 0.85]}}},
            {"label": "Other", "count": MIN_RELEASED_GROUP_ROWS - 1, "share": 0.08,
             "metrics": {"accuracy": {"value": 0.6734, "interval": [0.5, 0.8]}}},
        ],
    }
    coarse = coarse_document(document, 0.05)
    assert coarse["rows"] == 600 and coarse["metrics"] == {"accuracy": 0.8} and "resample_values" not in coarse
    assert coarse["groups"][0]["metrics"]["accuracy"] == {"value": 0.8, "interval": [0.8, 0.85]}
    small = coarse["groups"][1]
    assert small["metrics"]["accuracy"] == {"value": None, "interval": [None, None]}
    assert small["count"] == MIN_RELEASED_GROUP_ROWS - 1 and "withheld" in small


def test_the_holdout_budget_counts_ladder_steps_and_reports_and_its_cap_refuses_more(
    api_client, client, user, competition, adult_baselines
):
    benchmark, submissions = competition
    body = api_client.get(f"/api/v1/submissions/{submissions['a3'].pk}/").json()
    budget = body["holdout_budget"]
    utility_steps = sum(Submission.objects.get(pk=submissions[n].pk).released["utility"]["improved"] for n in ("a1", "a2", "a3"))
    assert budget["ladder_steps"] == {"primary": 2, "utility": utility_steps}, "a1 and a3 moved the primary ladder"
    assert budget["reports"] == 3 and budget["used"] == 5 + utility_steps and budget["cap"] is None
    client.force_login(user)
    page = client.get(f"/benchmarks/{benchmark.slug}/").content.decode()
    assert f"Your holdout budget: {budget['used']} releases of information" in page

    Benchmark.objects.filter(pk=benchmark.pk).update(holdout_budget=budget["used"])
    model = baseline_named(adult_baselines, "onnx:")
    from django.core.files.uploadedfile import SimpleUploadedFile

    refused = api_client.post(
        f"/api/v1/benchmarks/{benchmark.slug}/submissions/",
        {"artifact": SimpleUploadedFile(model.filename, model.data), "name": "one more"},
        format="multipart",
    )
    assert refused.status_code == 409, refused.content
    assert f"caps each submitter at {budget['used']}" in refused.json()["detail"]
    assert not Submission.objects.filter(name="one more").exists()
    # Another submitter has a budget of their own.
    assert api_client.get(f"/api/v1/submissions/{submissions['b1'].pk}/").json()["holdout_budget"]["used"] >= 2


def test_the_admin_lists_each_submitters_ladders(client, competition):
    benchmark, _ = competition
    staff = get_user_model().objects.create_superuser("owner", "owner@example.com", "a staff horse battery")
    client.force_login(staff)
    page = client.get("/admin/leaderboard/ladderentry/")
    assert page.status_code == 200 and "bob" in page.content.decode()
    assert client.get("/admin/leaderboard/privatescore/").status_code == 200
