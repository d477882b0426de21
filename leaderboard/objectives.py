"""The canonical objective keys, which way is better for each, and which tasks they apply to.

The evaluators compute values under these keys; the leaderboard and the API read them from here.
"""

from dataclasses import dataclass

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Objective:
    key: str
    label: str
    higher_is_better: bool
    tasks: tuple[str, ...] = TASKS
    needs_probabilities: bool = False

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


CLASSIFICATION = ("binary", "multiclass")

PERFORMANCE = (
    Objective("accuracy", "Accuracy", True, CLASSIFICATION),
    Objective("balanced_accuracy", "Balanced accuracy", True, CLASSIFICATION),
    Objective("f1_macro", "F1 (macro)", True, CLASSIFICATION),
    Objective("roc_auc", "ROC AUC", True, CLASSIFICATION, needs_probabilities=True),
    Objective("log_loss", "Log loss", False, CLASSIFICATION, needs_probabilities=True),
    Objective("rmse", "RMSE", False, ("regression",)),
    Objective("mae", "MAE", False, ("regression",)),
    Objective("r2", "R²", True, ("regression",)),
)

OBJECTIVES: dict[str, Objective] = {objective.key: objective for objective in PERFORMANCE}


def performance_keys(task: str) -> list[str]:
    return [objective.key for objective in PERFORMANCE if task in objective.tasks]
