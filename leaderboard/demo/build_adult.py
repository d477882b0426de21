"""Convert the UCI Adult text files into the two Parquet files the demo ships with.

Usage: python -m leaderboard.demo.build_adult /path/to/datasets/adult

The output lives in the project (leaderboard/demo/data/) because a fresh clone has no shared
data directory; this script exists so the conversion can be checked and repeated.
"""

import sys
from pathlib import Path

import pandas as pd

DATA_DIR = Path(__file__).resolve().parent / "data"
ADULT_TRAIN_PATH = DATA_DIR / "adult_train.parquet"
ADULT_TEST_PATH = DATA_DIR / "adult_test.parquet"

NUMERIC_COLUMNS = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
]
# skl2onnx can export an imputer or encoder over text only when a gap is itself a string,
# so missing text stays a visible category instead of becoming NaN.
MISSING_TOKEN = "missing"


def read_adult(path: Path, *, skip_first_line: bool = False) -> pd.DataFrame:
    """One split of the original files, cleaned: snake_case names, "?" -> "missing", labels without "."."""
    frame = pd.read_csv(
        path,
        header=None,
        names=COLUMNS,
        sep=",",
        skipinitialspace=True,
        skiprows=1 if skip_first_line else 0,
        keep_default_na=False,
        dtype=str,
    )
    text_columns = [column for column in COLUMNS if column not in NUMERIC_COLUMNS]
    frame[text_columns] = frame[text_columns].replace("?", MISSING_TOKEN)
    # adult.test spells its labels ">50K." and "<=50K."; adult.data has no full stop.
    frame["income"] = frame["income"].str.removesuffix(".")
    return frame.astype({column: "int64" for column in NUMERIC_COLUMNS} | {column: "str" for column in text_columns})


def build_adult(source_dir: Path, out_dir: Path = DATA_DIR) -> tuple[Path, Path]:
    """Write adult_train.parquet and adult_test.parquet (zstd) into out_dir; return their paths."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {
        out_dir / ADULT_TRAIN_PATH.name: read_adult(source_dir / "adult.data"),
        # The first line of adult.test is "|1x3 Cross validator", not a row.
        out_dir / ADULT_TEST_PATH.name: read_adult(source_dir / "adult.test", skip_first_line=True),
    }
    for path, frame in splits.items():
        frame.to_parquet(path, engine="pyarrow", compression="zstd", compression_level=19, index=False)
    train_path, test_path = splits
    return train_path, test_path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m leaderboard.demo.build_adult DATASETS/adult")
    for written in build_adult(Path(sys.argv[1])):
        print(f"wrote {written} ({written.stat().st_size:,} bytes)")
