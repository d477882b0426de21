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
    # Utility bounds that hold whatever the data: a perfect score, a zero gap, no latency.
    natural_worst: float | None = None
    natural_best: float | None = None

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


# Natural utility bounds (worst, best): a share runs 0 to 1, a gap 1 to 0, a cost down to 0.
SHARE = {"natural_worst": 0.0, "natural_best": 1.0}
GAP = {"natural_worst": 1.0, "natural_best": 0.0}
ZERO_IS_BEST = {"natural_best": 0.0}
REGRESSION = ("regression",)
BINARY = ("binary",)

OBJECTIVES_IN_ORDER = (
    Objective("accuracy", "Accuracy", True, "performance", CLASSIFICATION, **SHARE),
    Objective("balanced_accuracy", "Balanced accuracy", True, "performance", CLASSIFICATION, **SHARE),
    Objective("f1_macro", "F1 (macro)", True, "performance", CLASSIFICATION, **SHARE),
    Objective("roc_auc", "ROC AUC", True, "performance", CLASSIFICATION, natural_worst=0.5, natural_best=1.0),
    Objective("log_loss", "Log loss", False, "performance", CLASSIFICATION, **ZERO_IS_BEST),
    Objective("rmse", "RMSE", False, "performance", REGRESSION, **ZERO_IS_BEST),
    Objective("mae", "MAE", False, "performance", REGRESSION, **ZERO_IS_BEST),
    Objective("r2", "R²", True, "performance", REGRESSION, **SHARE),
    Objective("demographic_parity_difference", "Demographic parity difference", False, "fairness", BINARY, **GAP),
    Objective("equalized_odds_difference", "Equalized odds difference", False, "fairness", BINARY, **GAP),
    Objective("worst_group_accuracy", "Worst-group accuracy", True, "fairness", CLASSIFICATION, **SHARE),
    Objective("accuracy_gap", "Accuracy gap", False, "fairness", CLASSIFICATION, **GAP),
    Objective(
        "shap_features_90", "Features for 90% of SHAP", False, "interpretability", unit="features", natural_best=1.0
    ),
    Objective("sensitive_attribution_share", "Sensitive attribution share", False, "interpretability", **GAP),
    Objective("latency_p50_ms", "Latency p50", False, "latency", unit="ms", **ZERO_IS_BEST),
    Objective("latency_p90_ms", "Latency p90", False, "latency", unit="ms", **ZERO_IS_BEST),
    Objective("latency_p95_ms", "Latency p95", False, "latency", unit="ms", **ZERO_IS_BEST),
    Objective("latency_p99_ms", "Latency p99", False, "latency", unit="ms", **ZERO_IS_BEST),
    Objective("throughput_rows_per_s", "Throughput", True, "latency", unit="rows/s", natural_worst=0.0),
    Objective("size_bytes", "Artifact size", False, "size", unit="bytes", **ZERO_IS_BEST),
    Objective("n_parameters", "Parameters", False, "size", **ZERO_IS_BEST),
    Objective("cost_usd_per_million", "Cost per million predictions", False, "cost", unit="USD", **ZERO_IS_BEST),
    Objective("decay_per_30d", "Decay per 30 days", False, "decay", **ZERO_IS_BEST),
    Objective("relative_drop", "Relative drop", False, "decay", **ZERO_IS_BEST),
)

OBJECTIVES: dict[str, Objective] = {objective.key: objective for objective in OBJECTIVES_IN_ORDER}


# What each stakeholder of a production model weighs; a benchmark owner can edit them.
PRESETS = {
    "ml-engineer": ("ML engineer", {"{primary}": 3.0, "balanced_accuracy": 1.0, "log_loss": 1.0, "r2": 1.0}),
    "product-manager": ("Product manager", {"{primary}": 2.0, "latency_p99_ms": 1.0}),
    "infrastructure": (
        "Infrastructure",
        {"cost_usd_per_million": 2.0, "size_bytes": 1.0, "throughput_rows_per_s": 1.0},
    ),
    "fairness-reviewer": (
        "Fairness reviewer",
        {
            "demographic_parity_difference": 2.0,
            "equalized_odds_difference": 1.0,
            "accuracy_gap": 1.0,
            "worst_group_accuracy": 1.0,
            "sensitive_attribution_share": 1.0,
        },
    ),
    "balanced": (
        "Balanced",
        {
            "{primary}": 2.0,
            "latency_p99_ms": 1.0,
            "cost_usd_per_million": 1.0,
            "demographic_parity_difference": 1.0,
            "decay_per_30d": 1.0,
        },
    ),
}


def default_presets(*, primary: str, keys: list[str]) -> dict:
    """The stakeholder presets restricted to a benchmark's objectives."""
    presets = {}
    for slug, (label, weights) in PRESETS.items():
        kept = {(primary if key == "{primary}" else key): weight for key, weight in weights.items()}
        kept = {key: weight for key, weight in kept.items() if key in keys}
        if kept:
            presets[slug] = {"label": label, "weights": kept}
    return presets


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
