import pickle

from django.core.files.uploadedfile import SimpleUploadedFile

from leaderboard.models import Submission
from tests.conftest import baseline_named, succeeded_submission


def test_home_lists_benchmarks_with_counts(client, adult_benchmark):
    page = client.get("/")
    assert page.status_code == 200
    assert b"Adult" in page.content and b"none yet" in page.content


def test_the_benchmark_page_shows_the_ranked_submissions_with_directions(
    client, adult_benchmark, adult_baselines, user
):
    model = baseline_named(adult_baselines, "onnx:")
    for name, accuracy in (("worse", 0.80), ("better", 0.85)):
        succeeded_submission(
            adult_benchmark, user, model, name, {"accuracy": accuracy, "log_loss": 0.3},
            intervals={"accuracy": [0.7, 0.9]},
        )
    page = client.get(f"/benchmarks/{adult_benchmark.slug}/").content.decode()
    assert page.index("better") < page.index("worse")
    assert "Accuracy ▲" in page and "Log loss ▼" in page
    assert page.count("◆</td>") == 1, "only the better submission is on the frontier"
    home = client.get("/").content.decode()
    assert "better" in home


def test_the_submit_form_needs_a_signed_in_user(client, adult_benchmark):
    response = client.get(f"/benchmarks/{adult_benchmark.slug}/submit/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_signed_in_user_submits_from_the_web_form(client, user, adult_benchmark, adult_baselines):
    client.force_login(user)
    model = baseline_named(adult_baselines, "Logistic regression")
    response = client.post(
        f"/benchmarks/{adult_benchmark.slug}/submit/",
        {
            "name": "from the web",
            "artifact": SimpleUploadedFile(model.filename, model.data),
            "metadata": '{"git_sha": "f00"}',
        },
    )
    submission = Submission.objects.get()
    assert response.status_code == 302 and response["Location"] == submission.get_absolute_url()
    page = client.get(submission.get_absolute_url()).content.decode()
    assert "queued" in page and "f00" in page and submission.artifact_sha256 in page


def test_the_web_form_shows_why_an_artifact_was_refused(client, user, adult_benchmark):
    client.force_login(user)
    response = client.post(
        f"/benchmarks/{adult_benchmark.slug}/submit/",
        {"name": "pickled", "artifact": SimpleUploadedFile("model.pkl", pickle.dumps([1])), "metadata": "{oops"},
    )
    assert response.status_code == 400
    assert b"metadata is not valid JSON" in response.content
    response = client.post(
        f"/benchmarks/{adult_benchmark.slug}/submit/",
        {"name": "pickled", "artifact": SimpleUploadedFile("model.pkl", pickle.dumps([1]))},
    )
    assert response.status_code == 400 and b"arbitrary code" in response.content
    assert not Submission.objects.exists()


def test_a_failed_submission_page_shows_the_error_and_stage(client, user, adult_benchmark, adult_baselines):
    from leaderboard.services import submission_create, submission_fail

    model = baseline_named(adult_baselines, "onnx:")
    submission, _ = submission_create(
        benchmark=adult_benchmark, owner=user, name="broken", artifact=model.data, artifact_filename=model.filename
    )
    submission_fail(
        submission, "Running the model on the test set: the model predicted NaN for 3 of 2000 rows", stage="predicting"
    )
    page = client.get(submission.get_absolute_url()).content.decode()
    assert "predicted NaN for 3 of 2000 rows" in page and "predicting" in page


def test_a_succeeded_submission_shows_its_rank_overall_and_per_objective(
    client, adult_benchmark, adult_baselines, user
):
    model = baseline_named(adult_baselines, "onnx:")
    made = {
        name: succeeded_submission(adult_benchmark, user, model, name, {"accuracy": accuracy, "latency_p99_ms": latency})
        for name, accuracy, latency in (("slow", 0.86, 9.0), ("quick", 0.84, 0.1), ("quicker", 0.80, 0.05))
    }
    page = client.get(f"/submissions/{made['quick'].pk}/").content.decode()
    assert "Rank <strong>2</strong>" in page and "of 3" in page
    objectives = page[page.index('id="objectives"') :]
    accuracy_row = objectives[objectives.index("Accuracy") :].split("</tr>")[0]
    assert '2 <span class="muted">of 3</span>' in accuracy_row
    exported = client.get(f"/submissions/{made['quick'].pk}/reports.json")
    assert exported["Content-Disposition"].startswith("attachment")
    body = exported.json()
    assert body["submission"]["metrics"]["accuracy"] == 0.84
    assert body["reports"]["performance"]["metrics"] == {"accuracy": 0.84, "latency_p99_ms": 0.1}


def test_a_running_submission_polls_its_body_and_a_failed_one_says_where_it_failed(
    client, adult_benchmark, adult_baselines, user
):
    from leaderboard.services import submission_create, submission_fail

    model = baseline_named(adult_baselines, "onnx:")
    running, _ = submission_create(
        benchmark=adult_benchmark, owner=user, name="running", artifact=model.data, artifact_filename=model.filename
    )
    page = client.get(f"/submissions/{running.pk}/").content.decode()
    assert f'hx-get="/submissions/{running.pk}/body/"' in page and 'hx-trigger="every 2s"' in page
    body = client.get(f"/submissions/{running.pk}/body/").content.decode()
    assert "<html" not in body and 'id="progress"' in body
    submission_fail(running, "the model returned 3 rows for 2000", stage="predicting")
    body = client.get(f"/submissions/{running.pk}/body/").content.decode()
    assert "hx-trigger" not in body, "a finished submission stops polling"
    assert "the model returned 3 rows for 2000" in body and 'id="failed-stage">predicting' in body


def test_the_benchmark_page_overlays_the_top_decay_curves_and_gives_the_time_span(
    client, lending_benchmark, lending_baselines, user
):
    import json
    from pathlib import Path

    decay = json.loads((Path(__file__).parent / "data" / "chart_documents" / "lending_decay.json").read_text())
    model = baseline_named(lending_baselines, "onnx:")
    for name, auc in (("older-model", 0.74), ("newer-model", 0.76)):
        succeeded_submission(lending_benchmark, user, model, name, {"roc_auc": auc}, documents={"decay": decay})
    page = client.get(f"/benchmarks/{lending_benchmark.slug}/").content.decode()
    overlay = page[page.index('id="decay-overlay"') :]
    assert "#1 newer-model" in overlay and "#2 older-model" in overlay
    assert "training 2023-01-01 – 2023-12-31; hidden test 2024-01-01 – 2025-12-31" in page


def test_the_benchmark_page_says_how_to_submit_with_curl_and_the_client(client, adult_benchmark):
    page = client.get(f"/benchmarks/{adult_benchmark.slug}/").content.decode()
    assert "http://testserver/api/v1/benchmarks/adult/submissions/" in page
    assert "holdout submit adult model.onnx --name my-model --compare-to best --max-regression accuracy=0.01" in page
    assert "--gate 'accuracy&gt;=VALUE'" in page


def test_an_unknown_chart_objective_is_named_and_the_default_pair_drawn(client, adult_benchmark, adult_baselines, user):
    model = baseline_named(adult_baselines, "onnx:")
    succeeded_submission(adult_benchmark, user, model, "only", {"accuracy": 0.85, "latency_p99_ms": 1.0})
    page = client.get(f"/benchmarks/{adult_benchmark.slug}/?x=speed").content.decode()
    assert "No objective &#x27;speed&#x27; on this benchmark; the chart shows accuracy against latency_p99_ms." in page
    assert 'id="trade-offs"' in page
