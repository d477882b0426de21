"""Which process is which, from /proc: what tells a live owner from a pid the kernel has reused.

Every model process, and whatever it starts, carries the identity of the worker process that
started it (MODEL_OWNER_VARIABLE, "pid start"); a process whose owner is gone is an orphan, which
workers/cleanup.py kills. The model process itself dies with its worker (PR_SET_PDEATHSIG), but that
signal is not inherited: a process the model's libraries started (joblib's loky workers, for one)
would outlive both.
"""

import os

MODEL_OWNER_VARIABLE = "HOLDOUT_MODEL_OWNER"


def process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot, or '' when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            stat = stat_file.read()
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2 :].split()
    # A zombie is dead for our purpose: it works on nothing any more.
    return "" if fields[0] in ("Z", "X") else fields[19]


def owner_identity(pid: int | None = None) -> str:
    """'pid start' of a process (by default this one), as MODEL_OWNER_VARIABLE holds it."""
    pid = os.getpid() if pid is None else pid
    return f"{pid} {process_start(pid)}"


def owner_alive(identity: str) -> bool:
    pid, _, start = identity.partition(" ")
    return bool(start) and pid.isdigit() and process_start(int(pid)) == start


def processes_owned() -> list[tuple[int, str]]:
    """(pid, owner identity) of this user's processes that carry MODEL_OWNER_VARIABLE."""
    marker = f"{MODEL_OWNER_VARIABLE}=".encode()
    owned = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        for variable in variables:
            if variable.startswith(marker):
                owned.append((int(entry.name), variable[len(marker) :].decode(errors="replace")))
                break
    return owned
