import numpy as np
import onnxruntime
import pandas as pd
import pytest
import shap
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from evaluators.base import EvaluationInput, EvaluatorError
from evaluators.interpretability import (
    DEFAULT_OPTIONS,
    InterpretabilityEvaluator,
    sensitive_attribution_share,
    shap_features_90,
)
from evaluators.model_runner import OnnxModel, SkopsModel
from evaluators.probes.explain import probe
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


def input_column_of(model_column: str, columns: list[str]) -> str:
    """scikit-learn's own name for a model column ('text__education_Masters', 'remainder__age')
    read back to the input column it came from."""
    name = model_column.split("__", 1)[1]
    if name in columns:
        return name
    (column,) = [column for column in columns if name.startswith(column + "_")]
    return column


def shaps_own_tree_attributions(pipeline, features: pd.DataFrame, rows, positive: int) -> np.ndarray:
    """shap's TreeExplainer on the pipeline's final model, summed per input column by name."""
    transformed = pipeline[:-1].transform(features.iloc[rows])
    transformed = np.asarray(transformed.toarray() if hasattr(transformed, "toarray") else transformed, float)
    values = shap.TreeExplainer(pipeline[-1], feature_perturbation="tree_path_dependent").shap_values(transformed)
    if values.ndim == 3:
        values = values[:, :, positive]
    columns = list(features.columns)
    owners = [columns.index(input_column_of(name, columns)) for name in pipeline[:-1].get_feature_names_out()]
    return values @ np.eye(len(columns))[owners]


def assert_adds_up(result):
    arrays = result.arrays
    np.testing.assert_allclose(arrays["base_values"] + arrays["values"].sum(axis=1), arrays["outputs"], atol=1e-9)
    assert result.document["additivity"]["passed"]
    assert result.document["additivity"]["max_abs_error"] < 1e-9


@pytest.mark.parametrize("fragment", ["skops:Random forest", "skops:Gradient boosting"])
def test_adult_tree_baselines_get_shaps_own_tree_attributions_per_input_column(
    tmp_path, adult_baselines, adult_features, fragment
):
    model = loaded(tmp_path, baseline_named(adult_baselines, fragment).data)
    result = probe(model, adult_features, params())
    rows = result.arrays["rows"]
    positive = list(model.estimator.classes_).index(">50K")
    expected = shaps_own_tree_attributions(model.estimator, adult_features, rows, positive)
    assert result.document["explainer"] == "tree"
    assert result.document["feature_perturbation"] == "tree_path_dependent"
    assert result.document["mapping"] == "one model column per input column"
    assert result.document["columns"] == list(adult_features.columns)
    assert result.arrays["values"].shape == (40, len(adult_features.columns))
    np.testing.assert_allclose(result.arrays["values"], expected, rtol=1e-10, atol=1e-12)
    assert_adds_up(result)


def test_a_forest_behind_a_one_hot_encoder_gets_each_input_columns_sum_of_shaps_own_attributions(tmp_path):
    features, labels = factories.census(n_rows=300, seed=1)
    pipeline = factories.random_forest(features, labels)
    result = probe(loaded(tmp_path, factories.skops_bytes(pipeline)), features, params())
    expected = shaps_own_tree_attributions(pipeline, features, result.arrays["rows"], positive=1)
    assert result.document["explainer"] == "tree"
    assert result.document["mapping"] == "sum of each input column's model columns"
    assert result.document["model_columns"] > len(features.columns)
    np.testing.assert_allclose(result.arrays["values"], expected, rtol=1e-10, atol=1e-12)
    explained = features.iloc[result.arrays["rows"]]
    np.testing.assert_allclose(result.arrays["outputs"], pipeline.predict_proba(explained)[:, 1])
    assert_adds_up(result)


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


def test_the_linear_baseline_gets_shaps_linear_explainer_summed_over_one_hot_columns(
    tmp_path, adult_baselines, adult_features
):
    model = loaded(tmp_path, baseline_named(adult_baselines, "skops:Logistic regression").data)
    result = probe(model, adult_features, params())
    document = result.document
    assert document["explainer"] == "linear" and document["feature_perturbation"] == "interventional"
    assert document["mapping"] == "sum of each input column's model columns"
    assert document["output"] == {"kind": "log_odds", "of": "the positive class", "class": ">50K"}
    assert document["background_rows_used"] == DEFAULT_OPTIONS["background_rows"]
    assert result.arrays["values"].shape == (40, len(adult_features.columns))
    rows = result.arrays["rows"]
    np.testing.assert_allclose(result.arrays["outputs"], model.estimator.decision_function(adult_features.iloc[rows]))
    assert_adds_up(result)


def test_the_onnx_baseline_is_explained_model_agnostically_with_its_text_columns_kept_as_text(
    tmp_path, adult_baselines, adult_features
):
    data = baseline_named(adult_baselines, "onnx:").data
    result = probe(loaded(tmp_path, data, artifact_format="onnx"), adult_features, params(max_rows=5))
    document = result.document
    assert document["explainer"] == "permutation"
    assert document["fallback_reason"] == "an ONNX graph is explained through its predictions only"
    assert document["output"] == {"kind": "probability", "of": "the positive class", "class": ">50K"}
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    _, probabilities = session.run(None, onnx_inputs(adult_features.iloc[result.arrays["rows"]]))
    np.testing.assert_allclose(result.arrays["outputs"], probabilities[:, 1])
    assert result.arrays["values"].shape == (5, len(adult_features.columns))
    # The text columns matter to the model, so they were varied as text, not as numbers.
    text_columns = [c for c in adult_features.columns if not pd.api.types.is_numeric_dtype(adult_features[c])]
    assert np.abs(result.arrays["values"][:, [document["columns"].index(c) for c in text_columns]]).sum() > 0
    assert_adds_up(result)


def test_the_majority_class_baseline_attributes_nothing_to_any_column(tmp_path, adult_baselines, adult_features):
    model = loaded(tmp_path, baseline_named(adult_baselines, "skops:Majority").data)
    result = probe(model, adult_features, params(max_rows=5))
    assert result.document["explainer"] == "permutation"
    assert result.document["fallback_reason"] == "DummyClassifier is neither a tree model nor a linear model"
    assert not result.arrays["values"].any()
    assert_adds_up(result)


def test_preprocessing_that_mixes_input_columns_falls_back_to_the_model_agnostic_explainer(tmp_path):
    features, labels = factories.census(n_rows=300, seed=1)
    numeric = features[factories.NUMERIC]
    pipeline = make_pipeline(PCA(n_components=2), LogisticRegression()).fit(numeric, labels)
    result = probe(loaded(tmp_path, factories.skops_bytes(pipeline)), numeric, params(max_rows=5))
    assert result.document["explainer"] == "permutation"
    assert "which input column" in result.document["fallback_reason"]
    assert result.document["columns"] == factories.NUMERIC
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


def test_a_tiny_time_budget_stops_after_the_first_row_and_says_so(tmp_path, adult_baselines, adult_features):
    model = loaded(tmp_path, baseline_named(adult_baselines, "skops:Random forest").data)
    full = probe(model, adult_features, params(max_rows=50))
    cut = probe(model, adult_features, params(max_rows=50, max_seconds=0))
    assert not full.document["stopped_early"] and full.document["rows_explained"] == 50
    assert cut.document["stopped_early"]
    assert cut.document["rows_requested"] == 50 and cut.document["rows_explained"] == 1
    assert cut.document["budget"] == {"seed": SEED, "max_rows": 50, "max_seconds": 0, "background_rows": 100}
    # What a cut keeps is the start of the same seeded sample.
    np.testing.assert_array_equal(cut.arrays["rows"], full.arrays["rows"][:1])
    np.testing.assert_array_equal(cut.arrays["values"], full.arrays["values"][:1])


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
    assert result.document["explainer"] == "tree" and result.document["rows_explained"] == 30
    assert result.document["sensitive_features"] == ["sex", "race"]
    assert {group["group"] for group in result.document["mean_abs_shap_by_group"]["sex"]} == {"Female", "Male"}
    for key, (low, high) in result.intervals.items():
        assert low <= high, key


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
    document = {"explainer": "tree", "columns": list(columns), "rows_explained": 4}
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
    assert result.document["explainer"] == "tree" and result.document["probe_seconds"] == 0.5
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
        }
    }
