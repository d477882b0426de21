"""Train a small scikit-learn model on a Holdout benchmark's public training split and export it to ONNX.

    HOLDOUT_URL=https://holdout.example.com python train_and_export.py adult model.onnx

Needs pandas, scikit-learn, skl2onnx, onnxruntime and requests. The model takes one input per
feature column, named after it (strings for text columns, int64 or float for numbers), which is
what Holdout feeds an ONNX model.
"""

import argparse
import io
import os

import numpy as np
import onnxruntime
import pandas as pd
import requests
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", help="the benchmark's slug, e.g. adult")
    parser.add_argument("output", help="where to write the .onnx file")
    parser.add_argument("--url", default=os.environ.get("HOLDOUT_URL"), help="the server (default: $HOLDOUT_URL)")
    parser.add_argument("--regularisation", type=float, default=1.0, help="inverse strength C of the L2 penalty")
    args = parser.parse_args()
    if not args.url:
        parser.error("set HOLDOUT_URL or pass --url")

    benchmark, train = benchmark_download(args.url.rstrip("/"), args.benchmark)
    features, target = benchmark["feature_columns"], benchmark["target_column"]
    X, y = train[features], train[target].astype(str)
    model = pipeline_fit(X, y, regularisation=args.regularisation)
    data = onnx_export(model, X)
    with open(args.output, "wb") as file:
        file.write(data)
    print(
        f"trained on {len(X)} rows, training accuracy {model.score(X, y):.4f}; wrote {args.output} ({len(data)} bytes)"
    )


def benchmark_download(url: str, slug: str) -> tuple[dict, pd.DataFrame]:
    benchmark = requests.get(f"{url}/api/v1/benchmarks/{slug}/", timeout=60)
    benchmark.raise_for_status()
    csv = requests.get(f"{url}/api/v1/benchmarks/{slug}/train-data/", timeout=300)
    csv.raise_for_status()
    return benchmark.json(), pd.read_csv(io.BytesIO(csv.content))


def text_columns(X: pd.DataFrame) -> list[str]:
    # pandas 3 reads text as its own str dtype, so ask what is numeric rather than what is object.
    return [column for column in X.columns if not pd.api.types.is_numeric_dtype(X[column])]


def pipeline_fit(X: pd.DataFrame, y: pd.Series, *, regularisation: float) -> Pipeline:
    text = text_columns(X)
    numeric = [column for column in X.columns if column not in text]
    encode = ColumnTransformer(
        [("text", OneHotEncoder(handle_unknown="ignore"), text), ("numeric", StandardScaler(), numeric)]
    )
    return Pipeline([("encode", encode), ("model", LogisticRegression(C=regularisation, max_iter=2000))]).fit(X, y)


def tensor_type(values: pd.Series):
    if not pd.api.types.is_numeric_dtype(values):
        return StringTensorType([None, 1])
    return Int64TensorType([None, 1]) if pd.api.types.is_integer_dtype(values) else FloatTensorType([None, 1])


def onnx_inputs(X: pd.DataFrame) -> dict[str, np.ndarray]:
    def column(values: pd.Series) -> np.ndarray:
        if not pd.api.types.is_numeric_dtype(values):
            return values.to_numpy(dtype=object).reshape(-1, 1)
        dtype = np.int64 if pd.api.types.is_integer_dtype(values) else np.float32
        return values.to_numpy(dtype=dtype).reshape(-1, 1)

    return {name: column(X[name]) for name in X.columns}


def onnx_export(model: Pipeline, X: pd.DataFrame) -> bytes:
    initial_types = [(column, tensor_type(X[column])) for column in X.columns]
    # Without zipmap the probabilities are one [rows, classes] tensor, which roc_auc and log_loss read.
    data = to_onnx(model, initial_types=initial_types, options={id(model): {"zipmap": False}}).SerializeToString()
    # A converter that casts a column wrongly would ship a different model: check it predicts the same.
    labels, _ = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, onnx_inputs(X))
    agreement = float(np.mean(labels.ravel() == model.predict(X)))
    if agreement < 0.999:
        raise SystemExit(f"the ONNX export agrees with scikit-learn on only {agreement:.2%} of the training rows")
    return data


if __name__ == "__main__":
    main()
