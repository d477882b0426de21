"""The latency probe and evaluator. Timings are never asserted: the machine is shared and noisy,
so these tests check structure, arithmetic and the call-count rules, and compare the reported
percentiles with numpy's on the very calls recorded."""

import gc
import itertools
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from evaluators.base import EvaluationInput, EvaluatorError
from evaluators.cost import CostEvaluator
from evaluators.latency import DEFAULT_OPTIONS, LatencyEvaluator, bootstrap_intervals
from evaluators.model_runner import OnnxModel, SkopsModel
from evaluators.probes import latency as latency_probe
from evaluators.sandbox import Limits, ProbeOutcome
from evaluators.size import SizeEvaluator
from tests import model_factories as factories

SMALL_BUDGET = {
    **DEFAULT_OPTIONS,
    "max_seconds": 0.2,
    "min_calls": 20,
    "max_calls": 200,
    "warmup_calls": 5,
    "batch_sizes": [1, 4],
    "sample_rows": 16,
    "seed": 3,
}
GENEROUS = Limits(memory_bytes=2 * 2**30, cpu_seconds=120, wall_seconds=120)


def evaluation_input(*, probes=None, previous=None, options=None, seed=7, artifact_bytes=1000):
    return EvaluationInput(
        task="binary",
        y_true=np.array([]),
        predictions=None,
        features=pd.DataFrame(),
        sensitive=pd.DataFrame(),
        times=None,
        classes=["<=50K", ">50K"],
        positive_label=">50K",
        primary_metric="accuracy",
        primary_higher_is_better=True,
        resamples=100,
        seed=seed,
        metadata={},
        options=options or {},
        artifact_bytes=artifact_bytes,
        artifact_format="onnx",
        probes=probes or {},
        previous=previous or {},
    )


@pytest.fixture(scope="module")
def census():
    return factories.census(n_rows=200, seed=2)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, census):
    features, labels = census
    pipeline = factories.logistic_pipeline(features, labels)
    folder = tmp_path_factory.mktemp("latency-models")
    onnx_path, skops_path = folder / "model.onnx", folder / "model.skops"
    onnx_path.write_bytes(factories.onnx_from_pipeline(pipeline, features, zipmap=False))
    skops_path.write_bytes(factories.skops_bytes(pipeline))
    return {"onnx": onnx_path, "skops": skops_path}


@pytest.fixture(scope="module")
def onnx_probe_document(artifacts, census):
    """A real probe document, whose single-row calls the evaluator tests replace with known ones."""
    model = OnnxModel(str(artifacts["onnx"]), task="binary")
    return latency_probe.probe(model, census[0], SMALL_BUDGET).document


def outcome_with(document: dict, single_ns) -> ProbeOutcome:
    arrays = {"single_ns": np.asarray(single_ns, dtype=np.int64)}
    return ProbeOutcome(document=document, arrays=arrays, error=None, seconds=1.0)


def known_calls(n: int = 5000, seed: int = 0) -> np.ndarray:
    """Latency-shaped nanoseconds: log-normal around 50 µs with a long right tail."""
    return np.random.default_rng(seed).lognormal(np.log(50_000), 0.4, n).astype(np.int64)


def evaluate_latency(document, single_ns, **options):
    data = evaluation_input(probes={"latency": outcome_with(document, single_ns)}, options=options)
    return LatencyEvaluator().evaluate(data)


def test_latency_percentiles_equal_numpys_on_the_recorded_calls(onnx_probe_document):
    calls = known_calls()
    result = evaluate_latency(onnx_probe_document, calls, bootstrap_resamples=20)
    expected_ms = np.percentile(calls / 1e6, [50, 90, 95, 99, 99.9])
    assert [result.metrics[f"latency_p{q}_ms"] for q in (50, 90, 95, 99)] == expected_ms[:4].tolist()
    assert result.document["percentiles_ms"]["p99.9"] == expected_ms[4]
    assert result.document["mean_ms"] == np.mean(calls / 1e6)
    assert result.document["calls"] == len(calls)


def test_the_histogram_counts_every_recorded_call_in_log_spaced_bins(onnx_probe_document):
    calls = known_calls(n=3001)
    result = evaluate_latency(onnx_probe_document, calls, histogram_bins=25, bootstrap_resamples=10)
    histogram = result.document["histogram"]
    assert sum(histogram["counts"]) == len(calls)
    edges = np.asarray(histogram["edges_ms"])
    assert len(edges) == 26 and edges[0] == calls.min() / 1e6 and np.isclose(edges[-1], calls.max() / 1e6)
    np.testing.assert_allclose(edges[1:] / edges[:-1], edges[1] / edges[0])


def test_a_histogram_of_identical_calls_puts_them_all_in_one_bin(onnx_probe_document):
    histogram = evaluate_latency(onnx_probe_document, [40_000] * 300, bootstrap_resamples=10).document["histogram"]
    assert histogram["counts"][0] == 300 and sum(histogram["counts"]) == 300


def test_throughput_is_the_most_rows_per_second_over_the_batch_sizes(onnx_probe_document):
    result = evaluate_latency(onnx_probe_document, known_calls(), bootstrap_resamples=10)
    batches = onnx_probe_document["batches"]
    assert result.metrics["throughput_rows_per_s"] == max(batch["rows_per_s"] for batch in batches)
    assert result.document["throughput"] == batches
    assert [batch["batch_size"] for batch in batches] == [1, 4]


def test_the_metric_keys_are_the_canonical_latency_objectives(onnx_probe_document):
    result = evaluate_latency(onnx_probe_document, known_calls(), bootstrap_resamples=10)
    percentile_keys = ["latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms"]
    assert sorted(result.metrics) == sorted([*percentile_keys, "throughput_rows_per_s"])
    assert sorted(result.intervals) == sorted(percentile_keys)


def test_percentile_intervals_are_seeded_and_hold_the_percentile():
    samples = known_calls() / 1e6
    intervals = bootstrap_intervals(samples, resamples=200, seed=5)
    assert intervals == bootstrap_intervals(samples, resamples=200, seed=5)
    assert intervals != bootstrap_intervals(samples, resamples=200, seed=6)
    for name, q in (("p50", 50), ("p99", 99)):
        low, high = intervals[name]
        assert low <= np.percentile(samples, q) <= high and low < high


def test_percentile_intervals_are_numpys_percentiles_of_seeded_resamples():
    samples = known_calls(n=500) / 1e6
    drawn = samples[np.random.default_rng(4).integers(0, 500, size=(50, 500))]
    p99_per_resample = np.percentile(drawn, 99, axis=1)
    low, high = bootstrap_intervals(samples, resamples=50, seed=4)["p99"]
    assert [low, high] == np.percentile(p99_per_resample, [2.5, 97.5]).tolist()


def test_bootstrap_in_blocks_gives_the_intervals_of_one_draw(monkeypatch):
    samples = known_calls(n=1000) / 1e6
    whole = bootstrap_intervals(samples, resamples=30, seed=1)
    monkeypatch.setattr("evaluators.latency._BLOCK_CELLS", 7 * len(samples))
    assert bootstrap_intervals(samples, resamples=30, seed=1) == whole


def test_probe_params_put_benchmark_options_over_the_defaults_with_the_benchmark_seed():
    params = LatencyEvaluator().probe_params(evaluation_input(options={"max_seconds": 2.5}, seed=42))
    assert params == {"latency": {**DEFAULT_OPTIONS, "max_seconds": 2.5, "seed": 42}}
    assert DEFAULT_OPTIONS["batch_sizes"] == [1, 32, 1024]


def test_a_failed_probe_fails_the_evaluator_with_its_reason():
    failed = ProbeOutcome(None, {}, "the model failed while running the latency probe: boom", 0.1)
    with pytest.raises(EvaluatorError, match="boom"):
        LatencyEvaluator().evaluate(evaluation_input(probes={"latency": failed}))
    with pytest.raises(EvaluatorError, match="latency probe did not run"):
        LatencyEvaluator().evaluate(evaluation_input())


def test_a_tiny_budget_still_makes_min_calls():
    timings = latency_probe.timed_calls(lambda _: None, [1, 2, 3], seconds=1e-9, min_calls=37, max_calls=1000)
    assert len(timings) == 37


def test_a_generous_budget_stops_at_max_calls():
    timings = latency_probe.timed_calls(lambda _: None, [1], seconds=60, min_calls=5, max_calls=123)
    assert len(timings) == 123


def test_calls_go_on_past_min_calls_until_the_budget_is_spent_with_only_the_call_timed(monkeypatch):
    # A clock that moves 1 ms per read: every timing is exactly one step if nothing but the call
    # sits between its two reads, and the budget of 20 ms runs out after a known few calls.
    ticks = itertools.count(step=1_000_000)
    monkeypatch.setattr(time, "perf_counter_ns", lambda: next(ticks))
    timings = latency_probe.timed_calls(lambda _: None, [1], seconds=0.02, min_calls=2, max_calls=1000)
    assert 2 < len(timings) < 20
    assert set(timings.tolist()) == {1_000_000}


def test_the_probe_times_an_onnx_model_in_process(artifacts, census):
    model = OnnxModel(str(artifacts["onnx"]), task="binary")
    result = latency_probe.probe(model, census[0], SMALL_BUDGET)
    document, single_ns = result.document, result.arrays["single_ns"]
    assert document["serving_call"] == "session.run (all outputs)"
    assert document["calls"] == len(single_ns) and 20 <= len(single_ns) <= 200
    assert single_ns.dtype == np.int64 and (single_ns > 0).all()
    assert document["distinct_rows"] == 16 and document["warmup_calls"] == 5
    for batch, size in zip(document["batches"], [1, 4]):
        assert batch["batch_size"] == size and batch["calls"] >= 1 and batch["rows"] == batch["calls"] * size
        assert batch["rows_per_s"] == pytest.approx(batch["rows"] / batch["wall_seconds"])
        assert batch["cpu_seconds_per_row"] == pytest.approx(batch["cpu_seconds"] / batch["rows"])
    overhead = document["overhead"]
    assert overhead["calls"] == len(single_ns) and 0 <= overhead["p50_ns"] <= overhead["p99_ns"]
    assert overhead["subtracted"] is False
    environment = document["environment"]
    assert environment["threads"]["onnxruntime"] == {"intra_op_num_threads": 1, "inter_op_num_threads": 1}
    assert environment["libraries"]["onnxruntime"] and environment["libraries"]["numpy"] == np.__version__
    assert environment["cpu_model"] and environment["logical_cpus"] >= 1


def test_the_probe_times_a_skops_classifier_through_predict_proba(artifacts, census):
    model = SkopsModel(str(artifacts["skops"]), trusted=factories.DEFAULT_TRUSTED, task="binary")
    result = latency_probe.probe(model, census[0], {**SMALL_BUDGET, "max_seconds": 0.05})
    assert result.document["serving_call"] == "predict_proba"
    assert len(result.arrays["single_ns"]) == result.document["calls"] >= 20
    assert "native_pools" in result.document["environment"]["threads"]


def test_a_regressor_is_timed_through_predict(census):
    features, _labels = census
    regressor = factories.numeric_linear_regression(features, features["age"].to_numpy(float))
    model = SimpleNamespace(format="skops", task="regression", estimator=regressor)
    name, _prepare, run = latency_probe.serving_call(model)
    assert name == "predict" and run == regressor.predict


class RecordingEstimator:
    """Notes whether garbage collection was enabled at each call."""

    def __init__(self):
        self.collection_enabled = []

    def predict(self, frame):
        self.collection_enabled.append(gc.isenabled())
        return np.zeros(len(frame))


@pytest.mark.parametrize("enabled_before", [True, False])
def test_garbage_collection_is_paused_while_timing_and_left_as_it_was(census, enabled_before):
    estimator = RecordingEstimator()
    model = SimpleNamespace(format="skops", task="regression", estimator=estimator)
    (gc.enable if enabled_before else gc.disable)()
    try:
        latency_probe.probe(model, census[0], {**SMALL_BUDGET, "max_seconds": 0.01})
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable()
    assert estimator.collection_enabled and not any(estimator.collection_enabled)


def test_latency_inspect_size_and_cost_run_end_to_end_through_the_sandbox(tmp_path, adult_frames, adult_baselines):
    from leaderboard.demo.synthetic import ADULT_SPEC

    baseline = next(baseline for baseline in adult_baselines.values() if baseline.filename.endswith(".onnx"))
    features = adult_frames[1][ADULT_SPEC["feature_columns"]]
    run = factories.baseline_in_sandbox(
        tmp_path,
        baseline,
        features,
        limits=GENEROUS,
        predict=False,
        probes={"latency": {**SMALL_BUDGET, "batch_sizes": [1, 32]}, "inspect": {}},
    )
    assert run.predictions is None
    assert run.probes["latency"].error is None and run.probes["inspect"].error is None
    data = evaluation_input(probes=run.probes, artifact_bytes=len(baseline.data))
    latency = LatencyEvaluator().evaluate(data)
    size = SizeEvaluator().evaluate(data)
    calls = run.probes["latency"].arrays["single_ns"]
    assert latency.metrics["latency_p99_ms"] == np.percentile(calls / 1e6, 99)
    assert sum(latency.document["histogram"]["counts"]) == latency.document["calls"] == len(calls)
    assert size.metrics["size_bytes"] == len(baseline.data) and size.metrics["n_parameters"] > 0
    assert size.document["loaded_rss_bytes"] > 0
    assert size.document["process_rss_bytes"] <= size.document["peak_rss_bytes"]
    previous = {
        "latency": {"metrics": latency.metrics, "document": latency.document},
        "size": {"metrics": size.metrics, "document": size.document},
    }
    cost = CostEvaluator().evaluate(evaluation_input(previous=previous))
    assert cost.metrics["cost_usd_per_million"] > 0
    assert cost.document["inputs"]["batch_size"] == latency.document["best_batch_size"]
