"""The latency harness's own overhead beside the p50 of the fastest realistic model.

Trains the Adult demo baselines, runs the real latency probe in this process on an OnnxModel of
the logistic-regression baseline exported to ONNX (the fastest model Holdout's demo ships), and
prints the no-op loop's p50 and p99 beside the model's p50 and their ratio. The harness is fit
for purpose while that ratio stays under 5%.

With --baselines it also runs every baseline through run_in_sandbox, the limited child process
the workers use, and prints its latency percentiles, best throughput, parameters, memory and
cost per million predictions at the default prices.

    .venv/bin/python bench/latency_overhead.py [--seconds S] [--baselines]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from evaluators.cost import DEFAULT_OPTIONS as PRICES, cost_per_million  # noqa: E402
from evaluators.latency import DEFAULT_OPTIONS, best_batch  # noqa: E402
from evaluators.model_runner import OnnxModel  # noqa: E402
from evaluators.probes import latency  # noqa: E402
from evaluators.sandbox import Limits, run_in_sandbox  # noqa: E402
from leaderboard.demo.baselines import SKOPS_TRUSTED_TYPES, train_baselines  # noqa: E402
from leaderboard.demo.synthetic import ADULT_SPEC, adult_dataset  # noqa: E402

SEED = 0
LIMITS = Limits(memory_bytes=4 * 2**30, cpu_seconds=600, wall_seconds=600)


def probe_params(seconds: float) -> dict:
    return {**DEFAULT_OPTIONS, "max_seconds": seconds, "seed": SEED}


def overhead_in_process(baseline, features, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / baseline.filename
        path.write_bytes(baseline.data)
        model = OnnxModel(str(path), task="binary")
        result = latency.probe(model, features, probe_params(seconds))
    overhead = result.document["overhead"]
    model_p50 = float(np.percentile(result.arrays["single_ns"], 50))
    print(f"{baseline.name}, in process: {result.document['calls']} calls")
    print(f"  harness (no-op) p50 {overhead['p50_ns']:8.0f} ns   p99 {overhead['p99_ns']:8.0f} ns")
    print(f"  model           p50 {model_p50:8.0f} ns")
    print(f"  overhead / model p50 = {overhead['p50_ns'] / model_p50:.2%}")


def baselines_in_sandbox(baselines, features, seconds: float) -> None:
    print(f"\n{'baseline':32} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8} {'rows/s':>10} {'batch':>5} "
          f"{'params':>8} {'RSS MB':>7} {'USD/1M':>9}")
    for baseline in baselines:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / baseline.filename
            path.write_bytes(baseline.data)
            run = run_in_sandbox(
                artifact_path=str(path),
                artifact_format=path.suffix[1:],
                features=features,
                task="binary",
                skops_trusted=sorted(SKOPS_TRUSTED_TYPES),
                limits=LIMITS,
                predict=False,
                probes={"inspect": {}, "latency": probe_params(seconds)},
            )
        timed, inspected = run.probes["latency"], run.probes["inspect"]
        if timed.error or inspected.error:
            print(f"{baseline.name:32} failed: {timed.error or inspected.error}")
            continue
        p50, p99 = np.percentile(timed.arrays["single_ns"] / 1e6, [50, 99])
        batch = best_batch(timed.document["batches"])
        cost = cost_per_million(
            cpu_seconds_per_row=batch["cpu_seconds_per_row"],
            wall_seconds_per_row=batch["wall_seconds_per_row"],
            resident_bytes=inspected.document["process_rss_bytes"],
            usd_per_vcpu_hour=PRICES["usd_per_vcpu_hour"],
            usd_per_gb_hour=PRICES["usd_per_gb_hour"],
        )
        print(f"{baseline.name:32} {timed.document['calls']:7d} {p50:8.3f} {p99:8.3f} {batch['rows_per_s']:10.0f} "
              f"{batch['batch_size']:5d} {inspected.document['n_parameters']:8d} "
              f"{inspected.document['process_rss_bytes'] / 2**20:7.0f} {cost['cost_usd_per_million']:9.2g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_OPTIONS["max_seconds"], help="probe budget")
    parser.add_argument("--baselines", action="store_true", help="also time every baseline in the sandbox")
    args = parser.parse_args()
    train, test = adult_dataset()
    features = test[ADULT_SPEC["feature_columns"]]
    baselines = train_baselines(train, ADULT_SPEC, seed=SEED)
    onnx_linear = next(baseline for baseline in baselines if baseline.filename.endswith(".onnx"))
    overhead_in_process(onnx_linear, features, args.seconds)
    if args.baselines:
        baselines_in_sandbox(baselines, features, args.seconds)


if __name__ == "__main__":
    main()
