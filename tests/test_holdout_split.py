"""The public part of a guarded benchmark's test rows: seeded, sized and stratified."""

import numpy as np
import pandas as pd
import pytest

from leaderboard.holdout_split import public_rows


def frame(rows: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.to_datetime("2024-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 365, rows)), unit="D")
    return pd.DataFrame(
        {"label": rng.choice(["yes", "no"], rows, p=[0.2, 0.8]), "when": days, "value": rng.normal(size=rows)}
    )


def test_the_public_part_is_thirty_percent_stratified_by_the_target_and_seeded():
    table = frame()
    public = public_rows(table, target_column="label", task="binary", seed=7)
    assert len(public) == 300 and np.all(np.diff(public) > 0), "sorted positions, each once"
    share = table["label"].iloc[public].eq("yes").mean()
    assert abs(share - table["label"].eq("yes").mean()) <= 1 / 300, "each class in its own proportion"
    assert np.array_equal(public, public_rows(table, target_column="label", task="binary", seed=7))
    assert not np.array_equal(public, public_rows(table, target_column="label", task="binary", seed=8))


def test_with_a_time_column_each_period_is_in_its_proportion():
    table = frame()
    public = public_rows(table, target_column="label", task="binary", time_column="when", fraction=0.25, seed=1)
    quarters = table["when"].dt.quarter
    whole, part = quarters.value_counts(normalize=True), quarters.iloc[public].value_counts(normalize=True)
    assert len(public) == 250
    assert (whole - part).abs().max() < 0.03, "the public part spans the same period as the whole"


def test_regression_targets_are_stratified_by_quantile_and_rare_strata_pooled():
    table = frame(rows=40)
    public = public_rows(table, target_column="value", task="regression", seed=3)
    assert len(public) == 12
    table.loc[0, "label"] = "once"  # a class of one row cannot be split: pooled, not an error
    assert len(public_rows(table, target_column="label", task="multiclass", seed=3)) == 12


@pytest.mark.parametrize(("rows", "fraction", "words"), [(10, 1.0, "between 0 and 1"), (1, 0.3, "one side empty")])
def test_a_split_that_cannot_be_made_says_why(rows, fraction, words):
    with pytest.raises(ValueError, match=words):
        public_rows(frame(rows=rows), target_column="label", task="binary", fraction=fraction, seed=1)
