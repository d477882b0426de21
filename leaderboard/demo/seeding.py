"""Create demo benchmarks from a spec and frames through the same service the API uses."""

import pandas as pd

from leaderboard.models import Benchmark
from leaderboard.services import benchmark_create
from leaderboard.tables import table_to_parquet

# The stakeholders whose weights favour cost, speed or fairness over performance: without a floor
# on the primary metric a constant model (free, instant, identical for every group) tops them.
FLOORED_PRESETS = ("balanced", "infrastructure", "fairness-reviewer")


def benchmark_from_spec(spec: dict, train: pd.DataFrame, test: pd.DataFrame, **overrides) -> Benchmark:
    """A benchmark from a demo spec (see leaderboard/demo/synthetic.py) and its two splits."""
    arguments = {
        "slug": spec["slug"],
        "name": spec["name"],
        "description": spec["description"],
        "task": spec["task"],
        "target_column": spec["target"],
        "feature_columns": spec["feature_columns"],
        "sensitive_columns": spec["sensitive_columns"],
        "time_column": spec.get("time_column") or "",
        "positive_label": spec.get("positive_label"),
        "primary_metric": spec["primary_metric"],
        "train_data": table_to_parquet(train),
        "train_filename": f"{spec['slug']}-train.parquet",
        "test_data": table_to_parquet(test),
        "test_filename": f"{spec['slug']}-test.parquet",
        **overrides,
    }
    benchmark = benchmark_create(**arguments)
    if spec.get("preset_floor"):
        for slug in FLOORED_PRESETS:
            if slug in benchmark.presets:
                benchmark.presets[slug]["constraints"] = spec["preset_floor"]
        benchmark.save(update_fields=["presets"])
    return benchmark
