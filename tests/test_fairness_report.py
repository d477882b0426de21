"""The reviewers' fairness report, on two Adult baselines evaluated once by a real Celery worker.

The evaluation is the slow part, so it runs once per module: the benchmark and submissions are
committed outside the per-test transactions and removed at the end. Each test then reads them in
its own rolled-back transaction, so the error paths may change them freely.
"""

import json

import pytest
from django.utils.html import escape

from leaderboard.fairness_report import (
    SECTION_TITLES,
    FairnessReportUnavailable,
    fairness_comparison,
    fairness_report,
    fairness_report_markdown,
    interval_text,
)
from leaderboard.models import Benchmark, Submission
from leaderboard.resolution import separation_figures
from leaderboard.templatetags.holdout import metric
from tests.conftest import baseline_named, quick, wait_for, worker_kill, worker_start

EVALUATED = ("Gradient boosting", "Logistic regression")


@pytest.fixture(scope="module")
def evaluated(django_db_setup, django_db_blocker, adult_frames, adult_baselines):
    """{name: Submission} of two baselines the real worker evaluated on the Adult slice."""
    import redis
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    from leaderboard.demo.seeding import benchmark_from_spec
    from leaderboard.demo.synthetic import ADULT_SPEC
    from leaderboard.services import submission_create

    with django_db_blocker.unblock():
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
        owner = get_user_model().objects.create_user("fairness-reviewer")
        benchmark = quick(benchmark_from_spec(ADULT_SPEC, *adult_frames, time_limit_seconds=120))
        # Only what the report reads: no latency phase to wait for.
        benchmark.evaluators = ["performance", "fairness", "interpretability"]
        benchmark.save(update_fields=["evaluators"])
        worker = worker_start(connection.settings_dict["NAME"])
        try:
            submissions = {}
            for name in EVALUATED:
                model = baseline_named(adult_baselines, f"skops:{name}")
                submissions[name], _ = submission_create(
                    benchmark=benchmark, owner=owner, name=name, artifact=model.data, artifact_filename=model.filename
                )
            for submission in submissions.values():
                wait_for(
                    lambda: Submission.objects.get(pk=submission.pk).is_finished,
                    timeout=180,
                    what=f"{submission.name} to be evaluated",
                )
        finally:
            worker_kill(worker)
        for name, submission in submissions.items():
            submission.refresh_from_db()
            assert submission.status == "succeeded", submission.error
            errors = dict(submission.reports.exclude(error="").values_list("evaluator", "error"))
            assert not errors, errors
        yield submissions
        Submission.objects.filter(benchmark=benchmark).delete()
        benchmark.delete()
        owner.delete()


@pytest.fixture
def boosting(db, evaluated):
    return Submission.objects.select_related("benchmark", "owner").get(pk=evaluated["Gradient boosting"].pk)


@pytest.fixture
def logistic(db, evaluated):
    return Submission.objects.select_related("benchmark", "owner").get(pk=evaluated["Logistic regression"].pk)


def stored(submission: Submission, evaluator: str) -> dict:
    return submission.reports.get(evaluator=evaluator).document


def all_groupings(report: dict) -> list[dict]:
    return report["columns"] + report["intersections"]


# --- The numbers are the stored documents' -------------------------------------------------


def test_the_summary_restates_the_four_fifths_verdict_and_the_largest_gaps_with_their_groups(boosting):
    report, document = fairness_report(boosting), stored(boosting, "fairness")
    four_fifths = report["summary"]["four_fifths"]
    assert four_fifths["passes"] == document["four_fifths"]["passes"]
    assert four_fifths["verdict"] == {True: "passes", False: "fails", None: "no verdict"}[four_fifths["passes"]]
    assert {entry["column"] for entry in four_fifths["columns"]} == {"sex", "race"}
    for entry in four_fifths["columns"]:
        expected = document["four_fifths"]["columns"][entry["column"]]
        assert entry["ratio"] == expected["ratio"]
        assert (entry["lowest"], entry["highest"], entry["passes"]) == (
            expected["lowest"],
            expected["highest"],
            expected["passes"],
        )
    gaps = {gap["key"]: gap for gap in report["summary"]["gaps"]}
    assert set(gaps) == set(document["scalars"]) >= {"demographic_parity_difference", "accuracy_gap"}
    for key, scalar in document["scalars"].items():
        assert (gaps[key]["value"], gaps[key]["interval"]) == (scalar["value"], scalar["interval"])
        assert (gaps[key]["column"], gaps[key]["groups"]) == (scalar["column"], scalar["groups"])
    parity = gaps["demographic_parity_difference"]
    assert parity["groups"]["lowest"] in parity["between"] and parity["groups"]["highest"] in parity["between"]
    assert boosting.metrics["demographic_parity_difference"] == parity["value"]


def test_every_group_is_listed_with_the_stored_count_values_intervals_and_reference_comparisons(boosting):
    report, document = fairness_report(boosting), stored(boosting, "fairness")
    assert [g["name"] for g in report["columns"]] == ["sex", "race"]
    assert [g["name"] for g in report["intersections"]] == ["sex & race"]
    by_name = {grouping["name"]: grouping for grouping in all_groupings(report)}
    for expected in document["groupings"]:
        grouping = by_name[expected["name"]]
        assert grouping["reference"] == expected["reference"]
        assert [{k: v for k, v in group.items() if k != "is_reference"} for group in grouping["groups"]] == expected[
            "groups"
        ]
        assert [g["label"] for g in grouping["groups"] if g["is_reference"]] == [expected["reference"]["group"]]
    female = next(group for group in by_name["sex"]["groups"] if group["label"] == "Female")
    versus = female["metrics"]["selection_rate"]["vs_reference"]
    four_fifths = document["four_fifths"]["columns"]["sex"]
    if four_fifths["lowest"] == "Female":  # then the rule's ratio is Female's ratio to the reference, Male
        assert versus["ratio"]["value"] == four_fifths["ratio"]["value"]


def test_small_groups_are_flagged_and_the_worst_slices_listed(boosting):
    report, document = fairness_report(boosting), stored(boosting, "fairness")
    small = {
        (entry["grouping"], entry["label"], entry["count"]) for entry in report["summary"]["small_groups"]["groups"]
    }
    expected = {
        (grouping["name"], group["label"], group["count"])
        for grouping in document["groupings"]
        for group in grouping["groups"]
        if group["small"]
    }
    assert small == expected and small, "2000 Adult rows leave some race groups under 30 rows"
    assert report["summary"]["small_groups"]["min_group_size"] == 30
    assert any("Small groups" in line for line in report["summary"]["headlines"])

    slices = report["worst_slices"]
    metric_key = document["worst_slices"]["metric"]
    assert len(slices["slices"]) == len(document["worst_slices"]["slices"]) > 0
    for listed, expected_slice in zip(slices["slices"], document["worst_slices"]["slices"]):
        assert (listed["column"], listed["value"], listed["count"]) == (
            expected_slice["column"],
            expected_slice["value"],
            expected_slice["count"],
        )
        assert listed["estimate"] == expected_slice[metric_key] and listed["difference"] == expected_slice["difference"]
    assert report["summary"]["worst_slice"] == slices["slices"][0]


def test_what_drives_the_predictions_is_the_interpretability_documents(boosting):
    report, document = fairness_report(boosting), stored(boosting, "interpretability")
    attribution = report["attribution"]
    assert attribution["state"] == "measured"
    assert attribution["share"] == {
        "value": document["metrics"]["sensitive_attribution_share"],
        "interval": document["intervals"]["sensitive_attribution_share"],
    }
    assert report["summary"]["sensitive_attribution_share"] == attribution["share"]
    assert boosting.metrics["sensitive_attribution_share"] == attribution["share"]["value"]
    assert [(e["column"], e["mean_abs_shap"]) for e in attribution["ranking"]] == [
        (e["column"], e["mean_abs_shap"]) for e in document["mean_abs_shap"]
    ]
    assert {"sex", "race"} <= set(attribution["shown_columns"])
    assert {entry["column"]: entry["groups"] for entry in attribution["by_group"]} == document["mean_abs_shap_by_group"]


def test_the_methodology_says_how_to_reproduce_it(boosting):
    methodology, document = fairness_report(boosting)["methodology"], stored(boosting, "fairness")["methodology"]
    assert (methodology["resamples"], methodology["seed"]) == (document["resamples"], document["seed"])
    assert methodology["seed"] == boosting.benchmark.bootstrap_seed
    assert methodology["test_rows"] == 2000
    versions = {entry["library"]: entry["version"] for entry in methodology["library_versions"]}
    assert set(versions) == {"fairlearn", "scikit-learn", "numpy", "pandas"} and all(versions.values())
    assert {entry["key"] for entry in methodology["definitions"]} == set(document["definitions"])
    explained = methodology["interpretability"]
    assert explained["rows_explained"] == explained["budget"]["max_rows"] > 0
    assert explained["output"]["kind"] == "probability" and explained["tolerance"]["between_formats"] > 0
    assert explained["seed"] == boosting.benchmark.bootstrap_seed


# --- Downloads and pages -------------------------------------------------------------------


def test_the_json_download_is_the_report(client, boosting):
    response = client.get(f"/submissions/{boosting.pk}/fairness.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="fairness-adult-gradient-boosting-')
    assert response["Content-Disposition"].endswith('.json"')
    assert json.loads(response.content) == fairness_report(boosting)


def test_the_markdown_download_has_every_section_and_group_row(client, boosting):
    response = client.get(f"/submissions/{boosting.pk}/fairness.md")
    assert response.status_code == 200 and response["Content-Type"] == "text/markdown; charset=utf-8"
    assert 'attachment; filename="' in response["Content-Disposition"] and response["Content-Disposition"].endswith(
        '.md"'
    )
    text = response.content.decode()
    report = fairness_report(boosting)
    assert text == fairness_report_markdown(report)
    for title in SECTION_TITLES.values():
        assert f"\n## {title}\n" in text, title
    for grouping in all_groupings(report):
        assert f"\n### {grouping['name']}\n" in text
        for group in grouping["groups"]:
            measured = group["metrics"]["accuracy"]
            versus = measured["vs_reference"]
            cells = [
                metric(measured["value"]),
                interval_text(measured["interval"]),
                metric(versus["difference"]["value"]),
            ]
            assert any(
                line.startswith(f"| {group['label']}") and all(cell in line for cell in cells)
                for line in text.splitlines()
            ), group["label"]


def test_the_page_renders_each_section_and_links_its_print_stylesheet(client, boosting):
    page = client.get(f"/submissions/{boosting.pk}/fairness/")
    assert page.status_code == 200
    html = page.content.decode()
    report = fairness_report(boosting)
    for section, title in SECTION_TITLES.items():
        assert f'id="{section}"' in html and title in html, section
    assert "holdout/report.css" in html
    assert f"Four-fifths rule: <strong>{report['summary']['four_fifths']['verdict']}</strong>" in html
    for gap in report["summary"]["gaps"]:
        assert gap["label"] in html and metric(gap["value"]) in html
    for grouping in all_groupings(report):
        for group in grouping["groups"]:
            assert escape(group["label"]) in html
    assert html.count("flag-small") >= len(report["summary"]["small_groups"]["groups"])
    for listed in report["worst_slices"]["slices"]:
        assert escape(listed["value"]) in html
    assert metric(report["attribution"]["share"]["value"]) in html
    assert f"http://testserver/submissions/{boosting.pk}/fairness.json" in html
    # One chart per sensitive column for accuracy and one for the selection rate.
    assert html.count("<svg") == 2 * len(report["columns"])


def test_the_comparison_pairs_two_submissions_of_the_benchmark(client, boosting, logistic):
    comparison = fairness_comparison(boosting, logistic)
    gaps = {row["key"]: row for row in comparison["gaps"]}
    for side, submission in (("a", boosting), ("b", logistic)):
        for key, scalar in stored(submission, "fairness")["scalars"].items():
            assert gaps[key][side]["value"] == scalar["value"]
    sex = next(grouping for grouping in comparison["groupings"] if grouping["name"] == "sex")
    assert [entry["key"] for entry in sex["metrics"]] == ["accuracy", "selection_rate"]
    assert {row["key"] for row in sex["groups"]} == {"Female", "Male"}

    page = client.get(f"/fairness/compare/?a={boosting.pk}&b={logistic.pk}")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Gradient boosting" in html and "Logistic regression" in html
    assert metric(gaps["accuracy_gap"]["a"]["value"]) in html and metric(gaps["accuracy_gap"]["b"]["value"]) in html
    # The primary metric's paired difference and the rows that would separate it (leaderboard/resolution.py).
    separation = separation_figures(boosting, logistic)
    assert separation["standard_error"] > 0 and 'id="separation"' in html
    assert escape(separation["summary"]) in html, separation

    chooser = client.get(f"/fairness/compare/?a={boosting.pk}")
    assert chooser.status_code == 200
    assert f'<option value="{logistic.pk}"' in chooser.content.decode()


# --- Refusals a person can act on ----------------------------------------------------------


def test_a_benchmark_without_sensitive_columns_has_no_report_and_says_why(client, boosting):
    Benchmark.objects.filter(pk=boosting.benchmark_id).update(sensitive_columns=[])
    boosting.benchmark.refresh_from_db()
    with pytest.raises(FairnessReportUnavailable) as missing:
        fairness_report(boosting)
    assert missing.value.reason == "no-sensitive-columns"
    page = client.get(f"/submissions/{boosting.pk}/fairness/")
    assert page.status_code == 404 and b"declares no sensitive columns" in page.content
    download = client.get(f"/submissions/{boosting.pk}/fairness.json")
    assert download.status_code == 404 and "no sensitive columns" in download.json()["detail"]


def test_a_submission_still_running_or_whose_fairness_evaluator_failed_says_so(client, boosting, adult_baselines):
    from leaderboard.services import report_record, submission_create

    model = baseline_named(adult_baselines, "onnx:")
    queued, _ = submission_create(
        benchmark=boosting.benchmark, owner=boosting.owner, name="queued", artifact=model.data,
        artifact_filename=model.filename,
    )  # fmt: skip
    page = client.get(f"/submissions/{queued.pk}/fairness/")
    assert page.status_code == 404 and b"still being evaluated" in page.content
    assert client.get(f"/submissions/{queued.pk}/fairness.md").status_code == 404

    report_record(queued, evaluator="fairness", seconds=0.1, error="the reference group 'x' is not one of its groups")
    page = client.get(f"/submissions/{queued.pk}/fairness/")
    assert page.status_code == 404
    assert b"The fairness evaluator failed" in page.content and b"is not one of its groups" in page.content
    compare = client.get(f"/fairness/compare/?a={boosting.pk}&b={queued.pk}")
    assert compare.status_code == 404 and b"The fairness evaluator failed" in compare.content


def test_submissions_of_different_benchmarks_are_not_compared(client, boosting, lending_benchmark):
    other = Submission.objects.create(
        benchmark=lending_benchmark, owner=boosting.owner, name="lender", artifact="artifacts/none.skops",
        artifact_sha256="0" * 64, artifact_bytes=1, artifact_format="skops",
    )  # fmt: skip
    response = client.get(f"/fairness/compare/?a={boosting.pk}&b={other.pk}")
    assert response.status_code == 400
    assert b"only submissions of the same benchmark" in response.content


def test_malformed_unknown_or_missing_ids_get_a_page_that_says_what_to_fix(client, boosting):
    malformed = client.get(f"/fairness/compare/?a={boosting.pk}&b=not-an-id")
    assert malformed.status_code == 400 and b"is not a submission id" in malformed.content
    unknown = client.get("/fairness/compare/?a=00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404 and b"There is no submission" in unknown.content
    missing = client.get("/fairness/compare/")
    assert missing.status_code == 400 and b"Say which submission to compare" in missing.content
    assert client.get("/submissions/00000000-0000-4000-8000-000000000000/fairness/").status_code == 404
    assert client.get("/submissions/not-an-id/fairness/").status_code == 404
    same = client.get(f"/fairness/compare/?a={boosting.pk}&b={boosting.pk}")
    assert same.status_code == 400 and b"choose a different submission" in same.content
