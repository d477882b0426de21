"""The canonical objective keys, which way is better for each, and which evaluator measures them.

The evaluators compute values under these keys; the leaderboard and the API read them from here.
"""

from dataclasses import dataclass

TASKS = ("binary", "multiclass", "regression")
CLASSIFICATION = ("binary", "multiclass")

# In the order they run. Performance always runs; fairness needs sensitive columns, decay a time
# column; latency and cost run on the latency queue, alone on the CPU.
EVALUATORS = ("performance", "fairness", "interpretability", "size", "decay", "latency", "cost")


@dataclass(frozen=True)
class Objective:
    key: str
    label: str
    higher_is_better: bool
    evaluator: str
    tasks: tuple[str, ...] = TASKS
    unit: str = ""

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


OBJECTIVES_IN_ORDER = (
    Objective("accuracy", "Accuracy", True, "performance", CLASSIFICATION),
    Objective("balanced_accuracy", "Balanced accuracy", True, "performance", CLASSIFICATION),
    Objective("f1_macro", "F1 (macro)", True, "performance", CLASSIFICATION),
    Objective("roc_auc", "ROC AUC", True, "performance", CLASSIFICATION),
    Objective("log_loss", "Log loss", False, "performance", CLASSIFICATION),
    Objective("rmse", "RMSE", False, "performance", ("regression",)),
    Objective("mae", "MAE", False, "performance", ("regression",)),
    Objective("r2", "R²", True, "performance", ("regression",)),
    Objective("demographic_parity_difference", "Demographic parity difference", False, "fairness", ("binary",)),
    Objective("equalized_odds_difference", "Equalized odds difference", False, "fairness", ("binary",)),
    Objective("worst_group_accuracy", "Worst-group accuracy", True, "fairness", CLASSIFICATION),
    Objective("accuracy_gap", "Accuracy gap", False, "fairness", CLASSIFICATION),
    Objective("shap_features_90", "Features for 90% of SHAP", False, "interpretability", unit="features"),
    Objective("sensitive_attribution_share", "Sensitive attribution share", False, "interpretability"),
    Objective("latency_p50_ms", "Latency p50", False, "latency", unit="ms"),
    Objective("latency_p90_ms", "Latency p90", False, "latency", unit="ms"),
    Objective("latency_p95_ms", "Latency p95", False, "latency", unit="ms"),
    Objective("latency_p99_ms", "Latency p99", False, "latency", unit="ms"),
    Objective("throughput_rows_per_s", "Throughput", True, "latency", unit="rows/s"),
    Objective("size_bytes", "Artifact size", False, "size", unit="bytes"),
    Objective("n_parameters", "Parameters", False, "size"),
    Objective("cost_usd_per_million", "Cost per million predictions", False, "cost", unit="USD"),
    Objective("decay_per_30d", "Decay per 30 days", False, "decay"),
    Objective("relative_drop", "Relative drop", False, "decay"),
)

OBJECTIVES: dict[str, Objective] = {objective.key: objective for objective in OBJECTIVES_IN_ORDER}


def performance_keys(task: str) -> list[str]:
    return [o.key for o in OBJECTIVES_IN_ORDER if o.evaluator == "performance" and task in o.tasks]


def evaluators_applying(*, sensitive_columns: list[str], time_column: str) -> list[str]:
    return [
        name
        for name in EVALUATORS
        if not (name == "fairness" and not sensitive_columns) and not (name == "decay" and not time_column)
    ]


def objective_keys(task: str, evaluators: list[str]) -> list[str]:
    return [o.key for o in OBJECTIVES_IN_ORDER if o.evaluator in evaluators and task in o.tasks]
