"""The latency probe: how long one prediction takes, and how many rows a second batches reach.

What is timed is what a serving call does. An ONNX model runs ``session.run(None, feeds)``, which
computes every output (labels and probabilities alike). A skops classifier runs
``predict_proba``, since a service returns scores and a label is their argmax; a regressor, or a
classifier without ``predict_proba``, runs ``predict``. Inputs are prepared before timing (one
single-row DataFrame, or one set of ONNX feeds, per distinct sampled row), so the timings hold
the model's work and not Holdout's conversions.

Single-row calls follow a warm-up, each timed with ``perf_counter_ns`` while garbage collection
is paused; rows cycle through a seeded sample of the test features. The number of calls adapts
to the model: calls continue until SINGLE_ROW_SHARE of ``max_seconds`` is spent, never fewer
than ``min_calls`` (the floor wins over the budget, so a slow model takes longer) and never more
than ``max_calls``. Each batch size then gets an equal part of the rest, for at least one call.

``params`` (defaults and meanings in evaluators/latency.py's DEFAULT_OPTIONS): max_seconds,
min_calls, max_calls, warmup_calls, batch_sizes, sample_rows and seed.

The harness's own cost is the same loop timing a callable that does nothing. It is reported, not
subtracted: latency distributions do not subtract, and on this loop it is well under 5% of the
p50 of the fastest realistic model (bench/latency_overhead.py measures that ratio).
"""

import contextlib
import functools
import gc
import importlib.metadata
import os
import platform
import time

import numpy as np

from ..model_runner import predict_proba_method
from . import ProbeResult

SINGLE_ROW_SHARE = 0.6
_LIBRARIES = ("numpy", "pandas", "scikit-learn", "onnxruntime", "skops")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def probe(model, features, params) -> ProbeResult:
    rng = np.random.default_rng(params["seed"])
    call_name, prepare, run = serving_call(model)
    rows = rng.choice(len(features), size=min(params["sample_rows"], len(features)), replace=False)
    inputs = [prepare(features.iloc[[row]]) for row in rows]
    budget = _budget(params)
    single_ns, single_elapsed = _single_row_timings(run, inputs, params, seconds=budget["single_row_seconds"])
    seconds_per_batch_size = budget["seconds_per_batch_size"]
    batches = [
        batch_throughput(run, prepare(_batch(features, size, rng)), batch_size=size, seconds=seconds_per_batch_size)
        for size in params["batch_sizes"]
    ]
    return ProbeResult(
        document={
            "serving_call": call_name,
            "calls": len(single_ns),
            "single_row_elapsed_seconds": single_elapsed,
            "warmup_calls": params["warmup_calls"],
            "distinct_rows": len(inputs),
            "seed": params["seed"],
            "budget": budget,
            "batches": batches,
            "overhead": harness_overhead(inputs, calls=len(single_ns)),
            "environment": environment(model),
        },
        arrays={"single_ns": single_ns},
    )


def _budget(params: dict) -> dict:
    single_row_seconds = SINGLE_ROW_SHARE * params["max_seconds"]
    return {
        "max_seconds": params["max_seconds"],
        "single_row_seconds": single_row_seconds,
        "seconds_per_batch_size": (params["max_seconds"] - single_row_seconds) / len(params["batch_sizes"]),
        "min_calls": params["min_calls"],
        "max_calls": params["max_calls"],
    }


def _single_row_timings(run, inputs: list, params: dict, *, seconds: float) -> tuple[np.ndarray, float]:
    """Each call's nanoseconds after the warm-up, and the seconds the timed calls took in all."""
    warmup = params["warmup_calls"]
    with _garbage_collection_paused():
        timed_calls(run, inputs, seconds=0, min_calls=warmup, max_calls=warmup)
        started = time.perf_counter()
        timings = timed_calls(
            run, inputs, seconds=seconds, min_calls=params["min_calls"], max_calls=params["max_calls"]
        )
        return timings, time.perf_counter() - started


def harness_overhead(inputs: list, *, calls: int) -> dict:
    """The timing loop around a call that does nothing, as many times as the model was called."""
    with _garbage_collection_paused():
        timings = timed_calls(_nothing, inputs, seconds=0, min_calls=calls, max_calls=calls)
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


def timed_calls(run, inputs: list, *, seconds: float, min_calls: int, max_calls: int) -> np.ndarray:
    """Nanoseconds of each call of run(input), inputs cycled: at least min_calls, then until
    `seconds` have passed; never more than max_calls. Only the call sits between the clock reads."""
    timings = np.empty(max_calls, dtype=np.int64)
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    n_inputs = len(inputs)
    calls = 0
    while calls < max_calls and (calls < min_calls or clock() < deadline):
        model_input = inputs[calls % n_inputs]
        start = clock()
        run(model_input)
        timings[calls] = clock() - start
        calls += 1
    return timings[:calls]


def batch_throughput(run, batch_input, *, batch_size: int, seconds: float) -> dict:
    """Calls on one prepared batch until `seconds` have passed (at least one, after a warm-up)."""
    with _garbage_collection_paused():
        run(batch_input)
        calls = 0
        wall_start, cpu_start = time.perf_counter_ns(), time.process_time_ns()
        deadline = wall_start + int(seconds * 1e9)
        while calls == 0 or time.perf_counter_ns() < deadline:
            run(batch_input)
            calls += 1
        wall_ns, cpu_ns = time.perf_counter_ns() - wall_start, time.process_time_ns() - cpu_start
    rows = calls * batch_size
    return {
        "batch_size": batch_size,
        "calls": calls,
        "rows": rows,
        "wall_seconds": wall_ns / 1e9,
        "cpu_seconds": cpu_ns / 1e9,
        "rows_per_s": rows / (wall_ns / 1e9),
        "wall_seconds_per_row": wall_ns / 1e9 / rows,
        "cpu_seconds_per_row": cpu_ns / 1e9 / rows,
    }


def _batch(features, size: int, rng: np.random.Generator):
    rows = rng.choice(len(features), size=size, replace=size > len(features))
    return features.iloc[rows]


def environment(model) -> dict:
    """What the figures depend on besides the model, recorded beside them."""
    threads = {"environment": {name: os.environ.get(name) for name in _THREAD_VARIABLES}}
    if model.format == "onnx":
        options = model.session.get_session_options()
        threads["onnxruntime"] = {
            "intra_op_num_threads": options.intra_op_num_threads,
            "inter_op_num_threads": options.inter_op_num_threads,
        }
    else:
        from threadpoolctl import threadpool_info

        threads["native_pools"] = [
            {"api": pool["internal_api"], "num_threads": pool["num_threads"]} for pool in threadpool_info()
        ]
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in _LIBRARIES},
        "threads": threads,
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
