"""The decay evaluator: per-window metrics, the trend through them, and per-feature drift (no Django)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import linregress
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from evaluators.base import EvaluationInput, EvaluatorError
from evaluators.decay import DAYS_PER_MONTH, DEFAULT_OPTIONS, PSI_EPSILON, DecayEvaluator
from evaluators.performance import performance_objectives
from evaluators.sandbox import Predictions
from leaderboard.demo.synthetic import LENDING_SPEC, REFERENCE_DECAY_PER_MONTH, lending_dataset

CLASSES = [0, 1]
LENDING_METADATA = {"training_cutoff": "2023-12-31"}  # the baseline learns from 2023


def decaying_binary(*, months: int = 6, rows_per_month: int = 400, seed: int = 0, start: str = "2024-01"):
    """A classifier that is right 90% of the time in its first month and 3 points less each month after."""
    rng = np.random.default_rng(seed)
    month_index = np.repeat(np.arange(months), rows_per_month)
    first_days = pd.period_range(start, periods=months, freq="M").start_time.to_numpy()
    times = pd.Series(first_days[month_index] + pd.to_timedelta(rng.integers(0, 28 * 24, month_index.size), "h"))
    y_true = rng.integers(0, 2, month_index.size)
    correct = rng.random(month_index.size) < 0.9 - 0.03 * month_index
    labels = np.where(correct, y_true, 1 - y_true)
    confidence = rng.uniform(0.5, 1.0, month_index.size)
    score = np.where(labels == 1, confidence, 1 - confidence)
    predictions = Predictions(labels, np.column_stack([1 - score, score]), list(CLASSES), 0.01)
    features = pd.DataFrame(
        {"x": rng.normal(size=month_index.size), "colour": rng.choice(["red", "blue"], month_index.size)}
    )
    return times, y_true, predictions, features


def evaluation_input(times, y_true, predictions, features, **overrides) -> EvaluationInput:
    fields = dict(
        task="binary",
        y_true=y_true,
        predictions=predictions,
        features=features,
        sensitive=features.iloc[:, :0],
        times=times,
        classes=list(CLASSES),
        positive_label=1,
        primary_metric="accuracy",
        primary_higher_is_better=True,
        resamples=60,
        seed=11,
        metadata={},
        options={},
        artifact_bytes=1000,
        artifact_format="skops",
    )
    return EvaluationInput(**{**fields, **overrides})


def evaluate(*case, **overrides):
    return DecayEvaluator().evaluate(evaluation_input(*case, **overrides))


def fitted_points(document) -> tuple[np.ndarray, np.ndarray]:
    windows = [window for window in document["windows"] if window["in_fit"]]
    return np.array([w["midpoint_days"] for w in windows]), np.array([w["value"] for w in windows])


def rows_of_month(times: pd.Series, label: str) -> np.ndarray:
    """The month's rows in time order, the order the evaluator scores them in (sums in another
    order can differ in the last bit)."""
    order = np.argsort(times.to_numpy(), kind="stable")
    return order[(times.dt.to_period("M").astype(str) == label).to_numpy()[order]]


@pytest.fixture(scope="module")
def lending_case():
    """The lending benchmark's test split and its logistic-regression baseline's predictions, the
    model REFERENCE_DECAY_PER_MONTH was measured on."""
    train, test = lending_dataset()
    features = LENDING_SPEC["feature_columns"]
    model = logistic_regression_baseline(train[features], train[LENDING_SPEC["target"]])
    predictions = Predictions(model.predict(test[features]), model.predict_proba(test[features]), [0, 1], 0.1)
    return test[LENDING_SPEC["time_column"]], test[LENDING_SPEC["target"]].to_numpy(), predictions, test[features]


def logistic_regression_baseline(X: pd.DataFrame, y: pd.Series) -> Pipeline:
    """The pipeline leaderboard/demo/baselines.py builds, fitted alone: train_baselines also grows
    forests and boosted trees, which take from 4 to 25 s on a busy machine."""
    text = [column for column in X.columns if not pd.api.types.is_numeric_dtype(X[column])]
    numeric = [column for column in X.columns if column not in text]
    encode = ColumnTransformer(
        [("text", OneHotEncoder(handle_unknown="ignore"), text), ("numeric", StandardScaler(), numeric)]
    )
    return Pipeline([("encode", encode), ("model", LogisticRegression(max_iter=2000))]).fit(X, y)


@pytest.fixture(scope="module")
def lending_results(lending_case):
    """Decay of the lending baseline by each metric REFERENCE_DECAY_PER_MONTH documents."""
    return {
        metric: evaluate(*lending_case, primary_metric=metric, resamples=200, metadata=LENDING_METADATA)
        for metric in REFERENCE_DECAY_PER_MONTH
    }


def test_it_applies_only_to_benchmarks_with_a_time_column():
    times, y_true, predictions, features = decaying_binary(months=2)
    assert DecayEvaluator().applies(evaluation_input(times, y_true, predictions, features))
    assert not DecayEvaluator().applies(evaluation_input(None, y_true, predictions, features))
    assert DecayEvaluator().probe_params(evaluation_input(times, y_true, None, features)) == {}
    assert (DecayEvaluator.name, DecayEvaluator.probes, DecayEvaluator.queue) == ("decay", (), "evaluate")


def test_it_splits_the_test_rows_into_calendar_months_by_default():
    times, *_ = case = decaying_binary(months=3, start="2024-02")
    windows = evaluate(*case).document["windows"]
    assert [w["label"] for w in windows] == ["2024-02", "2024-03", "2024-04"]
    assert [(w["start"], w["end"]) for w in windows][0] == ("2024-02-01", "2024-02-29")
    assert [w["rows"] for w in windows] == [400, 400, 400]
    # Midpoints of the calendar months, in days since 1 February.
    assert [w["midpoint_days"] for w in windows] == [14.5, 29 + 15.5, 29 + 31 + 15]
    assert DEFAULT_OPTIONS == {"windows": "month", "min_window_rows": 100, "psi_bins": 10, "training_split_end": None}


def test_times_with_a_time_zone_fall_in_their_local_calendar_month():
    times, y_true, predictions, features = decaying_binary(months=2)
    times = times.dt.tz_localize("Europe/Berlin")
    # 31 January 23:30 in UTC, but already February in Berlin.
    times[0] = pd.Timestamp("2024-02-01 00:30", tz="Europe/Berlin")
    windows = evaluate(times, y_true, predictions, features).document["windows"]
    assert [(w["label"], w["rows"]) for w in windows] == [("2024-01", 399), ("2024-02", 401)]


def test_each_windows_metrics_equal_scikit_learns_on_its_rows():
    times, y_true, predictions, features = case = decaying_binary(months=4)
    for window in evaluate(*case).document["windows"]:
        rows = rows_of_month(times, window["label"])
        labels, probabilities = predictions.labels[rows], predictions.probabilities[rows]
        assert window["value"] == accuracy_score(y_true[rows], labels)
        assert window["metrics"] == {
            "accuracy": accuracy_score(y_true[rows], labels),
            "balanced_accuracy": balanced_accuracy_score(y_true[rows], labels),
            "f1_macro": f1_score(y_true[rows], labels, average="macro"),
            "roc_auc": roc_auc_score(y_true[rows], probabilities[:, 1]),
            "log_loss": log_loss(y_true[rows], probabilities, labels=CLASSES),
        }


def test_each_window_is_resampled_with_the_benchmark_seed_plus_its_index():
    times, y_true, predictions, features = case = decaying_binary(months=3)
    windows = evaluate(*case, resamples=40, seed=7).document["windows"]
    for index, window in enumerate(windows):
        rows = rows_of_month(times, window["label"])
        alone = Predictions(predictions.labels[rows], predictions.probabilities[rows], list(CLASSES), 0.01)
        expected = performance_objectives(
            y_true=y_true[rows], predictions=alone, task="binary", classes=CLASSES, positive_label=1,
            resamples=40, seed=7 + index,
        )
        assert window["interval"] == expected["intervals"]["accuracy"]
        assert window["interval"][0] < window["value"] < window["interval"][1]


def test_decay_per_30d_is_the_least_squares_slope_of_the_reported_window_points():
    result = evaluate(*decaying_binary(months=8))
    days, values = fitted_points(result.document)
    slope = np.polyfit(days, values, 1)[0]
    assert result.metrics["decay_per_30d"] == pytest.approx(-30 * slope, rel=1e-9)
    assert result.metrics["decay_per_30d"] == pytest.approx(-30 * linregress(days, values).slope, rel=1e-9)
    # The generator loses 3 points a month, about 30 days.
    assert result.metrics["decay_per_30d"] == pytest.approx(0.03, abs=0.01)
    low, high = result.intervals["decay_per_30d"]
    assert low < result.metrics["decay_per_30d"] < high


def test_relative_drop_compares_the_first_and_last_fitted_windows():
    result = evaluate(*decaying_binary(months=5))
    _, values = fitted_points(result.document)
    assert result.metrics["relative_drop"] == pytest.approx((values[0] - values[-1]) / abs(values[0]), rel=1e-12)
    assert result.metrics["relative_drop"] > 0
    low, high = result.intervals["relative_drop"]
    assert low < result.metrics["relative_drop"] < high
    assert result.document["trend"]["first_window"] == "2024-01"
    assert result.document["trend"]["last_window"] == "2024-05"


def test_a_model_that_improves_has_negative_decay():
    times, y_true, predictions, features = decaying_binary(months=5)
    reversed_times = times.iloc[::-1].reset_index(drop=True)
    result = evaluate(reversed_times, y_true, predictions, features)
    assert result.metrics["decay_per_30d"] < 0 and result.metrics["relative_drop"] < 0


def test_a_lower_is_better_metric_counts_a_rise_as_decay():
    result = evaluate(*decaying_binary(months=6), primary_metric="log_loss", primary_higher_is_better=False)
    days, values = fitted_points(result.document)
    assert result.metrics["decay_per_30d"] == pytest.approx(30 * np.polyfit(days, values, 1)[0], rel=1e-9)
    assert result.metrics["decay_per_30d"] > 0
    assert result.metrics["relative_drop"] == pytest.approx((values[-1] - values[0]) / abs(values[0]), rel=1e-12)
    assert result.metrics["relative_drop"] > 0


def test_regression_windows_are_scored_by_rmse_and_growing_errors_are_decay():
    times, *_ = decaying_binary(months=6)
    rng = np.random.default_rng(3)
    months_in = times.dt.month.to_numpy() - 1
    y_true = rng.normal(100, 20, len(times))
    y_pred = y_true + rng.normal(0, 5 + 2 * months_in)
    predictions = Predictions(y_pred, None, None, 0.01)
    result = evaluate(
        times, y_true, predictions, pd.DataFrame({"size": y_true}),
        task="regression", classes=[], positive_label=None, primary_metric="rmse", primary_higher_is_better=False,
    )
    for window in result.document["windows"]:
        rows = rows_of_month(times, window["label"])
        assert window["value"] == root_mean_squared_error(y_true[rows], y_pred[rows])
        assert set(window["metrics"]) == {"rmse", "mae", "r2"}
    days, values = fitted_points(result.document)
    assert result.metrics["decay_per_30d"] == pytest.approx(30 * np.polyfit(days, values, 1)[0], rel=1e-9)
    assert result.metrics["decay_per_30d"] == pytest.approx(2, abs=0.5)


def test_equal_count_windows_take_the_rows_in_time_order_whatever_the_test_set_order():
    times, y_true, predictions, features = decaying_binary(months=3, rows_per_month=333)
    shuffle = np.random.default_rng(1).permutation(len(times))
    shuffled = (
        times.iloc[shuffle].reset_index(drop=True),
        y_true[shuffle],
        Predictions(predictions.labels[shuffle], predictions.probabilities[shuffle], list(CLASSES), 0.01),
        features.iloc[shuffle].reset_index(drop=True),
    )
    windows = evaluate(*shuffled, options={"windows": 4}).document["windows"]
    assert [w["label"] for w in windows] == ["1/4", "2/4", "3/4", "4/4"]
    assert [w["rows"] for w in windows] == [250, 250, 250, 249]
    order = np.argsort(times.to_numpy(), kind="stable")
    for window, rows in zip(windows, np.array_split(order, 4)):
        assert window["value"] == accuracy_score(y_true[rows], predictions.labels[rows])
        assert (window["start"], window["end"]) == (
            times[rows[0]].date().isoformat(), times[rows[-1]].date().isoformat()
        )
    assert all(earlier["end"] <= later["start"] for earlier, later in zip(windows, windows[1:]))


def test_small_windows_are_shown_and_flagged_but_left_out_of_the_fit():
    times, y_true, predictions, features = decaying_binary(months=6, rows_per_month=120)
    keep = np.flatnonzero((times.dt.month != 3).to_numpy() | (np.arange(len(times)) % 10 == 0))
    small = (
        times.iloc[keep].reset_index(drop=True),
        y_true[keep],
        Predictions(predictions.labels[keep], predictions.probabilities[keep], list(CLASSES), 0.01),
        features.iloc[keep].reset_index(drop=True),
    )
    result = evaluate(*small)
    march = next(w for w in result.document["windows"] if w["label"] == "2024-03")
    assert (march["rows"], march["in_fit"]) == (12, False)
    assert "min_window_rows" in march["excluded_because"] and march["value"] is not None
    days, values = fitted_points(result.document)
    assert len(days) == 5
    assert result.metrics["decay_per_30d"] == pytest.approx(-30 * np.polyfit(days, values, 1)[0], rel=1e-9)
    assert evaluate(*small, options={"min_window_rows": 10}).document["trend"]["fitted_windows"] == 6


def test_a_single_window_reports_no_trend_and_says_why():
    result = evaluate(*decaying_binary(months=1))
    assert result.metrics == {} and result.intervals == {}
    assert len(result.document["windows"]) == 1
    assert "two" in result.document["trend"]["reason"]


def test_a_window_whose_metric_is_undefined_is_reported_as_none_and_not_fitted():
    times, y_true, predictions, features = decaying_binary(months=3)
    y_true = y_true.copy()
    y_true[rows_of_month(times, "2024-02")] = 1
    result = evaluate(times, y_true, predictions, features, primary_metric="roc_auc")
    february = result.document["windows"][1]
    assert february["value"] is None and february["metrics"]["roc_auc"] is None
    assert not february["in_fit"] and "undefined" in february["excluded_because"]
    assert result.document["trend"]["fitted_windows"] == 2
    json.dumps(result.document, allow_nan=False)


def test_the_training_cutoff_places_each_window_in_days_and_months():
    document = evaluate(*decaying_binary(months=3), metadata={"training_cutoff": "2023-12-31"}).document
    assert document["training_cutoff"] == {"date": "2023-12-31", "source": "metadata", "note": None}
    january, _, march = document["windows"]
    # January's midpoint is 16 January 12:00, 16.5 days after the start of 31 December.
    assert january["days_since_cutoff"] == 16.5
    assert january["months_since_cutoff"] == round(16.5 / DAYS_PER_MONTH, 1)
    assert march["days_since_cutoff"] == 16.5 + 31 + 29


def test_windows_that_start_before_the_training_cutoff_are_pointed_out():
    document = evaluate(*decaying_binary(months=3), metadata={"training_cutoff": "2024-02-10"}).document
    assert "2024-01, 2024-02" in document["training_cutoff"]["note"]
    assert document["windows"][0]["days_since_cutoff"] < 0


@pytest.mark.parametrize(
    "metadata", [{}, {"train_cutoff": "2023-12-31"}, {"training_cutoff": "last spring"}, {"training_cutoff": 2023}]
)
def test_a_missing_or_unparseable_training_cutoff_is_noted_and_unused(metadata):
    document = evaluate(*decaying_binary(months=2), metadata=metadata).document
    assert document["training_cutoff"]["date"] is None
    assert "training_cutoff" in document["training_cutoff"]["note"]
    assert all(w["days_since_cutoff"] is None for w in document["windows"])


def test_without_a_declared_cutoff_the_end_of_the_benchmarks_training_split_is_the_cutoff():
    options = {"training_split_end": "2023-12-31"}
    document = evaluate(*decaying_binary(months=3), options=options).document
    assert document["training_cutoff"]["date"] == "2023-12-31"
    assert document["training_cutoff"]["source"] == "training split"
    assert "training split ends on 2023-12-31" in document["training_cutoff"]["note"]
    assert document["windows"][0]["days_since_cutoff"] == 16.5
    declared = evaluate(*decaying_binary(months=3), options=options, metadata={"training_cutoff": "2024-01-31"})
    assert declared.document["training_cutoff"]["source"] == "metadata", "what the submitter declares wins"
    with pytest.raises(EvaluatorError, match="training_split_end"):
        evaluate(*decaying_binary(months=2), options={"training_split_end": "last year"})


def test_a_benchmark_with_a_time_column_records_where_its_training_split_ends(lending_benchmark, lending_frames):
    train, _ = lending_frames
    expected = pd.to_datetime(train[lending_benchmark.time_column]).max().date().isoformat()
    created = type(lending_benchmark).objects.get(pk=lending_benchmark.pk)
    assert created.evaluator_options["decay"]["training_split_end"] == expected


def test_psi_equals_a_hand_computation_on_a_small_example():
    times = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"] * 2))
    times[4:] += pd.Timedelta(days=40)
    y_true = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    predictions = Predictions(y_true, None, list(CLASSES), 0.01)
    features = pd.DataFrame(
        {
            "amount": [1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 5.0, 6.0],
            "colour": pd.Series(["a", "a", "b", "b", "a", "c", "c", None], dtype="str"),
        }
    )
    document = evaluate(times, y_true, predictions, features, options={"min_window_rows": 1, "psi_bins": 2}).document
    psi = document["windows"][1]["drift"]["psi"]

    def term(window_share, reference_share):
        window_share, reference_share = max(window_share, PSI_EPSILON), max(reference_share, PSI_EPSILON)
        return (window_share - reference_share) * math.log(window_share / reference_share)

    # amount: the reference median 2.5 cuts (<= 2.5, > 2.5); the later window has all 4 rows above it.
    assert psi["amount"] == pytest.approx(term(0, 0.5) + term(1, 0.5), rel=1e-12)
    # colour: buckets a, b, other/unseen, missing.
    assert psi["colour"] == pytest.approx(term(0.25, 0.5) + term(0, 0.5) + term(0.5, 0) + term(0.25, 0), rel=1e-12)
    assert document["windows"][0]["drift"] == {
        "max_psi": 0.0, "max_feature": None, "level": "stable", "psi": {"amount": 0.0, "colour": 0.0},
    }
    assert document["windows"][1]["drift"]["max_feature"] == "colour"
    assert document["windows"][1]["drift"]["level"] == "major"
    colour = next(f for f in document["drift"]["features"] if f["feature"] == "colour")
    assert colour["buckets"] == ["a", "b", "other/unseen", "missing"]


def test_the_document_is_json_safe_and_states_its_method():
    document = evaluate(*decaying_binary(months=3), resamples=30, seed=4).document
    json.dumps(document, allow_nan=False)
    assert set(document) == {
        "primary_metric", "higher_is_better", "rows", "rows_without_time", "windows", "trend",
        "training_cutoff", "drift", "methodology",
    }
    assert "30 bootstrap resamples" in document["methodology"]["window_metrics"]
    assert "seed 4" in document["methodology"]["window_metrics"]


def test_rows_without_a_time_are_counted_and_left_out():
    times, y_true, predictions, features = decaying_binary(months=2)
    times = times.copy()
    times[:10] = pd.NaT
    document = evaluate(times, y_true, predictions, features).document
    assert document["rows_without_time"] == 10
    assert sum(w["rows"] for w in document["windows"]) == len(times) - 10


@pytest.mark.parametrize(
    "options", [{"windows": "week"}, {"windows": 0}, {"windows": True}, {"min_window_rows": 0}, {"psi_bins": 1}]
)
def test_invalid_options_are_refused_with_the_reason(options):
    with pytest.raises(EvaluatorError, match=next(iter(options))):
        evaluate(*decaying_binary(months=2), options=options)


def test_a_probability_metric_without_probabilities_is_refused():
    times, y_true, predictions, features = decaying_binary(months=2)
    predictions = Predictions(predictions.labels, None, None, 0.01)
    with pytest.raises(EvaluatorError, match="probabilities"):
        evaluate(times, y_true, predictions, features, primary_metric="roc_auc")


@pytest.mark.parametrize("metric", list(REFERENCE_DECAY_PER_MONTH))
def test_it_finds_the_documented_decay_of_the_lending_baseline(lending_results, metric):
    result = lending_results[metric]
    expected = REFERENCE_DECAY_PER_MONTH[metric] * 30 / DAYS_PER_MONTH
    # The reference is this model's per-month slope, which agrees within 0.001 across data seeds,
    # and the slope's bootstrap standard error here is about 0.0004, so 0.001 allows for both; the
    # x axis differs only in scale (window midpoints in days, converted by the mean month's length).
    assert result.metrics["decay_per_30d"] == pytest.approx(expected, abs=0.001)
    low, high = result.intervals["decay_per_30d"]
    assert low < expected < high
    assert result.metrics["relative_drop"] > 0


def test_on_the_lending_benchmark_the_windows_are_its_24_test_months(lending_results):
    windows = lending_results["accuracy"].document["windows"]
    assert [w["label"] for w in windows[:2]] == ["2024-01", "2024-02"] and windows[-1]["label"] == "2025-12"
    assert len(windows) == 24 and all(w["in_fit"] for w in windows)
    assert [w["months_since_cutoff"] for w in windows[:3]] == [0.5, 1.5, 2.5]


def test_psi_finds_the_inflation_in_income_and_loan_amount_but_not_in_gender(lending_results):
    document = lending_results["accuracy"].document
    drift = document["drift"]
    assert drift["reference_window"] == "2024-01"
    by_feature = {entry["feature"]: entry for entry in drift["features"]}
    assert [entry["feature"] for entry in drift["features"][:2]] == ["income", "loan_amount"]
    assert by_feature["income"]["level"] == "major"
    assert by_feature["loan_amount"]["level"] in ("moderate", "major")
    # Gender's shares never change: two samples of 1,000 rows from one two-category distribution
    # differ by a PSI of 0.002 on average and rarely above 0.015, far below moderate (0.1).
    assert by_feature["gender"]["max_psi"] < 0.03
    assert document["windows"][-1]["drift"]["max_feature"] == "income"
