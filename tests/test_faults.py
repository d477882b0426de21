"""Faults on real components: worker processes killed with real signals, model processes that die
writing their results, database connections terminated under a running task, a model with no
network. Every process a test kills is one it started, killed by its id."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from leaderboard.holders import HEARTBEAT_STALE_SECONDS, holder_this_process
from leaderboard.models import Submission
from leaderboard.services import submission_create, submission_start, submissions_sweep
from tests import model_factories as factories
from tests.conftest import baseline_named, wait_for, worker_kill, worker_start
from tests.environment import PROJECT_DIR

# Far below the default time limit (600 s) and the test benchmarks' (60 s), so a resume that
# waited for the deadline fails, and far above a worker's start on a busy 2-core machine.
RESUME_BOUND_SECONDS = 60


def submit(benchmark, user, data: bytes, filename: str, name: str = "model") -> Submission:
    submission, _ = submission_create(
        benchmark=benchmark, owner=user, name=name, artifact=data, artifact_filename=filename
    )
    return submission


def current(submission: Submission) -> Submission:
    return Submission.objects.get(pk=submission.pk)


def database_name() -> str:
    return connection.settings_dict["NAME"]


def model_processes(marker: str) -> list[int]:
    """The pids of live model processes whose command line or working folder mentions `marker`
    (a fresh interpreter names its request; one forked by a model server runs in its folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                folder = os.readlink(entry / "cwd")
            except OSError:
                continue
            if "evaluators.model_process" in command and marker in command + " " + folder:
                pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie runs nothing


# --- A killed worker's submission resumes at once -------------------------------------------------


def test_a_worker_killed_mid_evaluation_is_resumed_by_the_next_worker_within_a_minute(
    transactional_db, broker, user, adult_benchmark, adult_baselines
):
    worker = worker_start(database_name())
    model = baseline_named(adult_baselines, "Random forest")
    submission = submit(adult_benchmark, user, model.data, model.filename)
    wait_for(lambda: current(submission).status == "running", timeout=90, interval=0.02, what="the evaluation to start")
    held = current(submission)
    assert held.holder and held.heartbeat_at, "a claim records its holder and heartbeat"

    worker_kill(worker, signal.SIGKILL)
    killed_at = time.monotonic()
    assert current(submission).deadline_at > timezone.now() + timedelta(seconds=30), "the deadline is far off"
    replacement = worker_start(database_name())
    try:
        wait_for(lambda: current(submission).attempts == 2, timeout=120, interval=0.05, what="the takeover")
        resumed_after = time.monotonic() - killed_at
        done = wait_for(lambda: (s := current(submission)).is_finished and s, timeout=120, what="the evaluation")
    finally:
        worker_kill(replacement, signal.SIGTERM)
    print(f"resumed {resumed_after:.1f} s after the kill")
    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    assert resumed_after < RESUME_BOUND_SECONDS


def test_a_redelivery_takes_over_from_a_dead_holder_on_this_machine_before_the_deadline(
    adult_benchmark, adult_baselines, user
):
    model = baseline_named(adult_baselines, "onnx:")
    submission = submit(adult_benchmark, user, model.data, model.filename)
    # This machine, a process that has ended: the holder a SIGKILLed worker leaves on its row.
    dead = holder_this_process().split()
    dead[1] = str(_finished_pid())
    submission_start(submission.pk, holder=" ".join(dead))
    taken = submission_start(submission.pk, holder="another worker")
    assert taken is not None and taken.attempts == 2


def _finished_pid() -> int:
    """A pid that ran on this machine and has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_holder_keeps_its_submission_and_a_silent_one_elsewhere_loses_it(adult_benchmark, adult_baselines, user):
    model = baseline_named(adult_baselines, "onnx:")
    submission = submit(adult_benchmark, user, model.data, model.filename)
    elsewhere = "other-host 4242 another-boot/4026531836 12345"
    submission_start(submission.pk, holder=elsewhere)
    assert submission_start(submission.pk, holder="me") is None, "a beating holder elsewhere is left alone"
    assert submissions_sweep() == {"requeued": 0, "failed": 0}

    stale = timezone.now() - timedelta(seconds=HEARTBEAT_STALE_SECONDS + 1)
    Submission.objects.filter(pk=submission.pk).update(heartbeat_at=stale)
    assert submissions_sweep() == {"requeued": 1, "failed": 0}
    swept = current(submission)
    assert swept.status == "queued" and swept.holder == "" and swept.attempts == 1


def test_the_heartbeat_thread_refreshes_the_claim_until_it_stops(
    transactional_db, adult_benchmark, adult_baselines, user
):
    from workers.heartbeat import heartbeat

    model = baseline_named(adult_baselines, "onnx:")
    holder = holder_this_process()
    submission = submission_start(submit(adult_benchmark, user, model.data, model.filename).pk, holder=holder)
    first = current(submission).heartbeat_at
    with heartbeat(submission, holder=holder, interval=0.05):
        wait_for(lambda: current(submission).heartbeat_at > first, timeout=10, what="a heartbeat")
    last = current(submission).heartbeat_at
    time.sleep(0.3)
    assert current(submission).heartbeat_at == last, "no beat after the task ends"


# --- A killed worker leaves no model process and no folder -------------------------------------------


def test_a_killed_worker_takes_its_model_process_with_it_and_the_next_worker_removes_its_folders(
    transactional_db, broker, user, adult_benchmark, tmp_path
):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    worker = worker_start(database_name(), ("TMPDIR", str(scratch)))
    try:
        submission = submit(adult_benchmark, user, factories.endless_loop_regressor(), "hangs.onnx")
        model = wait_for(lambda: model_processes(str(scratch)), timeout=90, what="the model process to start")
        assert sorted(p.name.split("-")[1] for p in holdout_folders(scratch)) == ["eval", "model"]
    finally:
        worker_kill(worker, signal.SIGKILL)
    wait_for(lambda: not any(map(_alive, model)), timeout=10, what=f"the model process {model} to die with its worker")
    left = holdout_folders(scratch)
    assert len(left) == 2, "a SIGKILLed worker cannot clean up after itself"

    # Not evaluated again: only what the killed worker left is at stake.
    Submission.objects.filter(pk=submission.pk).update(status="failed")
    replacement = worker_start(database_name(), ("TMPDIR", str(scratch)))
    try:
        wait_for(lambda: not holdout_folders(scratch), timeout=90, what=f"the next worker to remove {left}")
    finally:
        worker_kill(replacement, signal.SIGTERM)


def holdout_folders(directory: Path) -> list[Path]:
    # The runtime libraries keep folders of their own in TMPDIR too.
    return sorted(directory.glob("holdout-*"))


def test_only_folders_of_ended_processes_are_removed(tmp_path):
    from workers.cleanup import stale_folders_remove

    ended = _finished_pid()
    mine = tmp_path / f"holdout-model-{os.getpid()}-abc"
    orphan = tmp_path / f"holdout-eval-{ended}-def"
    unrelated = tmp_path / f"other-{ended}-x"
    for folder in (mine, orphan, unrelated):
        folder.mkdir()
        (folder / "features.parquet").write_bytes(b"hidden")
    assert stale_folders_remove(str(tmp_path)) == [orphan]
    assert mine.exists() and unrelated.exists() and not orphan.exists()


def test_a_process_a_model_started_is_killed_once_its_worker_is_gone():
    """A grandchild (what joblib's loky would start) outlives the model process's PR_SET_PDEATHSIG:
    it carries its worker's identity, and the cleanup kills it once that worker has ended."""
    from evaluators.processes import MODEL_OWNER_VARIABLE, owner_identity
    from workers.cleanup import orphan_models_kill

    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    orphan = subprocess.Popen(sleeper, env={**os.environ, MODEL_OWNER_VARIABLE: owner_identity(worker.pid)})
    kept = subprocess.Popen(sleeper, env={**os.environ, MODEL_OWNER_VARIABLE: owner_identity()})
    try:
        time.sleep(0.2)  # the environment is readable once the child has started
        assert orphan.pid not in orphan_models_kill(), "its worker still lives"
        worker.kill()
        worker.wait()
        killed = orphan_models_kill()
        assert orphan.pid in killed and kept.pid not in killed
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert kept.poll() is None, "a model process of a live worker (this test) is left alone"
    finally:
        for process in (worker, orphan, kept):
            process.kill()
            process.wait()


# --- A model that dies writing its results is the model's fault ----------------------------------

# The end-to-end reproduction (a classifier whose two labels were 40 M control characters, so
# writing its class list as JSON ran out of memory after predicting fitted) no longer exists: the
# classes are now the ones the model declares or one per probability column, never what it
# returned. What the sandbox makes of a result left unreadable by a dying process is tested above
# on crafted files.


# --- The model process has no network --------------------------------------------------------------


def test_a_model_process_with_its_own_network_namespace_cannot_reach_the_database():
    """The isolation the model process enters first, then the connection a model would try."""
    probe = (
        "import json, socket\n"
        "from evaluators.model_process import isolate_network\n"
        "network = isolate_network()\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 5432), timeout=5).close()\n"
        "    reached = True\n"
        "except OSError:\n"
        "    reached = False\n"
        "print(json.dumps({'network': network, 'reached': reached}))\n"
    )
    answer = json.loads(subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_DIR, capture_output=True, text=True, check=True, timeout=60
    ).stdout)
    with socket.create_connection(("127.0.0.1", 5432), timeout=5):
        pass  # this process, outside the namespace, reaches it
    if not answer["network"]["isolated"]:
        pytest.skip(f"this kernel gives the model process no network namespace: {answer['network']['summary']}")
    assert answer["network"]["summary"].startswith("network: none")
    assert answer["reached"] is False


def test_every_report_says_whether_the_model_process_had_a_network(adult_benchmark, adult_baselines, user):
    from workers.evaluation import submission_evaluate

    adult_benchmark.evaluators = ["performance", "size"]
    adult_benchmark.save(update_fields=["evaluators"])
    model = baseline_named(adult_baselines, "onnx:")
    submission = submit(adult_benchmark, user, model.data, model.filename)
    submission_evaluate(str(submission.pk))
    assert current(submission).status == "succeeded", current(submission).error
    for report in current(submission).reports.all():
        network = report.document["sandbox"]["network"]
        assert isinstance(network["isolated"], bool), report.evaluator
        assert network["summary"].startswith("network: none" if network["isolated"] else "network: not isolated (")


# --- A lost database connection costs a reconnect, not an attempt --------------------------------


def test_a_worker_whose_database_connections_are_terminated_mid_evaluation_still_records_the_result(
    transactional_db, broker, user, adult_benchmark, adult_baselines
):
    worker = worker_start(database_name())
    try:
        model = baseline_named(adult_baselines, "Random forest")
        submission = submit(adult_benchmark, user, model.data, model.filename)
        wait_for(lambda: current(submission).stage == "predicting", timeout=90, interval=0.02, what="the model to run")
        # Every connection to this run's database but the test's own: the worker's, as a database
        # restart or failover would end them.
        with connection.cursor() as cursor:
            cursor.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where datname = current_database() and pid <> pg_backend_pid()"
            )
            terminated = cursor.fetchall()
        assert terminated, "the worker had no connection to terminate"
        done = wait_for(lambda: (s := current(submission)).is_finished and s, timeout=180, what="the evaluation")
    finally:
        worker_kill(worker, signal.SIGTERM)
    assert done.status == "succeeded", done.error
    assert done.attempts == 1 and done.latency_attempts == 1, "the lost connection cost no attempt"


# --- The sweep: its own queue, and no re-sends of what only waits --------------------------------

ELSEWHERE = "other-host 4242 another-boot/4026531836 12345"


def expire(*submissions: Submission) -> None:
    past = timezone.now() - timedelta(seconds=1)
    Submission.objects.filter(pk__in=[s.pk for s in submissions]).update(deadline_at=past)


def test_the_sweep_is_sent_to_its_own_queue_and_expires_within_its_interval(broker, settings):
    from workers.tasks import sweep_stuck_submissions

    sweep_stuck_submissions.apply_async()
    assert broker.llen("evaluate") == 0
    (raw,) = broker.lrange("sweep", 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == "holdout.sweep_stuck_submissions"
    assert message["headers"]["expires"], "a sweep that waited a whole interval is dropped"


def test_a_submission_waiting_behind_busy_workers_is_not_sent_again(adult_benchmark, adult_baselines, user):
    model = baseline_named(adult_baselines, "onnx:")
    running = submit(adult_benchmark, user, model.data, model.filename, name="running")
    waiting = submit(adult_benchmark, user, model.data, model.filename, name="waiting")
    submission_start(running.pk, holder=ELSEWHERE)
    expire(waiting)
    assert submissions_sweep() == {"requeued": 0, "failed": 0}
    assert current(waiting).status == "queued" and current(waiting).sent_at == waiting.sent_at


def test_a_submission_the_queue_passed_over_is_sent_again(adult_benchmark, adult_baselines, user):
    model = baseline_named(adult_baselines, "onnx:")
    lost = submit(adult_benchmark, user, model.data, model.filename, name="lost")
    later = submit(adult_benchmark, user, model.data, model.filename, name="later")
    submission_start(later.pk, holder=ELSEWHERE)  # a message sent after it was delivered
    expire(lost)
    assert submissions_sweep() == {"requeued": 1, "failed": 0}
    assert current(lost).sent_at > lost.sent_at


def test_an_undelivered_submission_with_no_worker_busy_is_sent_again(adult_benchmark, adult_baselines, user):
    model = baseline_named(adult_baselines, "onnx:")
    lost = submit(adult_benchmark, user, model.data, model.filename)
    expire(lost)
    assert submissions_sweep() == {"requeued": 1, "failed": 0}


@pytest.mark.parametrize(
    ("returncode", "stderr", "fault"),
    [
        (-signal.SIGKILL, "", "the model process ran out of its 1024 MB memory limit while writing its results"),
        (-signal.SIGSEGV, "", "the model process crashed (signal SIGSEGV) while writing its results"),
        (1, "MemoryError", "the model process ran out of its 1024 MB memory limit while writing its results"),
        (0, "", None),  # it ended of its own accord: what broke the file is not the model
    ],
)
def test_a_truncated_result_file_is_the_models_fault_only_when_its_process_died(tmp_path, returncode, stderr, fault):
    from evaluators.sandbox import Limits, ModelFailure, _Ending, _read_predictions

    outcome = tmp_path / "outcome.json"
    outcome.write_text(json.dumps({"status": "ok", "classes": ["a", "b"], "predict_seconds": 0.1})[:25])
    request = {"outcome_path": str(outcome), "arrays_path": str(tmp_path / "predictions.npz"), "predict": True}
    ending = _Ending(returncode, False, stderr, Limits(memory_bytes=2**30, cpu_seconds=60, wall_seconds=60))
    with pytest.raises(ModelFailure if fault else RuntimeError) as failed:
        _read_predictions(request, ending)
    if fault:
        assert str(failed.value) == fault
    else:
        assert not isinstance(failed.value, ModelFailure) and "could not be read" in str(failed.value)
