"""Closing a guarded benchmark (issue 13) on real components: final selections, the private part kept
out of reach until the owner closes, then the private board measured by a real worker."""

from datetime import timedelta

import numpy as np
import pytest
import requests
from django.utils import timezone
from sklearn.metrics import accuracy_score

from leaderboard.models import Benchmark, PrivateScore, Submission
from leaderboard.services import submission_create
from tests.conftest import baseline_named, succeeded_submission, wait_for
from tests.test_guarded import guarded_benchmark  # noqa: F401 - the fixture

SEALED = "the private board is revealed when the owner closes the benchmark"


@pytest.fixture
def bob(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("bob", "bob@example.com", "another horse battery")


@pytest.fixture
def staff(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("owner", "owner@example.com", "staff horse battery", is_staff=True)


def token_of(person) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=person)[0].key


def client_of(person):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_of(person)}")
    return client


def final_url(submission) -> str:
    return f"/api/v1/submissions/{submission.pk}/final/"


def test_a_submitter_selects_up_to_the_limit_of_their_own_succeeded_submissions(
    guarded_benchmark, adult_baselines, user, bob, api_client
):
    benchmark, _, _ = guarded_benchmark
    assert benchmark.final_selections == 2
    model = baseline_named(adult_baselines, "onnx:")
    first, second, third = (
        succeeded_submission(benchmark, user, model, name, {"accuracy": value})
        for name, value in (("a", 0.80), ("b", 0.81), ("c", 0.82))
    )
    for submission in (first, second):
        response = api_client.post(final_url(submission))
        assert response.status_code == 200 and response.json()["final"] is True, response.content
    over = api_client.post(final_url(third))
    assert over.status_code == 409 and "Unselect one first" in over.json()["detail"], over.content
    assert api_client.get(f"/api/v1/submissions/{third.pk}/").json()["final"] is False

    unselected = api_client.delete(final_url(first))
    assert unselected.status_code == 200 and unselected.json()["final"] is False
    assert api_client.post(final_url(third)).status_code == 200, "a freed place can be taken"
    assert set(Submission.objects.filter(final=True).values_list("name", flat=True)) == {"b", "c"}

    others = succeeded_submission(benchmark, bob, model, "bob's", {"accuracy": 0.8})
    refused = api_client.post(final_url(others))
    assert refused.status_code == 403 and "only its submitter" in refused.json()["detail"]

    waiting, _ = submission_create(
        benchmark=benchmark, owner=user, name="waiting", artifact=model.data, artifact_filename=model.filename
    )
    not_yet = api_client.post(final_url(waiting))
    assert not_yet.status_code == 409 and "only a succeeded submission can be final" in not_yet.json()["detail"]
    assert client_of(bob).post(final_url(others)).status_code == 200, "bob chooses his own"
    assert api_client.post(final_url(others)).status_code == 403, "and still not alice's to choose"
    assert anonymous_client().post(final_url(first)).status_code == 401


def anonymous_client():
    from rest_framework.test import APIClient

    return APIClient()


def test_an_open_benchmark_has_nothing_to_select_or_close(adult_benchmark, adult_baselines, user, staff, api_client):
    model = baseline_named(adult_baselines, "onnx:")
    submission = succeeded_submission(adult_benchmark, user, model, "open", {"accuracy": 0.8})
    refused = api_client.post(final_url(submission))
    assert refused.status_code == 409 and "open benchmark" in refused.json()["detail"]
    closing = client_of(staff).post(f"/api/v1/benchmarks/{adult_benchmark.slug}/close/")
    assert closing.status_code == 409 and "open benchmark" in closing.json()["detail"]
    assert Benchmark.objects.get(pk=adult_benchmark.pk).closed_at is None


def test_the_private_part_is_out_of_reach_until_the_benchmark_closes(
    client, guarded_benchmark, adult_baselines, user, api_client
):
    from workers.evaluation import _test_set

    benchmark, _, _ = guarded_benchmark
    model = baseline_named(adult_baselines, "onnx:")
    submission = succeeded_submission(benchmark, user, model, "a", {"accuracy": 0.8})
    assert api_client.post(final_url(submission)).status_code == 200

    for reader in (client, api_client):
        sealed = reader.get(f"/api/v1/benchmarks/{benchmark.slug}/leaderboard/private/")
        assert sealed.status_code == 409 and sealed.json()["detail"].startswith(SEALED), sealed.content
    page = client.get(f"/benchmarks/{benchmark.slug}/")
    assert page.status_code == 200 and b"private-board" not in page.content and b"closed-line" not in page.content
    assert not PrivateScore.objects.exists(), "no private value exists anywhere before the closing"
    with pytest.raises(RuntimeError, match="only after a guarded benchmark closes"):
        _test_set(benchmark, part="private")
    assert len(_test_set(benchmark)) == len(benchmark.public_positions)


def test_only_staff_close_a_benchmark(guarded_benchmark, user, api_client):
    benchmark, _, _ = guarded_benchmark
    url = f"/api/v1/benchmarks/{benchmark.slug}/close/"
    refused = api_client.post(url)
    assert refused.status_code == 403 and "Only staff" in refused.json()["detail"]
    assert anonymous_client().post(url).status_code == 401
    assert Benchmark.objects.get(pk=benchmark.pk).closed_at is None and not PrivateScore.objects.exists()


def test_a_lost_private_score_is_sent_again_and_one_out_of_attempts_fails(guarded_benchmark, adult_baselines, user):
    from django.conf import settings

    from leaderboard.closing import private_scores_sweep

    benchmark, _, _ = guarded_benchmark
    model = baseline_named(adult_baselines, "onnx:")
    past = timezone.now() - timedelta(seconds=1)
    lost, tired, waiting = (
        PrivateScore.objects.create(
            submission=succeeded_submission(benchmark, user, model, name, {"accuracy": 0.8}),
            counted_as="all",
            status=status,
            attempts=attempts,
            sent_at=past,
            deadline_at=past,
        )
        for name, status, attempts in (
            ("lost", "running", 1),
            ("tired", "running", settings.HOLDOUT_MAX_ATTEMPTS),
            ("waiting", "queued", 0),
        )
    )
    # The evaluate queue still holds messages: the queued one waits behind them rather than being doubled.
    assert private_scores_sweep(queue_empty=lambda queue: False) == {"private_requeued": 1, "private_failed": 1}
    lost.refresh_from_db(), tired.refresh_from_db(), waiting.refresh_from_db()
    assert lost.status == "queued" and lost.deadline_at > timezone.now()
    assert tired.status == "failed" and f"started {settings.HOLDOUT_MAX_ATTEMPTS} times" in tired.error
    assert waiting.status == "queued" and waiting.deadline_at == past
    assert private_scores_sweep(queue_empty=lambda queue: True)["private_requeued"] == 1, "its message was lost"


def private_accuracy(model, benchmark, test, positions) -> float:
    """sklearn's accuracy of the model on the private rows: the test rows not among the public ones."""
    private = test.drop(index=positions)
    assert len(private) == benchmark.test_rows - len(positions) == 1400
    X, y = private[benchmark.feature_columns], private[benchmark.target_column].to_numpy()
    if model.filename.endswith(".onnx"):
        import onnxruntime

        from leaderboard.demo.baselines import onnx_inputs

        session = onnxruntime.InferenceSession(model.data, providers=["CPUExecutionProvider"])
        labels = session.run(None, onnx_inputs(X))[0]
    else:
        import skops.io
        from django.conf import settings

        labels = skops.io.loads(model.data, trusted=settings.HOLDOUT_SKOPS_TRUSTED_TYPES).predict(X)
    return accuracy_score(y, labels)


def test_closing_measures_the_counted_submissions_on_the_private_rows_and_reveals_the_board(
    live_server, celery_worker, client, guarded_benchmark, adult_baselines, user, bob, staff
):
    benchmark, test, positions = guarded_benchmark
    onnx, majority = baseline_named(adult_baselines, "onnx:"), baseline_named(adult_baselines, "Majority")
    forest = baseline_named(adult_baselines, "skops:Random")
    # The public metrics are recorded, not measured: what closing measures is the private rows.
    alice_chosen = succeeded_submission(benchmark, user, onnx, "alice-logreg", {"accuracy": 0.80})
    succeeded_submission(benchmark, user, forest, "alice-forest", {"accuracy": 0.90})
    assert client_of(user).post(final_url(alice_chosen)).status_code == 200
    # Bob chooses nothing: his Ladder's released best (the first, 0.83) stands in, not his latest.
    bob_best = succeeded_submission(benchmark, bob, majority, "bob-majority", {"accuracy": 0.83})
    succeeded_submission(benchmark, bob, forest, "bob-forest", {"accuracy": 0.70})
    assert PrivateScore.objects.count() == 0

    closing = client_of(staff).post(f"/api/v1/benchmarks/{benchmark.slug}/close/")
    assert closing.status_code == 200, closing.content
    assert closing.json()["counted"] == 2
    closed_at = Benchmark.objects.get(pk=benchmark.pk).closed_at
    again = client_of(staff).post(f"/api/v1/benchmarks/{benchmark.slug}/close/")
    assert again.status_code == 409 and f"{closed_at:%Y-%m-%d %H:%M:%S}" in again.json()["detail"]

    refused = requests.post(
        f"{live_server.url}/api/v1/benchmarks/{benchmark.slug}/submissions/",
        headers={"Authorization": f"Token {token_of(user)}"},
        files={"artifact": (onnx.filename, onnx.data)},
        data={"name": "too late"},
        timeout=30,
    )
    assert refused.status_code == 409 and f"{closed_at:%Y-%m-%d %H:%M:%S}" in refused.json()["detail"], refused.text
    client.force_login(user)
    form = client.post(
        f"/benchmarks/{benchmark.slug}/submit/", {"name": "too late", "artifact": _upload(onnx)}, follow=False
    )
    assert form.status_code == 409 and b"takes no new submissions" in form.content
    assert client_of(user).delete(final_url(alice_chosen)).status_code == 409, "the selections are fixed"

    url = f"{live_server.url}/api/v1/benchmarks/{benchmark.slug}/leaderboard/private/"
    board = wait_for(
        lambda: (body := requests.get(url, timeout=10).json())["complete"] and body,
        timeout=120,
        interval=0.5,
        what="the private scores",
    )
    assert board["counted"] == board["done"] == 2 and not board["failed"], board
    entries = {entry["submission"]["name"]: entry for entry in board["entries"]}
    assert set(entries) == {"alice-logreg", "bob-majority"}
    assert (entries["alice-logreg"]["counted_as"], entries["alice-logreg"]["counted"]) == ("chosen", "chosen")
    assert entries["bob-majority"]["counted"] == "by default: the released best"
    for model, name in ((onnx, "alice-logreg"), (majority, "bob-majority")):
        assert entries[name]["private"]["value"] == private_accuracy(model, benchmark, test, positions), name
        low, high = entries[name]["private"]["interval"]
        assert low <= entries[name]["private"]["value"] <= high
    assert entries["bob-majority"]["public"] == {"released": 0.83, "improved": True}
    assert [entry["rank"] for entry in board["entries"]] == [1, 2], "logistic regression beats the majority class"
    assert board["entries"][0]["submission"]["name"] == "alice-logreg"

    stored = PrivateScore.objects.get(submission=bob_best)
    resamples = benchmark.bootstrap_resamples
    assert stored.resample_keys and len(stored.resamples) == 4 * resamples * len(stored.resample_keys)
    assert "demographic_parity_difference" in stored.metrics and not stored.evaluator_errors, "fairness ran too"
    assert Submission.objects.get(pk=bob_best.pk).metrics == {"accuracy": 0.83}, "the public record is untouched"
    assert list(bob_best.reports.values_list("evaluator", flat=True)) == ["performance"], "no report is added"

    page = client.get(f"/benchmarks/{benchmark.slug}/")
    assert b'id="private-board"' in page.content and b'id="closed-line"' in page.content
    assert b"by default: the released best" in page.content and b"private-progress" not in page.content


def _upload(model):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(model.filename, model.data)


def test_the_owner_selects_as_final_on_the_submission_page(client, guarded_benchmark, adult_baselines, user, bob):
    benchmark, _, _ = guarded_benchmark
    model = baseline_named(adult_baselines, "onnx:")
    submission = succeeded_submission(benchmark, user, model, "a", {"accuracy": 0.8})
    client.force_login(bob)
    assert b"Select as final" not in client.get(submission.get_absolute_url()).content, "only for its submitter"
    client.force_login(user)
    assert b"Select as final" in client.get(submission.get_absolute_url()).content
    page = client.post(f"/submissions/{submission.pk}/final/", {"final": "1"}, follow=True)
    assert b"Selected as final" in page.content and Submission.objects.get(pk=submission.pk).final


def test_the_command_and_the_admin_close_a_benchmark(client, guarded_benchmark, adult_baselines, user):
    from django.contrib.auth import get_user_model
    from django.core.management import CommandError, call_command

    benchmark, _, _ = guarded_benchmark
    succeeded_submission(benchmark, user, baseline_named(adult_baselines, "onnx:"), "a", {"accuracy": 0.8})
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "root horse battery")
    client.force_login(admin)
    page = client.post(
        "/admin/leaderboard/benchmark/", {"action": "close", "_selected_action": [benchmark.pk]}, follow=True
    )
    assert b"submissions are being measured on the private rows" in page.content
    closed = Benchmark.objects.get(pk=benchmark.pk)
    assert closed.closed_at is not None
    assert list(PrivateScore.objects.values_list("counted_as", flat=True)) == ["default"], "the Ladder's best"
    # No worker runs here: the board says how far the private scores are.
    assert b"0 of 1 done" in client.get(f"/benchmarks/{benchmark.slug}/").content
    board = client.get(f"/api/v1/benchmarks/{benchmark.slug}/leaderboard/private/").json()
    assert (board["done"], board["complete"], board["pending"][0]["status"]) == (0, False, "queued")
    with pytest.raises(CommandError, match="already closed at"):
        call_command("close_benchmark", benchmark.slug)
    with pytest.raises(CommandError, match="no benchmark 'nope'"):
        call_command("close_benchmark", "nope")
