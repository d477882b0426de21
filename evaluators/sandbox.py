"""Run an untrusted model in a child process with memory, CPU and wall-clock limits.

The child is a fresh interpreter started with ``subprocess``: Celery's prefork workers are
daemonic and may not fork multiprocessing children. It sees only the feature columns and the
artifact, gets none of this process's environment, and talks back through files in a private
temporary directory. A crash, a memory bomb or an endless loop fails this one evaluation with
a message the submitter can act on; so does a result file the model process left unreadable
because it died writing it (out of memory, killed, crashed).

The child dies with the thread that started it (PR_SET_PDEATHSIG, set first thing in
model_process.py), so a killed worker leaves no model running, and it runs in a network
namespace of its own where the kernel allows one (SandboxRun.isolation says which). The private
directory's name carries this process's pid, so what a killed worker leaves behind can be told
from what a live one uses, and every process the model starts carries this process's identity
(evaluators/processes.py), so one that outlived its worker is found and killed (workers/cleanup.py).
"""

import contextlib
import json
import select
import threading
import time
import zipfile
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .model_runner import MEMORY_MARKERS
from .probes import probe_files
from .processes import MODEL_OWNER_VARIABLE, owner_identity

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
# Set to 0 to start a fresh interpreter for every model instead of forking from a model server.
FORK_SERVER_VARIABLE = "HOLDOUT_MODEL_SERVER"
# How long a model server may take to import its libraries, or to fork and answer.
SERVER_START_SECONDS = 60.0
# How often a waiting sandbox looks for the probe the model process has started.
WATCH_SECONDS = 0.25
_STDERR_TAIL_BYTES = 2000
# The address space the model process needs before any model: pandas, pyarrow and scikit-learn
# (skops) or onnxruntime map about 750 MB of libraries, and below that even a 7 KB logistic
# regression fails to load ("failed to map segment from shared object"). 1 GiB leaves a quarter for
# the model, the features and the probes; measured with the demo's baselines on the whole Adult
# test set, both formats, prediction and every probe (tests/test_memory_limit.py).
MIN_MODEL_MEMORY_MB = 1024
MODEL_DIR_PREFIX = "holdout-model-"
# What reading a truncated or garbled result file raises: JSON, .npz (a zip) and the arrays in it.
_UNREADABLE = (ValueError, KeyError, EOFError, OSError, zipfile.BadZipFile, UnicodeDecodeError)


class ModelFailure(RuntimeError):
    """The model (not the platform) failed; the message is shown to the submitter."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    cpu_seconds: int
    wall_seconds: float


@dataclass
class Predictions:
    labels: np.ndarray  # (n,): class labels (classification) or values (regression)
    probabilities: np.ndarray | None  # (n, k) float64, columns in the order of `classes`
    classes: list | None
    predict_seconds: float


@dataclass
class ProbeOutcome:
    """What one probe measured in the model process, or why it could not."""

    document: dict | None
    arrays: dict[str, np.ndarray]
    error: str | None
    seconds: float


@dataclass
class SandboxRun:
    predictions: Predictions | None  # None when the run was asked not to predict
    probes: dict[str, ProbeOutcome]
    # How the model process was isolated, as it found out itself: {"network": {"isolated": bool,
    # "summary": "network: none (own namespace)", ...}}; None when it did not say.
    isolation: dict | None = None


@dataclass(frozen=True)
class _Ending:
    """How the model process ended, for telling whose fault a missing or unreadable result is."""

    returncode: int
    timed_out: bool
    stderr: str
    limits: Limits


def predict_in_sandbox(
    *,
    artifact_path: str,
    artifact_format: str,
    features: pd.DataFrame,
    task: str,
    skops_trusted: Sequence[str],
    limits: Limits,
) -> Predictions:
    return run_in_sandbox(
        artifact_path=artifact_path,
        artifact_format=artifact_format,
        features=features,
        task=task,
        skops_trusted=skops_trusted,
        limits=limits,
    ).predictions


def run_in_sandbox(
    *,
    artifact_path: str,
    artifact_format: str,
    features: pd.DataFrame,
    task: str,
    skops_trusted: Sequence[str],
    limits: Limits,
    predict: bool = True,
    probes: dict[str, dict] | None = None,
    on_probe: Callable[[str], None] | None = None,
    on_progress: Callable[[str, float], None] | None = None,
) -> SandboxRun:
    """Load the model once in a limited child, predict the features, then run the probes.

    `on_probe(name)` is called (from this thread, within a quarter of a second) as each probe starts,
    and `on_progress(name, fraction)` as a running probe reports how far it is, so the caller can
    say what is really running and how much of it is done.

    A model that fails to load or predict raises ModelFailure. A probe that fails, crashes the
    process or runs out of time loses only its own outcome (and those after it).
    """
    problem = memory_limit_problem(limits.memory_bytes)
    if problem:
        raise RuntimeError(problem)  # the platform's configuration, not the model's fault
    probes = probes or {}
    with tempfile.TemporaryDirectory(prefix=f"{MODEL_DIR_PREFIX}{os.getpid()}-") as directory:
        workdir = Path(directory)
        request = {
            "artifact_path": str(Path(artifact_path).resolve()),
            "artifact_format": artifact_format,
            "task": task,
            "skops_trusted": list(skops_trusted),
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": limits.cpu_seconds,
            "features_path": str(workdir / "features.parquet"),
            "arrays_path": str(workdir / "predictions.npz"),
            "outcome_path": str(workdir / "outcome.json"),
            "isolation_path": str(workdir / "isolation.json"),
            "predict": predict,
            "probes": probes,
        }
        features.to_parquet(request["features_path"], index=False)
        (workdir / "request.json").write_text(json.dumps(request))
        watch = _ProbeWatch(workdir, list(probes), on_probe, on_progress)
        returncode, timed_out = _run_child(workdir, limits, artifact_format, watch)
        watch()  # a probe that started and ended between two looks is still said
        ending = _Ending(returncode, timed_out, _stderr_tail(workdir), limits)
        if not Path(request["outcome_path"]).exists() and timed_out:
            raise ModelFailure(f"the model did not finish within {limits.wall_seconds:g} s (wall-clock limit)")
        predictions = _read_predictions(request, ending)
        if predictions is not None:
            _check_predictions(predictions, n_rows=len(features))
        outcomes = {name: _read_probe(workdir, name, ending) for name in probes}
        isolation = _read_isolation(Path(request["isolation_path"]))
    return SandboxRun(predictions=predictions, probes=outcomes, isolation=isolation)


def _read_isolation(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except _UNREADABLE:  # a child that died before saying: nothing is claimed
        return None


def _read_probe(workdir: Path, name: str, ending: _Ending) -> ProbeOutcome:
    files = probe_files(workdir, name)
    if files.outcome.exists():
        try:
            return _probe_outcome(files, ending.limits)
        except _UNREADABLE as error:
            return ProbeOutcome(None, {}, f"{_unreadable_reason(ending, error)} while running the {name} probe", 0.0)
    if not files.started.exists():
        return ProbeOutcome(None, {}, f"the {name} probe did not run: the model process ended before it", 0.0)
    return ProbeOutcome(None, {}, f"{_ending_reason(ending)} while running the {name} probe", 0.0)


def _probe_outcome(files, limits: Limits) -> ProbeOutcome:
    outcome = json.loads(files.outcome.read_text())
    if outcome["status"] != "ok":
        message = _memory_message(limits) if outcome["out_of_memory"] else outcome["message"]
        return ProbeOutcome(None, {}, message, outcome["seconds"])
    with np.load(files.arrays, allow_pickle=False) as arrays:
        loaded = {key: arrays[key] for key in arrays.files}
    return ProbeOutcome(outcome["document"], loaded, None, outcome["seconds"])


class _ProbeWatch:
    """Calls on_probe for each probe whose started-file has appeared since the last look, and
    on_progress for the running probe's progress file when it has changed."""

    def __init__(self, workdir: Path, names: list[str], on_probe, on_progress=None):
        self.workdir = workdir
        self.pending = [(name, probe_files(workdir, name).started) for name in names] if on_probe or on_progress else []
        self.on_probe, self.on_progress = on_probe, on_progress
        self.running: str | None = None
        self.heard: float | None = None

    def __call__(self) -> None:
        while self.pending and self.pending[0][1].exists():
            self.running, self.heard = self.pending.pop(0)[0], None
            if self.on_probe:
                self.on_probe(self.running)
        if self.on_progress and self.running:
            try:
                fraction = float(probe_files(self.workdir, self.running).progress.read_text())
            except (OSError, ValueError):  # not reported yet, or the model process wrote nonsense
                return
            if fraction != self.heard and 0.0 <= fraction <= 1.0:
                self.heard = fraction
                self.on_progress(self.running, fraction)


def _run_child(workdir: Path, limits: Limits, artifact_format: str, watch: _ProbeWatch) -> tuple[int, bool]:
    """Run the model process to its end; returns its exit status and whether it timed out.

    Forked by this process's model server for the format (ModelServer) when there is one, else a
    fresh interpreter. Called from the thread that waits for the child, which is the thread whose
    end kills it (and the server, and through it the child).
    """
    if os.environ.get(FORK_SERVER_VARIABLE, "1") != "0":
        server = ModelServer.for_format(artifact_format)
        if server is not None:
            return server.run(workdir / "request.json", limits.wall_seconds, watch)
    with open(workdir / "stderr.txt", "wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "evaluators.model_process", str(workdir / "request.json"), str(os.getpid())],
            cwd=workdir,
            env=_child_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group, so a timeout can kill all of it
        )
    deadline = time.monotonic() + limits.wall_seconds
    try:
        while True:
            try:
                return child.wait(timeout=min(WATCH_SECONDS, max(0.0, deadline - time.monotonic()))), False
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    _kill_process_group(child)
                    return child.returncode, True
                watch()
    finally:
        # Also reached when this worker is being stopped while it waits.
        if child.returncode is None:
            _kill_process_group(child)


class ModelServer:
    """This process's model server for one artifact format (evaluators/model_process.py, --serve).

    One per process and format, started on first use and kept; one model at a time (a lock), since
    the server waits for each model process it forks. Anything unexpected (the server died, a
    reply that does not parse) discards the server: the next run starts a new one, and this run
    falls back to a fresh interpreter only when the server cannot even start."""

    _servers: dict = {}
    _owner = None  # the pid the servers belong to: a process forked from this one starts its own
    _lock = threading.Lock()

    def __init__(self, artifact_format: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "evaluators.model_process", "--serve", artifact_format, str(os.getpid())],
            cwd="/",
            env=_child_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.lock = threading.Lock()
        self._buffer = b""
        if self._reply(SERVER_START_SECONDS) != {"ready": True}:
            self.close()
            raise OSError("the model server did not start")

    @classmethod
    def for_format(cls, artifact_format: str) -> "ModelServer | None":
        with cls._lock:
            if cls._owner != os.getpid():
                cls._servers, cls._owner = {}, os.getpid()
            server = cls._servers.get(artifact_format)
            if server is None or server.process.poll() is not None:
                try:
                    server = cls._servers[artifact_format] = cls(artifact_format)
                except OSError:
                    cls._servers.pop(artifact_format, None)
                    return None
            return server

    def run(self, request_path: Path, wall_seconds: float, watch) -> tuple[int, bool]:
        with self.lock:
            pid = None
            try:
                self.process.stdin.write(f"{request_path}\n".encode())
                self.process.stdin.flush()
                pid = self._reply(SERVER_START_SECONDS)["pid"]
                ended = self._reply(wall_seconds, watch)
                if ended is None:
                    _kill_group(pid)
                    ended = self._reply(SERVER_START_SECONDS)
                    if ended is None:
                        self.close()
                    return (ended or {}).get("returncode", -signal.SIGKILL), True
                return ended["returncode"], False
            except BaseException:
                # Also reached when this worker is being stopped while it waits.
                if pid is not None:
                    _kill_group(pid)
                self.close()
                raise

    def _reply(self, seconds: float, watch=None) -> dict | None:
        """The server's next line as JSON, or None when none came within `seconds`; `watch` is
        called every WATCH_SECONDS while it waits."""
        deadline = time.monotonic() + seconds
        stdout = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not select.select([stdout], [], [], min(remaining, WATCH_SECONDS))[0]:
                if watch is not None:
                    watch()
                continue
            chunk = os.read(stdout, 4096)
            if not chunk:
                raise OSError("the model server ended")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        ModelServer._servers = {key: server for key, server in ModelServer._servers.items() if server is not self}


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _kill_process_group(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has already exited
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _child_environment() -> dict[str, str]:
    # Nothing of the worker's environment (database URLs, secrets) reaches the model process.
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": _PACKAGE_PARENT,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # Inherited by anything the model starts: an orphan is known by it (workers/cleanup.py).
        MODEL_OWNER_VARIABLE: owner_identity(),
    }


def _read_predictions(request: dict, ending: _Ending) -> Predictions | None:
    outcome_path, arrays_path = Path(request["outcome_path"]), Path(request["arrays_path"])
    if not outcome_path.exists():
        # The predictions are written before the outcome: if they are there, it died writing them.
        raise _crash(ending, writing=arrays_path.exists())
    try:
        outcome = json.loads(outcome_path.read_text())
        if outcome["status"] == "failed":
            raise ModelFailure(_memory_message(ending.limits) if outcome["out_of_memory"] else outcome["message"])
        if not request["predict"]:
            return None
        with np.load(arrays_path, allow_pickle=False) as arrays:
            labels = arrays["labels"]
            probabilities = arrays["probabilities"] if "probabilities" in arrays.files else None
        return Predictions(labels, probabilities, outcome["classes"], outcome["predict_seconds"])
    except _UNREADABLE as error:
        raise _unreadable(ending, error) from None


def _crash(ending: _Ending, *, writing: bool = False) -> Exception:
    """Why the model process ended without its result: the model's fault, unless it exited of
    its own accord without saying why (the child reports every failure of the model itself)."""
    if ending.returncode >= 0 and not _out_of_memory(ending.stderr):
        return RuntimeError(
            f"the model process exited with status {ending.returncode} without a result: {ending.stderr}"
        )
    reason = _ending_reason(ending)
    return ModelFailure(f"{reason} while writing its results" if writing else reason)


def _unreadable(ending: _Ending, error: Exception) -> Exception:
    """A result file left truncated or garbled: the model's fault if its process died writing it."""
    if ending.returncode == 0 or (ending.returncode > 0 and not _out_of_memory(ending.stderr)):
        return RuntimeError(
            f"the model process exited with status {ending.returncode} but its result could not be read "
            f"({type(error).__name__}: {error})"
        )
    return ModelFailure(_unreadable_reason(ending, error))


def _unreadable_reason(ending: _Ending, error: Exception) -> str:
    if ending.returncode == 0:
        return f"the model process left an unreadable result ({type(error).__name__}: {error})"
    return f"{_ending_reason(ending)} while writing its results"


def _ending_reason(ending: _Ending) -> str:
    """What ended the model process, in the submitter's words."""
    limits = ending.limits
    if ending.timed_out:
        return f"the model process did not finish within {limits.wall_seconds:g} s (wall-clock limit)"
    if ending.returncode == -signal.SIGXCPU:
        return f"the model process used more than {limits.cpu_seconds} s of CPU time (CPU limit)"
    # A MemoryError exits with status 1, C++ allocation failures abort with bad_alloc, and the
    # kernel's OOM killer sends SIGKILL.
    if _out_of_memory(ending.stderr) or ending.returncode == -signal.SIGKILL:
        return _memory_message(limits)
    if ending.returncode >= 0:
        return f"the model process exited with status {ending.returncode}"
    signal_number = -ending.returncode
    return f"the model process crashed (signal {signal.Signals(signal_number).name})"


def _out_of_memory(stderr: str) -> bool:
    return any(marker in stderr for marker in MEMORY_MARKERS)


def memory_limit_problem(memory_bytes: int) -> str | None:
    """Why a model process limited to `memory_bytes` cannot work at all, or None: for the settings
    and the worker to refuse at start, and for every run to refuse rather than fail every model."""
    if memory_bytes >= MIN_MODEL_MEMORY_MB * 2**20:
        return None
    return (
        f"HOLDOUT_MODEL_MEMORY_MB is {memory_bytes // 2**20}; the model process needs at least "
        f"{MIN_MODEL_MEMORY_MB} MB, since loading its libraries (pandas, pyarrow, scikit-learn or onnxruntime) "
        "takes about 750 MB of address space before any model. Raise HOLDOUT_MODEL_MEMORY_MB."
    )


def _memory_message(limits: Limits) -> str:
    return f"the model process ran out of its {limits.memory_bytes // 2**20} MB memory limit"


def _stderr_tail(workdir: Path) -> str:
    with open(workdir / "stderr.txt", "rb") as stderr:
        stderr.seek(0, os.SEEK_END)
        stderr.seek(max(0, stderr.tell() - _STDERR_TAIL_BYTES))
        return stderr.read().decode(errors="replace")


def _check_predictions(predictions: Predictions, *, n_rows: int) -> None:
    labels = predictions.labels
    if len(labels) != n_rows:
        raise ModelFailure(f"the model returned {len(labels)} predictions for {n_rows} rows")
    if labels.dtype.kind == "f":
        _require_finite(labels, n_rows=n_rows)
    probabilities = predictions.probabilities
    if probabilities is None:
        return
    if probabilities.shape != (n_rows, len(predictions.classes)):
        raise ModelFailure(
            f"the model returned probabilities of shape {probabilities.shape} for {n_rows} rows "
            f"and {len(predictions.classes)} classes ({', '.join(map(str, predictions.classes))})"
        )
    _require_finite(probabilities, n_rows=n_rows, noun="probabilities")
    outside = ((probabilities < 0) | (probabilities > 1)).any(axis=1)
    if outside.any():
        raise ModelFailure(
            f"the model predicted probabilities outside [0, 1] for {outside.sum()} of {n_rows} rows"
        )
    sums = probabilities.sum(axis=1)
    # The same tolerance as scikit-learn's multiclass roc_auc_score, which refuses the rest.
    off = ~np.isclose(1.0, sums)
    if off.any():
        first = int(np.argmax(off))
        raise ModelFailure(
            f"the model's probabilities do not sum to 1 for {off.sum()} of {n_rows} rows "
            f"(row {first} sums to {sums[first]:.6g})"
        )


def _require_finite(values: np.ndarray, *, n_rows: int, noun: str = "") -> None:
    bad = ~np.isfinite(values)
    bad_rows = bad.any(axis=1) if bad.ndim == 2 else bad
    if bad_rows.any():
        nan, inf = np.isnan(values).any(), np.isinf(values).any()
        kind = "NaN or infinity" if nan and inf else "NaN" if nan else "infinity"
        raise ModelFailure(f"the model predicted {f'{kind} {noun}'.strip()} for {bad_rows.sum()} of {n_rows} rows")
