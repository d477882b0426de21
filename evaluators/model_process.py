"""Entry point of the child process that runs one untrusted model for ``evaluators.sandbox``.

Two ways in, one process per model either way:

- ``python -m evaluators.model_process REQUEST_JSON PARENT_PID``: a fresh interpreter for one model.
- ``python -m evaluators.model_process --serve FORMAT PARENT_PID``: a model server (a zygote). It
  imports the libraries a model of that format needs once (2 s for scikit-learn and skops, 0.5 s
  for onnxruntime, which a fresh interpreter pays for every model, twice per submission) and then,
  for each request path read from its standard input, forks one model process, says its pid and,
  once it has ended, its exit status. The server holds nothing but those libraries: it is started
  with the model's scrubbed environment, never forked from the worker, so no secret of the worker
  is in the memory the model process starts from.

Either way, before anything else the model process arranges to die with its parent (the worker's
thread, or the server, which itself dies with the worker's thread), so a killed worker leaves no
model running; it runs in a process group and session of its own; then it leaves the machine's
network where the kernel allows it (a forked process has one thread, as unshare needs), and the
limits are set before the model is touched. The address-space limit covers the libraries already
mapped, as it covers them when they are imported under it.
"""

import ctypes
import importlib
import json
import os
import resource
import signal
import sys
import traceback
from pathlib import Path

# What a model server imports before serving: what every model of the format loads anyway.
SERVED_LIBRARIES = {
    "skops": ("pyarrow.parquet", "skops.io", "sklearn.pipeline", "sklearn.compose"),
    "onnx": ("pyarrow.parquet", "onnxruntime"),
}
PROBE_MODULES = ("evaluators.probes.inspect", "evaluators.probes.explain", "evaluators.probes.latency")

_PR_SET_PDEATHSIG = 1
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000


def main(request_path: Path, parent_pid: int | None = None) -> int:
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    return _run_limited(request_path)


def _run_limited(request_path: Path) -> int:
    request = json.loads(request_path.read_text())
    isolation = {"network": isolate_network()}
    if request.get("isolation_path"):
        Path(request["isolation_path"]).write_text(json.dumps(isolation))
    _limit_resources(memory_bytes=request["memory_bytes"], cpu_seconds=request["cpu_seconds"])
    from . import model_runner  # in a fresh interpreter imported only now, under the limits

    return model_runner.run(request)


def serve(artifact_format: str, parent_pid: int) -> int:
    """Fork a model process for each request path on stdin, one at a time; report on stdout."""
    _die_with_parent(parent_pid)
    from . import model_runner  # noqa: F401 - loaded once, for every model process to start from

    for module in (*SERVED_LIBRARIES[artifact_format], *PROBE_MODULES):
        importlib.import_module(module)
    server = os.getpid()
    _say({"ready": True})
    for line in sys.stdin:
        request_path = line.strip()
        if not request_path:
            continue
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _forked_model(Path(request_path), server)
        _say({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _say({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)})
    return 0


def _say(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _forked_model(request_path: Path, server: int) -> None:
    """The forked model process: never returns into the server's loop."""
    code = 1
    try:
        os.setsid()  # its own process group, so a timeout can kill all of it
        _die_with_parent(server)
        workdir = request_path.parent
        os.chdir(workdir)
        # The server's pipes are its protocol: the model gets none of them.
        quiet = os.open(os.devnull, os.O_RDWR)
        errors = os.open(workdir / "stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for target, source in ((0, quiet), (1, quiet), (2, errors)):
            os.dup2(source, target)
        os.close(quiet)
        os.close(errors)
        code = _run_limited(request_path)
    except BaseException:  # noqa: BLE001 - the parent reads the reason from stderr.txt
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


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
    if sys.argv[1] == "--serve":
        sys.exit(serve(sys.argv[2], int(sys.argv[3])))
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None))
