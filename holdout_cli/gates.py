"""Gates: thresholds on an objective (`accuracy>=0.85`) and bounded regressions against a reference
submission (`--max-regression accuracy=0.01`). Pure functions over the API's documents."""

import math
import operator
import re
from dataclasses import asdict, dataclass

GATE_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*(\S+)\s*$")
REGRESSION_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\S+)\s*$")
COMPARISONS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


class GateError(ValueError):
    """A gate that cannot be read or names no objective of the benchmark: a usage error."""


@dataclass(frozen=True)
class Threshold:
    key: str
    op: str
    limit: float

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.limit:g}"


@dataclass(frozen=True)
class MaxRegression:
    key: str
    delta: float

    def __str__(self) -> str:
        return f"{self.key} at most {self.delta:g} worse than the reference"

    def label(self) -> str:
        return f"{self.key} max regression {self.delta:g}"


@dataclass(frozen=True)
class Outcome:
    gate: str
    kind: str  # "threshold" | "regression"
    key: str
    passed: bool
    value: float | None
    reason: str
    limit: float | None = None
    reference_value: float | None = None
    margin: float | None = None  # how far past the line a failing gate is (positive), else None

    def as_dict(self) -> dict:
        return asdict(self)


def threshold_parse(text: str) -> Threshold:
    match = GATE_PATTERN.match(text)
    if not match:
        raise GateError(f"cannot read gate {text!r}; write KEY>=NUMBER, KEY<=NUMBER, KEY>NUMBER or KEY<NUMBER")
    key, op, number = match.groups()
    return Threshold(key, op, _finite(number, f"gate {text!r}"))


def regression_parse(text: str) -> MaxRegression:
    match = REGRESSION_PATTERN.match(text)
    if not match:
        raise GateError(f"cannot read --max-regression {text!r}; write OBJECTIVE=DELTA, e.g. accuracy=0.01")
    key, number = match.groups()
    delta = _finite(number, f"--max-regression {text!r}")
    if delta < 0:
        raise GateError(f"--max-regression {text!r}: the allowed regression cannot be negative")
    return MaxRegression(key, delta)


def _finite(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise GateError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise GateError(f"{what}: the limit must be a finite number")
    return value


def keys_check(keys: list[str], objectives: list[dict], slug: str) -> None:
    """Refuse keys the benchmark does not measure, before anything is uploaded."""
    known = [objective["key"] for objective in objectives]
    unknown = sorted({key for key in keys if key not in known})
    if unknown:
        raise GateError(
            f"{', '.join(unknown)} {'is not an objective' if len(unknown) == 1 else 'are not objectives'} "
            f"of benchmark {slug}; its objectives are: {', '.join(known)}"
        )


def higher_is_better(objective: dict) -> bool:
    if "higher_is_better" in objective:
        return bool(objective["higher_is_better"])
    return objective.get("direction", "higher") != "lower"


def threshold_check(gate: Threshold, metrics: dict) -> Outcome:
    value = metrics.get(gate.key)
    if value is None:
        return Outcome(str(gate), "threshold", gate.key, False, None, f"{gate.key} was not measured", gate.limit)
    if COMPARISONS[gate.op](value, gate.limit):
        return Outcome(str(gate), "threshold", gate.key, True, value, f"{gate.key} is {fmt(value)}", gate.limit)
    margin = gate.limit - value if gate.op in (">=", ">") else value - gate.limit
    side = "short by" if gate.op in (">=", ">") else "over by"
    reason = f"{gate.key} is {fmt(value)}, needs {gate.op} {gate.limit:g} ({side} {fmt(margin)})"
    return Outcome(str(gate), "threshold", gate.key, False, value, reason, gate.limit, margin=margin)


def regression_check(
    gate: MaxRegression, metrics: dict, reference: dict, *, higher_better: bool, reference_label: str
) -> Outcome:
    """The candidate may be at most `delta` worse than the reference in the objective's direction."""
    value, reference_value = metrics.get(gate.key), reference.get(gate.key)
    text = gate.label()
    if value is None or reference_value is None:
        missing = "this submission" if value is None else "the reference"
        return Outcome(
            text,
            "regression",
            gate.key,
            False,
            value,
            f"{gate.key} was not measured for {missing}",
            gate.delta,
            reference_value,
        )
    worse_by = reference_value - value if higher_better else value - reference_value
    # Differences of decimals are inexact (0.86 - 0.85 > 0.01); a regression of exactly the
    # allowance must pass.
    tolerance = 1e-9 * max(1.0, abs(reference_value))
    comparison = f"{fmt(value)} vs {fmt(reference_value)} of {reference_label}"
    if worse_by <= 0:
        return Outcome(
            text,
            "regression",
            gate.key,
            True,
            value,
            f"{gate.key} {comparison}: not worse",
            gate.delta,
            reference_value,
        )
    if worse_by <= gate.delta + tolerance:
        reason = f"{gate.key} {comparison}: {fmt(worse_by)} worse, within {gate.delta:g}"
        return Outcome(text, "regression", gate.key, True, value, reason, gate.delta, reference_value)
    margin = worse_by - gate.delta
    reason = f"{gate.key} {comparison}: {fmt(worse_by)} worse, at most {gate.delta:g} allowed (over by {fmt(margin)})"
    return Outcome(text, "regression", gate.key, False, value, reason, gate.delta, reference_value, margin)


def fmt(value) -> str:
    """A number as people read it in a table: integers whole, large numbers grouped, small ones to 4 places."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (value.is_integer() and abs(value) >= 1) or abs(value) >= 1000:
        return f"{round(value):,}"
    if abs(value) >= 100:
        return f"{value:.2f}"
    if value != 0 and abs(value) < 0.001:
        return f"{value:.3g}"
    return f"{value:.4f}"
