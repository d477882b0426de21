"""Daily submission quotas: per person, per benchmark, per UTC day; the API answers 429 with Retry-After."""

import math
import threading
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from leaderboard.errors import QuotaExceeded
from leaderboard.models import Submission
from leaderboard.services import submission_create, submission_fail
from tests.conftest import baseline_named
from tests.test_submission_api import post


@pytest.fixture
def onnx(adult_baselines):
    model = baseline_named(adult_baselines, "onnx:")
    return model.filename, model.data


def with_quota(benchmark, quota: int):
    benchmark.daily_submission_quota = quota
    benchmark.save(update_fields=["daily_submission_quota"])
    return benchmark


def submit(benchmark, owner, onnx, name="model"):
    submission, _ = submission_create(
        benchmark=benchmark, owner=owner, name=name, artifact=onnx[1], artifact_filename=onnx[0]
    )
    return submission


def next_utc_midnight() -> datetime:
    today = datetime.now(dt_timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1)


def test_a_submission_past_the_quota_is_a_429_with_retry_after_and_the_reason(api_client, adult_benchmark, onnx):
    with_quota(adult_benchmark, 2)
    assert post(api_client, adult_benchmark, artifact=onnx).status_code == 202
    assert post(api_client, adult_benchmark, artifact=onnx).status_code == 202

    refused = post(api_client, adult_benchmark, artifact=onnx)

    assert refused.status_code == 429
    expected_wait = (next_utc_midnight() - datetime.now(dt_timezone.utc)).total_seconds()
    assert abs(int(refused.headers["Retry-After"]) - math.ceil(expected_wait)) <= 5
    body = refused.json()
    assert "used 2 of the 2 submissions a day" in body["detail"]
    assert f"resets at {next_utc_midnight():%Y-%m-%d} 00:00 UTC" in body["detail"]
    assert body["quota"] == 2 and body["used"] == 2
    assert body["resets_at"] == next_utc_midnight().isoformat().replace("+00:00", "Z")
    assert Submission.objects.count() == 2


def test_the_quota_is_refused_before_the_file_is_inspected(api_client, adult_benchmark, onnx, user):
    with_quota(adult_benchmark, 1)
    submit(adult_benchmark, user, onnx)
    response = post(api_client, adult_benchmark, artifact=("model.onnx", b"not a model"))
    assert response.status_code == 429


def test_model_fault_failures_count_and_platform_fault_failures_do_not(adult_benchmark, user, onnx):
    with_quota(adult_benchmark, 2)
    lost = submit(adult_benchmark, user, onnx, "lost-by-the-platform")
    submission_fail(lost, "no worker finished this submission", stage="queued", fault="platform")
    broken = submit(adult_benchmark, user, onnx, "broken-model")
    submission_fail(broken, "the model returned 3 predictions for 2000 rows", stage="predicting", fault="model")

    submit(adult_benchmark, user, onnx, "second-that-counts")

    with pytest.raises(QuotaExceeded) as refusal:
        submit(adult_benchmark, user, onnx, "one-too-many")
    assert refusal.value.used == 2 and refusal.value.quota == 2


def test_the_quota_resets_at_midnight_utc(adult_benchmark, user, onnx):
    with_quota(adult_benchmark, 1)
    yesterday = submit(adult_benchmark, user, onnx, "yesterday")
    with pytest.raises(QuotaExceeded):
        submit(adult_benchmark, user, onnx, "refused-today")

    midnight = next_utc_midnight() - timedelta(days=1)
    Submission.objects.filter(pk=yesterday.pk).update(created_at=midnight - timedelta(microseconds=1))
    today = submit(adult_benchmark, user, onnx, "today")

    Submission.objects.filter(pk=today.pk).update(created_at=midnight)  # the first moment of the day is today
    with pytest.raises(QuotaExceeded):
        submit(adult_benchmark, user, onnx, "refused-again")


def test_the_quota_is_per_person_and_per_benchmark(adult_benchmark, lending_benchmark, lending_baselines, user, onnx):
    with_quota(adult_benchmark, 1)
    submit(adult_benchmark, user, onnx)
    bob = get_user_model().objects.create_user("bob")
    submit(adult_benchmark, bob, onnx)
    lending_model = baseline_named(lending_baselines, "onnx:")
    submit(with_quota(lending_benchmark, 1), user, (lending_model.filename, lending_model.data))


def test_a_repeated_idempotency_key_returns_the_same_submission_without_using_the_quota(
    api_client, adult_benchmark, onnx
):
    with_quota(adult_benchmark, 2)
    first = post(api_client, adult_benchmark, artifact=onnx, headers={"Idempotency-Key": "ci-run-7"})
    replay = post(api_client, adult_benchmark, artifact=onnx, headers={"Idempotency-Key": "ci-run-7"})
    assert first.status_code == replay.status_code == 202
    assert replay.json()["id"] == first.json()["id"] and replay.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers

    assert post(api_client, adult_benchmark, artifact=onnx).status_code == 202, "the replay used no slot"
    assert post(api_client, adult_benchmark, artifact=onnx).status_code == 429

    used_up = post(api_client, adult_benchmark, artifact=onnx, headers={"Idempotency-Key": "ci-run-7"})
    assert used_up.status_code == 202, "a replay still answers when the quota is used up"
    assert used_up.json()["id"] == first.json()["id"] and used_up.headers["Idempotent-Replayed"] == "true"
    assert Submission.objects.count() == 2


def test_zero_means_no_limit(api_client, adult_benchmark, onnx):
    with_quota(adult_benchmark, 0)
    for _ in range(3):
        assert post(api_client, adult_benchmark, artifact=onnx).status_code == 202


def test_staff_and_baselines_are_not_limited(adult_benchmark, user, onnx):
    with_quota(adult_benchmark, 1)
    staff = get_user_model().objects.create_user("owner", is_staff=True)
    submit(adult_benchmark, staff, onnx)
    submit(adult_benchmark, staff, onnx)
    for name in ("baseline-a", "baseline-b"):
        submission_create(
            benchmark=adult_benchmark,
            owner=user,
            name=name,
            artifact=onnx[1],
            artifact_filename=onnx[0],
            is_baseline=True,
        )
    submit(adult_benchmark, user, onnx)  # baselines used none of the person's quota


def test_the_benchmark_api_and_page_show_the_quota(client, user, adult_benchmark, onnx):
    with_quota(adult_benchmark, 3)
    submit(adult_benchmark, user, onnx)
    assert client.get(f"/api/v1/benchmarks/{adult_benchmark.slug}/").json()["daily_submission_quota"] == 3
    assert "3 submissions per person per UTC day" in client.get(adult_benchmark.get_absolute_url()).content.decode()
    client.force_login(user)
    page = client.get(adult_benchmark.get_absolute_url()).content.decode()
    assert "you have used 1 today, 2 left until 00:00 UTC" in page


def test_the_web_form_shows_the_quota_message(client, user, adult_benchmark, onnx):
    with_quota(adult_benchmark, 1)
    submit(adult_benchmark, user, onnx)
    client.force_login(user)
    form_url = f"/benchmarks/{adult_benchmark.slug}/submit/"
    assert "you have used 1 today, 0 left" in client.get(form_url).content.decode()

    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(form_url, {"name": "again", "artifact": SimpleUploadedFile(*onnx)})

    assert response.status_code == 400
    assert "You have used 1 of the 1 submissions a day" in response.content.decode()
    assert Submission.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_submissions_cannot_both_take_the_last_slot(adult_frames, adult_baselines, onnx):
    from leaderboard.demo.seeding import benchmark_from_spec
    from leaderboard.demo.synthetic import ADULT_SPEC

    benchmark = with_quota(benchmark_from_spec(ADULT_SPEC, *adult_frames), 1)
    owner = get_user_model().objects.create_user("racer")
    start, outcomes = threading.Barrier(6), []

    def race(index: int) -> None:
        try:
            start.wait()
            submit(benchmark, owner, onnx, f"racer-{index}")
            outcomes.append("created")
        except QuotaExceeded:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["created"] + ["refused"] * 5
    assert Submission.objects.filter(owner=owner).count() == 1
