"""Fixtures on real components: PostgreSQL, a Redis broker and Celery worker processes.

The environment they share is fixed in tests/environment.py, before Django reads its settings.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.environment import PROJECT_DIR, VAR_DIR


def worker_start(database_name: str, *extra_env: tuple[str, str]) -> subprocess.Popen:
    """A Celery worker in its own process group, on the test database, as production runs one."""
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database_name}",
        **dict(extra_env),
    }
    log = open(VAR_DIR / f"worker-{time.monotonic_ns()}.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "evaluate,latency,sweep",
         "--concurrency", "1", "--pool", "prefork", "--loglevel", "INFO", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=PROJECT_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def worker_kill(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        process.wait(timeout=30)


# What Celery keeps in Redis for Holdout's queues; on a broker this run does not own, only these go.
BROKER_KEYS = ("evaluate", "latency", "sweep", "unacked", "unacked_index", "unacked_mutex")


def broker_empty(client) -> None:
    """Drop every queued message, so none from another test is delivered; never what others keep."""
    from tests.environment import BROKER_OWNED

    if BROKER_OWNED:  # this run's own redis-server: everything in it is this run's
        client.flushdb()
    else:
        client.delete(*BROKER_KEYS, *client.keys("_kombu.binding.*"))


@pytest.fixture
def broker():
    """The broker with no message in it, so no message from another test is delivered."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker_empty(client)
    yield client
    broker_empty(client)


@pytest.fixture
def celery_worker(transactional_db, broker):
    from django.db import connection

    process = worker_start(connection.settings_dict["NAME"])
    yield process
    worker_kill(process, signal.SIGTERM)


def wait_for(predicate, *, timeout: float = 90.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


ADULT_TRAIN_ROWS = 3000
ADULT_TEST_ROWS = 2000


@pytest.fixture(scope="session")
def adult_frames():
    """A slice of the bundled Adult data: big enough for honest models, small enough to be quick."""
    from leaderboard.demo.build_adult import ADULT_TEST_PATH, ADULT_TRAIN_PATH
    from leaderboard.tables import table_from_parquet

    train = table_from_parquet(ADULT_TRAIN_PATH.read_bytes()).sample(ADULT_TRAIN_ROWS, random_state=1)
    test = table_from_parquet(ADULT_TEST_PATH.read_bytes()).sample(ADULT_TEST_ROWS, random_state=2)
    return train.reset_index(drop=True), test.reset_index(drop=True)


@pytest.fixture(scope="session")
def adult_baselines(adult_frames):
    """The demo's baselines trained on the slice: {name: Baseline} with real skops and ONNX bytes."""
    from leaderboard.demo.baselines import train_baselines
    from leaderboard.demo.synthetic import ADULT_SPEC

    return {baseline.filename.rsplit(".", 1)[-1] + ":" + baseline.name: baseline
            for baseline in train_baselines(adult_frames[0], ADULT_SPEC, quick=True)}


def baseline_named(baselines: dict, fragment: str):
    return next(baseline for key, baseline in baselines.items() if fragment in key)


@pytest.fixture
def adult_benchmark(db, adult_frames):
    from leaderboard.demo.seeding import benchmark_from_spec
    from leaderboard.demo.synthetic import ADULT_SPEC

    return quick(benchmark_from_spec(ADULT_SPEC, *adult_frames, time_limit_seconds=60))


@pytest.fixture
def user(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("alice", "alice@example.com", "correct horse battery")


@pytest.fixture
def api_client(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


# Small budgets keep the sampled and timed evaluators quick in tests; the defaults are larger.
QUICK_EVALUATOR_OPTIONS = {
    "interpretability": {"max_rows": 24, "max_seconds": 10, "background_rows": 20},
    "latency": {"max_seconds": 1.0, "min_calls": 50},
}


def quick(benchmark):
    benchmark.evaluator_options = {**benchmark.evaluator_options, **QUICK_EVALUATOR_OPTIONS}
    benchmark.save(update_fields=["evaluator_options"])
    return benchmark


@pytest.fixture(scope="session")
def lending_frames():
    from leaderboard.demo.synthetic import lending_dataset

    return lending_dataset(n_train=3000, n_test=3600)


@pytest.fixture(scope="session")
def lending_baselines(lending_frames):
    from leaderboard.demo.baselines import train_baselines
    from leaderboard.demo.synthetic import LENDING_SPEC

    return {baseline.filename.rsplit(".", 1)[-1] + ":" + baseline.name: baseline
            for baseline in train_baselines(lending_frames[0], LENDING_SPEC, quick=True)}


@pytest.fixture
def lending_benchmark(db, lending_frames):
    """The generated benchmark: sensitive columns and a time column, so every evaluator applies."""
    from leaderboard.demo.seeding import benchmark_from_spec
    from leaderboard.demo.synthetic import LENDING_SPEC

    return quick(benchmark_from_spec(LENDING_SPEC, *lending_frames, time_limit_seconds=120))


def succeeded_submission(
    benchmark, user, model, name, metrics, *, baseline=False, intervals=None, documents=None, resamples=None
):
    """A succeeded submission with these performance metrics, recorded through the services a worker uses.

    `documents`: {evaluator: document} of further reports; `resamples`: {key: B values}, stored as
    the submission's paired resamples (float32, one row per key).
    """
    import numpy as np

    from leaderboard.models import Submission
    from leaderboard.services import report_record, submission_create, submission_succeed

    submission, _ = submission_create(
        benchmark=benchmark, owner=user, name=name, artifact=model.data, artifact_filename=model.filename,
        is_baseline=baseline,
    )
    report_record(submission, evaluator="performance", seconds=0.1, metrics=metrics, intervals=intervals)
    for evaluator, document in (documents or {}).items():
        report_record(submission, evaluator=evaluator, seconds=0.1, metrics={}, document=document)
    if resamples:
        matrix = np.array([resamples[key] for key in resamples], dtype=np.float32)
        Submission.objects.filter(pk=submission.pk).update(resamples=matrix.tobytes(), resample_keys=list(resamples))
    submission_succeed(submission)
    return submission
