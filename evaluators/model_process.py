"""Entry point of the child process that runs one untrusted model for ``evaluators.sandbox``.

Run as ``python -m evaluators.model_process REQUEST_JSON PARENT_PID``. Before anything else the
process arranges to die with its parent, so a killed worker leaves no model running; then it
leaves the machine's network where the kernel allows it; only the standard library is loaded when
the limits are set, so they cover every library the model needs and everything it does.
"""

import ctypes
import json
import os
import resource
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000


def main(request_path: Path, parent_pid: int | None = None) -> int:
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    request = json.loads(request_path.read_text())
    isolation = {"network": isolate_network()}
    if request.get("isolation_path"):
        Path(request["isolation_path"]).write_text(json.dumps(isolation))
    _limit_resources(memory_bytes=request["memory_bytes"], cpu_seconds=request["cpu_seconds"])
    from . import model_runner  # imported only now, under the limits

    return model_runner.run(request)


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the thread that started it ends, however it ends.

    The kernel sends the signal when the parent *thread* exits, which is the one that called
    Popen: the worker's task thread, alive for as long as the sandbox waits.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # not Linux: the sandbox's process group kill is all there is
    # The parent may have died before the request above took effect: then nobody will signal us.
    if os.getppid() != parent_pid:
        os._exit(1)


def isolate_network() -> dict:
    """Move this process into a network namespace of its own, which has no interface but a
    loopback that is down: the model can reach nothing, not the database on 127.0.0.1, not the
    internet. Needs CAP_SYS_ADMIN, or else unprivileged user namespaces (a user namespace of our
    own grants it there). Must run while the process has one thread.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) == 0:
        return {"isolated": True, "summary": "network: none (own namespace)"}
    first = ctypes.get_errno()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        return {"isolated": True, "summary": "network: none (own user and network namespace)"}
    second = ctypes.get_errno()
    reason = (
        f"the kernel refused a network namespace ({os.strerror(first)}) and a user namespace to "
        f"make one in ({os.strerror(second)})"
    )
    return {"isolated": False, "summary": f"network: not isolated ({reason})", "reason": reason}


def _limit_resources(*, memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # The soft limit raises SIGXCPU, which the sandbox reports as the CPU limit; the hard limit
    # a second later (SIGKILL) is only the backstop.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    # SIGXCPU and SIGSEGV dump core by default, and a memory-hungry model's core is huge.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None))
