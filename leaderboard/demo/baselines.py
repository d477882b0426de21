"""Honest baseline models for a benchmark, trained on its public training split.

Every baseline is returned as the bytes of an artifact Holdout accepts (skops or ONNX) and is
called with a pandas DataFrame of exactly ``spec["feature_columns"]``.
"""

import zipfile
from dataclasses import dataclass

import numpy as np
import onnxruntime
import pandas as pd
import skops.io
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

# The types skops flags as untrusted that Holdout's default allowlist accepts (see the README's
# "Submitting a model").
# A baseline reporting anything else could not be submitted, so training one is an error.
SKOPS_TRUSTED_TYPES = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    }
)
ONNX_PROBABILITY_TOLERANCE = 1e-5
QUICK_MAX_ROWS = 4000


@dataclass
class Baseline:
    name: str
    description: str
    filename: str
    data: bytes


def train_baselines(train: pd.DataFrame, spec: dict, *, seed: int = 0, quick: bool = False) -> list[Baseline]:
    """Five baselines for a classification benchmark, in leaderboard order from simplest.

    quick=True trains on at most QUICK_MAX_ROWS rows with fewer trees, for tests.
    """
    features = _feature_columns(train, spec)
    if quick and len(train) > QUICK_MAX_ROWS:
        train = train.sample(QUICK_MAX_ROWS, random_state=seed)
    X, y = train[features], train[spec["target"]]
    text_columns = [column for column in features if not pd.api.types.is_numeric_dtype(X[column])]
    numeric_columns = [column for column in features if column not in text_columns]
    n_trees, max_depth, boosting_rounds = (10, 8, 30) if quick else (60, 12, 100)

    majority = DummyClassifier(strategy="prior").fit(X, y)
    majority_label = majority.classes_[majority.class_prior_.argmax()]
    linear = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [
                        ("text", OneHotEncoder(handle_unknown="ignore"), text_columns),
                        ("numeric", StandardScaler(), numeric_columns),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=2000)),
        ]
    ).fit(X, y)
    forest = _tree_pipeline(
        text_columns,
        RandomForestClassifier(n_estimators=n_trees, max_depth=max_depth, random_state=seed),
    ).fit(X, y)
    # Categories are ordinal codes treated as numbers, not HistGradientBoosting's native
    # categorical support: that support stores functools.partial and check_array, which skops
    # flags as untrusted and Holdout's allowlist refuses.
    boosting = _tree_pipeline(
        text_columns,
        HistGradientBoostingClassifier(max_iter=boosting_rounds, random_state=seed),
    ).fit(X, y)

    return [
        Baseline(
            name="Majority class",
            description=(
                f"Always predicts the most frequent training label, {majority_label}, "
                "with its training frequency as the probability: the floor any useful model has to beat."
            ),
            filename="majority_class.skops",
            data=_skops_bytes(majority),
        ),
        Baseline(
            name="Logistic regression",
            description=(
                "L2-regularised logistic regression on one-hot encoded text columns and standardised "
                "numeric columns: a small, readable linear reference."
            ),
            filename="logistic_regression.skops",
            data=_skops_bytes(linear),
        ),
        Baseline(
            name="Random forest",
            description=(
                f"Random forest of {n_trees} trees of depth at most {max_depth} over ordinal-encoded "
                "categories: a non-linear baseline with a much larger model file."
            ),
            filename="random_forest.skops",
            data=_skops_bytes(forest),
        ),
        Baseline(
            name="Gradient boosting",
            description=(
                f"Histogram gradient boosting with at most {boosting_rounds} rounds over ordinal-encoded "
                "categories: the usual strong first choice for tabular data."
            ),
            filename="hist_gradient_boosting.skops",
            data=_skops_bytes(boosting),
        ),
        Baseline(
            name="Logistic regression (ONNX)",
            description=(
                "The same fitted logistic regression exported to ONNX with skl2onnx, one input per "
                "feature column: equal predictions, so any difference on the leaderboard is the runtime's."
            ),
            filename="logistic_regression.onnx",
            data=_onnx_bytes(linear, X),
        ),
    ]


def _feature_columns(train: pd.DataFrame, spec: dict) -> list[str]:
    if spec["task"] not in ("binary", "multiclass"):
        raise ValueError(f"baselines are classifiers; task {spec['task']!r} is not supported")
    features = list(spec["feature_columns"])
    for column in features:
        if column in (spec["target"], spec.get("time_column")):
            raise ValueError(f"{column!r} is the target or the time column and cannot be a feature")
        if pd.api.types.is_datetime64_any_dtype(train[column]):
            raise ValueError(f"{column!r} holds dates; a model must not see when a row was recorded")
    return features


def _tree_pipeline(text_columns: list[str], model) -> Pipeline:
    # Unknown categories become -1, a value no training row has, instead of an error.
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    return Pipeline(
        [
            ("encode", ColumnTransformer([("text", encoder, text_columns)], remainder="passthrough")),
            ("model", model),
        ]
    )


def _skops_bytes(model) -> bytes:
    # Deflate shrinks tree arrays about fivefold; skops.io.load reads either form.
    data = skops.io.dumps(model, compression=zipfile.ZIP_DEFLATED)
    untrusted = set(skops.io.get_untrusted_types(data=data))
    if not untrusted <= SKOPS_TRUSTED_TYPES:
        refused = sorted(untrusted - SKOPS_TRUSTED_TYPES)
        raise RuntimeError(f"{type(model).__name__} stores types Holdout refuses: {refused}")
    return data


def onnx_inputs(X: pd.DataFrame) -> dict[str, np.ndarray]:
    """The per-column inputs of an ONNX baseline: one [n, 1] array per column, typed as exported."""
    return {column: _onnx_column(X[column]) for column in X.columns}


def _onnx_column(values: pd.Series) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=object).reshape(-1, 1)
    dtype = np.int64 if pd.api.types.is_integer_dtype(values) else np.float32
    return values.to_numpy(dtype=dtype).reshape(-1, 1)


def _onnx_tensor_type(values: pd.Series):
    if not pd.api.types.is_numeric_dtype(values):
        return StringTensorType([None, 1])
    return Int64TensorType([None, 1]) if pd.api.types.is_integer_dtype(values) else FloatTensorType([None, 1])


def _onnx_bytes(pipeline: Pipeline, X: pd.DataFrame) -> bytes:
    initial_types = [(column, _onnx_tensor_type(X[column])) for column in X.columns]
    # Without zipmap the probabilities come out as one [n, n_classes] tensor in classes_ order.
    data = convert_sklearn(pipeline, initial_types=initial_types, options={id(pipeline): {"zipmap": False}})
    data = data.SerializeToString()
    # The export is checked on the training rows: a converter that casts a column wrongly
    # would otherwise ship a baseline whose scores belong to a different model.
    labels, probabilities = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(
        None, onnx_inputs(X)
    )
    if not (
        np.array_equal(labels, pipeline.predict(X))
        and np.allclose(probabilities, pipeline.predict_proba(X), rtol=0, atol=ONNX_PROBABILITY_TOLERANCE)
    ):
        raise RuntimeError("the ONNX export of the logistic regression does not reproduce its predictions")
    return data
