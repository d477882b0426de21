import itertools
import math

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression

from evaluators.base import EvaluationInput, EvaluatorError
from evaluators.interpretability import (
    DEFAULT_OPTIONS,
    FORMAT_TOLERANCE,
    InterpretabilityEvaluator,
    sensitive_attribution_share,
    shap_features_90,
)
from evaluators.model_runner import OnnxModel, SkopsModel
from evaluators.probes.explain import permutation_shapley, probe
from evaluators.sandbox import Limits, ProbeOutcome
from leaderboard.demo.baselines import onnx_inputs
from leaderboard.demo.synthetic import ADULT_SPEC
from tests import model_factories as factories
from tests.conftest import baseline_named

GENEROUS = Limits(memory_bytes=2 * 2**30, cpu_seconds=60, wall_seconds=60)
SEED = 3


@pytest.fixture(scope="module")
def adult_features(adult_frames):
    return adult_frames[1][ADULT_SPEC["feature_columns"]]


def loaded(tmp_path, data: bytes, *, artifact_format: str = "skops", task: str = "binary"):
    path = tmp_path / f"model.{artifact_format}"
    path.write_bytes(data)
    if artifact_format == "onnx":
        return OnnxModel(str(path), task=task)
    return SkopsModel(str(path), trusted=factories.DEFAULT_TRUSTED, task=task)


def params(**overrides) -> dict:
    return {
        "seed": SEED,
        "positive_label": ">50K",
        "classes": ["<=50K", ">50K"],
        **DEFAULT_OPTIONS,
        "max_rows": 40,
        **overrides,
    }


def assert_adds_up(result):
    arrays = result.arrays
    np.testing.assert_allclose(arrays["base_values"] + arrays["values"].sum(axis=1), arrays["outputs"], atol=1e-9)
    assert result.document["additivity"]["passed"]
    assert result.document["additivity"]["max_abs_error"] < 1e-9


# --- The estimator -------------------------------------------------------------------------


def exact_shapley(function, row: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Interventional Shapley values by their definition: every coalition of columns, weighted."""
    d = len(row)

    def value(coalition) -> float:
        masked = background.copy()
        masked[:, list(coalition)] = row[list(coalition)]
        return function(masked).mean()

    values = np.zeros(d)
    for j in range(d):
        others = [k for k in range(d) if k != j]
        for size in range(d):
            weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            for coalition in itertools.combinations(others, size):
                values[j] += weight * (value((*coalition, j)) - value(coalition))
    return values


def small_game(seed: int):
    """Integer rows and background of four columns (with repeated values, as codes have)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4, (3, 4)), rng.integers(0, 4, (25, 4))


def nonlinear(codes: np.ndarray) -> np.ndarray:
    x = codes.astype(float)
    return np.tanh(x[:, 0] * x[:, 1] - x[:, 2]) * (1 + x[:, 3]) ** 0.5 + x[:, 0] * x[:, 2] * x[:, 3]


def pairwise(codes: np.ndarray) -> np.ndarray:
    x = codes.astype(float)
    return x[:, 0] * x[:, 1] - 2 * x[:, 2] + 0.5 * x[:, 1] * x[:, 3] + x[:, 3] ** 2


def test_every_ordering_gives_the_exact_shapley_values_of_any_model():
    rows, background = small_game(0)
    every = np.array(list(itertools.permutations(range(4))))
    orderings = np.broadcast_to(every, (len(rows), *every.shape))
    values, base_value, _ = permutation_shapley(nonlinear, background, rows, orderings)
    expected = np.array([exact_shapley(nonlinear, row, background) for row in rows])
    np.testing.assert_allclose(values[:, :, 0], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(base_value, [nonlinear(background).mean()])


def test_every_ordering_gives_what_shaps_exact_explainer_gives_with_the_same_background():
    """The reference library, on the same model and background: Holdout's estimator is shap's
    PermutationExplainer algorithm in numpy, so with every ordering it must equal shap's exact values."""
    import shap

    rows, background = small_game(3)
    every = np.array(list(itertools.permutations(range(4))))
    values, base_value, _ = permutation_shapley(
        nonlinear, background, rows, np.broadcast_to(every, (len(rows), *every.shape))
    )
    masker = shap.maskers.Independent(background.astype(float), max_samples=len(background))
    reference = shap.explainers.Exact(lambda x: nonlinear(x.astype(int)), masker)(rows.astype(float))
    np.testing.assert_allclose(values[:, :, 0], reference.values, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(base_value[0], reference.base_values[0], rtol=1e-12)


def test_one_antithetic_ordering_is_exact_for_a_model_with_pairwise_interactions_only():
    rows, background = small_game(1)
    orderings = np.random.default_rng(2).random((len(rows), 1, 4)).argsort(axis=2)
    values, _, _ = permutation_shapley(pairwise, background, rows, orderings)
    expected = np.array([exact_shapley(pairwise, row, background) for row in rows])
    np.testing.assert_allclose(values[:, :, 0], expected, rtol=1e-12, atol=1e-12)


def test_each_distinct_masked_row_is_predicted_once():
    rows, background = small_game(3)
    orderings = np.random.default_rng(4).random((len(rows), 2, 4)).argsort(axis=2)
    predicted = []

    def counting(codes):
        predicted.append(codes)
        return nonlinear(codes)

    _, _, count = permutation_shapley(counting, background, rows, orderings)
    (codes,) = predicted
    assert count == len(codes) == len(np.unique(codes, axis=0))
    # Every background row and every explained row is among them: the passes' two ends.
    assert {tuple(r) for r in np.concatenate([rows, background])} <= {tuple(r) for r in codes}


# --- One explainer, one scale, for every format ---------------------------------------------


def test_the_demo_logistic_regression_is_explained_on_its_probability_of_the_positive_class(
    tmp_path, adult_baselines, adult_features
):
    model = loaded(tmp_path, baseline_named(adult_baselines, "skops:Logistic regression").data)
    result = probe(model, adult_features, params())
    document = result.document
    assert document["explainer"] == "permutation" and document["feature_perturbation"] == "interventional"
    assert document["output"] == {"kind": "probability", "of": "the positive class", "class": ">50K"}
    assert document["rows_explained"] == 40 and document["background_rows_used"] == DEFAULT_OPTIONS["background_rows"]
    assert document["permutations"] == DEFAULT_OPTIONS["permutations"]
    assert document["evaluations_per_row"] == DEFAULT_OPTIONS["permutations"] * 2 * len(adult_features.columns)
    assert result.arrays["values"].shape == (40, len(adult_features.columns))
    explained = adult_features.iloc[result.arrays["rows"]]
    np.testing.assert_allclose(result.arrays["outputs"], model.estimator.predict_proba(explained)[:, 1])
    assert_adds_up(result)


def test_the_onnx_baseline_keeps_its_text_columns_as_text(tmp_path, adult_baselines, adult_features):
    data = baseline_named(adult_baselines, "onnx:").data
    result = probe(loaded(tmp_path, data, artifact_format="onnx"), adult_features, params(max_rows=5))
    assert result.document["output"] == {"kind": "probability", "of": "the positive class", "class": ">50K"}
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    _, probabilities = session.run(None, onnx_inputs(adult_features.iloc[result.arrays["rows"]]))
    np.testing.assert_allclose(result.arrays["outputs"], probabilities[:, 1])
    # The text columns matter to the model, so they were varied as text, not as numbers.
    text_columns = [c for c in adult_features.columns if not pd.api.types.is_numeric_dtype(adult_features[c])]
    assert np.abs(result.arrays["values"][:, [result.document["columns"].index(c) for c in text_columns]]).sum() > 0
    assert_adds_up(result)


def assert_equal_objectives(skops_result, onnx_result, sensitive: pd.DataFrame):
    """Both artifacts' attributions and objectives agree within the module's stated tolerance."""
    for key in ("rows", "values", "base_values", "outputs"):
        np.testing.assert_allclose(onnx_result.arrays[key], skops_result.arrays[key], rtol=0, atol=FORMAT_TOLERANCE)
    evaluator = InterpretabilityEvaluator()
    reports = [
        evaluator.evaluate(evaluation_input(sensitive=sensitive, probes={"explain": outcome_of(result)}))
        for result in (skops_result, onnx_result)
    ]
    skops_report, onnx_report = reports
    assert onnx_report.metrics["shap_features_90"] == skops_report.metrics["shap_features_90"]
    assert onnx_report.intervals["shap_features_90"] == skops_report.intervals["shap_features_90"]
    share = "sensitive_attribution_share"
    assert skops_report.metrics[share] > 0
    assert onnx_report.metrics[share] == pytest.approx(skops_report.metrics[share], rel=0, abs=FORMAT_TOLERANCE)
    np.testing.assert_allclose(onnx_report.intervals[share], skops_report.intervals[share], atol=FORMAT_TOLERANCE)
    assert onnx_report.document["output"] == skops_report.document["output"]
    assert onnx_report.document["tolerance"]["between_formats"] == FORMAT_TOLERANCE


def outcome_of(result) -> ProbeOutcome:
    return ProbeOutcome(result.document, result.arrays, None, result.document["seconds"])


def test_the_skops_and_onnx_copies_of_the_demo_logistic_regression_get_equal_objectives(
    tmp_path, adult_baselines, adult_frames, adult_features
):
    skops_model = loaded(tmp_path, baseline_named(adult_baselines, "skops:Logistic regression").data)
    onnx_model = loaded(tmp_path, baseline_named(adult_baselines, "onnx:").data, artifact_format="onnx")
    budget = params(max_rows=DEFAULT_OPTIONS["max_rows"])
    results = [probe(model, adult_features, budget) for model in (skops_model, onnx_model)]
    assert_equal_objectives(*results, sensitive=adult_frames[1][ADULT_SPEC["sensitive_columns"]])


def test_the_skops_and_onnx_copies_of_a_random_forest_get_equal_objectives(tmp_path):
    features, labels = factories.census(n_rows=600, seed=1)
    forest = factories.random_forest(features, labels)
    test, _ = factories.census(n_rows=400, seed=2)
    skops_model = loaded(tmp_path, factories.skops_bytes(forest))
    onnx_model = loaded(tmp_path, factories.onnx_from_pipeline(forest, features), artifact_format="onnx")
    results = [probe(model, test, params(max_rows=100)) for model in (skops_model, onnx_model)]
    np.testing.assert_allclose(
        results[0].arrays["outputs"], forest.predict_proba(test.iloc[results[0].arrays["rows"]])[:, 1]
    )
    sensitive = pd.DataFrame({"education": test.education, "occupation": test.occupation})
    assert_equal_objectives(*results, sensitive=sensitive)


def test_a_second_run_on_the_same_artifact_gives_identical_numbers(
    tmp_path, adult_baselines, adult_frames, adult_features
):
    data = baseline_named(adult_baselines, "skops:Gradient boosting").data
    first, second = (probe(loaded(tmp_path, data), adult_features, params()) for _ in range(2))
    for key in ("rows", "values", "base_values", "outputs"):
        np.testing.assert_array_equal(second.arrays[key], first.arrays[key])
    sensitive = adult_frames[1][ADULT_SPEC["sensitive_columns"]]
    reports = [
        InterpretabilityEvaluator().evaluate(evaluation_input(sensitive=sensitive, probes={"explain": outcome_of(r)}))
        for r in (first, second)
    ]
    assert reports[1].metrics == reports[0].metrics and reports[1].intervals == reports[0].intervals
    # Another seed draws other rows and orderings: the seed, not chance, is what repeats.
    other = probe(loaded(tmp_path, data), adult_features, params(seed=SEED + 1))
    assert not np.array_equal(other.arrays["rows"], first.arrays["rows"])


def test_a_rows_attributions_do_not_depend_on_how_many_rows_follow_it(tmp_path, adult_baselines, adult_features):
    model = loaded(tmp_path, baseline_named(adult_baselines, "skops:Random forest").data)
    few, many = probe(model, adult_features, params(max_rows=10)), probe(model, adult_features, params(max_rows=300))
    np.testing.assert_array_equal(many.arrays["rows"][:10], few.arrays["rows"])
    np.testing.assert_allclose(many.arrays["values"][:10], few.arrays["values"], rtol=0, atol=1e-12)


def test_a_binary_forest_explains_the_positive_class_whichever_class_that_is(tmp_path):
    features, labels = factories.census(n_rows=300, seed=1)
    pipeline = factories.random_forest(features, labels)
    model = loaded(tmp_path, factories.skops_bytes(pipeline))
    positive = probe(model, features, params())
    negative = probe(model, features, params(positive_label="<=50K"))
    # A forest's two class probabilities sum to 1, so their attributions are each other's negatives.
    np.testing.assert_allclose(negative.arrays["values"], -positive.arrays["values"], atol=1e-12)
    assert negative.document["output"] == {"kind": "probability", "of": "the positive class", "class": "<=50K"}
    assert_adds_up(negative)


def test_the_majority_class_baseline_attributes_nothing_to_any_column(tmp_path, adult_baselines, adult_features):
    model = loaded(tmp_path, baseline_named(adult_baselines, "skops:Majority").data)
    result = probe(model, adult_features, params(max_rows=5))
    assert not result.arrays["values"].any()
    assert_adds_up(result)


def test_a_multiclass_model_is_explained_on_each_rows_predicted_class(tmp_path):
    features, _ = factories.census(n_rows=300, seed=1)
    labels = np.where(features.age > 55, "old", np.where(features.education == "Masters", "masters", "other"))
    forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0)
    numeric = features[factories.NUMERIC]
    forest.fit(numeric, labels)
    model = loaded(tmp_path, factories.skops_bytes(forest), task="multiclass")
    result = probe(model, numeric, params(positive_label=None, classes=["masters", "old", "other"]))
    probabilities = forest.predict_proba(numeric.iloc[result.arrays["rows"]])
    np.testing.assert_allclose(result.arrays["outputs"], probabilities.max(axis=1))
    assert [entry["class"] for entry in result.document["base_value_by_class"]] == ["masters", "old", "other"]
    assert_adds_up(result)


def test_a_linear_regressor_gets_its_exact_attributions_coefficient_times_distance_from_the_background(tmp_path):
    features, _ = factories.census(n_rows=300, seed=1)
    numeric = features[factories.NUMERIC]
    target = 3 * numeric.age - 2 * numeric.hours_per_week
    regressor = LinearRegression().fit(numeric, target)
    model = loaded(tmp_path, factories.skops_bytes(regressor), task="regression")
    result = probe(model, numeric, params(positive_label=None, classes=[]))
    assert result.document["output"] == {"kind": "prediction", "of": "the prediction"}
    explained = numeric.iloc[result.arrays["rows"]].to_numpy(float)
    # Interventional SHAP of a linear model is coef * (x - background mean): the same offset on every row.
    offsets = result.arrays["values"] - regressor.coef_ * explained
    np.testing.assert_allclose(offsets, np.broadcast_to(offsets[0], offsets.shape), atol=1e-6)
    assert_adds_up(result)


def test_the_probe_runs_in_the_sandbox_and_the_evaluator_reports_its_attributions(
    tmp_path, adult_baselines, adult_frames, adult_features
):
    baseline = baseline_named(adult_baselines, "skops:Gradient boosting")
    evaluator = InterpretabilityEvaluator()
    test = adult_frames[1]
    data = evaluation_input(
        sensitive=test[ADULT_SPEC["sensitive_columns"]], options={"max_rows": 30}, classes=["<=50K", ">50K"]
    )
    run = factories.baseline_in_sandbox(
        tmp_path, baseline, adult_features, limits=GENEROUS, predict=True, probes=evaluator.probe_params(data)
    )
    outcome = run.probes["explain"]
    assert outcome.error is None
    in_process = probe(loaded(tmp_path, baseline.data), adult_features, evaluator.probe_params(data)["explain"])
    np.testing.assert_array_equal(outcome.arrays["rows"], in_process.arrays["rows"])
    np.testing.assert_allclose(outcome.arrays["values"], in_process.arrays["values"], rtol=1e-12)

    result = evaluator.evaluate(evaluation_input(sensitive=data.sensitive, probes=run.probes))
    assert set(result.metrics) == {"shap_features_90", "sensitive_attribution_share"}
    assert 1 <= result.metrics["shap_features_90"] <= len(adult_features.columns)
    assert 0 < result.metrics["sensitive_attribution_share"] < 1
    assert result.document["explainer"] == "permutation" and result.document["rows_explained"] == 30
    assert result.document["sensitive_features"] == ["sex", "race"]
    assert {group["group"] for group in result.document["mean_abs_shap_by_group"]["sex"]} == {"Female", "Male"}
    for key, (low, high) in result.intervals.items():
        assert low <= high, key


def test_a_probe_past_its_safety_limit_fails_the_report_saying_which_option_to_change(
    tmp_path, adult_baselines, adult_frames, adult_features
):
    evaluator = InterpretabilityEvaluator()
    data = evaluation_input(sensitive=adult_frames[1][ADULT_SPEC["sensitive_columns"]], options={"max_seconds": 0})
    baseline = baseline_named(adult_baselines, "skops:Logistic regression")
    run = factories.baseline_in_sandbox(
        tmp_path, baseline, adult_features, limits=GENEROUS, predict=False, probes=evaluator.probe_params(data)
    )
    with pytest.raises(EvaluatorError) as raised:
        evaluator.evaluate(evaluation_input(sensitive=data.sensitive, probes=run.probes))
    assert str(raised.value) == (
        "explaining 200 rows took longer than the 0 s safety limit after 0 rows; raise the interpretability "
        "option max_seconds or lower max_rows"
    )


def evaluation_input(*, sensitive: pd.DataFrame, probes=None, options=None, classes=None) -> EvaluationInput:
    return EvaluationInput(
        task="binary",
        y_true=np.array([]),
        predictions=None,
        features=pd.DataFrame(),
        sensitive=sensitive,
        times=None,
        classes=classes or ["<=50K", ">50K"],
        positive_label=">50K",
        primary_metric="accuracy",
        primary_higher_is_better=True,
        resamples=200,
        seed=SEED,
        metadata={},
        options=options or {},
        artifact_bytes=0,
        artifact_format="skops",
        probes=probes or {},
    )


# Mean |SHAP| per column: age 5, hours 3, sex 1, race 1 (total 10). Rows 0-2 are women, row 3 a man.
HAND_VALUES = np.array(
    [
        [6.0, -3.0, 2.0, -1.0],
        [-6.0, 3.0, -2.0, 1.0],
        [6.0, 3.0, 0.0, 1.0],
        [-2.0, -3.0, 0.0, -1.0],
    ]
)
HAND_ROWS = np.array([4, 0, 2, 5])


def hand_outcome(columns=("age", "hours", "sex", "race")) -> ProbeOutcome:
    document = {"explainer": "permutation", "columns": list(columns), "rows_explained": 4}
    return ProbeOutcome(document, {"rows": HAND_ROWS, "values": HAND_VALUES}, None, 0.5)


def hand_sensitive() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sex": ["F", "M", "F", "M", "F", "M"],
            "race": ["a", "b", "a", "b", "a", "b"],
            "religion": ["x", "y", "x", "y", "x", "y"],
        }
    )


def test_the_metrics_on_a_hand_example_count_columns_to_90_percent_and_the_sensitive_share():
    result = InterpretabilityEvaluator().evaluate(
        evaluation_input(sensitive=hand_sensitive(), probes={"explain": hand_outcome()})
    )
    # 5 + 3 + 1 = 9 of 10 needs three columns; sex and race carry 2 of 10.
    assert result.metrics == {"shap_features_90": 3, "sensitive_attribution_share": pytest.approx(0.2)}
    assert result.document["mean_abs_shap"] == [
        {"column": "age", "mean_abs_shap": 5.0},
        {"column": "hours", "mean_abs_shap": 3.0},
        {"column": "sex", "mean_abs_shap": 1.0},
        {"column": "race", "mean_abs_shap": 1.0},
    ]
    assert result.document["sensitive_features"] == ["sex", "race"]
    assert result.document["explainer"] == "permutation" and result.document["probe_seconds"] == 0.5
    by_sex = result.document["mean_abs_shap_by_group"]["sex"]
    assert by_sex == [
        {"group": "F", "rows": 3, "mean_abs_shap": {"age": 6.0, "hours": 3.0, "sex": pytest.approx(4 / 3), "race": 1}},
        {"group": "M", "rows": 1, "mean_abs_shap": {"age": 2.0, "hours": 3.0, "sex": 0.0, "race": 1.0}},
    ]
    assert set(result.intervals) == {"shap_features_90", "sensitive_attribution_share"}


def test_the_sensitive_share_is_zero_when_no_sensitive_column_is_a_feature_and_the_report_says_so():
    outcome = hand_outcome(columns=("age", "hours", "education", "occupation"))
    data = evaluation_input(sensitive=hand_sensitive(), probes={"explain": outcome})
    result = InterpretabilityEvaluator().evaluate(data)
    assert result.metrics["sensitive_attribution_share"] == 0.0
    assert result.document["sensitive_features"] == []
    assert "No sensitive column (sex, race, religion) is a feature" in result.document["sensitive_attribution_note"]


@pytest.mark.parametrize(
    ("mean_abs", "expected"),
    [
        ([5.0, 3.0, 1.0, 1.0], 3),
        ([0.05, 0.45], 1),  # exactly 90%, despite 0.9 * 0.5 rounding
        ([1.0, 1.0, 1.0, 1.0], 4),
        ([0.0, 0.0], 0),  # a constant model needs no column
    ],
)
def test_shap_features_90_is_the_fewest_columns_reaching_90_percent(mean_abs, expected):
    assert shap_features_90(np.array(mean_abs)) == expected


def test_the_sensitive_share_of_a_model_that_attributes_nothing_is_zero():
    assert sensitive_attribution_share(np.zeros(2), ["age", "sex"], ["sex"]) == 0.0


def test_a_failed_probe_becomes_an_evaluator_error_with_its_reason():
    failed = ProbeOutcome(None, {}, "the model process ran out of its 2048 MB memory limit", 0.0)
    with pytest.raises(EvaluatorError, match="ran out of its 2048 MB memory limit"):
        InterpretabilityEvaluator().evaluate(evaluation_input(sensitive=hand_sensitive(), probes={"explain": failed}))


def test_the_probe_gets_the_benchmarks_budget_over_the_defaults_and_its_seed_and_labels():
    data = evaluation_input(sensitive=hand_sensitive(), options={"max_seconds": 5, "min_group_size": 30})
    assert InterpretabilityEvaluator().probe_params(data) == {
        "explain": {
            "seed": SEED,
            "positive_label": ">50K",
            "classes": ["<=50K", ">50K"],
            "max_rows": DEFAULT_OPTIONS["max_rows"],
            "max_seconds": 5,
            "background_rows": DEFAULT_OPTIONS["background_rows"],
            "permutations": DEFAULT_OPTIONS["permutations"],
        }
    }
