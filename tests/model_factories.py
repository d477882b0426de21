"""Small fitted models, and artifacts made from them, for the evaluator tests.

Hand-built ONNX graphs stand in for what a careless or hostile submitter could upload.
"""

import numpy as np
import onnx
import pandas as pd
import skops.io
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

NUMERIC = ["age", "hours_per_week"]
TEXT = ["education", "occupation"]
# The allowlist the design asks for: without these the common tree models cannot be submitted.
DEFAULT_TRUSTED = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]
ONNX_OPSET = 17


def census(n_rows: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """An Adult-like table (two numeric, two text features) and its '>50K' / '<=50K' labels."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n_rows),
            "hours_per_week": rng.normal(40, 8, n_rows).round(1),
            "education": rng.choice(["HS-grad", "Bachelors", "Masters"], n_rows),
            "occupation": rng.choice(["Sales", "Tech-support", "Craft-repair", "Exec"], n_rows),
        }
    )
    score = (
        (features.age - 40) / 10
        + (features.education == "Masters") * 1.5
        + (features.occupation == "Exec")
        + rng.normal(0, 1, n_rows)
    )
    return features, np.where(score > 0.5, ">50K", "<=50K")


def logistic_pipeline(features: pd.DataFrame, labels: np.ndarray):
    encode = ColumnTransformer(
        [("text", OneHotEncoder(handle_unknown="ignore"), TEXT), ("numeric", StandardScaler(), NUMERIC)]
    )
    return make_pipeline(encode, LogisticRegression()).fit(features, labels)


def random_forest(features: pd.DataFrame, labels: np.ndarray, *, trees: int = 10, max_depth: int | None = 6):
    encode = ColumnTransformer(
        [("text", OneHotEncoder(handle_unknown="ignore"), TEXT)], remainder="passthrough"
    )
    forest = RandomForestClassifier(n_estimators=trees, max_depth=max_depth, random_state=0)
    return make_pipeline(encode, forest).fit(features, labels)


def hist_gradient_boosting(features: pd.DataFrame, labels: np.ndarray):
    encode = ColumnTransformer([("text", OrdinalEncoder(), TEXT)], remainder="passthrough")
    boosting = HistGradientBoostingClassifier(max_iter=20, random_state=0)
    return make_pipeline(encode, boosting).fit(features, labels)


def numeric_logistic(features: pd.DataFrame, labels: np.ndarray):
    return LogisticRegression().fit(features[NUMERIC].to_numpy(np.float32), labels)


def numeric_linear_regression(features: pd.DataFrame, target: np.ndarray):
    return LinearRegression().fit(features[NUMERIC].to_numpy(np.float32), target)


def skops_bytes(model) -> bytes:
    return skops.io.dumps(model)


def onnx_from_pipeline(pipeline, features: pd.DataFrame, *, zipmap: bool = True) -> bytes:
    """skl2onnx's one-input-per-column export; numeric inputs as float, as skl2onnx needs."""
    sample = features[:1].astype({column: np.float32 for column in NUMERIC})
    options = {id(pipeline): {"zipmap": zipmap}}
    return to_onnx(pipeline, sample, options=options, target_opset=ONNX_OPSET).SerializeToString()


def onnx_from_numeric_model(model, features: pd.DataFrame, *, zipmap: bool = True) -> bytes:
    """skl2onnx's single 2-D float input, for a model fitted on the numeric features."""
    sample = features[NUMERIC][:1].to_numpy(np.float32)
    options = {id(model): {"zipmap": zipmap}} if hasattr(model, "classes_") else None
    return to_onnx(model, sample, options=options, target_opset=ONNX_OPSET).SerializeToString()


def crashing_tree_skops() -> bytes:
    """A decision tree whose root points at a child far outside its node array.

    skops does not bounds-check tree nodes, so predicting reads wild memory: the crafted
    artifact the sandbox exists for.
    """
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, len(NUMERIC)))
    tree = DecisionTreeClassifier(max_depth=2).fit(features, features[:, 0] > 0)
    state = tree.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = nodes["right_child"][0] = 2**40
    tree.tree_.__setstate__({**state, "nodes": nodes})
    return skops.io.dumps(tree)


def graph_model(nodes, inputs, outputs, *, initializers=(), opsets=(("", ONNX_OPSET),)):
    graph = helper.make_graph(nodes, "graph", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    return model


def column_input(name: str = "age", element_type=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, element_type, [None, 1])


def float_output(name: str = "prediction", shape=(None, 1)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def constant(name: str, values, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def regressor_applying(op_type: str, *extra_inputs, initializers=(), **attributes) -> bytes:
    """A one-node regressor on the 'age' column: prediction = op_type(age, *extra_inputs)."""
    node = helper.make_node(op_type, ["age", *extra_inputs], ["prediction"], **attributes)
    return graph_model(
        [node], [column_input()], [float_output(shape=(None, None))], initializers=initializers
    ).SerializeToString()


def square_root_regressor() -> bytes:
    """NaN wherever 'age' is negative."""
    return regressor_applying("Sqrt")


def first_three_rows_regressor() -> bytes:
    return regressor_applying(
        "Slice",
        "starts",
        "ends",
        "axes",
        initializers=[constant(name, [value], np.int64) for name, value in (("starts", 0), ("ends", 3), ("axes", 0))],
    )


def reshaping_regressor(rows: int) -> bytes:
    """Fails at run time unless the row count divides by `rows`."""
    return regressor_applying("Reshape", "shape", initializers=[constant("shape", [rows, -1], np.int64)])


def regressor_reading(column: str) -> bytes:
    node = helper.make_node("Identity", [column], ["prediction"])
    return graph_model([node], [column_input(column)], [float_output()]).SerializeToString()


def endless_loop_regressor() -> bytes:
    """Adds zero to 'age' 10**15 times: honest work that never finishes in a test's lifetime."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["condition"], ["condition_out"]),
            helper.make_node("Add", ["value", "zero"], ["value_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("condition", TensorProto.BOOL, []),
            helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1]),
        ],
        [
            helper.make_tensor_value_info("condition_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("value_out", TensorProto.FLOAT, [None, 1]),
        ],
        initializer=[constant("zero", 0.0)],
    )
    loop = helper.make_node("Loop", ["trip_count", "keep_going", "age"], ["prediction"], body=body)
    return graph_model(
        [loop],
        [column_input()],
        [float_output()],
        initializers=[constant("trip_count", 10**15, np.int64), constant("keep_going", True, bool)],
    ).SerializeToString()


def memory_hungry_regressor(floats_per_row: int) -> bytes:
    """Broadcasts each row to `floats_per_row` floats, then sums them: memory grows with rows."""
    nodes = [
        helper.make_node("Expand", ["age", "width"], ["wide"]),
        helper.make_node("ReduceSum", ["wide", "axes"], ["prediction"], keepdims=1),
    ]
    initializers = [constant("width", [1, floats_per_row], np.int64), constant("axes", [1], np.int64)]
    return graph_model(
        nodes, [column_input()], [float_output()], initializers=initializers
    ).SerializeToString()


def threshold_classifier(probability_columns: int = 2) -> bytes:
    """Labels 1 where 'age' > 0.5, with a probability output that repeats 'age' per column
    (so its rows sum to columns * age rather than to 1)."""
    nodes = [
        helper.make_node("Greater", ["age", "half"], ["above"]),
        helper.make_node("Cast", ["above"], ["label"], to=TensorProto.INT64),
        helper.make_node("Concat", ["age"] * probability_columns, ["probabilities"], axis=1),
    ]
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, [None, 1]),
        float_output("probabilities", shape=(None, probability_columns)),
    ]
    return graph_model(
        nodes, [column_input()], outputs, initializers=[constant("half", 0.5)]
    ).SerializeToString()


def custom_operator_model(*, inside_subgraph: bool = False) -> bytes:
    custom = helper.make_node("FastGelu", ["age"], ["prediction"], domain="com.microsoft")
    opsets = (("", ONNX_OPSET), ("com.microsoft", 1))
    if not inside_subgraph:
        return graph_model([custom], [column_input()], [float_output()], opsets=opsets).SerializeToString()
    then_branch = helper.make_graph([custom], "then", [], [float_output()])
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["age"], ["prediction"])], "else", [], [float_output()]
    )
    branch = helper.make_node("If", ["always"], ["output"], then_branch=then_branch, else_branch=else_branch)
    return graph_model(
        [branch],
        [column_input()],
        [float_output("output")],
        initializers=[constant("always", True, bool)],
        opsets=opsets,
    ).SerializeToString()


def external_data_model() -> bytes:
    weights = constant("weights", [[2.0]])
    set_external_data(weights, location="weights.bin")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    node = helper.make_node("Mul", ["age", "weights"], ["prediction"])
    return graph_model(
        [node], [column_input()], [float_output()], initializers=[weights]
    ).SerializeToString()


def model_without_nodes() -> bytes:
    return graph_model([], [column_input()], [float_output("age")]).SerializeToString()


def model_reading_an_undefined_tensor() -> bytes:
    node = helper.make_node("Add", ["age", "nowhere"], ["prediction"])
    return graph_model([node], [column_input()], [float_output()]).SerializeToString()


def model_without_graph() -> bytes:
    return onnx.ModelProto(ir_version=8, opset_import=[helper.make_opsetid("", ONNX_OPSET)]).SerializeToString()


def baseline_in_sandbox(tmp_path, baseline, features: pd.DataFrame, *, limits, predict: bool, probes: dict):
    """A demo baseline run as a worker runs it: its bytes in a file, the sandbox on a binary task."""
    from evaluators.sandbox import run_in_sandbox

    path = tmp_path / baseline.filename
    path.write_bytes(baseline.data)
    return run_in_sandbox(
        artifact_path=str(path),
        artifact_format=path.suffix.lstrip("."),
        features=features,
        task="binary",
        skops_trusted=DEFAULT_TRUSTED,
        limits=limits,
        predict=predict,
        probes=probes,
    )


def repeated_work_regressor(repeats: int, width: int = 200_000) -> bytes:
    """A regressor on 'age' that does the same work `repeats` times: sum(tanh(age * w_k)) over k,
    each w_k `width` wide. Twice the repeats is twice the work per row, for latency tests."""
    nodes, initializers, terms = [], [], []
    for k in range(repeats):
        initializers.append(constant(f"w{k}", np.linspace(0.001, 0.01, width).reshape(1, width)))
        nodes += [
            helper.make_node("MatMul", ["age", f"w{k}"], [f"product{k}"]),
            helper.make_node("Tanh", [f"product{k}"], [f"squashed{k}"]),
            helper.make_node("ReduceSum", [f"squashed{k}", "axes"], [f"term{k}"], keepdims=1),
        ]
        terms.append(f"term{k}")
    initializers.append(constant("axes", [1], np.int64))
    nodes.append(helper.make_node("Sum", terms, ["prediction"]))
    return graph_model(nodes, [column_input()], [float_output()], initializers=initializers).SerializeToString()
