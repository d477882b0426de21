"""Which process holds a running submission, and whether it still lives.

A claimed submission records its holder (the worker process running it) and a heartbeat that the
holder refreshes while it works. A holder is dead when its heartbeat is older than
HEARTBEAT_STALE_SECONDS, or at once when it ran on this machine and its process is gone, so a
killed worker's submission is taken over within seconds on its own machine and within half a
minute (plus the sweep's interval) from anywhere else, instead of after a whole time limit.
"""

import functools
import os
import platform
from datetime import datetime, timedelta

from evaluators.processes import process_start

HEARTBEAT_INTERVAL_SECONDS = 10.0
# Three missed heartbeats: a worker busy in a long database write or a slow garbage collection is
# not taken for dead.
HEARTBEAT_STALE_SECONDS = 30.0


def holder_this_process() -> str:
    """'host pid space start': the pid is only meaningful inside its machine space (below), and
    the start time tells a reused pid from the process that held the submission."""
    return f"{platform.node()} {os.getpid()} {_machine_space()} {process_start(os.getpid())}"


def holder_describe(holder: str) -> str:
    """The holder as people read it in logs and errors: 'host pid 1234'."""
    parts = holder.split()
    return f"{parts[0]} pid {parts[1]}" if len(parts) == 4 else holder or "nobody"


def holder_dead(holder: str, heartbeat_at: datetime | None, now: datetime) -> bool:
    """Whether the process that claimed a submission has stopped working on it.

    A row without a holder (claimed before holders were recorded) is judged by its deadline alone.
    """
    if not holder:
        return False
    if heartbeat_at is None or now - heartbeat_at > timedelta(seconds=HEARTBEAT_STALE_SECONDS):
        return True
    if holder == holder_this_process():
        # A prefork process runs one task at a time: if this process is claiming, it no longer
        # works on what it claimed before (its task ended without recording a result).
        return True
    parts = holder.split()
    if len(parts) != 4 or parts[2] != _machine_space():
        return False  # another machine's process: only its heartbeat tells
    pid, start = int(parts[1]), parts[3]
    return process_start(pid) != start


@functools.cache
def _machine_space() -> str:
    """The kernel boot and pid namespace this process lives in: pids compare only within one."""
    try:
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        # No procfs (not Linux): never claim to know another process's fate from its pid.
        return f"unknown-{platform.node()}-{os.getpid()}"
    return f"{boot}/{namespace.removeprefix('pid:').strip('[]')}"


