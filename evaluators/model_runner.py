"""Load and run one untrusted model inside the limited child process (see model_process.py).

Reads the features from Parquet, predicts them once (unless asked not to) and writes the
predictions as an .npz (read back without pickle) plus an outcome JSON that says whether the
model worked and, if not, why. Then it runs the requested probes (evaluators/probes/) on the same
loaded model, each writing its own outcome as soon as it is done, so a probe that crashes or
overruns the time limit loses only its own result.
"""

import importlib
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# pyarrow's default allocator (mimalloc) reserves about a gigabyte of address space on its first
# allocation, which under the child's address-space limit (RLIMIT_AS) took most of a small
# HOLDOUT_MODEL_MEMORY_MB: the model and the probes then failed for want of what was left. malloc
# reserves only what is used. pyarrow reads this once, when pandas first loads it, so it is set
# only where pandas is not loaded yet: in the model process, which imports this module first
# (model_process.py); a worker that imports it has pandas loaded already and is left as it is.
if "pandas" not in sys.modules:
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import numpy as np  # noqa: E402 - after the allocator is chosen
import pandas as pd  # noqa: E402
from pandas.api.types import is_numeric_dtype  # noqa: E402

# What numpy, onnxruntime, the C++ runtime and the dynamic loader say when an allocation fails
# under the address-space limit.
MEMORY_MARKERS = (
    "MemoryError",
    "bad_alloc",
    "Failed to allocate memory",
    "Cannot allocate memory",
    "failed to map segment",
    "Unable to allocate",
)
MAX_MESSAGE_CHARS = 500

# skops and onnxruntime are slow to import, so the child imports only the one it needs.
_LIBRARIES = {"onnx": "onnxruntime", "skops": "skops.io"}
_ONNX_FEED_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(string)": object,
}
_ONNX_MATRIX_TYPES = ("tensor(float)", "tensor(double)")
_CLASS_LABEL_ATTRIBUTES = ("classlabels_strings", "classlabels_int64s", "classlabels_ints")


class InputMismatch(Exception):
    """The model's inputs do not fit the benchmark's features; the message is user-facing."""


class ModelOutputUnclear(Exception):
    """The model's outputs cannot be read as a prediction; the message is user-facing."""


class BudgetExceeded(Exception):
    """A probe passed the safety limit of its options; the message is user-facing and names the option."""


@dataclass
class Prediction:
    labels: Any
    probabilities: Any
    classes: Any
    seconds: float


def run(request: dict) -> int:
    # Failures before the model is touched are the platform's, so they are left to crash loudly.
    features = pd.read_parquet(request["features_path"])
    importlib.import_module(_LIBRARIES[request["artifact_format"]])
    stage = "loading the model"
    try:
        rss_before = resident_bytes()
        model = load_model(request)
        # What loading the model added to this process, for the size report.
        model.loaded_rss_bytes = resident_bytes() - rss_before
        if request.get("predict", True):
            stage = "predicting"
            prediction = model.predict(features)
            arrays = _portable_arrays(prediction, task=request["task"])
            classes = None if prediction.classes is None else _plain_values(prediction.classes).tolist()
    except Exception as error:
        _write_json(request["outcome_path"], _failure(error, stage))
        return 1
    outcome = {"status": "ok", "classes": None, "predict_seconds": 0.0}
    if request.get("predict", True):
        np.savez(request["arrays_path"], **arrays)
        outcome.update(classes=classes, predict_seconds=prediction.seconds)
    _write_json(request["outcome_path"], outcome)
    for name, params in request.get("probes", {}).items():
        _run_probe(name, params, model, features, Path(request["outcome_path"]).parent)
    return 0


def _progress_writer(path: Path):
    """A `progress(fraction)` for a probe: the share done, written whole (renamed into place)."""
    partial = path.with_suffix(".partial")

    def progress(fraction: float) -> None:
        partial.write_text(f"{min(max(float(fraction), 0.0), 1.0):.4f}")
        partial.replace(path)

    return progress


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def load_model(request: dict):
    if request["artifact_format"] == "skops":
        return SkopsModel(request["artifact_path"], trusted=request["skops_trusted"], task=request["task"])
    return OnnxModel(request["artifact_path"], task=request["task"])


def _run_probe(name: str, params: dict, model, features: pd.DataFrame, workdir: Path) -> None:
    from .probes import probe_files, probe_function

    files = probe_files(workdir, name)
    # Marks the probe under way: if the process dies now, the parent knows which probe it was.
    files.started.touch()
    start = time.perf_counter()
    try:
        result = probe_function(name)(model, features, params, progress=_progress_writer(files.progress))
    except Exception as error:  # noqa: BLE001 - a failing probe fails only its evaluator
        failure = _failure(error, f"running the {name} probe")
        _write_json(files.outcome, {**failure, "seconds": time.perf_counter() - start})
        return
    np.savez(files.arrays, **{key: _plain_values(value) for key, value in result.arrays.items()})
    _write_json(files.outcome, {"status": "ok", "document": result.document, "seconds": time.perf_counter() - start})


class SkopsModel:
    """A scikit-learn estimator or pipeline, called with a DataFrame of the feature columns."""

    format = "skops"

    def __init__(self, path: str, *, trusted: list[str], task: str):
        import skops.io

        self.task = task
        self.estimator = skops.io.load(path, trusted=trusted)

    def predict(self, features: pd.DataFrame) -> Prediction:
        start = time.perf_counter()
        labels = self.estimator.predict(features)
        probabilities = classes = None
        if self.task != "regression":
            predict_proba = predict_proba_method(self.estimator)
            if predict_proba is not None:
                probabilities = predict_proba(features)
                classes = self.estimator.classes_
        return Prediction(labels, probabilities, classes, time.perf_counter() - start)


def predict_proba_method(estimator):
    try:
        return estimator.predict_proba
    # A Pipeline asks its final step whether it has predict_proba, and that check is the
    # model's own code: it may raise anything, and any failure means "no probabilities".
    except Exception:
        return None


class OnnxModel:
    """An ONNX graph run by onnxruntime on one thread, fed the feature columns as it declares them."""

    format = "onnx"

    def __init__(self, path: str, *, task: str):
        import onnxruntime

        self.task = task
        self.model_bytes = Path(path).read_bytes()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: warnings would bury a crash's last words
        self.session = onnxruntime.InferenceSession(
            self.model_bytes, options, providers=["CPUExecutionProvider"]
        )

    def predict(self, features: pd.DataFrame) -> Prediction:
        feeds = self.feeds(features)
        start = time.perf_counter()
        outputs = self.session.run(None, feeds)
        seconds = time.perf_counter() - start
        return self.prediction(outputs, seconds)

    def feeds(self, features: pd.DataFrame) -> dict[str, np.ndarray]:
        """The inputs for these rows; split from running so a timing loop can prepare them once."""
        return _onnx_feeds(self.session.get_inputs(), features)

    def prediction(self, outputs: list, seconds: float) -> Prediction:
        labels = outputs[0]
        if self.task == "regression" or len(outputs) == 1:
            return Prediction(labels, None, None, seconds)
        probabilities, classes = self._probabilities(outputs[1], labels)
        return Prediction(labels, probabilities, classes, seconds)

    def _probabilities(self, output, labels) -> tuple[Any, list]:
        """The probability columns and the class of each, as the model declares them.

        The classes come from the model, never from what it predicted: a model that predicts one
        class on every row (a constant model is a valid model) still has a column per class."""
        if isinstance(output, list):  # skl2onnx's ZipMap: one {class: probability} dict per row
            classes = list(output[0])
            return [[row[label] for label in classes] for row in output], classes
        return output, self._class_labels() or _column_classes(np.shape(output), labels)

    def _class_labels(self) -> list | None:
        """The class order of the probability columns, as the graph's classifier node declares it
        (ai.onnx.ml's LinearClassifier, TreeEnsembleClassifier, SVMClassifier, ZipMap, ...)."""
        import onnx

        graph = onnx.load_model_from_string(self.model_bytes).graph
        for node in reversed(graph.node):
            if node.domain != "ai.onnx.ml":
                continue
            for attribute in node.attribute:
                if attribute.name in _CLASS_LABEL_ATTRIBUTES:
                    values = onnx.helper.get_attribute_value(attribute)
                    if values:
                        return [v.decode() if isinstance(v, bytes) else v for v in values]
        return None


def _column_classes(shape: tuple, labels) -> list:
    """The classes of a probability output whose graph names none (a network ending in Softmax and
    ArgMax, say): its column count says how many there are; integer labels that index the columns
    are the columns' positions, else the labels seen must name every column, in sorted order (as
    scikit-learn's classes_)."""
    width = shape[1] if len(shape) == 2 else None
    seen = np.unique(np.asarray(labels).reshape(-1))
    if width is None:
        return seen.tolist()
    if seen.dtype.kind in "iu" and (seen.size == 0 or (seen.min() >= 0 and seen.max() < width)):
        return list(range(width))
    if seen.size == width:
        return seen.tolist()
    raise ModelOutputUnclear(
        f"the model's probability output has {width} columns but the model does not say which class each "
        f"is, and its predicted labels ({', '.join(map(str, seen[:10].tolist()))}) name only {seen.size} of "
        "them. Export it with skl2onnx (whose classifiers declare their class labels) or have the label "
        "output give the column index of the predicted class."
    )


def _onnx_feeds(inputs, features: pd.DataFrame) -> dict[str, np.ndarray]:
    """One input per feature column named after it, or the numeric features as one float matrix."""
    columns = list(features.columns)
    if {model_input.name for model_input in inputs} <= set(columns):
        return {i.name: _column_feed(i, features[i.name]) for i in inputs}
    numeric = [column for column in columns if is_numeric_dtype(features[column])]
    only = inputs[0]
    width = only.shape[1] if len(inputs) == 1 and only.type in _ONNX_MATRIX_TYPES and len(only.shape) == 2 else None
    if width is not None and (not isinstance(width, int) or width == len(numeric)):
        return {only.name: features[numeric].to_numpy(dtype=_ONNX_FEED_DTYPES[only.type])}
    raise InputMismatch(_mismatch_message(inputs, columns, numeric, matrix_width=width))


def _mismatch_message(inputs, columns: list[str], numeric: list[str], *, matrix_width) -> str:
    names = [model_input.name for model_input in inputs]
    message = (
        "The model's inputs do not match the benchmark's feature columns. "
        f"The model expects: {', '.join(f'{i.name} ({i.type})' for i in inputs)}. "
        f"The benchmark's feature columns are: {', '.join(columns)}. "
        f"Missing from the benchmark: {', '.join(n for n in names if n not in columns)}. "
        f"Not used by the model: {', '.join(c for c in columns if c not in names) or 'none'}. "
    )
    if matrix_width is not None:
        message += (
            f"As a single 2-D float input, {names[0]} takes {matrix_width} numeric features per "
            f"row, but the benchmark has {len(numeric)}. "
        )
    return message + (
        "Export the model with one input per feature column, named after it, or with a single "
        f"2-D float input taking the numeric features in this order: {', '.join(numeric)}."
    )


def _column_feed(model_input, column: pd.Series) -> np.ndarray:
    dtype = _ONNX_FEED_DTYPES.get(model_input.type)
    if dtype is None:
        raise InputMismatch(
            f"The model's input {model_input.name!r} has type {model_input.type}; Holdout feeds "
            "feature columns as float, double, int64 or string tensors."
        )
    shape = (-1,) if len(model_input.shape) == 1 else (-1, 1)
    if dtype is object:
        # A string tensor cannot hold a missing value, so gaps in text columns arrive as "".
        text = column.astype(str).where(column.notna(), "")
        return text.to_numpy(dtype=object).reshape(shape)
    try:
        return column.to_numpy(dtype=dtype).reshape(shape)
    except (TypeError, ValueError) as error:
        raise InputMismatch(
            f"The model's input {model_input.name!r} is {model_input.type}, but the feature "
            f"column {column.name!r} cannot be converted to it ({error})."
        ) from None


def _portable_arrays(prediction: Prediction, *, task: str) -> dict[str, np.ndarray]:
    labels = np.asarray(prediction.labels).reshape(-1)
    arrays = {"labels": labels.astype(np.float64) if task == "regression" else _plain_values(labels)}
    if prediction.probabilities is not None:
        arrays["probabilities"] = np.asarray(prediction.probabilities, dtype=np.float64)
    return arrays


def _plain_values(values) -> np.ndarray:
    """A str, int, float or bool array: an .npz read without pickle cannot hold objects."""
    values = np.asarray(values)
    if values.dtype != object:
        return values
    values = np.asarray(values.tolist())  # numpy infers the plain type of the Python values
    return values.astype(str) if values.dtype == object else values


def _failure(error: Exception, stage: str) -> dict:
    if isinstance(error, MemoryError) or any(marker in str(error) for marker in MEMORY_MARKERS):
        return {"status": "failed", "out_of_memory": True}
    if isinstance(error, InputMismatch | ModelOutputUnclear | BudgetExceeded):
        # Holdout's own explanation, which names the columns or the option to change: kept whole.
        return {"status": "failed", "out_of_memory": False, "message": str(error)}
    message = f"the model failed while {stage}: {type(error).__name__}: {error}"
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return {"status": "failed", "out_of_memory": False, "message": message}


def _write_json(path: str, document: dict) -> None:
    Path(path).write_text(json.dumps(document))
