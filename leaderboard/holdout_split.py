"""The public part of a guarded benchmark's hidden test rows (issue 13).

A guarded benchmark shows submitters scores on its public part only; the private part decides the
final standings. The split is made once, seeded, and stored with the benchmark as row positions,
so no later change of code or library can move a row from one side to the other.

It is stratified, so the public part is a small copy of the whole: by the target (its classes; for
regression, its quintiles) and, when the benchmark has a time column, by the time's quintiles as
well, so a decay report on the public part spans the same period. Strata too small to split are
pooled, and scikit-learn's StratifiedShuffleSplit draws the rows (well kept, and the exact counts
per stratum are its documented behaviour).
"""

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedShuffleSplit

DEFAULT_PUBLIC_FRACTION = 0.3
QUANTILE_BINS = 5


def public_rows(
    frame: pd.DataFrame,
    *,
    target_column: str,
    task: str,
    time_column: str = "",
    fraction: float = DEFAULT_PUBLIC_FRACTION,
    seed: int,
) -> np.ndarray:
    """Sorted positions (0-based, in the table's order) of the public rows."""
    if not 0 < fraction < 1:
        raise ValueError(f"the public part is a fraction between 0 and 1 of the test rows, not {fraction!r}.")
    rows = len(frame)
    public_count = round(rows * fraction)
    if public_count < 1 or rows - public_count < 1:
        raise ValueError(
            f"a public part of {fraction:g} of {rows} test rows leaves one side empty; use more test rows "
            "or another fraction."
        )
    strata = _strata(frame, target_column=target_column, task=task, time_column=time_column)
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=public_count, random_state=seed)
    positions = np.arange(rows)
    try:
        _, public = next(splitter.split(positions, strata))
    except ValueError:
        # Fewer rows than strata on one side: a plain seeded draw of the same size.
        public = np.random.default_rng(seed).choice(rows, size=public_count, replace=False)
    return np.sort(public).astype(np.int64)


def _strata(frame: pd.DataFrame, *, target_column: str, task: str, time_column: str) -> np.ndarray:
    target = frame[target_column]
    labels = _quantile_bins(target) if task == "regression" else target.astype(str).fillna("<missing>")
    labels = labels.astype(str)
    if time_column:
        labels = labels + "|" + _quantile_bins(frame[time_column]).astype(str)
    return _pool_rare(labels.to_numpy())


def _quantile_bins(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        values = values.astype("int64")
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() < QUANTILE_BINS:
        return pd.Series(np.zeros(len(values), dtype=int), index=values.index)
    return pd.qcut(numeric.rank(method="first"), QUANTILE_BINS, labels=False).fillna(-1).astype(int)


def _pool_rare(labels: np.ndarray) -> np.ndarray:
    """Strata of a single row cannot be split: they share one stratum of their own."""
    names, counts = np.unique(labels, return_counts=True)
    rare = set(names[counts < 2])
    return np.array(["<rare>" if label in rare else label for label in labels], dtype=object)
