"""Fault-injection soak (issue 12): submissions keep flowing while the service's parts are killed.

Starts a whole service of its own under one temporary folder, on its own free ports: a PostgreSQL
cluster (initdb/pg_ctl from /usr/lib/postgresql/*/bin, run as the `postgres` OS user, data dir in
the folder), a Redis broker (AOF on, data dir in the folder), gunicorn with 2 workers, two
evaluation workers (`celery -Q evaluate --concurrency 1` each), a latency worker (`-Q latency
--concurrency 1`) and the sweep worker (`-B -Q sweep --pool solo`, the periodic sweep on a queue
of its own, as scripts/run.sh starts it; it is never killed). The service's TMPDIR is a folder of the soak's
own, so the leftover count sees only this service's temporary folders. It seeds the Adult demo
(`seed_demo --benchmarks adult --quick`), waits for the five baselines, makes a staff user and a
token, and then:

- submits `--submissions` models over HTTP (the demo's logistic regression as skops and as ONNX,
  and the majority-class model, all from `train_baselines(quick=True)`), at most `--backlog`
  unfinished at a time (one unfinished for over `--stale` seconds no longer counts, so stuck ones
  do not stall the soak; and one is sent at least every `--max-gap` seconds). Every fourth request carries an Idempotency-Key and is sent a second time
  right after the first answer; every fourth other one carries a key and is sent twice at once
  (two racing requests). Keyed requests are retried like the `holdout` client does (connection
  errors, timeouts, 502/503/504; 4 retries, backoff 1, 2, 4, 8 s); unkeyed ones are sent once,
  as curl would.
- injects faults every `--fault-interval` seconds once `--warmup` submissions have finished
  undisturbed, cycling through `--faults` (default all):
    eval-worker     SIGKILL of one evaluation worker's process group (the Celery main process and
                    its pool child) and of the process groups of its model child processes (which
                    run in sessions of their own), as a cgroup-wide kill (an OOM kill of the
                    container) would; chosen while it runs a model if one does within 30 s.
                    `--eval-kill group` kills the worker's process group only.
    latency-worker  SIGKILL of the latency worker's process group only, while it times a model if
                    it does within 60 s; the model child, in its own session, is left to whatever
                    the code does about it.
    broker          SIGKILL of redis-server, down for `--broker-down` seconds, restarted on the same
                    port with the same data directory.
    database        `pg_ctl restart -m fast` of the soak's own cluster.
    web             SIGKILL of the gunicorn worker that is reading an upload: an extra keyed
                    submission is uploaded slowly by hand (half its body, then the kill, then the
                    rest); the client then retries it with the same key. Gunicorn's master respawns
                    the worker.
  A supervisor thread restarts any managed process that exits (the killed ones and any that die on
  their own; these are reported as unexpected exits) after 1 s, as systemd's Restart=always would.
- waits until every accepted submission is terminal, or `--wait` seconds after the last one was
  accepted, and prints the table below, with each fault's effect and every failure's error.

Definitions:
- accepted: logical submissions (one name each, including their replays and retries) that got at
  least one HTTP 2xx; stored: their rows in the database; lost: accepted ids with no row;
  duplicated: rows beyond one per logical submission (= rows - distinct keys - unkeyed requests);
  stuck: accepted, not succeeded or failed at the deadline. Failed by model / by platform follow
  the Submission.fault field.
- a submission's time is from its first 2xx (client clock) to its finished_at (server clock; the
  same machine). It is affected by a fault when the fault's window (from the kill to the moment
  the part was running again) overlaps the time it was in flight. The baseline is the median time
  of the succeeded submissions no fault affected. The delay a fault added is, over the submissions
  it affected, the largest of (time - baseline); for a stuck one, (deadline - accepted - baseline),
  shown as ">=". The table also gives, per fault, the time from the fault to the end of the last
  submission it affected.
- orphans: processes whose command line contains `evaluators.model_process`, whose working folder
  is in the soak's TMPDIR (so other work on the machine is never counted) and whose parent chain
  reaches no live worker of ours; counted at the end, and also every 5 s during the run.
- leftovers: holdout-model-* and holdout-eval-* folders in the soak's TMPDIR at the end that no
  live model process of a live worker is using (two looks 2 s apart; a folder must be unused in
  both).

    .venv/bin/python bench/soak.py                      # 100 submissions, every fault
    .venv/bin/python bench/soak.py --submissions 10 --quick
    .venv/bin/python bench/soak.py --faults eval-worker,broker --submissions 30 --keep

Kills only what it started: the process groups of the processes it spawned (each is started in a
session of its own), the PostgreSQL cluster it created (by the pid in its postmaster.pid, or
pg_ctl), the Redis it started, and, after counting them, the model processes of its own workers
that were left behind (by pid). It never touches the machine's PostgreSQL on 5432 or Redis on
6379. Prints "MISSED" beside a figure that misses its target and exits 0: it is a bench, not a test.
"""

import argparse
import glob
import http.client
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import psutil
import psycopg
import requests
from urllib3 import encode_multipart_formdata

sys.path.insert(0, str(Path(__file__).resolve().parent))
from submit_to_result import PROJECT, PYTHON, free_port, manage  # noqa: E402

FAULT_KINDS = ("eval-worker", "latency-worker", "broker", "database", "web")
TERMINAL = ("succeeded", "failed")
MODEL_PROCESS = "evaluators.model_process"
RESTART_DELAY = 1.0
RETRY_BACKOFF = (1, 2, 4, 8)
RETRY_STATUSES = (502, 503, 504)
TARGET_DELAY = 60.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the service's parts ------------------------------------------------------------------------


class Managed:
    """One process of the service, in a session (process group) of its own, restarted when it exits."""

    def __init__(self, name: str, argv: list[str], env: dict, logfile: Path, cwd: Path = PROJECT):
        self.name, self.argv, self.env, self.logfile, self.cwd = name, argv, env, logfile, cwd
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.held = False  # a fault keeps it down; the supervisor leaves it alone
        self.expected_exit = False  # the soak killed it; not an unexpected exit
        self.starts = 0

    def start(self) -> None:
        with open(self.logfile, "ab") as out:
            out.write(f"\n==== {time.strftime('%H:%M:%S')} start {self.name} ====\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill_group(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def stop(self, grace: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.kill_group()


class Postgres:
    """A cluster of the soak's own, run as the postgres OS user (initdb refuses root)."""

    def __init__(self, root: Path, port: int):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
        if not bins:
            raise SystemExit("no PostgreSQL binaries in /usr/lib/postgresql/*/bin")
        self.bin = Path(bins[-1])
        self.port = port
        self.data = root / "pgdata"
        self.sockets = root / "pgsock"
        self.logfile = root / "logs" / "postgres.log"
        account = pwd.getpwnam("postgres")
        for folder in (self.data, self.sockets):
            folder.mkdir(mode=0o700)
            os.chown(folder, account.pw_uid, account.pw_gid)
        self.logfile.touch()
        os.chown(self.logfile, account.pw_uid, account.pw_gid)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], check=check, capture_output=True, text=True, cwd="/"
        )

    def init_and_start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w",
                  "-t", "60", "start")
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "holdout_soak")

    def restart(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-m", "fast", "-w",
                  "-t", "60", "restart")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        result = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop",
                           check=False)
        pid = self.postmaster_pid()
        if result.returncode != 0 and pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)  # pg_ctl started it in a session of its own
            except ProcessLookupError:
                pass


class Service:
    def __init__(self, root: Path, options):
        self.root = root
        self.options = options
        self.logs = root / "logs"
        self.tmp = root / "tmp"
        self.var = root / "var"
        for folder in (self.logs, self.tmp, self.var, self.var / "static", root / "redis"):
            folder.mkdir(parents=True)
        self.web_port, self.pg_port, self.redis_port = free_port(), free_port(), free_port()
        while len({self.web_port, self.pg_port, self.redis_port, 5432, 6379}) < 5:
            self.pg_port, self.redis_port = free_port(), free_port()
        self.pg = Postgres(root, self.pg_port)
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.pg_port}/holdout_soak",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "HOLDOUT_VAR_DIR": str(self.var),
            "MEDIA_ROOT": str(self.var / "media"),
            "TMPDIR": str(self.tmp),
            "PYTHONUNBUFFERED": "1",
        }
        celery = [PYTHON, "-m", "celery", "-A", "workers.app"]
        self.redis = Managed(
            "redis",
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(root / "redis"),
             "--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "yes"],
            self.env, self.logs / "redis.log",
        )
        self.web = Managed(
            "gunicorn",
            [PYTHON, "-m", "gunicorn", "leaderboard.wsgi", "--bind", f"127.0.0.1:{self.web_port}", "--workers", "2"],
            self.env, self.logs / "gunicorn.log",
        )
        self.evaluators = [
            Managed(
                f"evaluate{i}",
                [*celery, "worker", "-Q", "evaluate", "--concurrency", "1", "--hostname", f"evaluate{i}@%h",
                 "--loglevel", "INFO"],
                self.env, self.logs / f"evaluate{i}.log",
            )
            for i in (1, 2)
        ]
        self.latency = Managed(
            "latency",
            [*celery, "worker", "-Q", "latency", "--concurrency", "1", "--hostname", "latency@%h", "--loglevel", "INFO"],
            self.env, self.logs / "latency.log",
        )
        self.beat = Managed(
            "beat",
            # The sweep's own worker with the scheduler embedded, as scripts/run.sh starts it.
            [*celery, "worker", "-B", "-Q", "sweep", "--pool", "solo", "--hostname", "sweep@%h",
             "--schedule", str(self.var / "celerybeat-schedule"), "--loglevel", "INFO"],
            self.env, self.logs / "beat.log",
        )
        self.unexpected_exits: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def workers(self) -> list[Managed]:
        return [*self.evaluators, self.latency]

    @property
    def supervised(self) -> list[Managed]:
        return [self.redis, self.web, *self.workers, self.beat]

    def start_storage(self) -> None:
        self.pg.init_and_start()
        self.redis.start()
        self.wait_redis()

    def wait_redis(self, timeout: float = 30) -> None:
        import redis

        client = redis.Redis(port=self.redis_port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError("redis did not answer")

    def start_rest(self) -> None:
        for part in (self.web, *self.workers, self.beat):
            part.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                requests.get(self.url("/api/v1/benchmarks/"), timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            raise SystemExit(f"the service did not answer within 90 s; see {self.logs}")
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def _supervise(self) -> None:
        while not self._stop.is_set():
            for part in self.supervised:
                with part.lock:
                    if part.held or part.process is None or part.process.poll() is None:
                        continue
                    if not part.expected_exit:
                        self.unexpected_exits.append((time.time(), part.name, part.process.returncode))
                        log(f"supervisor: {part.name} exited on its own (status {part.process.returncode})")
                    time.sleep(RESTART_DELAY)
                    if self._stop.is_set():
                        return
                    try:
                        part.start()
                    except OSError as error:  # e.g. the interpreter is being reinstalled: try again
                        log(f"supervisor: could not restart {part.name}: {error}")
                        self.unexpected_exits.append((time.time(), f"{part.name} (restart failed: {error})", -1))
                        continue
                    part.expected_exit = False
                    log(f"supervisor: restarted {part.name} (pid {part.pid})")
            self._stop.wait(0.3)

    def web_workers(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.web.pid).children()
        except (psutil.Error, TypeError):
            return []

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=10)
        for part in (self.web, self.beat, *self.workers):
            part.stop()
        self.redis.stop()
        self.pg.stop()


# --- processes and folders of ours --------------------------------------------------------------


def worker_pids(service: Service) -> set[int]:
    """The live processes of our Celery workers: main processes and their pool children."""
    pids = set()
    for part in service.workers:
        if part.alive():
            try:
                main = psutil.Process(part.pid)
                pids.add(main.pid)
                pids.update(child.pid for child in main.children() if MODEL_PROCESS not in " ".join(child.cmdline()))
            except psutil.Error:
                pass
    return pids


def our_model_processes(service: Service) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if MODEL_PROCESS in cmdline and str(service.tmp) in (process.info["cwd"] or "") + cmdline:
            found.append(process)
    return found


def has_live_worker_ancestor(process: psutil.Process, workers: set[int]) -> bool:
    try:
        return any(parent.pid in workers for parent in process.parents())
    except psutil.Error:
        return False


def orphans(service: Service) -> list[psutil.Process]:
    workers = worker_pids(service)
    return [p for p in our_model_processes(service) if p.is_running() and not has_live_worker_ancestor(p, workers)]


def model_children(part: Managed) -> list[psutil.Process]:
    try:
        return [
            child for child in psutil.Process(part.pid).children(recursive=True)
            if MODEL_PROCESS in " ".join(child.cmdline())
        ]
    except (psutil.Error, TypeError):
        return []


def _group_of(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except ProcessLookupError:
        return None


def folders_in_use(service: Service) -> set[str]:
    """Temporary folders of live model processes of live workers: the model folder and its eval folder."""
    workers = worker_pids(service)
    used = set()
    for process in our_model_processes(service):
        if not has_live_worker_ancestor(process, workers):
            continue
        try:
            cwd = process.cwd()
        except psutil.Error:
            continue
        used.add(os.path.basename(cwd))
        try:
            artifact = json.loads((Path(cwd) / "request.json").read_text())["artifact_path"]
            used.add(os.path.basename(os.path.dirname(artifact)))
        except (OSError, ValueError, KeyError):
            pass
    return used


def leftover_folders(service: Service) -> list[str]:
    looks = []
    for _ in range(2):
        present = {p.name for pattern in ("holdout-model-*", "holdout-eval-*") for p in service.tmp.glob(pattern)}
        looks.append(present - folders_in_use(service))
        time.sleep(2)
    return sorted(looks[0] & looks[1])


# --- submissions --------------------------------------------------------------------------------


@dataclass
class Planned:
    name: str
    model: object  # a Baseline
    key: str | None
    mode: str  # "once", "replay" (sent again after the answer), "race" (sent twice at once), "mid-upload"
    attempts: list[dict] = field(default_factory=list)
    accepted_at: float | None = None
    ids: set = field(default_factory=set)


class Submitter:
    def __init__(self, service: Service, token: str, models: list, run_tag: str):
        self.service, self.token, self.models, self.run_tag = service, token, models, run_tag
        self.planned: list[Planned] = []
        self.lock = threading.Lock()

    def plan(self, index: int, mode: str | None = None) -> Planned:
        if mode is None:
            mode = "replay" if index % 4 == 1 else "race" if index % 8 == 3 else "once"
        keyed = mode != "once"
        planned = Planned(
            name=f"soak {self.run_tag} {mode} {index:03d}",
            model=self.models[index % len(self.models)],
            key=f"soak-{self.run_tag}-{index}-{uuid.uuid4().hex[:8]}" if keyed else None,
            mode=mode,
        )
        with self.lock:
            self.planned.append(planned)
        return planned

    def _record(self, planned: Planned, **attempt) -> dict:
        attempt.setdefault("at", time.time())
        with self.lock:
            planned.attempts.append(attempt)
            if attempt.get("status") and 200 <= attempt["status"] < 300:
                planned.ids.add(attempt["id"])
                if planned.accepted_at is None:
                    planned.accepted_at = attempt["at"]
        return attempt

    def _post_once(self, planned: Planned, attempt_kind: str) -> dict:
        headers = {"Authorization": f"Token {self.token}"}
        if planned.key:
            headers["Idempotency-Key"] = planned.key
        try:
            response = requests.post(
                self.service.url("/api/v1/benchmarks/adult/submissions/"),
                headers=headers,
                files={"artifact": (planned.model.filename, planned.model.data)},
                data={"name": planned.name},
                timeout=60,
            )
        except requests.RequestException as error:
            return self._record(planned, kind=attempt_kind, status=None, error=type(error).__name__)
        body = {}
        try:
            body = response.json()
        except ValueError:
            pass
        return self._record(
            planned, kind=attempt_kind, status=response.status_code, id=body.get("id"),
            replayed=response.headers.get("Idempotent-Replayed") == "true",
            error=None if response.ok else str(body)[:200],
        )

    def post(self, planned: Planned, attempt_kind: str = "send") -> dict:
        """One logical send; a keyed one is retried as the holdout client retries."""
        attempt = self._post_once(planned, attempt_kind)
        if planned.key is None:
            return attempt
        for delay in RETRY_BACKOFF:
            if attempt["status"] is not None and attempt["status"] not in RETRY_STATUSES:
                break
            time.sleep(delay)
            attempt = self._post_once(planned, f"{attempt_kind} retry")
        return attempt

    def submit(self, planned: Planned) -> None:
        if planned.mode == "race":
            threads = [threading.Thread(target=self.post, args=(planned, f"race {i}")) for i in (1, 2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            self.post(planned)
            if planned.mode == "replay":
                self.post(planned, "replay")

    def slow_upload_killed(self, planned: Planned, kill) -> str:
        """Upload half the body by hand, let `kill(worker pid)` act, then send the rest; then retry.

        Returns what happened, for the fault's detail.
        """
        body, content_type = encode_multipart_formdata(
            {"name": planned.name, "artifact": (planned.model.filename, planned.model.data)}
        )
        connection = http.client.HTTPConnection("127.0.0.1", self.service.web_port, timeout=30)
        detail = ""
        started = time.time()
        try:
            connection.putrequest("POST", "/api/v1/benchmarks/adult/submissions/")
            for header, value in (
                ("Authorization", f"Token {self.token}"), ("Idempotency-Key", planned.key),
                ("Content-Type", content_type), ("Content-Length", str(len(body))),
            ):
                connection.putheader(header, value)
            connection.endheaders()
            local_port = connection.sock.getsockname()[1]
            connection.send(body[: len(body) // 2])
            holder = None
            deadline = time.monotonic() + 20
            while holder is None and time.monotonic() < deadline:
                for worker in self.service.web_workers():
                    try:
                        if any(c.raddr and c.raddr.port == local_port for c in worker.net_connections("tcp")):
                            holder = worker.pid
                    except psutil.Error:
                        pass
                time.sleep(0.05)
            if holder is None:
                detail = "no gunicorn worker took the upload within 20 s; killed none; "
            else:
                time.sleep(0.3)  # the worker is now blocked reading the rest of the body
                kill(holder)
                detail = f"killed gunicorn worker {holder} with half of a {len(body)} B upload read; "
            time.sleep(0.2)
            connection.send(body[len(body) // 2:])
            response = connection.getresponse()
            self._record(planned, kind="slow upload", status=response.status, id=None, at=time.time(),
                         error=response.read()[:200].decode(errors="replace"))
            detail += f"the upload got {response.status}"
        except OSError as error:
            self._record(planned, kind="slow upload", status=None, error=type(error).__name__, at=time.time())
            detail += f"the upload got {type(error).__name__} after {time.time() - started:.1f} s"
        finally:
            connection.close()
        attempt = self.post(planned, "retry after kill")
        return detail + f"; the retry got {attempt['status'] or attempt['error']}" + (
            " (replayed)" if attempt.get("replayed") else ""
        )


# --- the database, read directly ----------------------------------------------------------------


class Rows:
    COLUMNS = ("id", "name", "idempotency_key", "status", "stage", "fault", "error", "created_at", "started_at",
               "finished_at", "attempts", "latency_attempts")

    def __init__(self, service: Service, owner: str):
        self.dsn = service.env["DATABASE_URL"]
        self.owner = owner
        self.connection = None

    def fetch(self) -> list[dict] | None:
        """Every row of the owner's submissions, or None while the database is unreachable."""
        try:
            if self.connection is None or self.connection.closed:
                self.connection = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
            rows = self.connection.execute(
                f"SELECT {', '.join('s.' + c for c in self.COLUMNS)} FROM leaderboard_submission s "
                "JOIN auth_user u ON u.id = s.owner_id WHERE u.username = %s",
                (self.owner,),
            ).fetchall()
        except psycopg.Error:
            if self.connection is not None:
                try:
                    self.connection.close()
                except psycopg.Error:
                    pass
            self.connection = None
            return None
        return [dict(zip(self.COLUMNS, row)) for row in rows]

    def fetch_retrying(self, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.fetch()
            if rows is not None:
                return rows
            time.sleep(1)
        raise RuntimeError("the soak's database did not answer")


# --- faults -------------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    start: float
    end: float = 0.0
    detail: str = ""
    targets: list = field(default_factory=list)  # ids of the submissions a killed worker was running


class Injector:
    def __init__(self, service: Service, submitter: Submitter, options):
        self.service, self.submitter, self.options = service, submitter, options
        self.faults: list[Fault] = []
        self.web_uploads = 0
        self.control = None

    def _running_in(self, part: Managed) -> list[str]:
        """The submissions a worker is running, as it answers Celery's `inspect active` (empty if it does not)."""
        from celery import Celery

        if self.control is None:
            self.control = Celery(broker=self.service.env["CELERY_BROKER_URL"])
        hostname = f"{part.name}@{socket.gethostname()}"
        try:
            answer = self.control.control.inspect(destination=[hostname], timeout=3, limit=1).active() or {}
        except Exception:  # noqa: BLE001 - the broker may be away; the target is then unknown
            return []
        return [str(task["args"][0]) for task in answer.get(hostname, []) if task.get("args")]

    def _kill_and_restart(self, part: Managed, extra_groups: list[int]) -> None:
        with part.lock:
            part.expected_exit = True
            part.kill_group()
            for group in extra_groups:
                try:
                    os.killpg(group, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        # The supervisor restarts it after RESTART_DELAY.
        deadline = time.monotonic() + 30
        while not part.alive() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _busy_worker(self, parts: list[Managed], wait: float) -> tuple[Managed, list[psutil.Process]]:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for part in parts:
                children = model_children(part)
                if children:
                    return part, children
            time.sleep(0.2)
        return parts[0], []

    def _survivors(self, children: list[psutil.Process]) -> list[int]:
        time.sleep(2)
        alive = []
        for child in children:
            try:
                if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child.pid)
            except psutil.Error:
                pass
        return alive

    def _kill_worker(self, fault: Fault, workers, busy_wait: int, *, verb: str, group_kill: bool) -> None:
        """SIGKILL a worker while it holds a model (waiting up to busy_wait s for one to be), and record
        which model processes outlived it; group_kill also kills the models' own process groups."""
        part, _ = self._busy_worker(workers, busy_wait)
        fault.targets = self._running_in(part)
        children = model_children(part)  # again, just before the kill
        groups = sorted(set(filter(None, map(_group_of, children)))) if group_kill else []
        fault.start = time.time()
        pid = part.pid
        self._kill_and_restart(part, groups)
        fault.end = time.time()
        survivors = self._survivors(children)
        models = f"while {verb} model pid {','.join(str(c.pid) for c in children)}" if children else "with no model running"
        fault.detail = f"{part.name} pid {pid}, {models}" + (
            f"; model processes surviving their worker: {survivors}" if survivors else ""
        )

    def inject(self, kind: str) -> Fault:
        fault = Fault(kind, time.time())
        self.faults.append(fault)
        log(f"fault: {kind}")
        if kind == "eval-worker":
            self._kill_worker(fault, self.service.evaluators, 30, verb="running", group_kill=self.options.eval_kill != "group")
        elif kind == "latency-worker":
            self._kill_worker(fault, [self.service.latency], 60, verb="timing", group_kill=False)
        elif kind == "broker":
            redis = self.service.redis
            with redis.lock:
                redis.held = True
                redis.expected_exit = True
                redis.kill_group()
            time.sleep(self.options.broker_down)
            with redis.lock:
                redis.start()
                redis.held = False
                redis.expected_exit = False
            self.service.wait_redis()
            fault.detail = f"redis down {self.options.broker_down:g} s, restarted with its AOF"
        elif kind == "database":
            started = time.monotonic()
            self.service.pg.restart()
            fault.detail = f"pg_ctl restart -m fast took {time.monotonic() - started:.1f} s"
        elif kind == "web":
            self.web_uploads += 1
            planned = self.submitter.plan(self.web_uploads, mode="mid-upload")
            planned.name = f"soak {self.submitter.run_tag} mid-upload {self.web_uploads:03d}"
            planned.key = f"soak-{self.submitter.run_tag}-upload-{self.web_uploads}-{uuid.uuid4().hex[:8]}"

            def kill(pid: int) -> None:
                fault.start = time.time()
                os.kill(pid, signal.SIGKILL)

            fault.detail = self.submitter.slow_upload_killed(planned, kill)
            deadline = time.monotonic() + 30
            while len(self.service.web_workers()) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
        fault.end = fault.end or time.time()
        log(f"fault: {kind} done: {fault.detail}")
        return fault


# --- the run ------------------------------------------------------------------------------------


def setup(service: Service) -> tuple[str, list]:
    log(f"PostgreSQL on {service.pg_port}, Redis on {service.redis_port}, web on {service.web_port}; folder {service.root}")
    service.start_storage()
    manage(service.env, "migrate", "--noinput")
    log("migrated; seeding the Adult demo (quick baselines)")
    manage(service.env, "seed_demo", "--benchmarks", "adult", "--quick")
    manage(service.env, "shell", "-c",
           "from django.contrib.auth.models import User; User.objects.create_user('soak', is_staff=True)")
    token = manage(service.env, "drf_create_token", "soak").split()[2]
    sys.path.insert(0, str(PROJECT))
    from leaderboard.demo.baselines import train_baselines
    from leaderboard.demo.synthetic import ADULT_SPEC, adult_dataset

    trained = {b.filename: b for b in train_baselines(adult_dataset()[0], ADULT_SPEC, quick=True)}
    models = [trained[name] for name in ("logistic_regression.skops", "logistic_regression.onnx", "majority_class.skops")]
    return token, models


def wait_for_baselines(service: Service, timeout: float) -> None:
    rows = Rows(service, "holdout-baselines")
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        current = rows.fetch() or []
        if current and all(row["status"] in TERMINAL for row in current):
            failed = [row for row in current if row["status"] != "succeeded"]
            log(f"baselines evaluated in {time.monotonic() - started:.0f} s" + (f", {len(failed)} failed" if failed else ""))
            return
        time.sleep(2)
    log(f"the baselines did not all finish within {timeout:.0f} s; going on")


def run(options) -> None:
    root = Path(tempfile.mkdtemp(prefix="holdout-soak-"))
    os.chmod(root, 0o755)  # the postgres user must reach its data directory
    service = Service(root, options)
    run_tag = uuid.uuid4().hex[:6]
    began = time.time()
    try:
        token, models = setup(service)
        service.start_rest()
        wait_for_baselines(service, 900)
        submitter = Submitter(service, token, models, run_tag)
        injector = Injector(service, submitter, options)
        rows = Rows(service, "soak")
        kinds = [k for k in options.faults.split(",") if k]
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise SystemExit(f"unknown faults {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}")

        submitting = threading.Event()
        submitting.set()
        orphans_seen: set[int] = set()
        state = {"rows": []}

        def submit_all() -> None:
            own_rows = Rows(service, "soak")  # a connection of this thread's own
            last = 0.0
            for index in range(options.submissions):
                while True:
                    current = own_rows.fetch()
                    if current is not None:
                        state["rows"] = current
                    # Submissions unfinished for longer than --stale are left out, so stuck ones do not stall the soak.
                    fresh = {
                        str(i) for p in submitter.planned for i in p.ids
                        if p.accepted_at and time.time() - p.accepted_at < options.stale
                    }
                    running = [r for r in state["rows"] if str(r["id"]) in fresh and r["status"] not in TERMINAL]
                    if len(running) < options.backlog or time.monotonic() - last > options.max_gap:
                        break
                    time.sleep(1)
                last = time.monotonic()
                submitter.submit(submitter.plan(index))
            submitting.clear()

        def warm() -> bool:
            done = [r for r in state["rows"] if r["status"] in TERMINAL]
            return len(done) >= options.warmup

        thread = threading.Thread(target=submit_all, daemon=True)
        thread.start()
        log(f"submitting {options.submissions} models, at most {options.backlog} unfinished at a time")
        while not warm() and submitting.is_set():
            time.sleep(1)
        log("warm-up done; faults begin" if kinds else "warm-up done; no faults chosen")
        cycle = itertools.cycle(kinds)
        done_kinds: set[str] = set()
        next_fault = next_look = time.monotonic()
        while kinds and (submitting.is_set() or done_kinds != set(kinds)):
            if time.monotonic() >= next_fault:
                kind = next(cycle)
                injector.inject(kind)
                done_kinds.add(kind)
                next_fault = time.monotonic() + options.fault_interval
            if time.monotonic() >= next_look:
                orphans_seen.update(p.pid for p in orphans(service))
                next_look = time.monotonic() + 5
            time.sleep(1)
        thread.join()
        last_accepted = max((p.accepted_at for p in submitter.planned if p.accepted_at), default=time.time())
        deadline = last_accepted + options.wait
        log(f"all sent; waiting until every accepted submission is finished, or {time.strftime('%H:%M:%S', time.localtime(deadline))}")
        last_orphan_look = 0.0
        while True:
            current = rows.fetch()
            if current is not None:
                state["rows"] = current
                accepted = {str(i) for p in submitter.planned for i in p.ids}
                open_ = [r for r in current if str(r["id"]) in accepted and r["status"] not in TERMINAL]
                if not open_:
                    break
            if time.time() > deadline:
                break
            if time.monotonic() - last_orphan_look > 5:
                orphans_seen.update(p.pid for p in orphans(service))
                last_orphan_look = time.monotonic()
            time.sleep(2)
        ended = time.time()
        final_rows = rows.fetch_retrying()
        left_orphans = orphans(service)
        orphans_seen.update(p.pid for p in left_orphans)
        leftovers = leftover_folders(service)
        record = {
            "options": vars(options),
            "began": began,
            "ended": ended,
            "planned": [
                {"name": p.name, "key": p.key, "mode": p.mode, "model": p.model.filename, "attempts": p.attempts,
                 "accepted_at": p.accepted_at, "ids": sorted(str(i) for i in p.ids)}
                for p in submitter.planned
            ],
            "faults": [vars(f) for f in injector.faults],
            "web_uploads": injector.web_uploads,
            "rows": [
                {**r, "id": str(r["id"]), **{k: r[k].timestamp() if r[k] else None for k in ("created_at", "started_at", "finished_at")}}
                for r in final_rows
            ],
            "orphans_left": [p.pid for p in left_orphans],
            "orphans_seen": sorted(orphans_seen),
            "leftovers": leftovers,
            "unexpected_exits": service.unexpected_exits,
        }
        saved = Path(tempfile.gettempdir()) / f"holdout-soak-{run_tag}.json"
        saved.write_text(json.dumps(record, indent=1, default=str))
        report(record)
        log(f"the run's record is in {saved} (bench/soak.py --report-from {saved} prints the tables again)")
        for process in left_orphans:  # ours, counted: now cleared away
            try:
                process.kill()
            except psutil.Error:
                pass
    finally:
        service.stop()
        if options.keep:
            log(f"kept {root} (logs in {root / 'logs'})")
        else:
            shutil.rmtree(root, ignore_errors=True)


def report(record: dict) -> None:
    options = SimpleNamespace(**record["options"])
    planned = [SimpleNamespace(**p) for p in record["planned"]]
    faults = [Fault(**f) for f in record["faults"]]
    rows, began, ended = record["rows"], record["began"], record["ended"]
    left_orphans, orphans_seen, leftovers = record["orphans_left"], record["orphans_seen"], record["leftovers"]
    by_id = {str(r["id"]): r for r in rows}
    by_name: dict[str, list] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    accepted = [p for p in planned if p.accepted_at is not None]
    accepted_ids = {str(i) for p in accepted for i in p.ids}
    stored = [by_id[i] for i in accepted_ids if i in by_id]
    lost = [i for i in accepted_ids if i not in by_id]
    succeeded = [r for r in stored if r["status"] == "succeeded"]
    failed_model = [r for r in stored if r["status"] == "failed" and r["fault"] != "platform"]
    failed_platform = [r for r in stored if r["status"] == "failed" and r["fault"] == "platform"]
    stuck = [r for r in stored if r["status"] not in TERMINAL]
    duplicated = sum(max(0, len(by_name.get(p.name, [])) - 1) for p in planned)
    replay_mismatch = [p for p in planned if len(p.ids) > 1]
    unaccepted_stored = [p for p in planned if p.accepted_at is None and by_name.get(p.name)]
    refused = [p for p in planned if p.accepted_at is None]
    requests_sent = sum(len(p.attempts) for p in planned)
    replays = sum(1 for p in planned for a in p.attempts if a.get("replayed"))

    def accepted_at(row) -> float:
        return next(p.accepted_at for p in accepted if str(row["id"]) in {str(i) for i in p.ids})

    def window(row) -> tuple[float, float]:
        end = row["finished_at"] if row["finished_at"] and row["status"] in TERMINAL else ended
        return accepted_at(row), end

    names = {str(r["id"]): r["name"] for r in rows}
    affected_by = {
        str(r["id"]): [f for f in faults if f.start <= window(r)[1] and (f.end or f.start) >= window(r)[0]]
        for r in stored
    }

    def charged_to(row) -> Fault | None:
        """The kill that interrupted it (it was running in the killed worker), else the first fault it met."""
        hit = affected_by[str(row["id"])]
        return next((f for f in hit if str(row["id"]) in f.targets), hit[0] if hit else None)

    charge = {str(r["id"]): charged_to(r) for r in stored}
    unaffected = [window(r)[1] - window(r)[0] for r in succeeded if not affected_by[str(r["id"])]]
    baseline = statistics.median(unaffected) if unaffected else None

    def added(row) -> float | None:
        if baseline is None:
            return None
        start, end = window(row)
        return end - start - baseline

    fault_rows = []
    for fault in faults:
        hit = [r for r in stored if fault in affected_by[str(r["id"])]]
        mine = [r for r in stored if charge[str(r["id"])] is fault]
        delays = [added(r) for r in mine if added(r) is not None]
        worst = max(delays, default=None)
        lower_bound = any(r["status"] not in TERMINAL for r in mine)
        recovered = max((window(r)[1] for r in mine), default=None)
        fault_rows.append((fault, hit, mine, worst, lower_bound, recovered))
    worst_delay = max((w for *_, w, _, _ in fault_rows if w is not None), default=None)
    worst_is_bound = any(b for *_, w, b, _ in fault_rows if w is not None and w == worst_delay)

    def target(value, ok: bool, goal: str) -> str:
        return f"{value!s:>10}   target {goal:<8} {'' if ok else 'MISSED'}"

    minutes = (ended - began) / 60
    print()
    print(f"Soak: {options.submissions} submissions + {record['web_uploads']} mid-upload, faults {options.faults or 'none'} "
          f"every {options.fault_interval:g} s; {len(faults)} faults injected; {minutes:.1f} min to the end of the wait")
    print(f"  HTTP requests sent {requests_sent}, answered as replays {replays}; "
          f"median time of undisturbed submissions {baseline:.1f} s ({len(unaffected)} of them)" if baseline is not None else
          f"  HTTP requests sent {requests_sent}, answered as replays {replays}; no undisturbed submission to set a baseline")
    print()
    print(f"{'accepted (HTTP 2xx)':<36} {len(accepted):>10}   of {len(planned)} logical submissions"
          + (f"; {len(refused)} never accepted" if refused else ""))
    print(f"{'stored (rows in the DB)':<36} {len(stored):>10}")
    print(f"{'succeeded':<36} {len(succeeded):>10}")
    print(f"{'failed by model':<36} {len(failed_model):>10}")
    print(f"{'failed by platform':<36} {len(failed_platform):>10}")
    print(f"{'stuck (not terminal at the deadline)':<36} " + target(len(stuck), not stuck, "0"))
    print(f"{'lost (accepted, no row)':<36} " + target(len(lost), not lost, "0"))
    print(f"{'duplicated (extra rows)':<36} " + target(duplicated, duplicated == 0, "0"))
    shown = "n/a" if worst_delay is None else f"{'>=' if worst_is_bound else ''}{worst_delay:.0f} s"
    print(f"{'longest delay a fault added':<36} " + target(shown, worst_delay is not None and worst_delay <= TARGET_DELAY, "<= 60 s"))
    print(f"{'orphan model processes at the end':<36} " + target(len(left_orphans), not left_orphans, "0")
          + (f" (seen during the run: {len(orphans_seen)})" if orphans_seen else ""))
    print(f"{'leftover temporary folders':<36} " + target(len(leftovers), not leftovers, "0"))
    if unaccepted_stored:
        print(f"  note: {len(unaccepted_stored)} never-accepted requests have rows anyway: "
              + ", ".join(p.name for p in unaccepted_stored))
    if replay_mismatch:
        print(f"  note: {len(replay_mismatch)} keyed submissions were answered with more than one id")
    if record["unexpected_exits"]:
        print("  processes that exited on their own (restarted by the supervisor): "
              + ", ".join(f"{name} at +{t - began:.0f} s (status {rc})" for t, name, rc in record["unexpected_exits"]))
    if leftovers:
        print(f"  leftovers: {', '.join(leftovers[:12])}{' ...' if len(leftovers) > 12 else ''}")

    print()
    print(f"{'at':>7} {'fault':<15} {'hit':>4} {'charged':>7} {'outcome of the charged':<24} {'added':>8} {'to last end':>11}  detail")
    for fault, hit, mine, worst, bound, recovered in fault_rows:
        outcome = ", ".join(
            f"{n} {label}" for label, n in (
                ("ok", sum(r["status"] == "succeeded" for r in mine)),
                ("failed", sum(r["status"] == "failed" for r in mine)),
                ("stuck", sum(r["status"] not in TERMINAL for r in mine)),
            ) if n
        ) or "-"
        added_shown = "-" if worst is None else f"{'>=' if bound else ''}{worst:.0f} s"
        to_end = "-" if recovered is None else f"{'>=' if bound else ''}{recovered - fault.start:.0f} s"
        targets = f"; was running {', '.join(names.get(t, t) for t in fault.targets)}" if fault.targets else ""
        print(f"+{fault.start - began:>5.0f}s {fault.kind:<15} {len(hit):>4} {len(mine):>7} {outcome:<24} {added_shown:>8} "
              f"{to_end:>11}  {fault.detail}{targets}")

    trouble = [*failed_model, *failed_platform, *stuck]
    if trouble:
        print()
        print("Failed and stuck submissions:")
        for r in sorted(trouble, key=lambda r: r["created_at"]):
            start, end = window(r)
            fault = charge[str(r["id"])]
            kinds = f"charged to {fault.kind} at +{fault.start - began:.0f}s" if fault else "no fault"
            state = r["status"] + (f"/{r['fault']}" if r["fault"] else "")
            print(f"  {r['name']:<32} {state:<17} stage {r['stage']:<15} attempts {r['attempts']}/{r['latency_attempts']} "
                  f"{end - start:>6.0f} s  [{kinds}]  {(r['error'] or '')[:240]}")


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=100)
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help=f"comma-separated: {', '.join(FAULT_KINDS)}")
    parser.add_argument("--quick", action="store_true", help="shorter intervals and wait, for a smoke run")
    parser.add_argument("--fault-interval", type=float, help="seconds between faults (default 60, quick 20)")
    parser.add_argument("--wait", type=float, help="seconds after the last acceptance before stuck is declared (default 900, quick 300)")
    parser.add_argument("--backlog", type=int, default=3, help="most unfinished submissions at a time (of those under --stale)")
    parser.add_argument("--stale", type=float, default=120, help="an unfinished submission older than this no longer holds the next one back")
    parser.add_argument("--max-gap", type=float, default=30, help="send the next one after this long even if the backlog is full")
    parser.add_argument("--warmup", type=int, help="submissions finished before the first fault (default 3, quick 2)")
    parser.add_argument("--broker-down", type=float, default=5, help="seconds the broker stays down")
    parser.add_argument("--eval-kill", choices=["tree", "group"], default="tree",
                        help="tree: the worker's group and its model processes' groups; group: the worker's group only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data) afterwards")
    parser.add_argument("--report-from", type=Path, help="print the tables of a saved run's record, run nothing")
    options = parser.parse_args()
    if options.report_from:
        report(json.loads(options.report_from.read_text()))
        return
    options.fault_interval = options.fault_interval or (20 if options.quick else 60)
    options.wait = options.wait or (300 if options.quick else 900)
    options.warmup = options.warmup if options.warmup is not None else (2 if options.quick else 3)
    if os.geteuid() != 0:
        raise SystemExit("run as root: the PostgreSQL cluster is started as the postgres user with runuser")
    # A SIGTERM tears the service down like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupted)
    run(options)


if __name__ == "__main__":
    main()
