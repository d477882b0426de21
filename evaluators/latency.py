"""Latency and throughput, from the calls the latency probe timed in the model process.

Percentiles are numpy's (``np.percentile``, linear interpolation) over every recorded call's
on-core time (its wall time less time the kernel gave its CPU to other processes; see the probe),
in milliseconds, stated at the machine's usual speed: each block's times are multiplied by the
reference calibration time over that block's own (speed_calibration), and the calls as timed are
kept beside them (``measured_percentiles_ms``). Throughput is the most rows per second of on-core
time over the batch sizes, calibrated the same way. The probe measured in
interleaved blocks (evaluators/probes/latency.py), and the intervals bootstrap whole blocks:
calls inside a block share its moment's load, so they are not independent, but blocks spread
over the session are close to it. Each resample draws the blocks with replacement (seeded with
the benchmark's seed, as many resamples as the benchmark's other objectives) and recomputes every
figure on the calls and batches of the blocks drawn. Those per-resample values are kept like the
sampled objectives', so ties and score intervals cover latency too. Unlike the test-row resamples
they do not pair between submissions (each submission has its own blocks), so a difference
between two submissions on a resample is a draw of an unpaired difference.

Blocks show how the machine moves within a session of a few seconds, not between sessions: the
same model measured a minute later on a shared machine can be 15-20% faster or slower as a whole
(hosts change speed with their neighbours' load and their clocks). So each resample is also
scaled by a session factor exp(sigma * z), z drawn per submission, where sigma is the standard
deviation of log(calibration median) over the recent latency sessions on this machine (the
calibration workload never changes, so its spread is the machine's; with fewer than MIN_SESSIONS
of them it is not counted), and never less than the option ``session_spread_floor``. The floor is
there because a model's own speed moves more than the calibration's: on the shared 2-core
development machine the median call of a 20 µs ONNX model moved with a log-sd of 0.2 between
sessions while the calibration's moved 0.12 (bench/noise.py measures both). Two measurements of
one model then tie about as often as the machine's reproducibility says they should, while a
model twice as slow (log 2 = 0.69) still stands apart.
"""

import numpy as np

from .base import EvaluationInput, EvaluatorError, EvaluatorResult, probe_outcome
from .performance import INTERVAL_PERCENTILES

# Benchmark options (`data.options`) override these. The probe (evaluators/probes/latency.py)
# spends the budget; the seed is the benchmark's, so every submission times the same rows.
DEFAULT_OPTIONS = {
    # The timed work, single-row calls and every batch size, over all blocks (re-measured blocks
    # come on top). Four seconds still give a 10 ms model its min_calls and a 20 µs model more
    # than 100,000 calls, and keep a submission's latency phase under ten seconds.
    "max_seconds": 4.0,
    "blocks": 20,  # interleaved measurement blocks; the intervals resample them
    "min_calls": 200,
    "max_calls": 400_000,
    "warmup_calls": 50,
    "batch_sizes": [1, 32, 1024],
    "sample_rows": 256,  # distinct test rows the single-row calls cycle through
    "histogram_bins": 40,
    # A block whose calibration workload took this many times the session's median is disturbed
    # (something else ran on its CPU) and is measured again, at most max_remeasured_blocks times.
    "disturbed_factor": 1.3,
    "max_remeasured_blocks": 10,
    # The least session-to-session spread (log-sd) assumed for a model's figures; see the docstring.
    "session_spread_floor": 0.2,
}
# Recent sessions whose calibrations estimate the machine's session-to-session spread.
MIN_SESSIONS = 5
MAX_SESSIONS = 50
# A session whose calibration median is this many times the machine's recent median is measured again, once.
SESSION_DISTURBED_FACTOR = 1.3
# A block's speed factor is held within this factor of 1: a calibration that far off is not a speed.
MAX_SPEED_FACTOR = 2.0
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}
METRIC_PERCENTILES = {f"latency_{name}_ms": name for name in ("p50", "p90", "p95", "p99")}
# Bounds one chunk of resampled calls to about 32 MB of float64.
_BLOCK_CELLS = 4_000_000
_INTERVAL_NOTE = (
    "95% bootstrap interval over the measurement blocks: each resample redraws the blocks (calls "
    "inside a block share its moment's load), recomputes the figure and scales it by a session "
    "factor drawn from this machine's session-to-session spread (session_spread). It covers a "
    "rerun on this machine, not a move to another kind of machine."
)


class LatencyEvaluator:
    name = "latency"
    probes = ("latency",)
    queue = "latency"

    def applies(self, data: EvaluationInput) -> bool:
        return True

    def probe_params(self, data: EvaluationInput) -> dict[str, dict]:
        return {"latency": {**_options(data), "seed": data.seed}}

    def evaluate(self, data: EvaluationInput) -> EvaluatorResult:
        options = _options(data)
        measured = probe_outcome(data, "latency")
        if measured.arrays["single_ns"].size == 0:
            raise EvaluatorError("the latency probe recorded no calls")
        calibration = measured.document["calibration"]
        speed = speed_calibration(
            measured.arrays["calibration_ns"] / 1e6,
            reference_ms=speed_reference(data.machine_calibrations_ms, current_ms=calibration["median_ms"]),
        )
        batch_sizes = measured.document["batch_sizes"]
        blocks = measured_blocks(measured.arrays, batch_sizes, factors=np.asarray(speed["block_factors"]))
        samples_ms = blocks["single_ms"].ravel()
        percentiles = dict(zip(PERCENTILES, np.percentile(samples_ms, list(PERCENTILES.values())).tolist()))
        batches = batch_totals(blocks, measured.arrays)
        best = batches.index(best_batch(batches))
        resampled = block_bootstrap(blocks, resamples=data.resamples, seed=data.seed, best_batch=best)
        session = session_spread(
            data.machine_calibrations_ms, current_ms=calibration["median_ms"], floor=options["session_spread_floor"]
        )
        resampled = with_session_factor(resampled, sigma=session["sigma"], seed=[data.seed, data.submission_seed])
        intervals = {
            name: np.percentile(values, INTERVAL_PERCENTILES).tolist() for name, values in resampled.items()
        }
        metrics = {key: percentiles[name] for key, name in METRIC_PERCENTILES.items()}
        metrics["throughput_rows_per_s"] = batches[best]["rows_per_s"]
        metric_names = {**METRIC_PERCENTILES, "throughput_rows_per_s": "throughput_rows_per_s"}
        document = _document(
            samples_ms, percentiles, intervals, measured.document, batches=batches, options=options,
            resamples=data.resamples, seed=data.seed,
        )
        raw_ms = measured.arrays["single_ns"] / 1e6
        speed["measured_percentiles_ms"] = dict(
            zip(PERCENTILES, np.percentile(raw_ms, list(PERCENTILES.values())).tolist())
        )
        document["speed_calibration"] = speed
        document["session_spread"] = session
        document["session_remeasured"] = measured.document.get("session_remeasured")
        document["resample_values"] = {key: resampled[name].tolist() for key, name in metric_names.items()}
        # Cost recomputes its figure on the same resamples (evaluators/cost.py).
        document["best_batch_resamples"] = {
            key: resampled[key].tolist() for key in ("cpu_seconds_per_row", "wall_seconds_per_row")
        }
        return EvaluatorResult(
            metrics=metrics,
            intervals={key: intervals[name] for key, name in metric_names.items()},
            document=document,
        )


def _document(
    samples_ms: np.ndarray,
    percentiles: dict,
    intervals: dict,
    probe_document: dict,
    *,
    batches: list[dict],
    options: dict,
    resamples: int,
    seed: int,
) -> dict:
    return {
        "unit": "ms",
        "calls": int(samples_ms.size),
        "percentiles_ms": percentiles,
        "mean_ms": float(samples_ms.mean()),
        "min_ms": float(samples_ms.min()),
        "max_ms": float(samples_ms.max()),
        "intervals_ms": {name: intervals[name] for name in PERCENTILES},
        "bootstrap": {
            "resamples": resamples,
            "resampled": "measurement blocks",
            "blocks": probe_document["budget"]["blocks"],
            "seed": seed,
            "interval_percentiles": list(INTERVAL_PERCENTILES),
            "note": _INTERVAL_NOTE,
        },
        "histogram": log_histogram(samples_ms, bins=options["histogram_bins"]),
        "throughput": batches,
        "best_batch_size": best_batch(batches)["batch_size"],
        "overhead": _overhead(probe_document["overhead"], p50_ms=percentiles["p50"]),
        "method": {
            key: probe_document[key]
            for key in ("serving_call", "warmup_calls", "distinct_rows", "seed", "single_row_timed_seconds")
        },
        "budget": probe_document["budget"],
        "isolation": probe_document["isolation"],
        "calibration": probe_document["calibration"],
        "machine_load": probe_document["machine_load"],
        "off_core": probe_document.get("off_core"),
        "environment": probe_document["environment"],
    }


def _options(data: EvaluationInput) -> dict:
    return {**DEFAULT_OPTIONS, **data.options}


def measured_blocks(arrays: dict, batch_sizes: list[int], *, factors: np.ndarray | None = None) -> dict:
    """The probe's arrays per block, every time multiplied by its block's speed factor (see
    speed_calibration; none given, as measured): single-row calls (blocks x calls, ms) and the
    batches' on-core and CPU nanoseconds (blocks x batch sizes)."""
    single_ms = arrays["single_ns"] / 1e6
    block_of_call = arrays["single_block"]
    n_blocks = len(arrays["batch_calls"])
    calls = np.bincount(block_of_call, minlength=n_blocks)
    if (calls != calls[0]).any():
        raise EvaluatorError("the latency probe's blocks hold different numbers of calls")
    factors = np.ones(n_blocks) if factors is None else factors
    single = single_ms[np.argsort(block_of_call, kind="stable")].reshape(n_blocks, calls[0])
    return {
        "single_ms": single * factors[:, None],
        "batch_calls": arrays["batch_calls"],
        "batch_core_ns": arrays["batch_core_ns"] * factors[:, None],
        "batch_cpu_ns": arrays["batch_cpu_ns"] * factors[:, None],
        "row_counts": np.asarray(batch_sizes),  # rows per call of each batch size
    }


def batch_totals(blocks: dict, arrays: dict) -> list[dict]:
    """Per batch size, over the blocks: rows, seconds (on-core and CPU as calibrated, wall as
    measured), rows per second of on-core time, and the seconds per row that cost prices."""
    totals = []
    for column, size in enumerate(blocks["row_counts"].tolist()):
        calls = int(blocks["batch_calls"][:, column].sum())
        rows = calls * size
        on_core = float(blocks["batch_core_ns"][:, column].sum()) / 1e9
        cpu = float(blocks["batch_cpu_ns"][:, column].sum()) / 1e9
        totals.append(
            {
                "batch_size": size,
                "calls": calls,
                "rows": rows,
                "wall_seconds": float(arrays["batch_wall_ns"][:, column].sum()) / 1e9,
                "on_core_seconds": on_core,
                "cpu_seconds": cpu,
                "rows_per_s": rows / on_core,
                # Serving time per row on a core of its own (what holds the memory, for cost).
                "wall_seconds_per_row": on_core / rows,
                "cpu_seconds_per_row": cpu / rows,
            }
        )
    return totals


def speed_reference(recent_ms, *, current_ms: float) -> dict:
    """The calibration time the figures are stated at: this machine's usual speed.

    The median calibration of its recent latency sessions (this one included) once there are
    MIN_SESSIONS of them; before that, this session's median, so that only the moves within the
    session are taken out."""
    sessions = [current_ms, *list(recent_ms)[: MAX_SESSIONS - 1]]
    if len(sessions) >= MIN_SESSIONS:
        return {"ms": float(np.median(sessions)), "source": f"median calibration of this machine's last {len(sessions)} latency sessions"}
    return {"ms": float(current_ms), "source": f"this session's median calibration (fewer than {MIN_SESSIONS} sessions on this machine)"}


def speed_calibration(calibration_ms: np.ndarray, *, reference_ms: dict) -> dict:
    """Each block's speed factor: the reference calibration time over the block's own.

    The machine's speed moves within seconds (on the shared 2-core development machine the
    calibration of one session's blocks ranged from 1.7 to 2.9 ms, in two states), and a model's
    calls move with it: the block medians of a small ONNX model follow its calibration (correlation
    0.5 on average). Multiplying a block's times by its factor states them at the machine's usual
    speed. Offline (16 sessions of the probe) that halved the spread of a model's p50 across
    sessions (16% to 7% quiet, 13% to 4% with a core busy); in bench/noise.py, five copies per
    format, the p50's spread under load fell to 5-8%, but the p99's did not (11.7% as timed, 12.4%
    calibrated, for skops; 9.7% and 11.5% for ONNX): the tail comes from events that land between
    calibrations. Factors are held to [1/MAX_SPEED_FACTOR, MAX_SPEED_FACTOR]."""
    factors = reference_ms["ms"] / np.asarray(calibration_ms, dtype=float)
    clipped = np.clip(factors, 1 / MAX_SPEED_FACTOR, MAX_SPEED_FACTOR)
    return {
        "reference_ms": reference_ms["ms"],
        "reference": reference_ms["source"],
        "block_factors": clipped.tolist(),
        "factor_range": [float(clipped.min()), float(clipped.max())],
        "clipped_blocks": int((clipped != factors).sum()),
        "rule": (
            "each block's times (calls, batches, CPU) are multiplied by reference calibration / that block's "
            "calibration, so the figures are stated at this machine's usual speed; measured_percentiles_ms are the "
            "calls as timed"
        ),
    }


def session_disturbed(outcome, recent_ms, *, factor: float = SESSION_DISTURBED_FACTOR) -> bool:
    """Whether a whole session ran disturbed: blocks still disturbed after re-measuring, or a
    calibration `factor` times slower than this machine's recent median."""
    if outcome is None or outcome.document is None:
        return False
    calibration = outcome.document["calibration"]
    if calibration.get("still_disturbed_blocks"):
        return True
    return len(recent_ms) >= MIN_SESSIONS and calibration["median_ms"] > factor * float(np.median(recent_ms))


def session_spread(recent_ms, *, current_ms: float, floor: float) -> dict:
    """How much the machine's speed moves between sessions: the calibration medians' log-sd, at least `floor`."""
    sessions = [current_ms, *list(recent_ms)[: MAX_SESSIONS - 1]]
    measured = float(np.std(np.log(sessions), ddof=1)) if len(sessions) >= MIN_SESSIONS else None
    return {
        "sigma": max(floor, measured or 0.0),
        "calibration_sigma": measured,
        "floor": floor,
        "sessions": len(sessions),
        "source": (
            "the larger of the floor and the log-sd of the calibration median over this machine's recent latency "
            f"sessions (counted from {MIN_SESSIONS} sessions on)"
        ),
    }


def with_session_factor(resampled: dict, *, sigma: float, seed) -> dict:
    """Each resample scaled by one draw of exp(sigma * z): times grow with it, rates shrink."""
    factor = np.exp(sigma * np.random.default_rng(seed).standard_normal(len(resampled["p50"])))
    scaled = {name: values * factor for name, values in resampled.items()}
    scaled["throughput_rows_per_s"] = resampled["throughput_rows_per_s"] / factor
    return scaled


def block_bootstrap(blocks: dict, *, resamples: int, seed: int, best_batch: int) -> dict[str, np.ndarray]:
    """Every figure on each of `resamples` redraws of the blocks, with replacement.

    {percentile name: (resamples,) ms, "throughput_rows_per_s", and the best batch size's
    "cpu_seconds_per_row" and "wall_seconds_per_row"}. Throughput on a resample is the best over
    the batch sizes there, as the point value is; cost uses the batch size that is best overall.
    """
    single = blocks["single_ms"]
    n_blocks, calls = single.shape
    drawn = np.random.default_rng(seed).integers(0, n_blocks, size=(resamples, n_blocks))
    chunk = max(1, _BLOCK_CELLS // single.size)
    values = []
    for start in range(0, resamples, chunk):
        pooled = single[drawn[start : start + chunk]].reshape(-1, n_blocks * calls)
        values.append(np.percentile(pooled, list(PERCENTILES.values()), axis=1).T)
    percentiles = np.concatenate(values)
    rows = blocks["batch_calls"][drawn].sum(axis=1) * blocks["row_counts"]
    wall = blocks["batch_core_ns"][drawn].sum(axis=1) / 1e9
    cpu = blocks["batch_cpu_ns"][drawn].sum(axis=1) / 1e9
    result = {name: percentiles[:, column] for column, name in enumerate(PERCENTILES)}
    result["throughput_rows_per_s"] = (rows / wall).max(axis=1)
    result["cpu_seconds_per_row"] = cpu[:, best_batch] / rows[:, best_batch]
    result["wall_seconds_per_row"] = wall[:, best_batch] / rows[:, best_batch]
    return result


def log_histogram(samples: np.ndarray, *, bins: int) -> dict:
    """Counts over log-spaced bins from the fastest call to the slowest, so that every call counts."""
    low, high = samples.min(), samples.max()
    # Equal ends would make bins of zero width; widening the top puts every call in the first.
    edges = np.geomspace(low, high if high > low else low * 1.001, bins + 1)
    counts, _ = np.histogram(samples, edges)
    return {"spacing": "log", "unit": "ms", "edges_ms": edges.tolist(), "counts": counts.tolist()}


def best_batch(batches: list[dict]) -> dict:
    return max(batches, key=lambda batch: batch["rows_per_s"])


def _overhead(overhead: dict, *, p50_ms: float) -> dict:
    return {
        "calls": overhead["calls"],
        "p50_ms": overhead["p50_ns"] / 1e6,
        "p99_ms": overhead["p99_ns"] / 1e6,
        "share_of_p50": overhead["p50_ns"] / 1e6 / p50_ms,
        "subtracted": overhead["subtracted"],
        "note": "The timing loop around a call that does nothing; reported, not subtracted.",
    }
