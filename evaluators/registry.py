"""Every evaluator by name, imported only when used: the web process needs none of them, and
shap alone takes seconds to import."""

import importlib

from .base import Evaluator

_LOCATIONS = {
    "performance": ("evaluators.performance", "PerformanceEvaluator"),
    "fairness": ("evaluators.fairness", "FairnessEvaluator"),
    "interpretability": ("evaluators.interpretability", "InterpretabilityEvaluator"),
    "size": ("evaluators.size", "SizeEvaluator"),
    "decay": ("evaluators.decay", "DecayEvaluator"),
    "latency": ("evaluators.latency", "LatencyEvaluator"),
    "cost": ("evaluators.cost", "CostEvaluator"),
}
EVALUATOR_NAMES = tuple(_LOCATIONS)


def evaluator_get(name: str) -> Evaluator:
    module_name, class_name = _LOCATIONS[name]
    return getattr(importlib.import_module(module_name), class_name)()


def evaluator_options(name: str, overrides: dict | None) -> dict:
    """The evaluator's documented defaults with the benchmark's settings on top."""
    module = importlib.import_module(_LOCATIONS[name][0])
    return {**getattr(module, "DEFAULT_OPTIONS", {}), **(overrides or {})}
