import pickle

from django.core.files.uploadedfile import SimpleUploadedFile

from leaderboard.models import Submission
from leaderboard.services import report_record, submission_succeed
from tests.conftest import baseline_named


def test_home_lists_benchmarks_with_counts(client, adult_benchmark):
    page = client.get("/")
    assert page.status_code == 200
    assert b"Adult" in page.content and b"none yet" in page.content


def test_the_benchmark_page_shows_the_ranked_submissions_with_directions(
    client, adult_benchmark, adult_baselines, user
):
    from leaderboard.services import submission_create

    model = baseline_named(adult_baselines, "onnx:")
    for name, accuracy in (("worse", 0.80), ("better", 0.85)):
        submission, _ = submission_create(
            benchmark=adult_benchmark, owner=user, name=name, artifact=model.data, artifact_filename=model.filename
        )
        report_record(
            submission,
            evaluator="performance",
            seconds=0.1,
            metrics={"accuracy": accuracy, "log_loss": 0.3},
            intervals={"accuracy": [0.7, 0.9]},
        )
        submission_succeed(submission)
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
        {"name": "from the web", "artifact": SimpleUploadedFile(model.filename, model.data), "metadata": '{"git_sha": "f00"}'},
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
    assert b"Not valid JSON" in response.content
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
    submission_fail(submission, "Running the model on the test set: the model predicted NaN for 3 of 2000 rows", stage="predicting")
    page = client.get(submission.get_absolute_url()).content.decode()
    assert "predicted NaN for 3 of 2000 rows" in page and "predicting" in page
