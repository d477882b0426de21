"""Gate verdicts that do not flap: a threshold on an objective (`accuracy>=0.85`) or a bounded
regression against a reference (`accuracy=0.01`), judged together with the objective's noise.

A gate whose line lies inside the 95% interval (of the value, or of the paired difference for a
regression) is "within noise": a re-evaluation on other test rows could land on either side.
It is decided by a rule a CI pipeline chooses once: by default the point estimate, with a
warning; strict, the pessimistic end of the interval, so only a verdict that the noise cannot
overturn passes. An exact objective (no interval: size_bytes) is decided by its value and is
never within noise. The API computes every verdict here; the CLI prints the API's answer, so a
pipeline using curl and one using the CLI are told the same.
"""

from dataclasses import dataclass

from leaderboard.withholding import reads_labels, released_metrics, withholding_in_force
from leaderboard.boards import benchmark_objectives, objective_amounts_parse
from leaderboard.comparisons import Comparison
from leaderboard.errors import Rejected
from leaderboard.models import Benchmark, Submission
from leaderboard.ranking import OPERATORS, Constraint, parse_constraints

POINT, BOUND, EXACT = "point", "pessimistic bound", "exact value"
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class Regression:
    key: str
    delta: float  # how much worse than the reference, in the objective's direction, is allowed

    def __str__(self) -> str:
        return f"{self.key} max regression {self.delta:.15g}"


@dataclass(frozen=True)
class Verdict:
    gate: str
    kind: str  # "threshold" | "regression"
    key: str
    passed: bool
    value: float | None  # the submission's value
    interval: list[float] | None  # threshold: the value's 95% interval; regression: the paired difference's
    limit: float  # threshold: the threshold; regression: the allowed regression
    within_noise: bool | None  # None when the noise is unknown (a sampled objective without an interval)
    decided_by: str | None  # POINT, BOUND or EXACT; None when nothing was measured
    margin: float | None  # how far past the line a failing gate's deciding number is (positive), else None
    reason: str
    warning: str  # why the verdict is not firm (within noise, unknown noise); "" when it is
    reference_value: float | None = None
    difference: float | None = None  # regression: submission - reference in the objective's direction


# A gate on a guarded benchmark is judged on what the submitter was shown.
RELEASED_GATE_NOTE = (
    "guarded benchmark: judged on the released value, the Ladder's for the primary metric and rounded for the "
    "others; the exact public value and its interval are withheld until the benchmark closes"
)

def strict_parse(text: str | None) -> bool:
    word = (text or "").strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        # A misspelt `strict` silently judged by the point estimate would pass what was meant to fail.
        raise Rejected(f"strict is '{text}'; send true or false.", field="strict")
    return word in TRUE_WORDS


def gates_parse(text: str, benchmark: Benchmark) -> list[Constraint]:
    """`accuracy>=0.85,latency_p99_ms<=5` -> thresholds on the benchmark's objectives."""
    keys = [objective.key for objective in benchmark_objectives(benchmark)]
    try:
        gates = parse_constraints(text, keys, what="gate")
    except ValueError as error:
        raise Rejected(str(error), field="gates") from None
    if not gates:
        raise Rejected("no gate given; send e.g. gates=accuracy>=0.85,latency_p99_ms<=5.", field="gates")
    return gates


def regressions_parse(text: str, benchmark: Benchmark) -> list[Regression]:
    """`accuracy=0.01,latency_p99_ms=1` -> the regressions allowed on the benchmark's objectives."""
    regressions = [
        Regression(key, delta)
        for key, delta in objective_amounts_parse(
            text, benchmark, field="max_regression", separator="=", amount="delta", placeholder="delta",
            example="accuracy=0.01",
        )
    ]
    if not regressions:
        raise Rejected("no regression given; send e.g. max_regression=accuracy=0.01.", field="max_regression")
    return regressions


@dataclass(frozen=True)
class _Decision:
    passed: bool
    within_noise: bool | None
    decided_by: str
    decisive: float | None  # the number the verdict was taken on: the point, or the pessimistic bound
    margin: float | None


def _decide(
    point: float, interval, *, exact: bool, op: str, limit: float, strict: bool, tolerance: float = 0.0
) -> _Decision:
    """The one rule for every gate: `point op limit`, judged with the interval around `point`."""
    higher = op in (">=", ">")
    # `tolerance` lets a number land exactly on the line despite decimal arithmetic (0.86 - 0.85 > 0.01).
    line = limit - tolerance if higher else limit + tolerance
    if exact:
        within_noise, decided_by, decisive = False, EXACT, point
    elif interval is None:
        within_noise, decided_by, decisive = None, BOUND if strict else POINT, None if strict else point
    else:
        low, high = interval
        within_noise = low <= limit <= high
        decided_by, decisive = (BOUND, low if higher else high) if strict else (POINT, point)
    passed = decisive is not None and bool(OPERATORS[op](decisive, line))
    margin = None
    if not passed and decisive is not None:
        margin = limit - decisive if higher else decisive - limit
    return _Decision(passed, within_noise, decided_by, decisive, margin)


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1e5 else f"{value:.6g}"


def _interval_text(interval) -> str:
    return f"[{_number(interval[0])}, {_number(interval[1])}]"


def threshold_verdicts(submission: Submission, gates: list[Constraint], *, strict: bool) -> list[Verdict]:
    return [_threshold_verdict(submission, gate, strict=strict) for gate in gates]


def _threshold_verdict(submission: Submission, gate: Constraint, *, strict: bool) -> Verdict:
    key = gate.key
    withheld = withholding_in_force(submission.benchmark) and reads_labels(key)
    value = (released_metrics(submission) if withheld else submission.metrics).get(key)
    if value is None:
        return Verdict(
            str(gate), "threshold", key, False, None, None, gate.value, None, None, None, f"{key} was not measured", ""
        )
    interval = None if withheld else submission.intervals.get(key)
    exact = not withheld and key not in submission.intervals and key not in (submission.resample_keys or [])
    decision = _decide(value, interval, exact=exact, op=gate.op, limit=gate.value, strict=strict)
    reason = f"{key} is {_number(value)}" + (f", 95% interval {_interval_text(interval)}" if interval else "")
    if withheld:
        reason = f"released {reason} ({RELEASED_GATE_NOTE})"
    if exact:
        reason += " (exact)"
    side = "short by" if gate.op in (">=", ">") else "over by"
    if decision.margin is not None:
        subject = "," if decision.decided_by != BOUND else f"; its pessimistic bound {_number(decision.decisive)}"
        reason += f"{subject} needs {gate.op} {gate.value:.15g} ({side} {_number(decision.margin)})"
    elif not decision.passed:
        reason += f"; no 95% interval, so no pessimistic bound to judge {key} by"
    missing = f"{key}'s interval is withheld on a guarded benchmark until it closes" if withheld else f"{key} has no interval"
    warning = _warning(decision, f"{gate.value:.15g}", "the 95% interval of the value", missing)
    return Verdict(
        str(gate),
        "threshold",
        key,
        decision.passed,
        value,
        interval,
        gate.value,
        decision.within_noise,
        decision.decided_by,
        decision.margin,
        reason,
        warning,
    )


def regression_verdicts(comparison: Comparison, regressions: list[Regression], *, strict: bool) -> list[Verdict]:
    differences = {objective.key: objective for objective in comparison.objectives}
    reference = comparison.reference
    label = f"'{reference.name}' ({reference.pk})"
    return [_regression_verdict(differences[gate.key], gate, label, strict=strict) for gate in regressions]


def _regression_verdict(compared, gate: Regression, label: str, *, strict: bool) -> Verdict:
    key = gate.key

    def verdict(passed, decision, reason, warning="") -> Verdict:
        return Verdict(
            str(gate),
            "regression",
            key,
            passed,
            compared.value,
            compared.interval,
            gate.delta,
            decision.within_noise if decision else None,
            decision.decided_by if decision else None,
            decision.margin if decision else None,
            reason,
            warning,
            compared.reference_value,
            compared.difference,
        )

    if compared.difference is None:
        return verdict(False, None, compared.note)
    # The candidate may be at most `delta` worse: its difference (positive: better) must be >= -delta.
    tolerance = 1e-9 * max(1.0, abs(compared.reference_value))
    decision = _decide(
        compared.difference,
        compared.interval,
        exact=compared.exact,
        op=">=",
        limit=-gate.delta,
        strict=strict,
        tolerance=tolerance,
    )
    worse = -compared.difference
    reason = f"{key} {_number(compared.value)} vs {_number(compared.reference_value)} of {label}: "
    reason += "not worse" if worse <= 0 else f"{_number(worse)} worse"
    if compared.interval is not None:
        reason += f" (paired 95% interval of the difference {_interval_text(compared.interval)})"
    elif compared.exact:
        reason += " (exact)"
    if decision.margin is not None:
        subject = (
            "" if decision.decided_by != BOUND else f"; at its pessimistic bound {_number(-decision.decisive)} worse"
        )
        reason += f"{subject}, at most {gate.delta:.15g} allowed (over by {_number(decision.margin)})"
    elif not decision.passed:
        reason += "; no paired interval, so no pessimistic bound to judge the difference by"
    elif worse > 0:
        reason += f", within {gate.delta:.15g}"
    warning = _warning(decision, f"-{gate.delta:.15g}", "the paired 95% interval of the difference", compared.note)
    if compared.note and not warning:
        warning = compared.note
    return verdict(decision.passed, decision, reason, warning)


def _warning(decision: _Decision, line: str, interval_name: str, unknown_noise: str) -> str:
    if decision.within_noise is None:
        rule = "decided by the point estimate" if decision.decided_by == POINT else "strict: it cannot pass"
        return f"the noise is unknown ({unknown_noise}); {rule}"
    if not decision.within_noise:
        return ""
    if decision.decided_by == POINT:
        return (
            f"within noise: {line} lies inside {interval_name}, so another draw of the test rows could turn the "
            "verdict; decided by the point estimate (strict decides by the pessimistic bound)"
        )
    return f"within noise: {line} lies inside {interval_name}; strict: decided by the pessimistic bound"
