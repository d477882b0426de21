"""The inspect probe: how many parameters the loaded model has, and the memory it holds.

Parameters are counted by one mechanical rule per kind of model, so that every submission of a
kind is counted the same way; the document names the rule applied to each part of the model.

scikit-learn (skops):
- a tree (``tree_``): its nodes, leaves included (``tree_.node_count``);
- histogram gradient boosting: the nodes of every tree predictor (``len(predictor.nodes)``);
- an ensemble (``estimators_``, plus a stacking ``final_estimator_``): the sum over its members;
  training records such as out-of-bag scores are not parameters;
- a pipeline, column transformer or feature union: the sum over its fitted steps;
- anything else, linear models included: the elements of its public fitted arrays (attributes
  named ``..._``, or lists of arrays such as an encoder's ``categories_`` or an MLP's
  ``coefs_``), except bookkeeping (class labels, feature names, iteration counts). For a linear
  model that is its coefficients plus its intercepts; for a scaler, every fitted statistic.

ONNX:
- the elements of every initializer (dense, or the stored values of a sparse one) and of every
  tensor-valued node attribute (a ``Constant``'s value), in the main graph and its subgraphs;
- ai.onnx.ml operators store what they learned as attributes, not initializers (skl2onnx writes a
  linear model's coefficients, an encoder's categories and a forest's trees that way), so their
  list-valued attributes count too, except class labels;
- a TreeEnsemble* operator counts its nodes, leaves included, as a scikit-learn tree does, rather
  than the dozen parallel per-node attribute lists that describe them.
The same model can count differently in the two formats: skl2onnx writes a binary logistic
regression's coefficients once per class, twice as many as scikit-learn keeps.

Memory: ``loaded_rss_bytes`` is what loading the model added (measured by the model runner);
``process_rss_bytes`` is the whole process's resident memory when this probe runs, so it also
holds whatever ran before it in the process (the prediction pass, earlier probes);
``peak_rss_bytes`` is the process's high-water mark.
"""

import resource

import numpy as np

from ..model_runner import resident_bytes
from . import ProbeResult

SKLEARN_RULES = {
    "tree": "tree nodes (tree_.node_count)",
    "histogram trees": "tree nodes (len(predictor.nodes) over every predictor)",
    "linear": "coefficients + intercepts",
    "fitted arrays": "elements of public fitted arrays",
}
ONNX_RULES = {
    "initializers": "elements of the initializers (stored values of sparse ones)",
    "tensor attributes": "elements of tensor-valued node attributes (Constant values)",
    "ml attributes": "entries of ai.onnx.ml list attributes, class labels excepted",
    "tree nodes": "nodes of TreeEnsemble* operators, leaves included",
}
# Fitted attributes that describe the data or the fit rather than hold what was learned.
_BOOKKEEPING = frozenset({"classes_", "feature_names_in_", "n_features_in_", "n_iter_", "n_samples_seen_"})
_TREE_ENSEMBLE_OPS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"})


def probe(model, features, params, progress=None) -> ProbeResult:
    if model.format == "onnx":
        components = _onnx_components(model.model_bytes)
    else:
        components = _sklearn_components(model.estimator, path=type(model.estimator).__name__)
    return ProbeResult(
        document={
            "format": model.format,
            "n_parameters": sum(part["parameters"] for part in components),
            "components": components,
            "loaded_rss_bytes": int(model.loaded_rss_bytes),
            **_memory(),
        }
    )


def _memory() -> dict:
    resident = resident_bytes()
    # Linux reports ru_maxrss in kilobytes, and updates it lazily: it can trail the current
    # resident size by a few pages, and a peak below the present would read as nonsense.
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, resident)
    return {"process_rss_bytes": resident, "peak_rss_bytes": peak}


def _sklearn_components(estimator, *, path: str) -> list[dict]:
    """One {path, kind, rule, parameters} per leaf estimator, composites expanded; an ensemble of
    like leaves (a forest) is one component rather than one per tree."""
    children = _children(estimator)
    if children is None:
        return [_component(path, *_leaf_parameters(estimator))]
    if hasattr(estimator, "estimators_") and all(_children(child) is None for _name, child in children):
        leaves = [_leaf_parameters(child) for _name, child in children]
        kinds = {kind for kind, _parameters in leaves}
        if len(kinds) == 1:
            component = _component(path, kinds.pop(), sum(parameters for _kind, parameters in leaves))
            return [{**component, "rule": f"{component['rule']}, summed over {len(leaves)} members"}]
    return [part for name, child in children for part in _sklearn_components(child, path=f"{path}/{name}")]


def _component(path: str, kind: str, parameters: int) -> dict:
    return {"path": path, "kind": kind, "rule": SKLEARN_RULES[kind], "parameters": parameters}


def _children(estimator) -> list[tuple[str, object]] | None:
    """The fitted parts of a composite estimator, or None for a leaf one."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    if isinstance(estimator, Pipeline):
        parts = estimator.steps
    elif isinstance(estimator, ColumnTransformer):
        parts = [(name, transformer) for name, transformer, _columns in estimator.transformers_]
    elif isinstance(estimator, FeatureUnion):
        parts = estimator.transformer_list
    elif hasattr(estimator, "estimators_"):
        parts = [(str(index), member) for index, member in enumerate(_members(estimator.estimators_))]
        if getattr(estimator, "final_estimator_", None) is not None:
            parts.append(("final_estimator_", estimator.final_estimator_))
    else:
        return None
    # "drop", "passthrough" and None stand for steps that learned nothing.
    return [(name, part) for name, part in parts if part is not None and not isinstance(part, str)]


def _members(estimators) -> list:
    """An ensemble's members, flat: gradient boosting keeps a 2-D array of trees (round x class)."""
    return [member for item in estimators for member in (item if isinstance(item, np.ndarray) else [item])]


def _leaf_parameters(estimator) -> tuple[str, int]:
    if hasattr(estimator, "tree_"):
        return "tree", int(estimator.tree_.node_count)
    if hasattr(estimator, "_predictors"):
        return "histogram trees", sum(len(tree.nodes) for trees in estimator._predictors for tree in trees)
    # vars(), not dir(): a fitted-looking property (a forest's estimators_samples_) would compute.
    arrays = [
        value
        for name, value in vars(estimator).items()
        if name.endswith("_") and not name.startswith("_") and name not in _BOOKKEEPING
    ]
    kind = "linear" if hasattr(estimator, "coef_") else "fitted arrays"
    return kind, sum(_array_elements(value) for value in arrays)


def _array_elements(value) -> int:
    if isinstance(value, np.ndarray):
        return int(value.size)
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, np.ndarray) for item in value):
        return sum(int(item.size) for item in value)
    return 0


def _onnx_components(model_bytes: bytes) -> list[dict]:
    """One {kind, rule, parameters} per ONNX rule, each summed over the graph and its subgraphs."""
    import onnx

    counts = dict.fromkeys(ONNX_RULES, 0)
    _count_graph(onnx.load_model_from_string(model_bytes).graph, counts)
    return [{"kind": kind, "rule": ONNX_RULES[kind], "parameters": counts[kind]} for kind in ONNX_RULES]


def _count_graph(graph, counts: dict) -> None:
    from onnx import AttributeProto, helper

    counts["initializers"] += sum(_tensor_elements(tensor) for tensor in graph.initializer)
    counts["initializers"] += sum(_tensor_elements(sparse.values) for sparse in graph.sparse_initializer)
    for node in graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type in _TREE_ENSEMBLE_OPS:
            counts["tree nodes"] += _tree_ensemble_nodes(node)
            continue
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                _count_graph(attribute.g, counts)
            elif attribute.type == AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    _count_graph(subgraph, counts)
            elif attribute.type == AttributeProto.TENSOR:
                counts["tensor attributes"] += _tensor_elements(attribute.t)
            elif attribute.type == AttributeProto.TENSORS:
                counts["tensor attributes"] += sum(_tensor_elements(tensor) for tensor in attribute.tensors)
            elif node.domain == "ai.onnx.ml" and not attribute.name.startswith("classlabels_"):
                value = helper.get_attribute_value(attribute)
                counts["ml attributes"] += len(value) if isinstance(value, list) else 0


def _tensor_elements(tensor) -> int:
    return int(np.prod(tensor.dims, dtype=np.int64))


def _tree_ensemble_nodes(node) -> int:
    from onnx import helper

    lists = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    if "nodes_nodeids" in lists:  # ai.onnx.ml opset 1-3: one entry per node, leaves included
        return len(lists["nodes_nodeids"])
    # ai.onnx.ml opset 5's TreeEnsemble lists interior nodes and leaves separately.
    return len(lists.get("nodes_featureids", [])) + len(lists.get("leaf_targetids", []))
