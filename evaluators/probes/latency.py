"""The latency probe: how long one prediction takes, and how many rows a second batches reach.

What is timed is what a serving call does. An ONNX model runs ``session.run(None, feeds)``, which
computes every output (labels and probabilities alike). A skops classifier runs
``predict_proba``, since a service returns scores and a label is their argmax; a regressor, or a
classifier without ``predict_proba``, runs ``predict``. Inputs are prepared before timing (one
single-row DataFrame, or one set of ONNX feeds, per distinct sampled row), so the timings hold
the model's work and not Holdout's conversions.

The figure should be the model's, not the machine's momentary load, so the measurement

- runs pinned to one CPU (the one that was idlest just before) with every runtime on one thread
  (onnxruntime's session is built so; scikit-learn's native pools are limited with threadpoolctl;
  the sandbox sets the OpenMP and BLAS variables), so a serving core is what is measured;
- is interleaved in ``blocks``: each block times a fixed calibration workload, then the same
  cycle of single-row calls, then every batch size. Load that comes and goes then lands in some
  blocks and not others, the evaluator bootstraps whole blocks for the intervals (calls inside a
  block are not independent: noise comes in bursts), and the calibration says how fast the
  machine was while each block ran;
- times each call on the core, not on the wall: a call's time is its wall time less whatever time
  the kernel gave the pinned CPU to another process meanwhile, that is min(wall time, the process's
  CPU time over the call). Alone on a core the two agree (the CPU clock is read just outside the
  wall clock, so it is the larger), and the figure is the wall time; when another runnable process
  shares the CPU, its time slices of a few milliseconds would land in the calls and the thread's
  CPU time leaves them out. What is left is what the call takes on a serving core of its own. The
  CPU clock is the calling thread's (``thread_time_ns``): every runtime is held to that one thread,
  and the process-wide clock is coarse here, since the sandbox's CPU limit makes the kernel keep it
  only at scheduler ticks. A model that waits on something other than the CPU would look faster
  than it is; a sandboxed model has nothing to wait on. Batches and the calibration are timed the same way. The document
  says how much wall time went to other processes (``off_core``), and the raw wall times are kept;
- re-measures a disturbed block: one whose calibration took more than ``disturbed_factor`` times
  the median calibration of the session (the core itself ran slower: a noisy neighbour's caches,
  the host's clock). Up to ``max_remeasured_blocks`` more blocks are timed, each clean one
  replacing a disturbed one; the document records how many were disturbed, re-measured and still
  disturbed at the end, how busy the pinned CPU was with other work, and how often the kernel took
  the CPU away (involuntary switches, for the record: on-core timing already leaves that time out).

Single-row calls follow a warm-up, each timed with ``perf_counter_ns`` and ``thread_time_ns``
while garbage collection is paused; rows cycle through a seeded sample of the test features, from the same row in every
block. A short pilot sizes the blocks: single-row calls take SINGLE_ROW_SHARE of ``max_seconds``
and never fewer than ``min_calls`` in all (the floor wins over the budget, so a slow model takes
longer) nor more than ``max_calls``; each batch size an equal part of the rest, at least one call
per block.

``params`` (defaults and meanings in evaluators/latency.py's DEFAULT_OPTIONS): max_seconds,
blocks, min_calls, max_calls, warmup_calls, batch_sizes, sample_rows, disturbed_factor,
max_remeasured_blocks and seed.

The harness's own cost is the same loop timing a callable that does nothing. It is reported, not
subtracted: latency distributions do not subtract, and on this loop it is well under 5% of the
p50 of the fastest realistic model (bench/latency_overhead.py measures that ratio).
"""

import contextlib
import functools
import gc
import importlib.metadata
import math
import os
import platform
import resource
import time

import numpy as np

from ..model_runner import predict_proba_method
from . import ProbeResult

SINGLE_ROW_SHARE = 0.6
PILOT_CALLS = 20
# The calibration workload: a fixed mix of interpreted Python and a numpy sort, about a
# millisecond on a 2020s server core. It never changes, so its time says how fast the machine ran.
CALIBRATION_LOOP = 20_000
CALIBRATION_SORTS = 4
CALIBRATION_ARRAY = np.arange(8192, dtype=np.float64)[::-1].copy()
CALIBRATION_WORKLOAD = (
    f"sum of i*i for i < {CALIBRATION_LOOP} in Python, then {CALIBRATION_SORTS} numpy sorts of "
    f"{CALIBRATION_ARRAY.size} reversed float64 values"
)
_LIBRARIES = ("numpy", "pandas", "scikit-learn", "onnxruntime", "skops")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def probe(model, features, params, progress=None) -> ProbeResult:
    rng = np.random.default_rng(params["seed"])
    call_name, prepare, run = serving_call(model)
    rows = rng.choice(len(features), size=min(params["sample_rows"], len(features)), replace=False)
    inputs = [prepare(features.iloc[[row]]) for row in rows]
    batch_inputs = [prepare(_batch(features, size, rng)) for size in params["batch_sizes"]]
    pinning = pin_to_idlest_cpu()
    with _single_threaded(model) as threads, _garbage_collection_paused():
        timed_calls(run, inputs, seconds=0, min_calls=params["warmup_calls"], max_calls=params["warmup_calls"])
        for batch_input in batch_inputs:
            run(batch_input)
        plan = _plan(run, inputs, batch_inputs, params)
        cpu_before = cpu_counters(pinning["cpu"])
        session = _measure_blocks(run, inputs, batch_inputs, plan, params, progress)
        load = machine_load(cpu_before, cpu_counters(pinning["cpu"]), own_cpu_ns=session.pop("own_cpu_ns"))
    kept = session["kept"]
    single_ns = np.concatenate([block["single_ns"] for block in kept])
    single_wall_ns = np.concatenate([block["single_wall_ns"] for block in kept])
    return ProbeResult(
        document={
            "serving_call": call_name,
            "calls": int(single_ns.size),
            "single_row_timed_seconds": session["single_row_seconds"],
            "warmup_calls": params["warmup_calls"],
            "distinct_rows": len(inputs),
            "seed": params["seed"],
            "budget": plan,
            "batch_sizes": list(params["batch_sizes"]),
            "overhead": harness_overhead(inputs, calls=int(single_ns.size)),
            "isolation": {**pinning, "threads": threads},
            "calibration": session["calibration"],
            "machine_load": load,
            "off_core": off_core(single_wall_ns, single_ns),
            "environment": environment(model),
        },
        arrays={
            "single_ns": single_ns,  # on-core time of each call, the figure
            "single_wall_ns": single_wall_ns,  # its wall time, as measured
            # Which block each call belongs to (0..blocks-1), for the block bootstrap.
            "single_block": np.concatenate([np.full(len(block["single_ns"]), i) for i, block in enumerate(kept)]),
            # (blocks x batch sizes): the calls, and the wall, thread CPU and on-core nanoseconds of each block's batches.
            "batch_calls": np.array([block["batch_calls"] for block in kept], dtype=np.int64),
            "batch_wall_ns": np.array([block["batch_wall_ns"] for block in kept], dtype=np.int64),
            "batch_cpu_ns": np.array([block["batch_cpu_ns"] for block in kept], dtype=np.int64),
            "batch_core_ns": np.array([block["batch_core_ns"] for block in kept], dtype=np.int64),
            "calibration_ns": np.array([block["calibration_ns"] for block in kept], dtype=np.int64),
        },
    )


def _plan(run, inputs: list, batch_inputs: list, params: dict) -> dict:
    """How many calls each block makes, from a pilot of each kind of call."""
    blocks = params["blocks"]
    single_seconds = SINGLE_ROW_SHARE * params["max_seconds"]
    _, pilot_ns = timed_calls(run, inputs, seconds=0, min_calls=PILOT_CALLS, max_calls=PILOT_CALLS)
    per_call = np.median(pilot_ns) / 1e9
    wanted = int(single_seconds / blocks / max(per_call, 1e-9))
    calls_per_block = min(max(wanted, math.ceil(params["min_calls"] / blocks)), max(1, params["max_calls"] // blocks))
    seconds_per_batch_size = (params["max_seconds"] - single_seconds) / len(batch_inputs)
    batch_calls = []
    for batch_input in batch_inputs:
        start = time.perf_counter()
        run(batch_input)
        per_batch = time.perf_counter() - start
        batch_calls.append(max(1, int(seconds_per_batch_size / blocks / max(per_batch, 1e-9))))
    return {
        "max_seconds": params["max_seconds"],
        "single_row_seconds": single_seconds,
        "seconds_per_batch_size": seconds_per_batch_size,
        "min_calls": params["min_calls"],
        "max_calls": params["max_calls"],
        "blocks": blocks,
        "single_calls_per_block": calls_per_block,
        "batch_calls_per_block": dict(zip(map(str, params["batch_sizes"]), batch_calls)),
        "pilot_seconds_per_call": float(per_call),
    }


def _measure_blocks(run, inputs: list, batch_inputs: list, plan: dict, params: dict, progress=None) -> dict:
    """The planned blocks, then replacements for disturbed ones (bounded); see the module docstring.

    `progress` hears the share of the planned blocks timed (a replacement block, rare, adds none).
    """
    batch_calls = list(plan["batch_calls_per_block"].values())
    started_cpu = time.thread_time_ns()
    measured = []
    for done in range(plan["blocks"]):
        measured.append(_block(run, inputs, batch_inputs, plan["single_calls_per_block"], batch_calls))
        if progress:
            progress((done + 1) / plan["blocks"])
    reference = float(np.median([block["calibration_ns"] for block in measured]))
    limit = params["disturbed_factor"] * reference

    def disturbed(block: dict) -> bool:
        return block["calibration_ns"] > limit

    kept = list(measured)
    remeasured = 0
    while remeasured < params["max_remeasured_blocks"]:
        disturbed_kept = [i for i, block in enumerate(kept) if disturbed(block)]
        if not disturbed_kept:
            break
        block = _block(run, inputs, batch_inputs, plan["single_calls_per_block"], batch_calls)
        measured.append(block)
        remeasured += 1
        if not disturbed(block):
            worst = max(disturbed_kept, key=lambda i: kept[i]["calibration_ns"])
            kept[worst] = block
    all_calibrations = np.array([block["calibration_ns"] for block in measured]) / 1e6
    kept_calibrations = np.array([block["calibration_ns"] for block in kept]) / 1e6
    return {
        "kept": kept,
        "own_cpu_ns": time.thread_time_ns() - started_cpu,
        "single_row_seconds": sum(block["single_wall_ns"].sum() for block in kept) / 1e9,
        "calibration": {
            "workload": CALIBRATION_WORKLOAD,
            "median_ms": reference / 1e6,
            "min_ms": float(all_calibrations.min()),
            "max_ms": float(all_calibrations.max()),
            "kept_ms": kept_calibrations.tolist(),
            "disturbed_factor": params["disturbed_factor"],
            "kept_involuntary_switches": [block["involuntary_switches"] for block in kept],
            "disturbed_blocks": sum(disturbed(block) for block in measured[: plan["blocks"]]),
            "remeasured_blocks": remeasured,
            "max_remeasured_blocks": params["max_remeasured_blocks"],
            "still_disturbed_blocks": sum(disturbed(block) for block in kept),
        },
    }


def _block(run, inputs: list, batch_inputs: list, single_calls: int, batch_calls: list[int]) -> dict:
    calibration_ns = calibration()
    switches_before = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
    single_wall_ns, single_ns = timed_calls(run, inputs, seconds=0, min_calls=single_calls, max_calls=single_calls)
    walls, cpus = [], []
    for batch_input, calls in zip(batch_inputs, batch_calls):
        cpu_start = time.thread_time_ns()
        wall_start = time.perf_counter_ns()
        for _ in range(calls):
            run(batch_input)
        walls.append(time.perf_counter_ns() - wall_start)
        cpus.append(time.thread_time_ns() - cpu_start)
    return {
        "batch_core_ns": on_core_ns(np.array(walls), np.array(cpus)).tolist(),
        "calibration_ns": calibration_ns,
        "single_ns": single_ns,
        "single_wall_ns": single_wall_ns,
        "batch_calls": batch_calls,
        "batch_wall_ns": walls,
        "batch_cpu_ns": cpus,
        "involuntary_switches": resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw - switches_before,
    }


def calibration() -> int:
    """On-core nanoseconds the fixed calibration workload takes now."""
    cpu_start = time.thread_time_ns()
    start = time.perf_counter_ns()
    total = 0
    for i in range(CALIBRATION_LOOP):
        total += i * i
    for _ in range(CALIBRATION_SORTS):
        np.sort(CALIBRATION_ARRAY)
    wall = time.perf_counter_ns() - start
    return int(on_core_ns(np.array([wall]), np.array([time.thread_time_ns() - cpu_start]))[0])


def on_core_ns(wall_ns: np.ndarray, cpu_ns: np.ndarray) -> np.ndarray:
    """Time on the core: the wall time, less what the CPU clock says went elsewhere (min of the two).

    Where the thread's CPU clock did not move over a timing (rarely, on a virtual machine, for a
    call of tens of microseconds), it says nothing and the wall time stands: an on-core time of
    zero would be a call that took no time."""
    return np.where(cpu_ns > 0, np.minimum(wall_ns, cpu_ns), wall_ns)


def off_core(wall_ns: np.ndarray, on_core_ns: np.ndarray) -> dict:
    """How much of the single-row calls' wall time the kernel gave to other processes."""
    given_away = wall_ns - on_core_ns
    return {
        "share_of_wall": float(given_away.sum() / max(wall_ns.sum(), 1)),
        # A call counts when more than a twentieth of it went elsewhere: below that the two
        # clocks' own reading costs are of the same size.
        "calls": int((given_away > wall_ns / 20).sum()),
        "of_calls": int(wall_ns.size),
        "rule": "a call's time is min(wall time, the calling thread's CPU time over the call): time the pinned CPU ran other processes is left out",
    }


def pin_to_idlest_cpu() -> dict:
    """Pin this process to the CPU of its affinity set that other work used least over 50 ms."""
    allowed = sorted(os.sched_getaffinity(0))
    before = {cpu: cpu_counters(cpu) for cpu in allowed}
    time.sleep(0.05)
    busy = {cpu: _busy_ticks(cpu_counters(cpu)) - _busy_ticks(before[cpu]) for cpu in allowed}
    cpu = min(allowed, key=lambda candidate: (busy[candidate], candidate))
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as error:
        return {"pinned": False, "cpu": None, "allowed_cpus": allowed, "reason": str(error)}
    return {"pinned": True, "cpu": cpu, "allowed_cpus": allowed}


def cpu_counters(cpu: int | None) -> list[int] | None:
    """The kernel's tick counters of one CPU (user, nice, system, idle, iowait, irq, softirq, steal)."""
    if cpu is None:
        return None
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith(f"cpu{cpu} "):
                    return [int(value) for value in line.split()[1:9]]
    except OSError:
        pass
    return None


def _busy_ticks(counters: list[int] | None) -> int:
    if counters is None:
        return 0
    user, nice, system, _idle, _iowait, irq, softirq, steal = counters
    return user + nice + system + irq + softirq + steal


def machine_load(before: list[int] | None, after: list[int] | None, *, own_cpu_ns: int) -> dict:
    """How busy the pinned CPU was while the blocks ran: with others' work, and with the hypervisor's
    (steal: time a virtual CPU wanted to run and the host ran someone else)."""
    load = {"load_average": list(os.getloadavg())}
    if before is None or after is None:
        return {**load, "pinned_cpu_counters": None}
    ticks = [b - a for a, b in zip(before, after)]
    total = sum(ticks)
    if total <= 0:
        return {**load, "pinned_cpu_counters": None}
    tick_seconds = 1 / os.sysconf("SC_CLK_TCK")
    busy_seconds = (_busy_ticks(after) - _busy_ticks(before) - ticks[7]) * tick_seconds
    return {
        **load,
        "pinned_cpu_seconds": total * tick_seconds,
        "other_work_share": max(0.0, busy_seconds - own_cpu_ns / 1e9) / (total * tick_seconds),
        "steal_share": ticks[7] / total,
    }


def harness_overhead(inputs: list, *, calls: int) -> dict:
    """The timing loop around a call that does nothing, as many times as the model was called."""
    with _garbage_collection_paused():
        _, timings = timed_calls(_nothing, inputs, seconds=0, min_calls=calls, max_calls=calls)
    return {
        "calls": calls,
        "p50_ns": float(np.percentile(timings, 50)),
        "p99_ns": float(np.percentile(timings, 99)),
        "subtracted": False,
    }


def serving_call(model):
    """(name, prepare(rows frame) -> input, run(input)) for what a serving call does."""
    if model.format == "onnx":
        return "session.run (all outputs)", model.feeds, functools.partial(model.session.run, None)
    predict_proba = None if model.task == "regression" else predict_proba_method(model.estimator)
    if predict_proba is not None:
        return "predict_proba", _unchanged, predict_proba
    return "predict", _unchanged, model.estimator.predict


def _unchanged(frame):
    return frame


def _nothing(_input) -> None:
    return None


@contextlib.contextmanager
def _single_threaded(model):
    """Every native pool of the process on one thread while timing; yields what was set."""
    if model.format == "onnx":
        options = model.session.get_session_options()
        yield {
            "onnxruntime": {
                "intra_op_num_threads": options.intra_op_num_threads,
                "inter_op_num_threads": options.inter_op_num_threads,
            }
        }
        return
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=1):
        yield {"native_pools": [{"api": pool["internal_api"], "num_threads": pool["num_threads"]} for pool in threadpool_info()]}


@contextlib.contextmanager
def _garbage_collection_paused():
    """A collection in the middle of a call would be charged to the model. Collecting first
    keeps the garbage of one phase from piling up through the next, paused, one."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def timed_calls(run, inputs: list, *, seconds: float, min_calls: int, max_calls: int) -> tuple[np.ndarray, np.ndarray]:
    """(wall, on-core) nanoseconds of each call of run(input), inputs cycled: at least min_calls,
    then until `seconds` have passed; never more than max_calls. Only the call sits between the
    wall clock's reads; the CPU clock's reads are just outside them."""
    walls = np.empty(max_calls, dtype=np.int64)
    cpus = np.empty(max_calls, dtype=np.int64)
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    deadline = clock() + int(seconds * 1e9)
    n_inputs = len(inputs)
    calls = 0
    while calls < max_calls and (calls < min_calls or clock() < deadline):
        model_input = inputs[calls % n_inputs]
        cpu_start = cpu_clock()
        start = clock()
        run(model_input)
        walls[calls] = clock() - start
        cpus[calls] = cpu_clock() - cpu_start
        calls += 1
    return walls[:calls], on_core_ns(walls[:calls], cpus[:calls])


def _batch(features, size: int, rng: np.random.Generator):
    rows = rng.choice(len(features), size=size, replace=size > len(features))
    return features.iloc[rows]


def environment(model) -> dict:
    """What the figures depend on besides the model, recorded beside them."""
    return {
        "host": platform.node(),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in _LIBRARIES},
        "thread_variables": {name: os.environ.get(name) for name in _THREAD_VARIABLES},
        "clock": "time.perf_counter_ns",
        "clock_resolution_ns": time.get_clock_info("perf_counter").resolution * 1e9,
        "garbage_collection": "paused while timing",
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
