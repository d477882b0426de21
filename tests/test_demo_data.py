"""The demo's bundled and generated data, and the baseline models trained on them (no Django)."""

from pathlib import Path

import numpy as np
import onnxruntime
import pandas as pd
import pytest
import skops.io
from sklearn.metrics import roc_auc_score

from leaderboard.demo.baselines import ONNX_PROBABILITY_TOLERANCE, SKOPS_TRUSTED_TYPES, onnx_inputs, train_baselines
from leaderboard.demo.build_adult import ADULT_TEST_PATH, ADULT_TRAIN_PATH, build_adult
from leaderboard.demo.synthetic import (
    ADULT_SPEC,
    DEBT_RATIO_COEF,
    GROUP_GAPS,
    INCOME_INFLATION_PER_MONTH,
    LENDING_SPEC,
    REFERENCE_DECAY_PER_MONTH,
    adult_dataset,
    lending_dataset,
)

SHARED_ADULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "adult"
ADULT_COLUMNS = [
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
BASELINE_FILENAMES = [
    "majority_class.skops",
    "logistic_regression.skops",
    "random_forest.skops",
    "hist_gradient_boosting.skops",
    "logistic_regression.onnx",
]


@pytest.fixture(scope="module")
def adult():
    return adult_dataset()


@pytest.fixture(scope="module")
def lending():
    return lending_dataset()


@pytest.fixture(scope="module", params=["adult", "lending"])
def benchmark(request):
    """(train, test, spec, quick baselines) for each demo benchmark."""
    train, test = adult_dataset() if request.param == "adult" else lending_dataset()
    spec = ADULT_SPEC if request.param == "adult" else LENDING_SPEC
    return train, test, spec, train_baselines(train, spec, quick=True)


@pytest.fixture(scope="module")
def lending_logistic_regression(lending):
    """The full (not quick) logistic-regression baseline of the lending benchmark, loaded."""
    train, _ = lending
    baselines = {baseline.filename: baseline for baseline in train_baselines(train, LENDING_SPEC)}
    return skops.io.loads(baselines["logistic_regression.skops"].data, trusted=[])


def monthly(test: pd.DataFrame, model, metric) -> np.ndarray:
    months = test[LENDING_SPEC["time_column"]].dt.to_period("M")
    features, target = LENDING_SPEC["feature_columns"], LENDING_SPEC["target"]
    return np.array(
        [metric(rows[target], model.predict_proba(rows[features])[:, 1]) for _, rows in test.groupby(months)]
    )


def accuracy(y, probability):
    return np.mean((probability > 0.5) == y)


def load(baseline):
    """Load a baseline the way Holdout does and return a function giving (labels, probabilities)."""
    if baseline.filename.endswith(".onnx"):
        session = onnxruntime.InferenceSession(baseline.data, providers=["CPUExecutionProvider"])
        return lambda X: tuple(session.run(None, onnx_inputs(X)))
    model = skops.io.loads(baseline.data, trusted=skops.io.get_untrusted_types(data=baseline.data))
    return lambda X: (model.predict(X), model.predict_proba(X))


# Adult


def test_adult_files_have_every_row_of_the_original_splits(adult):
    train, test = adult
    assert len(train) == 32_561
    assert len(test) == 16_281
    assert list(train.columns) == ADULT_COLUMNS
    assert list(test.columns) == ADULT_COLUMNS


def test_adult_numeric_columns_are_int64_and_the_others_text(adult):
    for split in adult:
        numeric = [column for column in split.columns if pd.api.types.is_numeric_dtype(split[column])]
        assert numeric == ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
        assert all(split[column].dtype == "int64" for column in numeric)
        assert all(pd.api.types.is_string_dtype(split[column]) for column in split.columns if column not in numeric)


def test_adult_keeps_missing_values_as_the_string_missing_not_question_marks_or_nan(adult):
    for split in adult:
        assert not split.isin(["?"]).any().any()
        assert not split.isna().any().any()
        assert not split.select_dtypes("str").apply(lambda column: column.str.contains(r"^\s|\s$")).any().any()
        assert (split[["workclass", "occupation", "native_country"]] == "missing").any().all()


def test_adult_labels_are_the_same_in_both_splits_without_a_full_stop(adult):
    train, test = adult
    assert set(train["income"]) == set(test["income"]) == {"<=50K", ">50K"}
    assert (test["income"] == ">50K").sum() == 3_846


def test_adult_files_stay_well_under_two_megabytes():
    assert ADULT_TRAIN_PATH.stat().st_size < 1_000_000
    assert ADULT_TEST_PATH.stat().st_size < 1_000_000


@pytest.mark.skipif(not SHARED_ADULT.exists(), reason="the shared data sets exist on development and CI machines only")
def test_build_adult_reproduces_the_bundled_files(tmp_path, adult):
    train_path, test_path = build_adult(SHARED_ADULT, tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(train_path), adult[0])
    pd.testing.assert_frame_equal(pd.read_parquet(test_path), adult[1])


def test_adult_spec_uses_every_column_but_the_target_and_the_sampling_weight():
    assert set(ADULT_SPEC["feature_columns"]) == set(ADULT_COLUMNS) - {"income", "fnlwgt"}
    assert set(ADULT_SPEC["sensitive_columns"]) <= set(ADULT_SPEC["feature_columns"])


# Lending


def test_lending_dataset_is_identical_for_the_same_seed(lending):
    again = lending_dataset()
    pd.testing.assert_frame_equal(again[0], lending[0])
    pd.testing.assert_frame_equal(again[1], lending[1])


def test_lending_dataset_changes_with_the_seed(lending):
    assert not lending_dataset(seed=8)[0].equals(lending[0])


def test_lending_test_split_does_not_depend_on_the_training_size(lending):
    pd.testing.assert_frame_equal(lending_dataset(n_train=100)[1], lending[1])


def test_lending_columns_are_the_time_the_features_and_a_0_1_target(lending):
    for split in lending:
        assert list(split.columns) == ["applied_at", *LENDING_SPEC["feature_columns"], "repaid"]
        assert pd.api.types.is_datetime64_any_dtype(split["applied_at"])
        assert split["applied_at"].is_monotonic_increasing
        assert split["repaid"].dtype == "int64"
        assert set(split["repaid"]) == {0, 1}
    assert LENDING_SPEC["time_column"] not in LENDING_SPEC["feature_columns"]
    assert set(LENDING_SPEC["sensitive_columns"]) == set(GROUP_GAPS)


def test_lending_rows_are_spread_evenly_over_2023_for_training_and_2024_2025_for_testing(lending):
    for split, first, last in [(lending[0], "2023-01", "2023-12"), (lending[1], "2024-01", "2025-12")]:
        counts = split["applied_at"].dt.to_period("M").value_counts().sort_index()
        assert list(counts.index.astype(str)) == [str(month) for month in pd.period_range(first, last, freq="M")]
        assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("gap", GROUP_GAPS.values(), ids=GROUP_GAPS.keys())
def test_lending_training_labels_show_the_documented_group_gap(lending, gap):
    train, _ = lending
    rates = train.groupby(gap.column)["repaid"].mean()
    tolerance = 3 / np.sqrt(len(train))
    assert rates[gap.reference] - rates[gap.penalised] == pytest.approx(gap.positive_rate_gap, abs=tolerance)
    others = rates.drop(gap.penalised)
    assert others.max() - others.min() < 0.04, "only the penalised group should repay less"


def test_a_model_trained_on_the_lending_labels_inherits_the_group_gap(lending, lending_logistic_regression):
    _, test = lending
    predicted = pd.Series(lending_logistic_regression.predict(test[LENDING_SPEC["feature_columns"]]))
    for gap in GROUP_GAPS.values():
        rates = predicted.groupby(test[gap.column].to_numpy()).mean()
        assert rates[gap.reference] - rates[gap.penalised] > gap.positive_rate_gap / 2


def test_a_model_trained_on_2023_loses_accuracy_month_by_month(lending, lending_logistic_regression):
    _, test = lending
    for name, metric in [("accuracy", accuracy), ("roc_auc", roc_auc_score)]:
        by_month = monthly(test, lending_logistic_regression, metric)
        slope = np.polyfit(np.arange(len(by_month)), by_month, 1)[0]
        assert -slope == pytest.approx(REFERENCE_DECAY_PER_MONTH[name], abs=0.0015), name
        assert by_month[:6].mean() - by_month[-6:].mean() > 12 * REFERENCE_DECAY_PER_MONTH[name], name


def test_lending_nominal_income_inflates_by_the_documented_rate(lending):
    train, test = lending
    last_month = test[test["applied_at"] >= "2025-12-01"]
    growth = last_month["income"].median() / train["income"].median()
    assert growth == pytest.approx((1 + INCOME_INFLATION_PER_MONTH) ** 24, rel=0.05)


def test_debt_ratio_predicts_default_in_training(lending):
    train, _ = lending
    high_debt = train["debt_ratio"] > train["debt_ratio"].median()
    assert DEBT_RATIO_COEF < 0
    assert train.loc[high_debt, "repaid"].mean() < train.loc[~high_debt, "repaid"].mean() - 0.1


# Baselines


def test_train_baselines_returns_five_described_artifacts(benchmark):
    *_, baselines = benchmark
    assert [baseline.filename for baseline in baselines] == BASELINE_FILENAMES
    assert len({baseline.name for baseline in baselines}) == 5
    assert all(baseline.description.endswith(".") and baseline.data for baseline in baselines)


def test_skops_baselines_report_only_allowlisted_untrusted_types(benchmark):
    *_, baselines = benchmark
    for baseline in baselines[:4]:
        assert set(skops.io.get_untrusted_types(data=baseline.data)) <= SKOPS_TRUSTED_TYPES, baseline.name


def test_every_baseline_loads_and_predicts_the_test_split(benchmark):
    _, test, spec, baselines = benchmark
    X, y = test[spec["feature_columns"]], test[spec["target"]]
    majority_accuracy = (y == y.mode()[0]).mean()
    for baseline in baselines:
        labels, probabilities = load(baseline)(X)
        assert labels.shape == (len(X),) and probabilities.shape == (len(X), 2), baseline.name
        if baseline.filename != "majority_class.skops":
            assert np.mean(labels == y) > majority_accuracy + 0.02, baseline.name


def test_the_onnx_baseline_reproduces_the_logistic_regression_on_the_test_split(benchmark):
    _, test, spec, baselines = benchmark
    X = test[spec["feature_columns"]]
    sklearn_labels, sklearn_probabilities = load(baselines[1])(X)
    onnx_labels, onnx_probabilities = load(baselines[4])(X)
    np.testing.assert_array_equal(onnx_labels, sklearn_labels)
    np.testing.assert_allclose(onnx_probabilities, sklearn_probabilities, rtol=0, atol=ONNX_PROBABILITY_TOLERANCE)


def test_the_onnx_baseline_has_one_input_per_feature_column_named_after_it(benchmark):
    _, _, spec, baselines = benchmark
    session = onnxruntime.InferenceSession(baselines[4].data, providers=["CPUExecutionProvider"])
    assert [model_input.name for model_input in session.get_inputs()] == spec["feature_columns"]


def test_baselines_see_exactly_the_feature_columns_and_never_the_time_column(benchmark):
    _, _, spec, baselines = benchmark
    for baseline in baselines[1:4]:
        model = skops.io.loads(baseline.data, trusted=skops.io.get_untrusted_types(data=baseline.data))
        assert list(model.feature_names_in_) == spec["feature_columns"], baseline.name


def test_train_baselines_refuses_the_time_column_as_a_feature(lending):
    train, _ = lending
    spec = LENDING_SPEC | {"feature_columns": [*LENDING_SPEC["feature_columns"], "applied_at"]}
    with pytest.raises(ValueError, match="applied_at"):
        train_baselines(train, spec, quick=True)
