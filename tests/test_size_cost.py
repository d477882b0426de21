"""Parameter counts against hand counts, the size metrics, and the cost arithmetic on hand figures."""

from types import SimpleNamespace

import numpy as np
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from evaluators.base import EvaluatorError
from evaluators.cost import CostEvaluator
from evaluators.model_runner import OnnxModel, SkopsModel
from evaluators.probes import inspect as inspect_probe
from evaluators.sandbox import ProbeOutcome
from evaluators.size import SizeEvaluator
from tests import model_factories as factories
from tests.test_latency import evaluation_input

# Two features; the label is the first one, so a tree needs exactly one split.
X = np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.5], [1.0, 0.5]], dtype=np.float32)
Y = np.array([0, 0, 1, 1, 0, 1])


def counted(estimator) -> dict:
    model = SimpleNamespace(format="skops", estimator=estimator, loaded_rss_bytes=1234)
    return inspect_probe.probe(model, None, {}).document


def counted_onnx(model_bytes: bytes) -> dict:
    model = SimpleNamespace(format="onnx", model_bytes=model_bytes, loaded_rss_bytes=1234)
    return inspect_probe.probe(model, None, {}).document


def by_kind(document: dict) -> dict:
    return {part["kind"]: part["parameters"] for part in document["components"]}


def test_a_decision_stump_has_three_parameters_its_root_and_two_leaves():
    document = counted(DecisionTreeClassifier().fit(X, Y))
    assert document["n_parameters"] == 3
    assert document["components"][0]["kind"] == "tree"


def test_a_forest_counts_the_nodes_of_all_its_trees_as_one_component():
    forest = RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0).fit(X, Y)
    document = counted(forest)
    assert document["n_parameters"] == sum(tree.tree_.node_count for tree in forest.estimators_)
    [component] = document["components"]
    assert component["path"] == "RandomForestClassifier" and "4 members" in component["rule"]


def test_histogram_gradient_boosting_counts_the_nodes_of_its_predictors():
    boosting = HistGradientBoostingClassifier(max_iter=3, min_samples_leaf=1).fit(X, Y)
    nodes = sum(len(predictor.nodes) for round_ in boosting._predictors for predictor in round_)
    assert counted(boosting)["n_parameters"] == nodes > 0


def test_a_binary_logistic_regression_has_a_coefficient_per_feature_and_one_intercept():
    document = counted(LogisticRegression().fit(X, Y))
    assert document["n_parameters"] == 2 + 1
    assert by_kind(document) == {"linear": 3}


def test_a_three_class_logistic_regression_has_a_coefficient_row_and_an_intercept_per_class():
    labels = np.array([0, 1, 2, 0, 1, 2])
    assert counted(LogisticRegression().fit(X, labels))["n_parameters"] == 3 * 2 + 3


def test_a_pipeline_sums_its_steps_fitted_arrays():
    document = counted(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y))
    # The scaler's mean_, var_ and scale_ per feature; n_samples_seen_ is bookkeeping.
    assert [part["parameters"] for part in document["components"]] == [3 * 2, 2 + 1]
    assert document["n_parameters"] == 9
    assert [part["path"] for part in document["components"]] == [
        "Pipeline/standardscaler",
        "Pipeline/logisticregression",
    ]


def test_the_adult_like_pipelines_parameters_include_the_encoders_categories():
    features, labels = factories.census(n_rows=200)
    pipeline = factories.logistic_pipeline(features, labels)
    categories = sum(len(values) for values in pipeline[0].named_transformers_["text"].categories_)
    expected = categories + 3 * 2 + pipeline[-1].coef_.size + 1
    assert counted(pipeline)["n_parameters"] == expected


def test_an_onnx_model_counts_initializers_constants_and_subgraphs():
    weights = helper.make_tensor("weights", TensorProto.FLOAT, [2, 3], np.ones(6))
    sparse = helper.make_sparse_tensor(
        helper.make_tensor("sparse_values", TensorProto.FLOAT, [2], [1.0, 2.0]),
        helper.make_tensor("sparse_indices", TensorProto.INT64, [2], [0, 5]),
        [2, 3],
    )
    branch_weights = helper.make_tensor("branch_weights", TensorProto.FLOAT, [4], np.ones(4))
    constant = helper.make_node(
        "Constant", [], ["five"], value=helper.make_tensor("five", TensorProto.FLOAT, [5], np.ones(5))
    )
    branch = helper.make_graph(
        [helper.make_node("Identity", ["branch_weights"], ["out"])],
        "branch",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])],
        initializer=[branch_weights],
    )
    choose = helper.make_node("If", ["condition"], ["chosen"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph(
        [constant, choose],
        "model",
        [helper.make_tensor_value_info("condition", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("chosen", TensorProto.FLOAT, [4])],
        initializer=[weights],
        sparse_initializer=[sparse],
    )
    document = counted_onnx(helper.make_model(graph).SerializeToString())
    # 6 weights + 2 stored sparse values + 4 in each of the two branches; the Constant's 5.
    assert by_kind(document) == {
        "initializers": 6 + 2 + 4 + 4,
        "tensor attributes": 5,
        "ml attributes": 0,
        "tree nodes": 0,
    }
    assert document["n_parameters"] == 21


def test_an_onnx_tree_counts_the_nodes_scikit_learn_counts():
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, Y)
    exported = to_onnx(tree, X[:1], target_opset={"": factories.ONNX_OPSET, "ai.onnx.ml": 3})
    document = counted_onnx(exported.SerializeToString())
    assert by_kind(document)["tree nodes"] == tree.tree_.node_count == 3
    # The ZipMap's class labels are not parameters.
    assert document["n_parameters"] == 3


def test_an_onnx_logistic_regression_counts_the_coefficients_skl2onnx_writes_per_class():
    linear = LogisticRegression().fit(X, Y)
    exported = to_onnx(linear, X[:1], options={id(linear): {"zipmap": False}}, target_opset=factories.ONNX_OPSET)
    # skl2onnx's LinearClassifier holds both classes' coefficients (2 x 2) and intercepts (2).
    assert counted_onnx(exported.SerializeToString())["n_parameters"] == 2 * 2 + 2


def test_inspect_reports_memory_on_loaded_models(tmp_path):
    features, labels = factories.census(n_rows=200)
    pipeline = factories.logistic_pipeline(features, labels)
    (tmp_path / "model.skops").write_bytes(factories.skops_bytes(pipeline))
    (tmp_path / "model.onnx").write_bytes(factories.onnx_from_pipeline(pipeline, features))
    for model in (
        SkopsModel(str(tmp_path / "model.skops"), trusted=factories.DEFAULT_TRUSTED, task="binary"),
        OnnxModel(str(tmp_path / "model.onnx"), task="binary"),
    ):
        model.loaded_rss_bytes = 4096
        document = inspect_probe.probe(model, features, {}).document
        assert document["format"] == model.format and document["n_parameters"] > 0
        assert document["loaded_rss_bytes"] == 4096
        assert 0 < document["process_rss_bytes"] <= document["peak_rss_bytes"]


def inspected(n_parameters=321, process_rss_bytes=300 * 2**20) -> ProbeOutcome:
    document = {
        "format": "onnx",
        "n_parameters": n_parameters,
        "components": [{"kind": "initializers", "rule": "...", "parameters": n_parameters}],
        "loaded_rss_bytes": 2**20,
        "process_rss_bytes": process_rss_bytes,
        "peak_rss_bytes": process_rss_bytes + 2**20,
    }
    return ProbeOutcome(document, {}, None, 0.1)


def test_the_size_metrics_are_the_artifact_bytes_and_the_counted_parameters():
    data = evaluation_input(probes={"inspect": inspected()}, artifact_bytes=98765)
    result = SizeEvaluator().evaluate(data)
    assert result.metrics == {"size_bytes": 98765, "n_parameters": 321}
    assert result.document["process_rss_bytes"] == 300 * 2**20
    assert result.document["parameter_components"][0]["kind"] == "initializers"
    assert result.document["parameter_rules"] == {"initializers": "..."}


def test_size_fails_with_the_inspect_probes_reason():
    failed = ProbeOutcome(None, {}, "the model process crashed (signal SIGSEGV) while running the inspect probe", 0.0)
    with pytest.raises(EvaluatorError, match="SIGSEGV"):
        SizeEvaluator().evaluate(evaluation_input(probes={"inspect": failed}))


def batch(size, rows_per_s, cpu_seconds_per_row, wall_seconds_per_row) -> dict:
    return {
        "batch_size": size,
        "rows_per_s": rows_per_s,
        "cpu_seconds_per_row": cpu_seconds_per_row,
        "wall_seconds_per_row": wall_seconds_per_row,
    }


def previous_results(*, rss_bytes=2 * 2**30) -> dict:
    batches = [batch(1, 20_000, 5e-5, 5e-5), batch(32, 50_000, 2e-5, 2e-5), batch(1024, 40_000, 1.8e-5, 2.5e-5)]
    return {
        "latency": {"metrics": {"throughput_rows_per_s": 50_000}, "document": {"throughput": batches}},
        "size": {"metrics": {}, "document": {"process_rss_bytes": rss_bytes}},
    }


def test_cost_per_million_adds_cpu_time_and_memory_held_at_the_best_batch_size():
    result = CostEvaluator().evaluate(evaluation_input(previous=previous_results()))
    # Batch 32 is the fastest: 2e-5 CPU s per row -> 20 s = 1/180 vCPU-hour per million rows,
    # at $0.04048; 2 GB held for the 20 wall seconds -> 2/180 GB-hours, at $0.004445.
    compute, memory = 0.04048 / 180, 2 * 0.004445 / 180
    assert result.metrics["cost_usd_per_million"] == pytest.approx(compute + memory, rel=1e-12)
    document = result.document
    assert document["inputs"]["batch_size"] == 32
    assert document["compute_usd"] == pytest.approx(compute) and document["memory_usd"] == pytest.approx(memory)
    assert document["prices"]["usd_per_vcpu_hour"] == 0.04048 and "Fargate" in document["prices"]["source"]
    assert "usd_per_gb_hour" in document["formula"]


def test_benchmark_prices_replace_the_default_ones():
    options = {"usd_per_vcpu_hour": 1.0, "usd_per_gb_hour": 0.5, "prices_source": "our own racks"}
    result = CostEvaluator().evaluate(evaluation_input(previous=previous_results(rss_bytes=2**30), options=options))
    # 20 s of CPU at $1 an hour, plus 1 GB held for 20 s at $0.50 an hour.
    assert result.metrics["cost_usd_per_million"] == pytest.approx(20 / 3600 * 1.0 + 20 / 3600 * 0.5)
    assert result.document["prices"]["source"] == "our own racks"


@pytest.mark.parametrize(
    "missing, message",
    [
        (["latency"], "needs the latency results"),
        (["size"], "needs the size results"),
        (["latency", "size"], "needs the latency and size results"),
    ],
)
def test_cost_names_the_results_it_is_missing(missing, message):
    previous = {name: result for name, result in previous_results().items() if name not in missing}
    with pytest.raises(EvaluatorError, match=message):
        CostEvaluator().evaluate(evaluation_input(previous=previous))
