"""The Ladder: what a guarded benchmark releases of a submitter's score (issue 13).

Blum & Hardt, "The Ladder: A Reliable Leaderboard for Machine Learning Competitions", ICML 2015.
Every released score is a query on the hidden test rows; a submitter who keeps what scored best
overfits them. The Ladder releases a new value only when a submission beats the submitter's
released best by a margin, and otherwise releases that best again, so most submissions tell the
submitter nothing new about the rows.

- Fixed step (the paper's Algorithm 1): the candidate is released, rounded to a multiple of the
  step eta, when it is better than the released value by more than eta.
- Parameter-free (the paper's Algorithm 2, the one used in its Kaggle experiments and our
  default): the margin is one standard error of the paired differences between the candidate and
  the submitter's released best, on the same rows.

What the guarantee covers. For losses in [0, 1] and the fixed step, the paper's Theorem 3.1 bounds
the leaderboard error (how far the released values can be from the best true losses so far)
against any adaptive submitter, by O((log(kn) / n)^(1/3)) for k submissions on n rows. Its proof
is a compression argument: what the submitter sees is fixed by the few moves of the ladder, so
every submission it can make is named by a short description (Claim 3.2), and Hoeffding's
inequality with a union bound over those gives `ladder_error_bound` below (explicit, with its
constants; the theorem states the order). Sources: the paper's Algorithms 1 and 2, a 2025 write-up
of its proof (D. Davis, damek.github.io) and the authors' code (mrtzh/Ladder.jl). The parameter-free variant has no proven bound
(the paper argues for it from experiments); it is at least as hard to climb in practice. The
guarantee is about the one released value it governs: it says nothing of the other objectives or
of detailed reports, which a guarded benchmark therefore releases only coarsely.

One caller-side choice, documented here because it is ours: the paper's standard error is of the
per-row losses; a metric that is not a mean over rows (ROC AUC, a weighted utility) uses the
spread of its paired bootstrap resamples on the benchmark's shared resample indices, which is the
bootstrap's estimate of the same standard error (`paired_standard_error(kind="resamples")`).
"""

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

VARIANTS = ("parameter-free", "fixed")


@dataclass(frozen=True)
class LadderState:
    """One submitter's ladder on one benchmark: what is released, and how often it moved."""

    best: float | None = None
    best_key: str | None = None
    steps: int = 0  # releases of new information: times the released value moved
    submissions: int = 0  # submissions judged


@dataclass(frozen=True)
class LadderRelease:
    released: float
    improved: bool
    state: LadderState
    threshold: float | None  # the margin the candidate had to beat; None for the first release
    reason: str


def paired_standard_error(candidate, best, *, kind: str = "rows") -> float:
    """The standard error of the candidate minus the best, paired row by row or resample by resample.

    "rows": per-row losses; the sample standard deviation of the differences over sqrt(n) (the
    paper's rule). "resamples": the statistic on shared bootstrap resamples; their differences'
    standard deviation is already the standard error. NaN pairs (a resample where the metric is
    undefined) are left out."""
    candidate, best = np.asarray(candidate, dtype=float), np.asarray(best, dtype=float)
    if candidate.shape != best.shape or candidate.ndim != 1:
        raise ValueError(f"paired values need two 1-D arrays of one length, not {candidate.shape} and {best.shape}.")
    differences = candidate - best
    differences = differences[np.isfinite(differences)]
    if differences.size < 2:
        raise ValueError(f"a standard error needs at least 2 paired values; {differences.size} are usable.")
    spread = float(np.std(differences, ddof=1))
    if kind == "rows":
        return spread / math.sqrt(differences.size)
    if kind == "resamples":
        return spread
    raise ValueError(f"kind is 'rows' or 'resamples', not {kind!r}.")


def round_to_step(value: float, step: float) -> float:
    """The nearest multiple of step (halves away from zero, so a rounding never depends on the sign's parity)."""
    if not step > 0 or not math.isfinite(step):
        raise ValueError(f"the step must be a positive number, not {step!r}.")
    multiples = abs(value) / step
    rounded = math.floor(multiples + 0.5) * step
    # Printable: 0.1 * 7 is 0.7000000000000001 otherwise.
    digits = max(0, -math.floor(math.log10(step)) + 3)
    return math.copysign(round(rounded, digits), value) if rounded else 0.0


def ladder_release(
    state: LadderState,
    value: float,
    *,
    higher_is_better: bool,
    key: str,
    variant: str = "parameter-free",
    step: float | None = None,
    standard_error: float | None = None,
    resolution: float | None = None,
) -> LadderRelease:
    """Judge one submission's score against the submitter's released best.

    The parameter-free variant needs `standard_error` (paired against the released best, see
    paired_standard_error) and releases the value rounded to `resolution` when given (the paper
    uses 1/n); the fixed variant needs `step` and releases values rounded to its multiples."""
    if not math.isfinite(value):
        raise ValueError(f"the score to judge must be a finite number, not {value!r}.")
    if variant not in VARIANTS:
        raise ValueError(f"the Ladder variant is one of {', '.join(VARIANTS)}, not {variant!r}.")
    if variant == "fixed":
        if step is None:
            raise ValueError("the fixed-step Ladder needs its step.")
        shown = round_to_step(value, step)
    else:
        shown = round_to_step(value, resolution) if resolution else value
    judged = replace(state, submissions=state.submissions + 1)
    if state.best is None:
        moved = replace(judged, best=shown, best_key=key, steps=state.steps + 1)
        return LadderRelease(shown, True, moved, None, f"first score released: {_shown(shown)}")
    if variant == "fixed":
        threshold = step
        margin_words = f"the step {_shown(step)}"
    else:
        if standard_error is None or not math.isfinite(standard_error) or standard_error < 0:
            raise ValueError(f"the parameter-free Ladder needs a standard error >= 0, not {standard_error!r}.")
        threshold = standard_error
        margin_words = f"one standard error ({_shown(standard_error)}) of the paired differences"
    gain = value - state.best if higher_is_better else state.best - value
    if gain > threshold:
        moved = replace(judged, best=shown, best_key=key, steps=state.steps + 1)
        return LadderRelease(shown, True, moved, threshold, f"improved by {_shown(gain)}, more than {margin_words}")
    reason = (
        f"no significant improvement: {_shown(value)} is not better than the released {_shown(state.best)} "
        f"by more than {margin_words}; the released score stays {_shown(state.best)}"
    )
    return LadderRelease(state.best, False, judged, threshold, reason)


def ladder_error_bound(n: int, k: int, step: float, beta: float = 0.05) -> float:
    """With probability 1 - beta, the fixed-step Ladder's leaderboard error on n rows over k
    submissions, for a loss that is a mean of per-row losses in [0, 1], against any adaptive
    submitter: eps + step, where

        eps = sqrt((B ln 2 + ln(2 / beta)) / (2n)),   B = (1/step + 2) log2(4k / step)

    B is the number of bits that name any submission the submitter can make after seeing the
    ladder (Claim 3.2 in the proof of Theorem 3.1): Hoeffding for each of those 2^B classifiers and
    a union bound give eps. The added step is ours: a released value is off by at most half a step
    of rounding, and a refused candidate was at most one step better than what was released."""
    if n < 1 or k < 1 or not 0 < beta < 1:
        raise ValueError(f"the bound needs n >= 1, k >= 1 and 0 < beta < 1 (n={n}, k={k}, beta={beta}).")
    if not step > 0:
        raise ValueError(f"the step must be a positive number, not {step!r}.")
    bits = (1.0 / step + 2.0) * math.log2(4 * k / step)
    return math.sqrt((bits * math.log(2) + math.log(2 / beta)) / (2 * n)) + step


@functools.lru_cache(maxsize=64)
def default_step(n: int, k: int, beta: float = 0.05) -> float:
    """The step that makes ladder_error_bound smallest for n rows and k submissions (of the order
    (log(kn) / n)^(1/3), as the paper's theorem sets it), among 1e-4 .. 0.5 on a log grid."""
    grid = np.geomspace(1e-4, 0.5, 400)
    bounds = [ladder_error_bound(n, k, float(step), beta) for step in grid]
    return float(grid[int(np.argmin(bounds))])


def _shown(value: float) -> str:
    return f"{value:.4g}"
