"""Gates as the command line writes them: thresholds on an objective (`accuracy>=0.85`) and bounded
regressions against a reference submission (`--max-regression accuracy=0.01`).

Only reading them lives here, so a typo is refused before anything is uploaded; the server judges
them (with the objective's noise: api/v1/submissions/{id}/?gates=... and .../compare/{other}/) and
the client prints its verdicts, so the client and a pipeline using curl cannot disagree.
"""

import math
import re
from dataclasses import dataclass

GATE_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*(\S+)\s*$")
REGRESSION_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\S+)\s*$")


class GateError(ValueError):
    """A gate that cannot be read or names no objective of the benchmark: a usage error."""


@dataclass(frozen=True)
class Threshold:
    key: str
    op: str
    limit: float

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.limit:.15g}"


@dataclass(frozen=True)
class MaxRegression:
    key: str
    delta: float

    def __str__(self) -> str:
        return f"{self.key}={self.delta:.15g}"

    def label(self) -> str:
        return f"{self.key} max regression {self.delta:.15g}"


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
