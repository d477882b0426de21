import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
)
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from evaluators.base import EvaluationInput, EvaluatorError
from evaluators.fairness import CANONICAL, DEFAULT_OPTIONS, FairnessEvaluator, _Measures, _resampled
from evaluators.performance import bootstrap_indices
from evaluators.sandbox import Predictions

DATA_DIR = Path(__file__).resolve().parent.parent / "leaderboard" / "demo" / "data"
ADULT_CLASSES = ["<=50K", ">50K"]
POSITIVE = ">50K"
CHECKED_RESAMPLES = (0, 7, 19, 33)


def evaluation_input(*, task, y_true, labels, features, sensitive, probabilities=None, classes=None, **overrides):
    classes = list(ADULT_CLASSES if classes is None else classes)
    fields = dict(
        task=task,
        y_true=np.asarray(y_true),
        predictions=Predictions(
            labels=np.asarray(labels),
            probabilities=probabilities,
            classes=None if probabilities is None else classes,
            predict_seconds=0.01,
        ),
        features=features,
        sensitive=sensitive,
        times=None,
        classes=[] if task == "regression" else classes,
        positive_label=POSITIVE if task == "binary" else None,
        primary_metric={"binary": "accuracy", "multiclass": "accuracy", "regression": "rmse"}[task],
        primary_higher_is_better=task != "regression",
        resamples=40,
        seed=5,
        metadata={},
        options=dict(DEFAULT_OPTIONS),
        artifact_bytes=1000,
        artifact_format="skops",
    )
    return EvaluationInput(**{**fields, **overrides})


def with_options(data: EvaluationInput, **options) -> EvaluationInput:
    return EvaluationInput(**{**data.__dict__, "options": {**data.options, **options}})


def evaluate(data: EvaluationInput):
    return FairnessEvaluator().evaluate(data)


def grouping(document: dict, name: str) -> dict:
    return next(entry for entry in document["groupings"] if entry["name"] == name)


def groups_by_label(document: dict, name: str) -> dict:
    return {group["label"]: group for group in grouping(document, name)["groups"]}


def value(group: dict, metric: str):
    return group["metrics"][metric]["value"]


def binary01(values) -> np.ndarray:
    """fairlearn's rate metrics take 0/1 labels unless told the positive label."""
    return (np.asarray(values) == POSITIVE).astype(int)


@pytest.fixture(scope="module")
def adult():
    """The Adult test set with a logistic regression's predictions (trained on part of the
    training split, to keep the test quick)."""
    train = pd.read_parquet(DATA_DIR / "adult_train.parquet").sample(6000, random_state=0)
    test = pd.read_parquet(DATA_DIR / "adult_test.parquet")
    features = [column for column in train.columns if column != "income"]
    text = [column for column in features if not pd.api.types.is_numeric_dtype(train[column])]
    numeric = [column for column in features if column not in text]
    encode = ColumnTransformer(
        [("text", OneHotEncoder(handle_unknown="ignore"), text), ("numeric", StandardScaler(), numeric)]
    )
    model = Pipeline([("encode", encode), ("model", LogisticRegression(max_iter=1000))])
    model.fit(train[features], train["income"])
    assert list(model.classes_) == ADULT_CLASSES
    return evaluation_input(
        task="binary",
        y_true=test["income"].to_numpy(),
        labels=model.predict(test[features]),
        probabilities=model.predict_proba(test[features]),
        features=test[features],
        sensitive=test[["sex", "race"]],
    )


@pytest.fixture(scope="module")
def adult_result(adult):
    return evaluate(adult)


def planted_case(n_rows: int = 4000, seed: int = 0):
    """Group B is misclassified three times as often as group A, and group C (12 rows) always;
    region "north" and the top income bin are weak slices; group B is selected less often."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["A", "B"], n_rows, p=[0.7, 0.3]).astype(object)
    group[:12] = "C"
    region = rng.choice(["north", "south", "east", "west"], n_rows, p=[0.1, 0.3, 0.3, 0.3])
    income = rng.lognormal(10, 0.5, n_rows)
    band = rng.choice(["young", "old"], n_rows)
    y_true = np.where(rng.random(n_rows) < 0.35, POSITIVE, "<=50K")
    error_rate = np.select([group == "B", group == "C"], [0.30, 1.0], 0.10)
    error_rate = np.where(region == "north", 0.45, error_rate)
    error_rate = np.where((income > np.quantile(income, 0.8)) & (group == "A"), 0.25, error_rate)
    flip = rng.random(n_rows) < error_rate
    labels = np.where(flip, np.where(y_true == POSITIVE, "<=50K", POSITIVE), y_true)
    # 40% of group B's positive predictions turn negative: B is selected less often than A.
    demote = (group == "B") & (labels == POSITIVE) & (rng.random(n_rows) < 0.4)
    labels = np.where(demote, "<=50K", labels)
    features = pd.DataFrame({"region": region, "income": income, "band": band})
    sensitive = pd.DataFrame({"group": group.astype(str), "band": band})
    return evaluation_input(task="binary", y_true=y_true, labels=labels, features=features, sensitive=sensitive)


@pytest.fixture(scope="module")
def planted():
    return planted_case()


@pytest.fixture(scope="module")
def planted_result(planted):
    return evaluate(planted)


def multiclass_case(n_rows: int = 3000, seed: int = 1):
    rng = np.random.default_rng(seed)
    classes = ["bird", "cat", "dog"]
    y_true = rng.choice(classes, n_rows)
    region = rng.choice(["coast", "inland"], n_rows, p=[0.6, 0.4])
    size = rng.normal(size=n_rows)
    wrong = rng.random(n_rows) < np.where(region == "inland", 0.4, 0.15)
    labels = np.where(wrong, rng.choice(classes, n_rows), y_true)
    logits = rng.normal(size=(n_rows, 3)) + 2 * (np.asarray(classes) == labels[:, None])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return evaluation_input(
        task="multiclass",
        y_true=y_true,
        labels=labels,
        probabilities=probabilities,
        classes=classes,
        features=pd.DataFrame({"region": region, "size": size}),
        sensitive=pd.DataFrame({"region": region}),
        primary_metric="f1_macro",
    )


def regression_case(n_rows: int = 3000, seed: int = 2):
    rng = np.random.default_rng(seed)
    city = rng.choice(["Oslo", "Lima", "Pune"], n_rows, p=[0.5, 0.3, 0.2])
    y_true = rng.normal(100, 20, n_rows)
    noise = np.where(city == "Pune", 15.0, 5.0)
    y_pred = y_true + rng.normal(0, noise)
    return evaluation_input(
        task="regression",
        y_true=y_true,
        labels=y_pred,
        features=pd.DataFrame({"city": city, "floor": rng.integers(0, 12, n_rows)}),
        sensitive=pd.DataFrame({"city": city}),
    )


# --- Equality with fairlearn and scikit-learn ------------------------------------------------


def test_every_scalar_is_fairlearns_value_on_the_worst_sensitive_column(adult, adult_result):
    y_true, y_pred = binary01(adult.y_true), binary01(adult.predictions.labels)
    by_column = {
        column: {
            "demographic_parity_difference": demographic_parity_difference(
                y_true, y_pred, sensitive_features=adult.sensitive[column]
            ),
            "equalized_odds_difference": equalized_odds_difference(
                y_true, y_pred, sensitive_features=adult.sensitive[column], agg="worst_case"
            ),
            "worst_group_accuracy": MetricFrame(
                metrics=accuracy_score, y_true=y_true, y_pred=y_pred, sensitive_features=adult.sensitive[column]
            ).group_min(),
            "accuracy_gap": MetricFrame(
                metrics=accuracy_score, y_true=y_true, y_pred=y_pred, sensitive_features=adult.sensitive[column]
            ).difference(),
        }
        for column in ("sex", "race")
    }
    for key, result in adult_result.metrics.items():
        values = {column: by_column[column][key] for column in by_column}
        worst = min if key == "worst_group_accuracy" else max
        assert result == pytest.approx(worst(values.values()), abs=1e-12), key
        assert adult_result.document["scalars"][key]["column"] == worst(values, key=values.get)
    assert set(adult_result.metrics) == {
        "demographic_parity_difference",
        "equalized_odds_difference",
        "worst_group_accuracy",
        "accuracy_gap",
    }


def fairlearn_by_group(y_true, y_pred, sensitive_features) -> pd.DataFrame:
    return MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            "selection_rate": partial(selection_rate, pos_label=POSITIVE),
            "true_positive_rate": partial(recall_score, pos_label=POSITIVE),
            "false_positive_rate": partial(false_positive_rate, pos_label=POSITIVE),
            "false_negative_rate": partial(false_negative_rate, pos_label=POSITIVE),
        },
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sensitive_features,
    ).by_group


@pytest.mark.parametrize("column", ["sex", "race"])
def test_each_groups_rates_equal_metricframes_by_group(adult, adult_result, column):
    expected = fairlearn_by_group(adult.y_true, adult.predictions.labels, adult.sensitive[column])
    groups = groups_by_label(adult_result.document, column)
    assert set(groups) == set(expected.index)
    for label, row in expected.iterrows():
        for metric, reference in row.items():
            assert value(groups[label], metric) == pytest.approx(reference, abs=1e-12), (label, metric)
        assert groups[label]["count"] == int((adult.sensitive[column] == label).sum())


def test_intersectional_groups_equal_metricframe_with_both_sensitive_columns(adult, adult_result):
    expected = fairlearn_by_group(adult.y_true, adult.predictions.labels, adult.sensitive[["sex", "race"]])
    groups = groups_by_label(adult_result.document, "sex & race")
    assert len(groups) == len(expected) == 10
    for (sex, race), row in expected.iterrows():
        group = groups[f"sex={sex} & race={race}"]
        for metric, reference in row.items():
            assert value(group, metric) == pytest.approx(reference, abs=1e-12), (sex, race, metric)
    assert grouping(adult_result.document, "sex & race")["reference"] == {
        "group": "sex=Male & race=White",
        "chosen_by": "the reference groups of its columns",
    }


def test_each_groups_primary_metric_is_scikit_learns_on_its_rows(adult):
    result = evaluate(EvaluationInput(**{**adult.__dict__, "primary_metric": "roc_auc", "resamples": 0}))
    scores = adult.predictions.probabilities[:, 1]
    expected = MetricFrame(
        metrics=roc_auc_score, y_true=binary01(adult.y_true), y_pred=scores, sensitive_features=adult.sensitive["race"]
    ).by_group
    groups = groups_by_label(result.document, "race")
    for label, reference in expected.items():
        assert value(groups[label], "roc_auc") == pytest.approx(reference, rel=1e-12)
    overall = result.document["overall"]["roc_auc"]["value"]
    assert overall == pytest.approx(roc_auc_score(binary01(adult.y_true), scores))


def resampled_group_values(data: EvaluationInput, primary: str, rows_of_group: np.ndarray):
    """A group's metrics on the test set (element 0) and each resample, and the resampled rows."""
    indices = bootstrap_indices(len(data.y_true), resamples=data.resamples, seed=data.seed)
    (values,) = _resampled([_Measures(data, primary).for_rows(np.flatnonzero(rows_of_group))], indices)
    return values, [indices[r][rows_of_group[indices[r]]] for r in range(data.resamples)]


SKLEARN_PRIMARY = {
    "balanced_accuracy": lambda y, labels, scores: balanced_accuracy_score(y, labels),
    "f1_macro": lambda y, labels, scores: f1_score(y, labels, average="macro"),
    "roc_auc": lambda y, labels, scores: roc_auc_score(y == POSITIVE, scores[:, 1]),
    "log_loss": lambda y, labels, scores: log_loss(y, scores, labels=ADULT_CLASSES),
}


@pytest.mark.parametrize("primary", list(SKLEARN_PRIMARY))
def test_group_values_on_each_resample_equal_the_metrics_on_the_resampled_rows(adult, primary):
    is_black = (adult.sensitive["race"] == "Black").to_numpy()
    values, resampled_rows = resampled_group_values(adult, primary, is_black)
    for r in CHECKED_RESAMPLES:
        rows = resampled_rows[r]
        y_true, y_pred = adult.y_true[rows], adult.predictions.labels[rows]
        expected = fairlearn_by_group(y_true, y_pred, np.zeros(len(rows))).iloc[0].to_dict()
        expected[primary] = SKLEARN_PRIMARY[primary](y_true, y_pred, adult.predictions.probabilities[rows])
        for metric, reference in expected.items():
            assert values[metric][1 + r] == pytest.approx(reference, rel=1e-12), (r, metric)


@pytest.mark.parametrize("primary", ["rmse", "r2"])
def test_regression_group_values_on_each_resample_equal_scikit_learns_on_the_resampled_rows(primary):
    data = regression_case()
    values, resampled_rows = resampled_group_values(data, primary, (data.sensitive["city"] == "Lima").to_numpy())
    metric = {"rmse": root_mean_squared_error, "r2": r2_score}[primary]
    for r in CHECKED_RESAMPLES:
        y_true, y_pred = data.y_true[resampled_rows[r]], data.predictions.labels[resampled_rows[r]]
        assert values[primary][1 + r] == pytest.approx(metric(y_true, y_pred), rel=1e-12)
        assert values["mae"][1 + r] == pytest.approx(mean_absolute_error(y_true, y_pred), rel=1e-12)


def test_scalars_on_each_resample_equal_fairlearns_on_the_resampled_rows(adult, adult_result):
    indices = bootstrap_indices(len(adult.y_true), resamples=adult.resamples, seed=adult.seed)
    for r in CHECKED_RESAMPLES:
        rows = indices[r]
        y_true, y_pred = binary01(adult.y_true[rows]), binary01(adult.predictions.labels[rows])
        expected = max(
            equalized_odds_difference(y_true, y_pred, sensitive_features=adult.sensitive[column].to_numpy()[rows])
            for column in ("sex", "race")
        )
        assert adult_result.document["resample_values"]["equalized_odds_difference"][r] == pytest.approx(expected)
    values = np.array(adult_result.document["resample_values"]["accuracy_gap"])
    assert np.percentile(values, [2.5, 97.5]).tolist() == adult_result.intervals["accuracy_gap"]


# --- What the report shows -------------------------------------------------------------------


def test_a_classifier_that_errs_more_for_one_group_shows_the_planted_gap(planted_result):
    scalars = planted_result.document["scalars"]
    assert scalars["accuracy_gap"]["column"] == "group"
    assert scalars["accuracy_gap"]["groups"] == {"lowest": "B", "highest": "A"}
    assert 0.15 < planted_result.metrics["accuracy_gap"] < 0.35
    low, high = planted_result.intervals["accuracy_gap"]
    assert low < planted_result.metrics["accuracy_gap"] < high
    assert scalars["worst_group_accuracy"]["groups"] == {"worst": "B"}
    assert scalars["demographic_parity_difference"]["groups"] == {"lowest": "B", "highest": "A"}


def test_small_groups_are_listed_and_flagged_but_left_out_of_the_gaps(planted, planted_result):
    groups = groups_by_label(planted_result.document, "group")
    assert groups["C"]["count"] == 12 and groups["C"]["small"] is True
    assert value(groups["C"], "accuracy") == 0.0
    assert groups["A"]["small"] is False and groups["B"]["small"] is False
    ranked = planted.sensitive["group"].to_numpy() != "C"
    y_true, y_pred = binary01(planted.y_true), binary01(planted.predictions.labels)
    expected = demographic_parity_difference(
        y_true[ranked], y_pred[ranked], sensitive_features=planted.sensitive["group"][ranked]
    )
    column = grouping(planted_result.document, "group")["disparities"]
    assert column["demographic_parity_difference"]["value"] == pytest.approx(expected, abs=1e-12)
    assert column["worst_group_accuracy"]["worst"] == "B"
    assert "small" in planted_result.document["methodology"]["small_groups"]


def test_differences_and_ratios_compare_each_group_with_the_overall_value_and_the_largest_group(planted_result):
    document = planted_result.document
    assert grouping(document, "group")["reference"] == {"group": "A", "chosen_by": "the largest group"}
    groups = groups_by_label(document, "group")
    overall = document["overall"]["selection_rate"]["value"]
    b = groups["B"]["metrics"]["selection_rate"]
    reference = value(groups["A"], "selection_rate")
    assert b["vs_overall"]["difference"]["value"] == pytest.approx(b["value"] - overall)
    assert b["vs_overall"]["ratio"]["value"] == pytest.approx(b["value"] / overall)
    assert b["vs_reference"]["difference"]["value"] == pytest.approx(b["value"] - reference)
    assert b["vs_reference"]["ratio"]["value"] == pytest.approx(b["value"] / reference)
    low, high = b["vs_reference"]["difference"]["interval"]
    assert low < b["vs_reference"]["difference"]["value"] < high < 0
    assert groups["A"]["metrics"]["accuracy"]["vs_reference"]["ratio"]["value"] == 1.0


def test_the_reference_groups_option_chooses_what_each_group_is_compared_with(planted):
    result = evaluate(with_options(planted, reference_groups={"group": "B"}))
    document = result.document
    assert grouping(document, "group")["reference"] == {"group": "B", "chosen_by": "the reference_groups option"}
    assert document["methodology"]["reference_groups"]["group"] == "B"
    groups = groups_by_label(document, "group")
    a = groups["A"]["metrics"]["accuracy"]
    assert a["vs_reference"]["difference"]["value"] == pytest.approx(a["value"] - value(groups["B"], "accuracy"))
    band = document["methodology"]["reference_groups"]["band"]
    assert grouping(document, "group & band")["reference"] == {
        "group": f"group=B & band={band}",
        "chosen_by": "the reference groups of its columns",
    }


def test_an_unknown_reference_group_fails_naming_the_groups_it_could_be(planted):
    with pytest.raises(EvaluatorError, match=r"'Z' for group is not one of its groups \(A, B, C\)"):
        evaluate(with_options(planted, reference_groups={"group": "Z"}))
    with pytest.raises(EvaluatorError, match="not a sensitive column"):
        evaluate(with_options(planted, reference_groups={"gender": "F"}))


def test_the_four_fifths_rule_fails_a_column_whose_selection_rates_differ_too_much(planted, planted_result):
    rule = planted_result.document["four_fifths"]
    ranked = planted.sensitive["group"].to_numpy() != "C"
    y_true, y_pred = binary01(planted.y_true), binary01(planted.predictions.labels)
    for column, mask in (("group", ranked), ("band", slice(None))):
        features = planted.sensitive[column][mask]
        expected = demographic_parity_ratio(y_true[mask], y_pred[mask], sensitive_features=features)
        assert rule["columns"][column]["ratio"]["value"] == pytest.approx(expected, abs=1e-12)
    assert rule["columns"]["group"]["passes"] is False
    assert rule["columns"]["group"]["lowest"] == "B"
    assert rule["columns"]["band"]["passes"] is True
    assert rule["passes"] is False


def test_the_four_fifths_rule_passes_when_every_column_does(planted):
    result = evaluate(EvaluationInput(**{**planted.__dict__, "sensitive": planted.sensitive[["band"]]}))
    assert result.document["four_fifths"]["passes"] is True


def test_the_worst_slice_finder_finds_the_planted_weak_slices(planted_result):
    slices = planted_result.document["worst_slices"]
    first, second = slices["slices"][:2]
    assert (first["column"], first["value"]) == ("region", "north")
    assert second["column"] == "income" and second["value"].startswith("(")
    assert first["accuracy"]["value"] < second["accuracy"]["value"] < first["overall"]
    low, high = first["accuracy"]["interval"]
    assert low < first["accuracy"]["value"] < high
    assert first["difference"]["value"] == pytest.approx(first["accuracy"]["value"] - first["overall"])
    assert all(entry["count"] >= slices["min_size"] == 50 for entry in slices["slices"])
    assert len(slices["slices"]) <= DEFAULT_OPTIONS["max_slices"]


def test_slices_rank_by_the_primary_metric_in_its_own_direction():
    data = regression_case()
    slices = evaluate(data).document["worst_slices"]
    assert slices["metric"] == "rmse" and slices["higher_is_better"] is False
    values = [entry["rmse"]["value"] for entry in slices["slices"]]
    assert values == sorted(values, reverse=True)
    assert (slices["slices"][0]["column"], slices["slices"][0]["value"]) == ("city", "Pune")


def test_missing_values_form_a_group_and_a_slice_of_their_own(planted):
    features = planted.features.assign(region=planted.features["region"].where(planted.features["region"] != "east"))
    sensitive = planted.sensitive.assign(band=planted.sensitive["band"].where(planted.sensitive["band"] != "old"))
    result = evaluate(EvaluationInput(**{**planted.__dict__, "features": features, "sensitive": sensitive}))
    assert set(groups_by_label(result.document, "band")) == {"young", "(missing)"}
    considered = evaluate(with_options(EvaluationInput(**{**planted.__dict__, "features": features}), max_slices=100))
    considered = considered.document["worst_slices"]["slices"]
    assert ("region", "(missing)") in {(entry["column"], entry["value"]) for entry in considered}


def test_numeric_columns_are_sliced_into_quantile_bins_and_small_ones_by_value(planted):
    result = evaluate(with_options(planted, max_slices=100, numeric_bins=4))
    income = [entry["value"] for entry in result.document["worst_slices"]["slices"] if entry["column"] == "income"]
    assert len(income) == 4 and sum(label.startswith("[") for label in income) == 1
    data = regression_case()
    slices = evaluate(with_options(data, max_slices=100, numeric_bins=20)).document["worst_slices"]["slices"]
    floors = {entry["value"] for entry in slices if entry["column"] == "floor"}
    assert floors == {str(floor) for floor in range(12)}


def test_without_probabilities_a_roc_auc_benchmark_ranks_groups_on_accuracy_and_says_so(planted):
    result = evaluate(EvaluationInput(**{**planted.__dict__, "primary_metric": "roc_auc"}))
    primary = result.document["primary_metric"]
    assert primary["requested"] == "roc_auc" and primary["used"] == "accuracy"
    assert "needs predicted probabilities" in primary["note"]
    assert "roc_auc" not in groups_by_label(result.document, "group")["A"]["metrics"]
    assert result.document["worst_slices"]["metric"] == "accuracy"


@pytest.mark.filterwarnings("ignore:Recall is ill-defined")
def test_a_group_without_positive_rows_has_no_true_positive_rate_where_fairlearn_reports_zero(planted):
    y_true = np.where(planted.sensitive["group"].to_numpy() == "B", "<=50K", planted.y_true)
    result = evaluate(EvaluationInput(**{**planted.__dict__, "y_true": y_true}))
    groups = groups_by_label(result.document, "group")
    assert groups["B"]["metrics"]["true_positive_rate"]["value"] is None
    assert groups["B"]["metrics"]["true_positive_rate"]["interval"] is None
    assert groups["B"]["metrics"]["false_positive_rate"]["value"] is not None
    fairlearn_b = fairlearn_by_group(y_true, planted.predictions.labels, planted.sensitive["group"])
    assert fairlearn_b.loc["B", "true_positive_rate"] == 0.0
    json.dumps(result.document, allow_nan=False)


# --- Other tasks ---------------------------------------------------------------------------------


def test_multiclass_reports_per_class_recall_and_selection_rate_and_no_binary_only_scalars():
    data = multiclass_case()
    result = evaluate(data)
    expected = MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            **{f"recall[{c}]": partial(recall_score, labels=[c], average="macro") for c in data.classes},
            **{f"selection_rate[{c}]": partial(selection_rate, pos_label=c) for c in data.classes},
        },
        y_true=data.y_true,
        y_pred=data.predictions.labels,
        sensitive_features=data.sensitive["region"],
    )
    groups = groups_by_label(result.document, "region")
    for label, row in expected.by_group.iterrows():
        for metric, reference in row.items():
            assert value(groups[label], metric) == pytest.approx(reference, abs=1e-12), (label, metric)
        assert value(groups[label], "f1_macro") is not None
    assert set(result.metrics) == {"worst_group_accuracy", "accuracy_gap"}
    assert result.metrics["worst_group_accuracy"] == pytest.approx(expected.group_min()["accuracy"])
    assert result.metrics["accuracy_gap"] == pytest.approx(expected.difference()["accuracy"])
    assert result.document["scalars"]["accuracy_gap"]["groups"] == {"lowest": "inland", "highest": "coast"}
    not_reported = result.document["not_reported"]
    assert set(not_reported) == {"demographic_parity_difference", "equalized_odds_difference", "four_fifths"}
    assert "binary classification only" in not_reported["demographic_parity_difference"]
    assert result.document["four_fifths"] is None
    assert "recall[c]" in result.document["methodology"]["definitions"]


def test_regression_reports_group_mae_and_mean_prediction_but_no_canonical_scalars():
    data = regression_case()
    result = evaluate(data)
    mae = MetricFrame(
        metrics=mean_absolute_error,
        y_true=data.y_true,
        y_pred=data.predictions.labels,
        sensitive_features=data.sensitive["city"],
    )
    groups = groups_by_label(result.document, "city")
    for label, reference in mae.by_group.items():
        assert value(groups[label], "mae") == pytest.approx(reference, rel=1e-12)
        rows = data.sensitive["city"].to_numpy() == label
        assert value(groups[label], "mean_prediction") == pytest.approx(data.predictions.labels[rows].mean(), rel=1e-12)
        assert value(groups[label], "rmse") is not None
    assert result.metrics == {} and result.intervals == {}
    scalars = result.document["scalars"]
    assert scalars["worst_group_mae"]["value"] == pytest.approx(mae.group_max())
    assert scalars["worst_group_mae"]["groups"] == {"worst": "Pune"}
    assert scalars["mae_gap"]["value"] == pytest.approx(mae.difference())
    not_reported = result.document["not_reported"]
    assert set(not_reported) == {*CANONICAL, "four_fifths"}
    assert "worst_group_mae" in not_reported["worst_group_accuracy"]


# --- The interface -----------------------------------------------------------------------------


def test_every_document_is_strict_json(adult_result, planted_result):
    for result in (adult_result, planted_result, evaluate(multiclass_case()), evaluate(regression_case())):
        assert json.loads(json.dumps(result.document, allow_nan=False)) == result.document
        json.dumps({"metrics": result.metrics, "intervals": result.intervals}, allow_nan=False)


def test_the_document_carries_its_methodology(adult_result):
    methodology = adult_result.document["methodology"]
    assert methodology["resamples"] == 40 and methodology["seed"] == 5
    assert methodology["min_group_size"] == 30
    assert methodology["reference_groups"] == {"sex": "Male", "race": "White", "sex & race": "sex=Male & race=White"}
    for key in ("accuracy", "selection_rate", "true_positive_rate", "demographic_parity_difference", "vs_reference"):
        assert methodology["definitions"][key]


def test_it_applies_only_when_the_benchmark_has_a_sensitive_column(planted):
    evaluator = FairnessEvaluator()
    assert evaluator.applies(planted)
    assert not evaluator.applies(EvaluationInput(**{**planted.__dict__, "sensitive": planted.sensitive[[]]}))
    assert evaluator.probe_params(planted) == {}
    assert (evaluator.name, evaluator.probes, evaluator.queue) == ("fairness", (), "evaluate")
