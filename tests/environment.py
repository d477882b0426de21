"""Loaded as a pytest plugin (`-p tests.environment`), before pytest-django reads the settings.

The environment is fixed here so the test process and the Celery worker processes it starts agree
on the database, the broker and where files live, and nothing is written into the checkout's var/.
"""

import atexit
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(tempfile.mkdtemp(prefix="holdout-tests-"))
# Two test runs on one machine (a developer's and a helper's, say) must not drop each other's
# database or take each other's tasks: each run gets its own database (pytest-django adds the
# test_ prefix) and a Redis server of its own as the broker, unless the environment names them.
RUN = os.getpid()
os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/holdout_{RUN}")
os.environ["HOLDOUT_VAR_DIR"] = str(VAR_DIR)
os.environ["MEDIA_ROOT"] = str(VAR_DIR / "media")
(VAR_DIR / "static").mkdir()
os.environ.setdefault("HOLDOUT_BOOTSTRAP_RESAMPLES", "100")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

BROKER_START_SECONDS = 20


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _redis_start() -> tuple[subprocess.Popen, int]:
    """A redis-server of this run's own, on a free port, keeping nothing on disk."""
    directory = VAR_DIR / "redis"
    directory.mkdir()
    for _ in range(5):  # the port may be taken between choosing it and binding it
        port = _free_port()
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(directory / "redis.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if _redis_ready(server, port):
            return server, port
        _redis_stop(server)
    raise RuntimeError(f"could not start a redis-server for the tests; see {directory / 'redis.log'}")


def _redis_ready(server: subprocess.Popen, port: int) -> bool:
    deadline = time.monotonic() + BROKER_START_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                if connection.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def _redis_stop(server: subprocess.Popen) -> None:
    # Only the server this run started, by its own pid.
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# The broker is owned (and may be emptied) only when this run started it.
BROKER_OWNED = "CELERY_BROKER_URL" not in os.environ
if BROKER_OWNED:
    _BROKER_SERVER, _BROKER_PORT = _redis_start()
    atexit.register(_redis_stop, _BROKER_SERVER)
    os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{_BROKER_PORT}/0"


def pytest_unconfigure(config):
    if BROKER_OWNED:
        _redis_stop(_BROKER_SERVER)
