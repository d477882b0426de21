from datetime import timedelta

import pytest
from django.utils import timezone

from leaderboard.models import Submission
from leaderboard.services import submission_create, submission_start, submissions_sweep
from tests.conftest import baseline_named


@pytest.fixture
def submission(adult_benchmark, adult_baselines, user):
    model = baseline_named(adult_baselines, "onnx:")
    created, _ = submission_create(
        benchmark=adult_benchmark, owner=user, name="m", artifact=model.data, artifact_filename=model.filename
    )
    return created


def past(seconds: int = 1):
    return timezone.now() - timedelta(seconds=seconds)


def test_starting_claims_a_queued_submission_once(submission):
    started = submission_start(submission.pk)
    assert started.status == "running" and started.attempts == 1 and started.deadline_at > timezone.now()
    assert submission_start(submission.pk) is None, "a second delivery must not start a second evaluation"


def test_a_finished_submission_is_never_started_again(submission):
    Submission.objects.filter(pk=submission.pk).update(status="succeeded")
    assert submission_start(submission.pk) is None


def test_a_running_submission_past_its_deadline_can_be_taken_over(submission):
    submission_start(submission.pk)
    Submission.objects.filter(pk=submission.pk).update(deadline_at=past())
    assert submission_start(submission.pk).attempts == 2


def test_the_sweep_requeues_a_submission_whose_worker_vanished(submission, django_capture_on_commit_callbacks):
    submission_start(submission.pk)
    Submission.objects.filter(pk=submission.pk).update(deadline_at=past())
    with django_capture_on_commit_callbacks() as callbacks:
        assert submissions_sweep() == {"requeued": 1, "failed": 0}
    assert len(callbacks) == 1
    requeued = Submission.objects.get(pk=submission.pk)
    assert requeued.status == "queued" and requeued.deadline_at > timezone.now()


def test_the_sweep_fails_a_submission_out_of_attempts_with_a_reason(submission, settings):
    Submission.objects.filter(pk=submission.pk).update(
        status="running", attempts=settings.HOLDOUT_MAX_ATTEMPTS, stage="predicting", deadline_at=past()
    )
    assert submissions_sweep() == {"requeued": 0, "failed": 1}
    failed = Submission.objects.get(pk=submission.pk)
    assert failed.status == "failed" and failed.fault == "model"
    assert "started 3 times and never finished" in failed.error and "predicting" in failed.error


def test_out_of_attempts_after_losing_its_worker_is_the_platforms_failure(submission, settings):
    from leaderboard.holders import HEARTBEAT_STALE_SECONDS
    from leaderboard.selectors import submission_quota_usage

    Submission.objects.filter(pk=submission.pk).update(
        status="running",
        attempts=settings.HOLDOUT_MAX_ATTEMPTS,
        stage="predicting",
        deadline_at=timezone.now() + timedelta(minutes=5),  # within its time: only the dead worker ended it
        holder="worker-host 4242 another-machine 123",
        heartbeat_at=past(HEARTBEAT_STALE_SECONDS + 5),
    )
    assert submissions_sweep() == {"requeued": 0, "failed": 1}
    failed = Submission.objects.get(pk=submission.pk)
    assert failed.status == "failed" and failed.fault == "platform"
    assert "the last attempt was lost with its worker (worker-host pid 4242)" in failed.error
    assert "does not count against your quota" in failed.error
    assert submission_quota_usage(benchmark=failed.benchmark, owner=failed.owner).used == 0


def test_the_sweep_fails_a_submission_no_worker_ever_took(submission, settings):
    Submission.objects.filter(pk=submission.pk).update(
        created_at=past(settings.HOLDOUT_QUEUE_TIMEOUT_SECONDS + 5), deadline_at=past()
    )
    assert submissions_sweep() == {"requeued": 0, "failed": 1}
    failed = Submission.objects.get(pk=submission.pk)
    assert failed.status == "failed" and failed.fault == "platform" and "no worker" in failed.error


def test_the_sweep_leaves_submissions_within_their_deadline_alone(submission):
    submission_start(submission.pk)
    assert submissions_sweep() == {"requeued": 0, "failed": 0}
    assert Submission.objects.get(pk=submission.pk).status == "running"


def test_the_sweep_runs_periodically(settings):
    assert settings.CELERY_BEAT_SCHEDULE["sweep-stuck-submissions"]["task"] == "holdout.sweep_stuck_submissions"


def _declared_queue(name: str, *, messages: int = 0) -> None:
    """The queue declared on the run's own broker, holding `messages` messages that are not ours."""
    from celery import current_app

    with current_app.connection_for_write() as connection:
        channel = connection.default_channel
        channel.queue_declare(queue=name)
        channel.queue_purge(name)
        for _ in range(messages):
            producer = connection.Producer(channel)
            producer.publish({"other": "work"}, routing_key=name)


def test_a_message_the_broker_lost_is_sent_again_within_a_minute_not_a_time_limit(
    submission, broker, django_capture_on_commit_callbacks
):
    """A queued submission whose queue the broker says is empty (a broker restarted without its message)."""
    _declared_queue("evaluate")
    Submission.objects.filter(pk=submission.pk).update(sent_queue="evaluate", sent_at=past(20))
    assert submissions_sweep() == {"requeued": 0, "failed": 0}, "too recent to call lost"
    Submission.objects.filter(pk=submission.pk).update(sent_at=past(60))
    with django_capture_on_commit_callbacks() as callbacks:
        assert submissions_sweep() == {"requeued": 1, "failed": 0}
    assert len(callbacks) == 1
    resent = Submission.objects.get(pk=submission.pk)
    assert resent.status == "queued" and resent.sent_at > past(5)


def test_a_message_still_in_its_queue_is_not_sent_again(submission, broker):
    _declared_queue("evaluate", messages=2)
    Submission.objects.filter(pk=submission.pk).update(sent_queue="evaluate", sent_at=past(60))
    assert submissions_sweep() == {"requeued": 0, "failed": 0}


@pytest.fixture
def filesystem_broker(tmp_path, monkeypatch):
    """The embedded default's broker (make run): kombu's filesystem transport, in a folder of this test's."""
    from celery import current_app

    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False}
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")  # Celery reads the variable before its settings
    monkeypatch.setitem(current_app.conf, "broker_transport_options", options)
    return folder


def test_the_filesystem_broker_says_whether_a_queue_holds_a_message(filesystem_broker):
    from leaderboard.services import broker_queue_empty

    assert broker_queue_empty("evaluate") is True, "nothing was ever sent"
    _declared_queue("evaluate", messages=1)
    assert list(filesystem_broker.iterdir()), "the message is a file in the test's folder"
    assert broker_queue_empty("evaluate") is False
    _declared_queue("evaluate")
    assert broker_queue_empty("evaluate") is True


def test_on_the_filesystem_broker_a_lost_message_is_sent_again(
    submission, filesystem_broker, django_capture_on_commit_callbacks
):
    Submission.objects.filter(pk=submission.pk).update(sent_queue="evaluate", sent_at=past(60))
    _declared_queue("evaluate", messages=1)
    assert submissions_sweep() == {"requeued": 0, "failed": 0}, "a message in the queue is on its way"
    _declared_queue("evaluate")
    with django_capture_on_commit_callbacks() as callbacks:
        assert submissions_sweep() == {"requeued": 1, "failed": 0}
    assert len(callbacks) == 1


@pytest.fixture
def unreachable_broker(monkeypatch):
    """A broker URL on a port where nothing listens, as while the broker is down: every send fails."""
    import socket

    from celery import Celery, current_app

    with socket.socket() as probe:  # a port that was free a moment ago and that nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    # An app of its own: the suite's app keeps pooled connections to the real broker.
    previous = current_app._get_current_object()
    monkeypatch.setenv("CELERY_BROKER_URL", url)  # Celery reads the variable before its settings
    down = Celery("broker-down", broker=url, set_as_current=False)
    down.set_current()
    yield url
    previous.set_current()
    down.close()


def test_a_send_that_fails_while_the_broker_is_down_is_sent_again_by_the_next_sweep(
    submission, unreachable_broker, django_capture_on_commit_callbacks
):
    """Not 30 s later: nothing is on its way, and the broker cannot be asked about its queue."""
    from leaderboard.services import submission_enqueue

    with django_capture_on_commit_callbacks(execute=True):
        submission_enqueue(submission)
    assert Submission.objects.get(pk=submission.pk).sent_at is None, "the failed send is marked on the row"
    with django_capture_on_commit_callbacks() as callbacks:
        assert submissions_sweep() == {"requeued": 1, "failed": 0}
    assert len(callbacks) == 1
    resent = Submission.objects.get(pk=submission.pk)
    assert resent.status == "queued" and resent.sent_at > past(5)


def test_a_failed_send_does_not_unmark_a_later_one(submission, unreachable_broker, django_capture_on_commit_callbacks):
    from leaderboard.services import submission_enqueue

    later = timezone.now() + timedelta(seconds=1)
    with django_capture_on_commit_callbacks() as callbacks:
        submission_enqueue(submission)
    Submission.objects.filter(pk=submission.pk).update(sent_at=later)  # the sweep sent it again meanwhile
    callbacks[0]()
    assert Submission.objects.get(pk=submission.pk).sent_at == later


def test_a_worker_taken_for_dead_that_comes_back_records_nothing(submission):
    """Cut off from the database past its heartbeat's staleness, a worker's submission is started
    again elsewhere; what the first writes when it returns must not mix with the second's work."""
    from leaderboard.models import Report
    from leaderboard.services import report_record, submission_fail, submission_succeed

    first = submission_start(submission.pk, holder="host-a 100 space 1")
    Submission.objects.filter(pk=submission.pk).update(deadline_at=past(), heartbeat_at=past(120))
    second = submission_start(submission.pk, holder="host-b 200 space 2")
    assert second is not None and second.attempts == 2
    report_record(first, evaluator="performance", seconds=1.0, metrics={"accuracy": 0.1})
    submission_fail(first, "the first attempt's model failed", stage="predicting")
    submission_succeed(first)
    row = Submission.objects.get(pk=submission.pk)
    assert row.status == "running" and row.holder == "host-b 200 space 2" and row.metrics == {}
    assert not Report.objects.filter(submission=row).exists()
    report_record(second, evaluator="performance", seconds=1.0, metrics={"accuracy": 0.8})
    submission_succeed(second)
    row = Submission.objects.get(pk=submission.pk)
    assert row.status == "succeeded" and row.metrics == {"accuracy": 0.8}
