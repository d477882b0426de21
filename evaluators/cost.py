"""Cost: US dollars per million predictions, from what latency and size measured.

    cost_usd_per_million = cpu_seconds_per_row * 1e6 / 3600 * usd_per_vcpu_hour
                         + resident_gb * (wall_seconds_per_row * 1e6 / 3600) * usd_per_gb_hour

CPU and wall seconds per row are the latency evaluator's at its best batch size (the most rows
per second); resident_gb is everything the loaded model's process held (the size evaluator's
process_rss_bytes, interpreter and runtime included, as a container serving it would hold), over
the hours those million predictions take. Compute is charged for the CPU time used, as if the
service were kept busy; memory for as long as the predictions take.

Its interval comes from the latency measurement's block bootstrap: the formula applied to the
best batch size's CPU and wall seconds per row on each of latency's resamples (the resident
memory is one reading, held fixed), and those per-resample costs are kept for ties like latency's.
"""

import numpy as np

from .base import EvaluationInput, EvaluatorError, EvaluatorResult
from .latency import best_batch
from .performance import INTERVAL_PERCENTILES

# AWS Fargate, Linux/x86, on-demand list prices in us-east-1 (unchanged since the January 2019
# price cut; assumed current on 2025-06-01). Fargate sizes memory in MiB, so its GB is 2**30 bytes.
DEFAULT_OPTIONS = {
    "usd_per_vcpu_hour": 0.04048,
    "usd_per_gb_hour": 0.004445,
    "prices_source": "AWS Fargate Linux/x86 on-demand, us-east-1, list prices assumed current on 2025-06-01",
}
BYTES_PER_GB = 2**30
PREDICTIONS = 1_000_000
FORMULA = (
    "cpu_seconds_per_row * 1e6 / 3600 * usd_per_vcpu_hour"
    " + resident_bytes / 2**30 * (wall_seconds_per_row * 1e6 / 3600) * usd_per_gb_hour"
)
_NEEDS = ("latency", "size")


class CostEvaluator:
    name = "cost"
    probes = ()
    queue = "latency"

    def applies(self, data: EvaluationInput) -> bool:
        return True

    def probe_params(self, data: EvaluationInput) -> dict[str, dict]:
        return {}

    def evaluate(self, data: EvaluationInput) -> EvaluatorResult:
        missing = [name for name in _NEEDS if name not in data.previous]
        if missing:
            raise EvaluatorError(
                f"cost needs the {' and '.join(missing)} results of this submission, which are missing"
            )
        options = {**DEFAULT_OPTIONS, **data.options}
        batch = best_batch(data.previous["latency"]["document"]["throughput"])
        resident_bytes = data.previous["size"]["document"]["process_rss_bytes"]
        breakdown = cost_per_million(
            cpu_seconds_per_row=batch["cpu_seconds_per_row"],
            wall_seconds_per_row=batch["wall_seconds_per_row"],
            resident_bytes=resident_bytes,
            usd_per_vcpu_hour=options["usd_per_vcpu_hour"],
            usd_per_gb_hour=options["usd_per_gb_hour"],
        )
        resampled = data.previous["latency"]["document"].get("best_batch_resamples")
        resample_values, intervals = None, {}
        if resampled:
            resample_values = cost_per_million(
                cpu_seconds_per_row=np.asarray(resampled["cpu_seconds_per_row"]),
                wall_seconds_per_row=np.asarray(resampled["wall_seconds_per_row"]),
                resident_bytes=resident_bytes,
                usd_per_vcpu_hour=options["usd_per_vcpu_hour"],
                usd_per_gb_hour=options["usd_per_gb_hour"],
            )["cost_usd_per_million"]
            intervals["cost_usd_per_million"] = np.percentile(resample_values, INTERVAL_PERCENTILES).tolist()
        document = {
            "formula": FORMULA,
            "inputs": {
                "batch_size": batch["batch_size"],
                "cpu_seconds_per_row": batch["cpu_seconds_per_row"],
                "wall_seconds_per_row": batch["wall_seconds_per_row"],
                "resident_bytes": resident_bytes,
            },
            "prices": {
                "usd_per_vcpu_hour": options["usd_per_vcpu_hour"],
                "usd_per_gb_hour": options["usd_per_gb_hour"],
                "bytes_per_gb": BYTES_PER_GB,
                "source": options["prices_source"],
            },
            **breakdown,
            "interval": intervals.get("cost_usd_per_million"),
            "interval_note": (
                "95% interval over the latency measurement's block resamples, memory held fixed"
                if resampled
                else "no interval: the latency report holds no resamples"
            ),
        }
        if resample_values is not None:
            document["resample_values"] = {"cost_usd_per_million": resample_values.tolist()}
        return EvaluatorResult(
            metrics={"cost_usd_per_million": breakdown["cost_usd_per_million"]}, intervals=intervals, document=document
        )


def cost_per_million(
    *,
    cpu_seconds_per_row: float,
    wall_seconds_per_row: float,
    resident_bytes: int,
    usd_per_vcpu_hour: float,
    usd_per_gb_hour: float,
) -> dict:
    vcpu_hours = cpu_seconds_per_row * PREDICTIONS / 3600
    wall_hours = wall_seconds_per_row * PREDICTIONS / 3600
    resident_gb = resident_bytes / BYTES_PER_GB
    compute_usd = vcpu_hours * usd_per_vcpu_hour
    memory_usd = resident_gb * wall_hours * usd_per_gb_hour
    return {
        "vcpu_hours": vcpu_hours,
        "wall_hours": wall_hours,
        "resident_gb": resident_gb,
        "compute_usd": compute_usd,
        "memory_usd": memory_usd,
        "cost_usd_per_million": compute_usd + memory_usd,
    }
