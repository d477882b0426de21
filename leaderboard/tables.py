"""Reading benchmark data files (CSV or Parquet) that a person uploaded, with errors they can act on."""

import csv
import io
from pathlib import PurePath

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leaderboard.errors import Rejected

PARQUET_MAGIC = b"PAR1"


def table_read(data: bytes, *, filename: str, field: str) -> pd.DataFrame:
    """Parse an uploaded CSV or Parquet file; the format is decided by the content, not the name."""
    label = f"{field} ({PurePath(filename).name or 'upload'})"
    if not data.strip():
        raise Rejected(f"{label} is empty.", field=field)
    if data[:4] == PARQUET_MAGIC:
        frame = _parquet_read(data, label=label, field=field)
    else:
        frame = _csv_read(data, label=label, field=field)
    if frame.empty:
        raise Rejected(f"{label} has a header but no rows.", field=field)
    return frame


def _parquet_read(data: bytes, *, label: str, field: str) -> pd.DataFrame:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as error:
        raise Rejected(f"{label} is not a readable Parquet file: {error}", field=field) from None
    _refuse_duplicated_columns(table.column_names, label=label, field=field)
    return table.to_pandas()


def _csv_read(data: bytes, *, label: str, field: str) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Rejected(
            f"{label} is neither Parquet nor UTF-8 CSV text; export it as CSV (UTF-8) or Parquet.",
            field=field,
        ) from None
    header = next(csv.reader(io.StringIO(text)), [])
    _refuse_duplicated_columns([name.strip() for name in header], label=label, field=field)
    try:
        frame = pd.read_csv(io.StringIO(text), skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        raise Rejected(f"{label} is not a readable CSV file: {error}", field=field) from None
    frame.columns = [str(name).strip() for name in frame.columns]
    return frame


def _refuse_duplicated_columns(names: list[str], *, label: str, field: str) -> None:
    seen, duplicated = set(), []
    for name in names:
        if name in seen and name not in duplicated:
            duplicated.append(name)
        seen.add(name)
    if duplicated:
        raise Rejected(f"{label} has duplicated column names: {', '.join(duplicated)}.", field=field)
    if not names or all(not name for name in names):
        raise Rejected(f"{label} has no header row naming its columns.", field=field)


def column_names_parse(text: str) -> list[str]:
    """Column names from comma-separated text, as a form field or a command-line option gives them."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def table_to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, compression="zstd")
    return buffer.getvalue()


def table_from_parquet(data: bytes, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data), columns=columns)
