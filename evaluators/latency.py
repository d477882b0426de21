"""Latency and throughput, from the calls the latency probe timed in the model process.

Percentiles are numpy's (``np.percentile``, linear interpolation) over every recorded call, in
milliseconds. Their intervals come from a seeded bootstrap over the calls. Consecutive calls on a
shared machine are not independent (noise comes in bursts), so the intervals describe this run's
sample, not how much a rerun would move; the document says so beside them.
"""

import numpy as np

from .base import EvaluationInput, EvaluatorError, EvaluatorResult, probe_outcome
from .performance import INTERVAL_PERCENTILES

# Benchmark options (`data.options`) override these. The probe (evaluators/probes/latency.py)
# spends the budget; the seed is the benchmark's, so every submission times the same rows.
DEFAULT_OPTIONS = {
    # The whole probe: single-row calls, then every batch size. Four seconds still give a 10 ms
    # model its min_calls and a 20 µs model its max_calls, and keep a submission under ten seconds.
    "max_seconds": 4.0,
    "min_calls": 200,
    "max_calls": 100_000,
    "warmup_calls": 50,
    "batch_sizes": [1, 32, 1024],
    "sample_rows": 256,  # distinct test rows the single-row calls cycle through
    "histogram_bins": 40,
    "bootstrap_resamples": 200,
}
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}
METRIC_PERCENTILES = {f"latency_{name}_ms": name for name in ("p50", "p90", "p95", "p99")}
# Bounds one block of resampled calls to about 32 MB of float64.
_BLOCK_CELLS = 4_000_000
_INTERVAL_NOTE = (
    "Bootstrap over the recorded calls, which treats them as independent. Calls on a shared "
    "machine are not (noise comes in bursts), so the interval is how precisely this run's sample "
    "pins the percentile, not how far a rerun could land."
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
        samples_ms = measured.arrays["single_ns"] / 1e6
        if samples_ms.size == 0:
            raise EvaluatorError("the latency probe recorded no calls")
        percentiles = dict(zip(PERCENTILES, np.percentile(samples_ms, list(PERCENTILES.values())).tolist()))
        intervals = bootstrap_intervals(samples_ms, resamples=options["bootstrap_resamples"], seed=data.seed)
        metrics = {key: percentiles[name] for key, name in METRIC_PERCENTILES.items()}
        metrics["throughput_rows_per_s"] = best_batch(measured.document["batches"])["rows_per_s"]
        return EvaluatorResult(
            metrics=metrics,
            intervals={key: intervals[name] for key, name in METRIC_PERCENTILES.items()},
            document=_document(samples_ms, percentiles, intervals, measured.document, options=options, seed=data.seed),
        )


def _document(
    samples_ms: np.ndarray, percentiles: dict, intervals: dict, probe_document: dict, *, options: dict, seed: int
) -> dict:
    return {
        "unit": "ms",
        "calls": int(samples_ms.size),
        "percentiles_ms": percentiles,
        "mean_ms": float(samples_ms.mean()),
        "min_ms": float(samples_ms.min()),
        "max_ms": float(samples_ms.max()),
        "intervals_ms": intervals,
        "bootstrap": {
            "resamples": options["bootstrap_resamples"],
            "seed": seed,
            "interval_percentiles": list(INTERVAL_PERCENTILES),
            "note": _INTERVAL_NOTE,
        },
        "histogram": log_histogram(samples_ms, bins=options["histogram_bins"]),
        "throughput": probe_document["batches"],
        "best_batch_size": best_batch(probe_document["batches"])["batch_size"],
        "overhead": _overhead(probe_document["overhead"], p50_ms=percentiles["p50"]),
        "method": {
            key: probe_document[key]
            for key in ("serving_call", "warmup_calls", "distinct_rows", "seed", "single_row_elapsed_seconds")
        },
        "budget": probe_document["budget"],
        "environment": probe_document["environment"],
    }


def _options(data: EvaluationInput) -> dict:
    return {**DEFAULT_OPTIONS, **data.options}


def bootstrap_intervals(samples: np.ndarray, *, resamples: int, seed: int) -> dict[str, list[float]]:
    """{percentile name: [low, high]}: the INTERVAL_PERCENTILES of each percentile over resamples."""
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // samples.size)
    values = []
    for start in range(0, resamples, block):
        drawn = samples[rng.integers(0, samples.size, size=(min(block, resamples - start), samples.size))]
        values.append(np.percentile(drawn, list(PERCENTILES.values()), axis=1).T)
    bounds = np.percentile(np.concatenate(values), INTERVAL_PERCENTILES, axis=0)
    return {name: bounds[:, column].tolist() for column, name in enumerate(PERCENTILES)}


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
