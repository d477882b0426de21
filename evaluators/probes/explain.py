"""The explain probe: SHAP attributions of a seeded sample of test rows to the benchmark's input columns.

Runs inside the model process. Every model gets the same explainer, whatever its format or kind:
interventional Shapley values estimated by antithetic permutation sampling (the algorithm of
shap's PermutationExplainer) over the model's own predictions of masked rows, at the level of the
benchmark's input columns. The skops and the ONNX copy of one pipeline therefore take the same
rows, background and column orderings, and their attributions differ only as much as their
predictions do (evaluators/interpretability.py states the tolerance). Exact Tree or Linear SHAP
on a skops model would break that: the ONNX copy has no trees or coefficients to read, and an
estimate does not equal exact values.

The estimate is computed here with numpy rather than by shap itself: shap compiles its masking
code with numba on first use, about 10 s in every fresh model process (and importing shap takes
seconds more), while batching the masked rows of many explained rows into one model call and
predicting each distinct masked row once keeps the whole probe near 1.3 s (skops) and 0.9 s
(ONNX) for the demo's logistic regression on Adult with the default budget.

The output explained is on one scale for every format:

- **binary**: the probability of the positive class;
- **multiclass**: the probability of the row's predicted class, the class with the highest
  probability for the row itself (that class stays fixed while the row's columns are masked);
- **regression**: the prediction;
- a classifier without probabilities (no ``predict_proba``, an ONNX graph with a label output
  only): 1 where it predicts that class, else 0.

Masking: each row is held as integer codes of its values (a code table per column) and masked
rows are decoded back to a DataFrame of the benchmark's dtypes, so a masked column takes a
background row's whole value, text included, independently of the kept columns.

The budget is counted in work, never in time (``params``; defaults and meanings in
evaluators/interpretability.py's DEFAULT_OPTIONS): exactly ``max_rows`` test rows (all of them when
the test set is smaller) and ``background_rows`` background rows, both drawn with the seed, and
``permutations`` antithetic permutations per row, each a seeded random order of the columns
walked forward and backward, so ``2 * columns * permutations`` evaluations of the model averaged
over the background per row. The attributions therefore depend on the artifact's predictions and
the seed only. ``max_seconds`` is a safety stop: past it the probe fails (BudgetExceeded) rather
than explain fewer rows than asked.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model_runner import BudgetExceeded, predict_proba_method
from . import ProbeResult

ADDITIVITY_ABSOLUTE_TOLERANCE = 1e-6
ADDITIVITY_RELATIVE_TOLERANCE = 1e-6
# Masked rows built per chunk of explained rows: the memory of one chunk and how far a slow model
# can overrun the safety limit. A fixed count, so the chunks (and the model's batches) never
# depend on time.
MASKED_ROWS_PER_CHUNK = 50_000


@dataclass
class Attribution:
    values: np.ndarray  # (rows, input columns)
    base_values: np.ndarray  # (rows,)
    outputs: np.ndarray  # (rows,) the model's own value of the explained output


@dataclass(frozen=True)
class ModelOutput:
    """What is explained: `scores` gives one column per class (`classes`), or one column."""

    kind: str  # "probability", "predicted_label_indicator" or "prediction"
    classes: list | None
    scores: Callable[[pd.DataFrame], np.ndarray]


def probe(model, features: pd.DataFrame, params: dict, progress=None) -> ProbeResult:
    start = time.perf_counter()
    rng = np.random.default_rng(params["seed"])
    rows = rng.permutation(len(features))[: params["max_rows"]]
    background_size = min(params["background_rows"], len(features))
    background = features.iloc[np.sort(rng.choice(len(features), size=background_size, replace=False))]
    # Row i's orderings are the i-th draw, so they do not depend on how many rows follow it.
    orderings = rng.random((len(rows), params["permutations"], features.shape[1])).argsort(axis=2)
    output = model_output(model, background, params["classes"])
    target = Target(task=model.task, positive_label=params["positive_label"], classes=output.classes)
    explainer = PermutationExplainer(output, background, features.iloc[rows], orderings=orderings)
    values, base_value = _explain_in_chunks(explainer, start=start, max_seconds=params["max_seconds"])
    attribution = target.select(values, base_value, _as_matrix(output.scores(features.iloc[rows])))
    seconds = time.perf_counter() - start
    document = {
        "explainer": "permutation",
        "method": (
            "interventional Shapley values by antithetic permutation sampling (the algorithm of "
            "shap's PermutationExplainer), over the model's own predictions of masked input rows"
        ),
        "feature_perturbation": "interventional",
        **target.describe(output.kind, base_value),
        "columns": list(features.columns),
        "budget": {key: params[key] for key in ("seed", "max_rows", "max_seconds", "background_rows", "permutations")},
        "rows_explained": len(rows),
        "background": "a seeded sample of the test rows",
        "background_rows_used": len(background),
        "permutations": params["permutations"],
        "evaluations_per_row": explainer.evaluations_per_row,
        "masked_rows_predicted": explainer.model_rows,
        "seconds": seconds,
        "additivity": additivity(attribution),
    }
    arrays = {
        "rows": rows.astype(np.int64),
        "values": attribution.values,
        "outputs": attribution.outputs,
        "base_values": attribution.base_values,
    }
    return ProbeResult(document=document, arrays=arrays)


def _explain_in_chunks(explainer, *, start: float, max_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Every row's attributions, or BudgetExceeded once the safety limit has passed with rows to do."""
    n_rows = len(explainer.row_codes)
    size = max(1, MASKED_ROWS_PER_CHUNK // explainer.masked_rows_per_row)
    chunks, base_value = [], None
    for done in range(0, n_rows, size):
        if time.perf_counter() - start > max_seconds:
            raise BudgetExceeded(
                f"explaining {n_rows} rows took longer than the {max_seconds:g} s safety limit after {done} rows; "
                "raise the interpretability option max_seconds or lower max_rows"
            )
        values, base_value = explainer.explain(slice(done, done + size))
        chunks.append(values)
    return np.concatenate(chunks), base_value


def model_output(model, background: pd.DataFrame, classes: list) -> ModelOutput:
    """The model's probabilities (or prediction, or predicted-label indicators) as a function of
    a DataFrame of input rows."""
    if model.task == "regression":
        return ModelOutput("prediction", None, lambda frame: _floats(model.predict(frame).labels).reshape(-1))
    if model.format == "skops":
        predict_proba = predict_proba_method(model.estimator)
        if predict_proba is not None:
            # Not model.predict: scikit-learn would compute every masked row's label in a second pass.
            model_classes = np.asarray(model.estimator.classes_).tolist()
            return ModelOutput("probability", model_classes, lambda frame: _floats(predict_proba(frame)))
    else:
        prediction = model.predict(background)
        if prediction.probabilities is not None:
            model_classes = np.asarray(prediction.classes).tolist()
            return ModelOutput("probability", model_classes, lambda frame: _floats(model.predict(frame).probabilities))
    return ModelOutput(
        "predicted_label_indicator", classes, lambda frame: _indicators(model.predict(frame).labels, classes)
    )


def _indicators(labels, classes: list) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1).astype(str)
    return np.column_stack([labels == str(label) for label in classes]).astype(np.float64)


def _floats(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


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


@dataclass(frozen=True)
class Target:
    """Which of the model's outputs is explained for each row."""

    task: str
    positive_label: object
    classes: list | None

    def select(self, values: np.ndarray, base_value: np.ndarray, outputs: np.ndarray) -> Attribution:
        """Per row, the explained output's attributions, base value and value, from those of every
        output: `values` (rows, columns, outputs), `base_value` (outputs,), `outputs` (rows, outputs)."""
        if self.task == "regression":
            columns = np.zeros(len(outputs), dtype=np.intp)
        elif self.task == "binary":
            columns = np.full(len(outputs), class_position(self.positive_label, self.classes))
        else:
            columns = outputs.argmax(axis=1)
        rows = np.arange(len(outputs))
        return Attribution(values[rows, :, columns], base_value[columns], outputs[rows, columns])

    def describe(self, kind: str, base_value) -> dict:
        """The explained output and its base value(s); `base_value` is per output of the model."""
        if self.task == "regression":
            return {"output": {"kind": kind, "of": "the prediction"}, "base_value": float(base_value[0])}
        if self.task == "binary":
            position = class_position(self.positive_label, self.classes)
            return {
                "output": {"kind": kind, "of": "the positive class", "class": self.classes[position]},
                "base_value": float(base_value[position]),
            }
        return {
            "output": {"kind": kind, "of": "each row's predicted class (the one with the highest output)"},
            "base_value_by_class": [
                {"class": label, "base_value": float(value)}
                for label, value in zip(self.classes, base_value, strict=True)
            ],
        }


def class_position(label, classes: list) -> int:
    """Where `label` is among the model's classes; a label from JSON may be the text of a number."""
    for candidates, key in ((classes, label), ([str(c) for c in classes], str(label))):
        if key in candidates:
            return candidates.index(key)
    raise ValueError(f"the positive label {label!r} is not one of the model's classes {classes}")


class PermutationExplainer:
    """Antithetic permutation sampling of interventional Shapley values, over integer codes of the
    rows' values: a masked column takes a background row's code, which the prediction function
    decodes back to the benchmark's dtype."""

    def __init__(self, output: ModelOutput, background: pd.DataFrame, explained: pd.DataFrame, *, orderings):
        self.output, self.orderings = output, orderings
        # One code table for the background and the explained rows: equal values share a code, so a
        # masked row equal to one already evaluated is recognised and evaluated once.
        codes, self.tables = _integer_codes(pd.concat([background, explained], ignore_index=True))
        self.background_codes, self.row_codes = codes[: len(background)], codes[len(background) :]
        self.evaluations_per_row = orderings.shape[1] * 2 * codes.shape[1]
        self.masked_rows_per_row = orderings.shape[1] * 2 * (codes.shape[1] + 1) * len(background)
        self.model_rows = 0  # distinct masked rows the model was asked to predict

    def explain(self, positions: slice) -> tuple[np.ndarray, np.ndarray]:
        """(attributions (rows, columns, outputs), the background's mean output per output)."""
        values, base_value, model_rows = permutation_shapley(
            self._scores_of_codes, self.background_codes, self.row_codes[positions], self.orderings[positions]
        )
        self.model_rows += model_rows
        return values, base_value

    def _scores_of_codes(self, codes: np.ndarray) -> np.ndarray:
        columns = {name: table.take(codes[:, j]) for j, (name, table) in enumerate(self.tables.items())}
        return self.output.scores(pd.DataFrame(columns))


def permutation_shapley(scores, background: np.ndarray, rows: np.ndarray, orderings: np.ndarray):
    """Each row's Shapley values, estimated as shap's PermutationExplainer does: for each ordering of
    the columns, the columns are switched from the background rows' values to the row's one at a
    time (forward), then back in the same order (backward), and a column's attribution is the mean
    change of the model's output, averaged over the background, that switching it made.

    `rows` (n, columns) and `background` (b, columns) are integer codes; `orderings` (n, p,
    columns) holds p permutations of the columns per row. Returns (values (n, columns, outputs),
    the background's mean output, the number of distinct masked rows predicted). Both passes add up
    to the row's output minus the background's mean, so the values do too, whatever the orderings.
    """
    _, p, d = orderings.shape
    rank = np.argsort(orderings, axis=2)  # each column's position in its ordering
    steps = np.arange(d + 1)[:, None]
    # Step k of the forward pass takes the first k columns of the ordering from the row; step k
    # of the backward pass takes all but those.
    from_row = rank[:, :, None, :] < steps
    coalitions = np.concatenate([from_row, ~from_row], axis=2)  # (n, p, 2 * (d + 1), d)
    masked = np.where(coalitions[:, :, :, None, :], rows[:, None, None, None, :], background)
    distinct, inverse = _distinct_rows(masked.reshape(-1, d))
    outputs = _as_matrix(scores(distinct))[inverse]
    means = outputs.reshape(*coalitions.shape[:3], len(background), -1).mean(axis=3)  # (n, p, steps, outputs)
    forward, backward = means[:, :, : d + 1], means[:, :, d + 1 :]
    # The change each column of the ordering made, by its position in the ordering, in both passes.
    changes = (forward[:, :, 1:] - forward[:, :, :-1]) + (backward[:, :, :-1] - backward[:, :, 1:])
    values = np.take_along_axis(changes, rank[..., None], axis=2).sum(axis=1) / (2 * p)
    return values, forward[0, 0, 0], len(distinct)


def _distinct_rows(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a non-negative integer matrix, in order of first appearance, and each
    row's position among them."""
    # Each row becomes one integer (its codes in mixed radix), renumbered densely whenever the next
    # column would overflow it; hashing those integers is several times faster than sorting rows.
    key = np.zeros(len(codes), dtype=np.int64)
    for column in codes.T:
        radix = int(column.max()) + 1
        if int(key.max()) >= np.iinfo(np.int64).max // radix:
            key = pd.factorize(key)[0]
        key = key * radix + column
    key = pd.factorize(key)[0]
    first = np.empty(key.max() + 1, dtype=np.intp)
    first[key[::-1]] = np.arange(len(key))[::-1]  # the last write for each key is its first row
    return codes[first], key


def _as_matrix(scores: np.ndarray) -> np.ndarray:
    return scores.reshape(len(scores), -1)


def _integer_codes(frame: pd.DataFrame) -> tuple[np.ndarray, dict]:
    """Each value's position in its column's table of distinct values (a missing value included)."""
    codes, tables = [], {}
    for column in frame.columns:
        column_codes, tables[column] = pd.factorize(frame[column], use_na_sentinel=False)
        codes.append(column_codes)
    return np.column_stack(codes).astype(np.intp), tables
