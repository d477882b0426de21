"""The explain probe: SHAP attributions of a seeded sample of test rows to the benchmark's input columns.

Runs inside the model process. The explainer follows the model:

- **tree**: a skops tree or tree ensemble (random forest, extra trees, decision tree, gradient
  boosting, histogram gradient boosting), bare or at the end of a Pipeline, gets exact Tree SHAP
  (``shap.TreeExplainer``) with ``feature_perturbation="tree_path_dependent"``: it needs no
  background sample, because the trees record how many training rows went down each branch and
  those counts stand in for the training distribution (better than a sample of the test set);
  its cost grows with the rows explained only, where interventional Tree SHAP costs a pass per
  background row on top. That mode explains the trees' raw output: the probability for forests
  and single trees (their leaves hold class frequencies), the log-odds (decision function) for
  gradient boosting, the prediction for regressors.
- **linear**: a skops model with ``coef_`` and ``intercept_`` whose decision function (or, for a
  regressor, prediction) is that affine map gets ``shap.LinearExplainer`` with an independent
  masker over a background sample (interventional SHAP: ``coef * (x - mean)``). It explains that
  affine output: the log-odds for logistic regression, the prediction for a linear regressor.
- **permutation**: everything else (other estimators, ONNX graphs, preprocessing that mixes input
  columns, a tree or linear model whose attributions would not add up to its own output) gets
  ``shap.PermutationExplainer`` over the model's own prediction function at the input-column
  level, with whole background rows substituted for masked columns, so text columns stay text.
  It explains the probabilities (or the prediction of a regressor).

The tree and linear explainers work on the model's own columns, after the pipeline's
preprocessing; each of those columns is computed from exactly one input column (an ordinal
encoder, a scaler, passthrough: one-to-one; a one-hot encoder: several per input), which the
preprocessing's structure tells (ColumnTransformer.transformers_ and output_indices_), and an
input column's attribution is the sum of its model columns'. For a linear model this sum is
exactly the input column's Shapley value; for trees it is the usual grouping of one-hot columns.

Which output is explained, per row: the prediction (regression); the positive class's output
(binary); the output of the row's predicted class, the one with the highest output
(multiclass). Additivity is checked against the model's own value of that same output.
"""

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shap
from scipy import sparse
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    Binarizer,
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from . import ProbeResult

TREE_MODELS = (
    RandomForestClassifier,
    RandomForestRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
# Transformers whose every output column is computed from the input column at the same position.
ELEMENTWISE_TRANSFORMERS = (
    StandardScaler,
    MinMaxScaler,
    MaxAbsScaler,
    RobustScaler,
    OrdinalEncoder,
    QuantileTransformer,
    PowerTransformer,
    Binarizer,
    SimpleImputer,
)
# shap's default: ten random orderings of the columns, each walked forward and backward.
PERMUTATIONS = 10
# Rows on which a tree or linear explainer must add up to the model's output before it is trusted.
VERIFICATION_ROWS = 20
ADDITIVITY_ABSOLUTE_TOLERANCE = 1e-6
ADDITIVITY_RELATIVE_TOLERANCE = 1e-6


@dataclass
class Attribution:
    values: np.ndarray  # (rows, input columns)
    base_values: np.ndarray  # (rows,)
    outputs: np.ndarray  # (rows,) the model's own value of the explained output


@dataclass
class RawAttribution:
    """One explainer's answer before an output is chosen: k outputs, or one (a 1-D `outputs`)."""

    values: np.ndarray  # (rows, input columns[, k])
    base_values: np.ndarray  # (rows[, k])
    outputs: np.ndarray  # (rows[, k])


def probe(model, features: pd.DataFrame, params: dict) -> ProbeResult:
    start = time.perf_counter()
    rng = np.random.default_rng(params["seed"])
    # A random order, not sorted: when the budget cuts the list short, what was explained is
    # still a random sample of the test set (which may be ordered by time).
    rows = rng.permutation(len(features))[: params["max_rows"]]
    background_size = min(params["background_rows"], len(features))
    background = features.iloc[np.sort(rng.choice(len(features), size=background_size, replace=False))]
    explainer = choose_explainer(model, background, params)
    chunks, stopped_early = _explain_in_chunks(explainer, features, rows, deadline=start + params["max_seconds"])
    attribution = _concatenate(chunks)
    explained = rows[: len(attribution.outputs)]
    seconds = time.perf_counter() - start
    document = {
        **explainer.document,
        **explainer.target.describe(explainer.kind, explainer.classes, explainer.base_value),
        "columns": list(features.columns),
        "budget": {key: params[key] for key in ("seed", "max_rows", "max_seconds", "background_rows")},
        "rows_requested": len(rows),
        "rows_explained": len(explained),
        "stopped_early": stopped_early,
        "chunks": len(chunks),
        "seconds": seconds,
        "rows_per_second": len(explained) / seconds,
        "additivity": additivity(attribution),
        "shap_version": shap.__version__,
    }
    arrays = {
        "rows": explained.astype(np.int64),
        "values": attribution.values,
        "outputs": attribution.outputs,
        "base_values": attribution.base_values,
    }
    return ProbeResult(document=document, arrays=arrays)


def additivity(attribution: Attribution) -> dict:
    """Whether base value + attributions equal the model's output on every explained row."""
    total = attribution.base_values + attribution.values.sum(axis=1)
    error = np.abs(total - attribution.outputs)
    tolerance = ADDITIVITY_ABSOLUTE_TOLERANCE + ADDITIVITY_RELATIVE_TOLERANCE * np.abs(attribution.outputs)
    return {
        "max_abs_error": float(error.max()),
        "passed": bool((error <= tolerance).all()),
        "absolute_tolerance": ADDITIVITY_ABSOLUTE_TOLERANCE,
        "relative_tolerance": ADDITIVITY_RELATIVE_TOLERANCE,
    }


def _explain_in_chunks(explainer, features: pd.DataFrame, rows: np.ndarray, *, deadline: float):
    """Explain rows chunk by chunk until done or out of time; returns (chunks, stopped early).

    The first chunk (one row) always runs, so there is something to report. Later chunks
    double in size but never exceed what the measured rate fits into the time left, so the
    budget is overrun by at most a misestimate of one chunk.
    """
    chunks, done, size = [], 0, 1
    while done < len(rows):
        if chunks and time.perf_counter() >= deadline:
            return chunks, True
        chunk_start = time.perf_counter()
        chunk = rows[done : done + size]
        chunks.append(explainer.explain(features.iloc[chunk]))
        done += len(chunk)
        seconds_per_row = max((time.perf_counter() - chunk_start) / len(chunk), 1e-9)
        size = max(1, min(2 * size, int((deadline - time.perf_counter()) / seconds_per_row)))
    return chunks, False


def _concatenate(chunks: list[Attribution]) -> Attribution:
    return Attribution(
        values=np.concatenate([chunk.values for chunk in chunks]),
        base_values=np.concatenate([chunk.base_values for chunk in chunks]),
        outputs=np.concatenate([chunk.outputs for chunk in chunks]),
    )


def choose_explainer(model, background: pd.DataFrame, params: dict):
    """The exact explainer the model allows, else the permutation explainer, which says why."""
    target = Target(task=model.task, positive_label=params["positive_label"])
    exact, reason = _exact_explainer(model, background, target)
    if exact is not None:
        return exact
    return PermutationExplainer(model, background, target, params, fallback_reason=reason)


def _exact_explainer(model, background: pd.DataFrame, target: "Target"):
    """(the tree or linear explainer of this model, None), or (None, why it has none)."""
    if model.format != "skops":
        return None, "an ONNX graph is explained through its predictions only"
    estimator, preprocessing = _final_step(model.estimator)
    if isinstance(estimator, TREE_MODELS):
        kind = TreeExplainer
    elif hasattr(estimator, "coef_") and hasattr(estimator, "intercept_"):
        kind = LinearExplainer
    else:
        return None, f"{type(estimator).__name__} is neither a tree model nor a linear model"
    owners = input_owners(preprocessing, estimator, list(background.columns))
    if owners is None:
        return None, "the preprocessing does not say which input column each of the model's columns comes from"
    try:
        explainer = kind(model.estimator, estimator, preprocessing, owners, background, target)
        check = additivity(explainer.explain(background.iloc[:VERIFICATION_ROWS]))
    # shap refuses some models of these families (e.g. a multiclass GradientBoostingClassifier).
    except Exception as error:  # noqa: BLE001
        failure = f"{type(error).__name__}: {error}"
        return None, f"shap's {kind.__name__} cannot explain {type(estimator).__name__}: {failure}"
    if not check["passed"]:
        # E.g. a Poisson regressor: its trees or coefficients give the log of its prediction.
        return None, (
            f"shap's {kind.__name__} does not add up to {type(estimator).__name__}'s own output "
            f"(error up to {check['max_abs_error']:.3g} on background rows)"
        )
    return explainer, None


def _final_step(estimator):
    """(the model, the preprocessing before it or None)."""
    if isinstance(estimator, Pipeline):
        return estimator.steps[-1][1], estimator[:-1]
    return estimator, None


@dataclass(frozen=True)
class Target:
    """Which of the model's outputs is explained for each row."""

    task: str
    positive_label: object

    def select(self, raw: RawAttribution, classes) -> Attribution:
        values, base, outputs = raw.values, raw.base_values, raw.outputs
        if self.task == "binary" and outputs.ndim == 1:
            values, base, outputs = (_both_classes(a) for a in (values, base, outputs))
        if outputs.ndim == 1:
            return Attribution(values, base, outputs)
        rows = np.arange(len(outputs))
        if self.task == "binary":
            columns = np.full(len(outputs), class_position(self.positive_label, classes))
        else:
            columns = outputs.argmax(axis=1)
        return Attribution(values[rows, :, columns], base[rows, columns], outputs[rows, columns])

    def describe(self, kind: str, classes, base_value) -> dict:
        """The explained output and its base value(s); `base_value` is per output of the model."""
        if self.task == "regression":
            return {"output": {"kind": kind, "of": "the prediction"}, "base_value": float(base_value)}
        if self.task == "binary":
            position = class_position(self.positive_label, classes)
            base = np.asarray(base_value, dtype=np.float64)
            base = _both_classes(base) if base.ndim == 0 else base
            return {
                "output": {"kind": kind, "of": "the positive class", "class": np.asarray(classes).tolist()[position]},
                "base_value": float(base[position]),
            }
        return {
            "output": {"kind": kind, "of": "each row's predicted class (the one with the highest output)"},
            "base_value_by_class": [
                {"class": label, "base_value": float(value)}
                for label, value in zip(np.asarray(classes).tolist(), base_value, strict=True)
            ],
        }


def _both_classes(scores: np.ndarray) -> np.ndarray:
    """A binary model's one score as a score per class on a new last axis: scikit-learn's
    one-column decision function scores the second class, so the first class's is its negative."""
    return np.stack([-scores, scores], axis=-1)


def class_position(label, classes) -> int:
    """Where `label` is among the model's classes; a label from JSON may be the text of a number."""
    classes = np.asarray(classes).tolist()
    for candidates, key in ((classes, label), ([str(c) for c in classes], str(label))):
        if key in candidates:
            return candidates.index(key)
    raise ValueError(f"the positive label {label!r} is not one of the model's classes {classes}")


class _ExactExplainer:
    """The tree and linear explainers: they explain the model's own columns, after the pipeline's
    preprocessing, and an input column's attribution is the sum of its model columns'."""

    def __init__(self, model, estimator, preprocessing, owners: np.ndarray, n_inputs: int, target: Target):
        self.model, self.preprocessing, self.target = model, preprocessing, target
        self.to_inputs = np.eye(n_inputs)[owners]  # (model columns, input columns), one 1 per row
        self.classes = getattr(estimator, "classes_", None)

    def model_columns(self, frame: pd.DataFrame) -> np.ndarray:
        transformed = frame if self.preprocessing is None else self.preprocessing.transform(frame)
        if sparse.issparse(transformed):
            transformed = transformed.toarray()
        return np.asarray(transformed, dtype=np.float64)

    def attribution(self, values: np.ndarray, frame: pd.DataFrame) -> Attribution:
        inputs = np.einsum("nm...,mp->np...", values, self.to_inputs)
        base = np.broadcast_to(np.asarray(self.base_value, dtype=np.float64), (len(frame), *np.shape(self.base_value)))
        outputs = np.asarray(getattr(self.model, self.output_method)(frame), dtype=np.float64)
        return self.target.select(RawAttribution(inputs, base, outputs), self.classes)

    def mapping(self) -> dict:
        n_model, n_inputs = self.to_inputs.shape
        one_to_one = n_model == n_inputs and (self.to_inputs.sum(axis=0) == 1).all()
        mapping = "one model column per input column" if one_to_one else "sum of each input column's model columns"
        return {"model_columns": n_model, "mapping": mapping}


def _per_output(expected_value) -> float | np.ndarray:
    """shap's expected value as one number for a one-output model (shap 0.51 gives a binary
    HistGradientBoosting's as a one-element array), else one per output."""
    values = np.asarray(expected_value, dtype=np.float64).reshape(-1)
    return float(values[0]) if values.size == 1 else values


class TreeExplainer(_ExactExplainer):
    def __init__(self, model, estimator, preprocessing, owners, background, target):
        super().__init__(model, estimator, preprocessing, owners, background.shape[1], target)
        if getattr(estimator, "is_categorical_", None) is not None and estimator.is_categorical_.any():
            # shap reads HistGradientBoosting's thresholds but not its category bitsets.
            raise ValueError("native categorical splits are not read by shap")
        self.shap = shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
        self.base_value = _per_output(self.shap.expected_value)
        if not is_classifier(estimator):
            self.kind, self.output_method = "prediction", "predict"
        elif self.shap.model.tree_output == "probability":  # leaves hold class frequencies
            self.kind, self.output_method = "probability", "predict_proba"
        else:
            # Gradient boosting's raw score: the log-odds (binary) or a logit per class.
            kind = "log_odds" if target.task == "binary" else "decision_function"
            self.kind, self.output_method = kind, "decision_function"

    def explain(self, frame: pd.DataFrame) -> Attribution:
        values = self.shap.shap_values(self.model_columns(frame), check_additivity=False)
        return self.attribution(values, frame)

    @property
    def document(self) -> dict:
        return {
            "explainer": "tree",
            "shap_explainer": "TreeExplainer",
            "feature_perturbation": "tree_path_dependent",
            "background": "the training rows' counts recorded in the trees",
            "background_rows_used": None,
            **self.mapping(),
        }


class LinearExplainer(_ExactExplainer):
    def __init__(self, model, estimator, preprocessing, owners, background, target):
        super().__init__(model, estimator, preprocessing, owners, background.shape[1], target)
        columns = self.model_columns(background)
        self.background_rows = len(columns)
        # The masker's default would subsample the background to 100 rows.
        self.shap = shap.LinearExplainer(estimator, shap.maskers.Independent(columns, max_samples=len(columns)))
        self.base_value = _per_output(self.shap.expected_value)
        if is_classifier(estimator):
            # Logistic regression's binary score is the log-odds; other scores (a linear SVM's
            # margin, multiclass logits) are just the decision function.
            logistic = target.task == "binary" and isinstance(estimator, LogisticRegression | LogisticRegressionCV)
            self.kind, self.output_method = "log_odds" if logistic else "decision_function", "decision_function"
        else:
            self.kind, self.output_method = "prediction", "predict"

    def explain(self, frame: pd.DataFrame) -> Attribution:
        return self.attribution(self.shap.shap_values(self.model_columns(frame)), frame)

    @property
    def document(self) -> dict:
        return {
            "explainer": "linear",
            "shap_explainer": "LinearExplainer",
            "feature_perturbation": "interventional",
            "background": "a seeded sample of the test rows",
            "background_rows_used": self.background_rows,
            **self.mapping(),
        }


class PermutationExplainer:
    """Model-agnostic: shap sees each row as integer codes of its values (a code table per column)
    and the prediction function decodes masked rows back to a DataFrame of the benchmark's
    dtypes, so a masked column takes a background row's whole value, text included."""

    def __init__(self, model, background: pd.DataFrame, target: Target, params: dict, *, fallback_reason: str):
        self.model, self.background, self.target = model, background, target
        self.fallback_reason = fallback_reason
        prediction = model.predict(background)
        if model.task == "regression":
            self.classes, self.kind = None, "prediction"
        elif prediction.probabilities is not None:
            self.classes, self.kind = prediction.classes, "probability"
        else:
            self.classes, self.kind = params["classes"], "predicted_label_indicator"
        background_codes, self.tables = _integer_codes(background)
        masker = shap.maskers.Independent(background_codes, max_samples=len(background_codes))
        # Built once: shap seeds numpy's global generator here and then draws each row's
        # orderings from it in turn, so the attributions do not depend on how the time budget
        # splits the rows into chunks.
        self.shap = shap.PermutationExplainer(self._scores_of_codes, masker, seed=params["seed"])
        self.base_value = None  # the background's mean output, known once a row is explained

    def explain(self, frame: pd.DataFrame) -> Attribution:
        # The background comes first in the pool, so its codes stay those the masker holds.
        codes, self.tables = _integer_codes(pd.concat([self.background, frame], ignore_index=True))
        n_features = codes.shape[1]
        explanation = self.shap(
            codes[len(self.background) :], max_evals=PERMUTATIONS * (2 * n_features + 1), silent=True
        )
        self.base_value = explanation.base_values[0]
        raw = RawAttribution(explanation.values, explanation.base_values, self.scores(frame))
        return self.target.select(raw, self.classes)

    def _scores_of_codes(self, codes: np.ndarray) -> np.ndarray:
        positions = codes.astype(np.intp)
        columns = {name: table.take(positions[:, j]) for j, (name, table) in enumerate(self.tables.items())}
        return self.scores(pd.DataFrame(columns))

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        prediction = self.model.predict(frame)
        if self.kind == "prediction":
            return np.asarray(prediction.labels, dtype=np.float64).reshape(-1)
        if self.kind == "probability":
            return np.asarray(prediction.probabilities, dtype=np.float64)
        labels = np.asarray(prediction.labels).reshape(-1)
        return np.column_stack([labels.astype(str) == str(label) for label in self.classes]).astype(np.float64)

    @property
    def document(self) -> dict:
        return {
            "explainer": "permutation",
            "shap_explainer": "PermutationExplainer",
            "feature_perturbation": "interventional",
            "permutations": PERMUTATIONS,
            "background": "a seeded sample of the test rows",
            "background_rows_used": len(self.background),
            "fallback_reason": self.fallback_reason,
        }


def _integer_codes(frame: pd.DataFrame) -> tuple[np.ndarray, dict]:
    """Each value's position in its column's table of distinct values (a missing value included)."""
    codes, tables = [], {}
    for column in frame.columns:
        column_codes, tables[column] = pd.factorize(frame[column], use_na_sentinel=False)
        codes.append(column_codes)
    return np.column_stack(codes).astype(np.float64), tables


def input_owners(preprocessing, estimator, columns: list[str]) -> np.ndarray | None:
    """For each column the model sees, the position in `columns` of the one input column it is
    computed from; None when one mixes input columns or the preprocessing cannot say."""
    first = estimator if preprocessing is None else preprocessing
    names = getattr(first, "feature_names_in_", None)
    names = columns if names is None else list(names)
    if not set(names) <= set(columns):
        return None
    owners = transformer_owners(preprocessing, len(names))
    return None if owners is None else np.array([columns.index(name) for name in names])[owners]


def transformer_owners(transformer, n_inputs: int) -> np.ndarray | None:
    """For each output column of a fitted transformer, the position of its one input column."""
    identity = isinstance(transformer, FunctionTransformer) and transformer.func is None
    if transformer is None or identity or (isinstance(transformer, str) and transformer == "passthrough"):
        return np.arange(n_inputs)
    if isinstance(transformer, Pipeline):
        owners = np.arange(n_inputs)
        for _, step in transformer.steps:
            step_owners = transformer_owners(step, len(owners))
            if step_owners is None:
                return None
            owners = owners[step_owners]
        return owners
    if isinstance(transformer, ColumnTransformer):
        return _column_transformer_owners(transformer, n_inputs)
    if isinstance(transformer, OneHotEncoder):
        # Only this private attribute holds each input's number of output columns (after `drop`
        # and infrequent grouping); the width check catches it changing meaning.
        widths = np.asarray(transformer._n_features_outs)
        if len(widths) != n_inputs or widths.sum() != len(transformer.get_feature_names_out()):
            return None
        return np.repeat(np.arange(n_inputs), widths)
    if isinstance(transformer, ELEMENTWISE_TRANSFORMERS):
        # A SimpleImputer that adds indicator columns or drops empty ones changes the width.
        return np.arange(n_inputs) if len(transformer.get_feature_names_out()) == n_inputs else None
    return None


def _column_transformer_owners(transformer: ColumnTransformer, n_inputs: int) -> np.ndarray | None:
    width = max((part.stop for part in transformer.output_indices_.values()), default=0)
    owners = np.full(width, -1)
    names = getattr(transformer, "feature_names_in_", None)
    for name, part_transformer, selection in transformer.transformers_:
        part = transformer.output_indices_[name]
        if part.stop == part.start:
            continue
        inputs = _selected_positions(selection, names, n_inputs)
        if len(inputs) == 1:
            # Whatever a transformer makes of a single column comes from that column.
            part_owners = np.zeros(part.stop - part.start, dtype=np.intp)
        else:
            part_owners = transformer_owners(part_transformer, len(inputs))
        if part_owners is None or len(part_owners) != part.stop - part.start:
            return None
        owners[part] = inputs[part_owners]
    return None if (owners < 0).any() else owners


def _selected_positions(selection, names, n_inputs: int) -> np.ndarray:
    """A ColumnTransformer's fitted column selection (names, positions, mask or slice) as positions."""
    if isinstance(selection, str):
        selection = [selection]
    if isinstance(selection, list | np.ndarray) and len(selection) and isinstance(selection[0], str):
        return np.array([list(names).index(name) for name in selection])
    return np.arange(n_inputs)[selection]
