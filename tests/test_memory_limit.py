"""HOLDOUT_MODEL_MEMORY_MB at its smallest working value runs every probe; below it, the run is
refused with the setting and the minimum named, rather than every model failing (issue 12)."""

import pytest

from evaluators.interpretability import DEFAULT_OPTIONS
from evaluators.sandbox import MIN_MODEL_MEMORY_MB, Limits, memory_limit_problem
from tests import model_factories as factories
from tests.conftest import baseline_named

SMALLEST = Limits(memory_bytes=MIN_MODEL_MEMORY_MB * 2**20, cpu_seconds=120, wall_seconds=120)


@pytest.fixture(scope="module")
def adult_test_features():
    """The whole Adult test split (16,281 rows), as a worker feeds it."""
    from leaderboard.demo.build_adult import ADULT_TEST_PATH
    from leaderboard.demo.synthetic import ADULT_SPEC
    from leaderboard.tables import table_from_parquet

    return table_from_parquet(ADULT_TEST_PATH.read_bytes())[ADULT_SPEC["feature_columns"]]


@pytest.mark.parametrize("artifact", ["skops:Logistic regression", "onnx:Logistic regression"])
def test_the_explain_probe_runs_at_the_smallest_memory_limit(tmp_path, adult_baselines, adult_test_features, artifact):
    params = {"seed": 7, "positive_label": ">50K", "classes": ["<=50K", ">50K"], **DEFAULT_OPTIONS}
    run = factories.baseline_in_sandbox(
        tmp_path, baseline_named(adult_baselines, artifact), adult_test_features,
        limits=SMALLEST, predict=True, probes={"explain": params},
    )
    assert len(run.predictions.labels) == len(adult_test_features)
    explained = run.probes["explain"]
    assert explained.error is None, explained.error
    assert explained.document["rows_explained"] == DEFAULT_OPTIONS["max_rows"]


def test_a_memory_limit_too_small_for_any_model_is_refused_naming_the_setting_and_the_minimum(
    tmp_path, adult_baselines, adult_test_features
):
    assert memory_limit_problem(MIN_MODEL_MEMORY_MB * 2**20) is None
    expected = (
        f"HOLDOUT_MODEL_MEMORY_MB is 512; the model process needs at least {MIN_MODEL_MEMORY_MB} MB, since loading "
        "its libraries"
    )
    assert memory_limit_problem(512 * 2**20).startswith(expected)
    with pytest.raises(RuntimeError, match="HOLDOUT_MODEL_MEMORY_MB is 512; the model process needs at least"):
        factories.baseline_in_sandbox(
            tmp_path, baseline_named(adult_baselines, "onnx:Logistic regression"), adult_test_features,
            limits=Limits(memory_bytes=512 * 2**20, cpu_seconds=60, wall_seconds=60), predict=True, probes={},
        )


def test_a_worker_does_not_start_on_a_memory_limit_too_small_for_any_model():
    import os
    import subprocess
    import sys

    from tests.environment import PROJECT_DIR

    finished = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "evaluate", "--concurrency", "1",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=PROJECT_DIR, env={**os.environ, "HOLDOUT_MODEL_MEMORY_MB": "512"}, capture_output=True, text=True,
        timeout=120,
    )
    assert finished.returncode == 2
    assert "holdout worker not started: HOLDOUT_MODEL_MEMORY_MB is 512" in finished.stderr
