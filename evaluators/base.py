"""The one small interface every evaluator honours, and what it is given.

An evaluator turns the shared evaluation input (the test set, the one prediction pass, and what
the model process measured for it) into scalar objectives, their intervals and a full report
document. Evaluators never load or call the model themselves: whatever needs the model runs as a
*probe* inside the sandboxed model process (see evaluators/probes/), and the evaluator reads the
probe's outcome here.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from .sandbox import Predictions, ProbeOutcome


@dataclass(frozen=True)
class EvaluationInput:
    task: str  # "binary" | "multiclass" | "regression"
    y_true: np.ndarray  # (n,) the hidden labels, in test-set order
    predictions: Predictions | None  # the one prediction pass; None only in probe_params()
    features: pd.DataFrame  # the benchmark's feature columns, exactly what the model saw
    sensitive: pd.DataFrame  # the benchmark's sensitive columns (may overlap the features)
    times: pd.Series | None  # the time column as datetime64, or None
    classes: list  # the benchmark's class labels (sorted); [] for regression
    positive_label: Any  # binary only
    primary_metric: str  # an objective key, e.g. "accuracy"
    primary_higher_is_better: bool
    resamples: int  # bootstrap resamples for intervals
    seed: int  # the benchmark's seed: the same resampled rows for every submission
    metadata: dict  # the submitter's free metadata (e.g. training_cutoff)
    options: dict  # this evaluator's benchmark settings (min group size, prices, budgets, ...)
    artifact_bytes: int
    artifact_format: str  # "onnx" | "skops"
    probes: dict[str, ProbeOutcome] = field(default_factory=dict)  # by probe name
    # Earlier evaluators' results by name: {"metrics": {...}, "document": {...}} (cost reads these).
    previous: dict[str, dict] = field(default_factory=dict)
    # The calibration workload's median (ms) in recent latency sessions on this machine, newest
    # first: how much the machine's speed moves between sessions (latency reads it).
    machine_calibrations_ms: tuple[float, ...] = ()
    # Seeds what is drawn for this submission alone, independent of every other submission's draws.
    submission_seed: int = 0


@dataclass
class EvaluatorResult:
    metrics: dict[str, float]  # canonical objective keys only
    intervals: dict[str, list[float]]  # [low, high] for the metrics sampling makes uncertain
    document: dict  # the full report, JSON-serialisable


class EvaluatorError(Exception):
    """This evaluator cannot measure this submission; the message says why, for the report."""


def probe_outcome(data: EvaluationInput, name: str):
    """The named probe's outcome, or EvaluatorError saying why there is none."""
    outcome = data.probes.get(name)
    if outcome is None:
        raise EvaluatorError(f"the {name} probe did not run")
    if outcome.error is not None:
        raise EvaluatorError(outcome.error)
    return outcome


class Evaluator(Protocol):
    name: ClassVar[str]  # report name: performance, fairness, interpretability, latency, size, cost, decay
    probes: ClassVar[tuple[str, ...]]  # model-process probes it reads, e.g. ("explain",)
    queue: ClassVar[str]  # "evaluate", or "latency" for what must run alone on the CPU

    def applies(self, data: EvaluationInput) -> bool:
        """Whether this benchmark and submission can be measured at all (e.g. a time column)."""

    def probe_params(self, data: EvaluationInput) -> dict[str, dict]:
        """{probe name: JSON params} for the model process; `data.predictions` is None here."""

    def evaluate(self, data: EvaluationInput) -> EvaluatorResult:
        """Measure; raise EvaluatorError (or anything) to fail this evaluator alone."""
