"""Ranking as a pure function over a matrix of objective values: no database, no Django.

Rows are submissions, columns objectives. `rank_board` is the one entry point the API and the web
page share. Its steps, in order:

1. Constraints. A row that breaks a hard requirement, or has no value for it, is set apart with
   the reason. This happens before scoring on purpose: Dynascore's rates of substitution and win
   rate's opponents are then computed over the submissions the reader is actually comparing, so
   a tighter constraint ranks the rest as if the excluded ones had never been submitted.
2. Scorability. A row missing a weighted objective is not scored rather than guessed.
3. Scoring over the weighted objectives, by one of three methods:
   - `utility`: each objective mapped to [0, 1] between fixed reference bounds, weighted mean;
   - `dynascore`: Dynaboard's Dynascore (Ma et al., NeurIPS 2021), as its reference code does it;
   - `winrate`: HELM's mean win rate, weighted by objective.
4. Ties. With bootstrap resamples the score is recomputed on every resample, and neighbours whose
   paired score difference could be zero share a rank; without resamples only equal scores do.
5. The Pareto frontier of the ranked rows on the weighted objectives.
"""

import math
import re
from dataclasses import dataclass

import numpy as np

METHODS = ("utility", "dynascore", "winrate")
OPERATORS = {"<=": np.less_equal, ">=": np.greater_equal, "<": np.less, ">": np.greater}
# Dynaboard's delta_cutoff_proportion: neighbours closer than this share of the best performance
# are too close for their difference to divide by.
DYNASCORE_DELTA_CUTOFF = 0.0001
# Rows looked at above a window of the ranked order, first, to find where its chain of ties starts;
# the block doubles until it holds a pair that is not tied.
TIE_LOOKBACK = 20
# Win rates of a few rows are looked up in each sorted resample; from one row in this many, every
# row's win rate is computed at once (one argsort per resample).
WIN_RATE_FEW_ROWS = 8
# The Pareto sweep takes rows in blocks of 512 and compares them with the frontier in chunks of
# 32, 64, 128, ... rows: boolean tables of at most a few hundred kilobytes, big enough that the
# Python loop around them costs little.
PARETO_BLOCK = 512
PARETO_FIRST_CHUNK = 32


@dataclass(frozen=True)
class ObjectiveSpec:
    key: str
    higher_is_better: bool
    worst: float | None = None  # utility bound: the worst acceptable value, which maps to 0
    best: float | None = None  # utility bound: the best achievable value, which maps to 1
    offset: float = 0.0  # Dynascore offset, added after the direction multiplier (16 GB - memory)


@dataclass(frozen=True)
class Constraint:
    key: str
    op: str  # one of OPERATORS
    value: float

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value:.15g}"

    def breach(self, value: float) -> str:
        """How a row with this value breaks the constraint, in words the reader can check."""
        return f"{self} (not measured)" if math.isnan(value) else f"{self} (is {value:.6g})"


@dataclass(frozen=True)
class RankedBoard:
    order: np.ndarray  # row indices of the ranked rows, best first
    ranks: np.ndarray  # (n,) int: 1-based competition rank, shared along chains of ties; 0 if not ranked
    tied: np.ndarray  # (n,) bool: shares its rank with a neighbour
    scores: np.ndarray  # (n,) float: higher is better; NaN for rows not ranked
    score_intervals: np.ndarray  # (n, 2) float: 95% percentile interval over resamples, NaN if unavailable
    pareto: np.ndarray  # (n,) bool: ranked and not dominated on the weighted objectives
    excluded: list[list[str]]  # per row: the constraints it breaks, e.g. "latency_p99_ms<=10 (is 12.3)"
    unscored: list[str | None]  # per row: why it could not be scored, e.g. "missing roc_auc"
    notes: tuple[str, ...] = ()  # what the reader should know about the scores, e.g. a Dynascore term set to 0


@dataclass(frozen=True)
class _Weighted:
    """The weighted objectives as arrays, one entry per objective being scored."""

    keys: list[str]
    weights: np.ndarray  # normalised to sum to 1
    signs: np.ndarray  # +1 where higher is better, -1 where lower is
    worst: np.ndarray  # NaN where a bound is not set
    best: np.ndarray
    offsets: np.ndarray
    primary: int | None  # index of the primary objective, None when it is not weighted


@dataclass(frozen=True)
class _Ranking:
    """The ranked rows alone; every array is indexed like them except `order`, which indexes them."""

    order: np.ndarray
    ranks: np.ndarray
    tied: np.ndarray
    scores: np.ndarray
    score_intervals: np.ndarray
    pareto: np.ndarray
    notes: tuple[str, ...]


_NOTHING_RANKED = _Ranking(
    order=np.empty(0, dtype=int),
    ranks=np.empty(0, dtype=int),
    tied=np.empty(0, dtype=bool),
    scores=np.empty(0),
    score_intervals=np.empty((0, 2)),
    pareto=np.empty(0, dtype=bool),
    notes=(),
)


def rank_board(
    values: np.ndarray,
    objectives: list[ObjectiveSpec],
    weights: np.ndarray,
    *,
    method: str = "utility",
    primary: str,
    constraints: list[Constraint] = (),
    resamples=None,
    tie_level: float = 0.95,
    window: tuple[int, int] | None = None,
) -> RankedBoard:
    """Rank the rows of `values` (submissions x objectives, NaN = not measured) by the reader's weights.

    `primary` is the key of the performance objective, which Dynascore measures everything against.
    `resamples` holds each value on the same B bootstrap resamples of the test rows for every
    submission: a (submissions x objectives x B) array, or one (submissions x B) array per
    objective with None for an objective without sampling noise (it repeats its value). With it
    ranked rows get score intervals and neighbours a chance to tie. `window` (start, stop) limits
    that to those positions of the ranked order (a page): their intervals, ties and ranks are
    exact, the scores of the rest on the resamples are computed only where the method needs every
    row (Dynascore's rates, win rate's opponents) or a chain of ties reaches above the window.
    Outside the window ranks and ties come from the point scores alone and intervals are NaN.
    """
    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=float)
    resamples = _resample_columns(resamples, values)
    _check_inputs(values, objectives, weights, resamples, tie_level, window)
    keys = [objective.key for objective in objectives]
    used = np.flatnonzero(weights > 0)
    weighted = _weighted(objectives, weights, used, primary)
    _check_method(method, weighted, keys, primary)
    _check_constraints(constraints, keys)

    broken, excluded = _constraint_breaches(values, keys, constraints)
    missing, unscored = _missing_objectives(values[:, used], weighted.keys)
    rows = np.flatnonzero(~broken & ~missing)
    if len(rows) == 0:
        ranking = _NOTHING_RANKED
    else:
        ranking = _rank_rows(method, values, resamples, rows, used, weighted, tie_level, window)

    n = len(values)
    return RankedBoard(
        order=rows[ranking.order],
        ranks=_spread(n, rows, ranking.ranks, 0),
        tied=_spread(n, rows, ranking.tied, False),
        scores=_spread(n, rows, ranking.scores, np.nan),
        score_intervals=_spread(n, rows, ranking.score_intervals, np.nan),
        pareto=_spread(n, rows, ranking.pareto, False),
        excluded=excluded,
        unscored=unscored,
        notes=ranking.notes,
    )


def parse_constraints(text: str, known_keys, *, what: str = "constraint") -> list[Constraint]:
    """`latency_p99_ms<=10,demographic_parity_difference<=0.1` -> constraints, refusing what it cannot read.

    `what` names them in the messages: the same form is a leaderboard's constraint and a CI gate."""
    known_keys = list(known_keys)
    constraints = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"([^<>=!\s]+)\s*([<>=!]+)\s*(.*)", item)
        if match is None:
            raise ValueError(f"{what} '{item}' needs the form key<=number, e.g. latency_p99_ms<=10.")
        key, op, number = match.groups()
        if key not in known_keys:
            raise ValueError(f"unknown objective '{key}' in {what} '{item}'; known: {', '.join(known_keys)}.")
        if op not in OPERATORS:
            raise ValueError(f"{what} '{item}' has operator '{op}'; use one of {', '.join(OPERATORS)}.")
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"{what} '{item}' compares with '{number}', which is not a number.") from None
        if not math.isfinite(value):
            raise ValueError(f"{what} '{item}' compares with '{number}'; it needs a finite number.")
        constraints.append(Constraint(key, op, value))
    return constraints


def _resample_columns(resamples, values) -> list[np.ndarray] | None:
    """One (submissions x B) array per objective; B = 1 (the point value) for one without noise.

    Float32 arrays stay float32: the stored resamples are, and sorting them is faster.
    """
    if resamples is None:
        return None
    if isinstance(resamples, np.ndarray) or not isinstance(resamples, (list, tuple)):
        resamples = np.asarray(resamples, dtype=float)
        if resamples.ndim != 3 or resamples.shape[:2] != values.shape or not resamples.shape[2]:
            raise ValueError(
                f"resamples must be submissions x objectives x B (B >= 1) with values of shape {values.shape}; "
                f"got {resamples.shape}."
            )
        return [resamples[:, column] for column in range(values.shape[1])]
    if len(resamples) != values.shape[1]:
        raise ValueError(f"resamples needs one entry per objective ({values.shape[1]}), got {len(resamples)}.")
    columns = []
    for column, sampled in enumerate(resamples):
        if sampled is None:
            columns.append(values[:, [column]])
            continue
        sampled = np.asarray(sampled)
        if sampled.dtype != np.float32:
            sampled = sampled.astype(float)
        if sampled.ndim != 2 or len(sampled) != len(values) or not sampled.shape[1]:
            raise ValueError(
                f"resamples of objective {column} must be submissions x B with {len(values)} submissions; "
                f"got {sampled.shape}."
            )
        columns.append(sampled)
    if len({column.shape[1] for column in columns} - {1}) > 1:
        raise ValueError("every objective's resamples must have the same number B of resamples.")
    return columns


def _check_inputs(values, objectives, weights, resamples, tie_level, window) -> None:
    if values.ndim != 2 or values.shape[1] != len(objectives) or weights.shape != (len(objectives),):
        raise ValueError(
            f"values must be submissions x objectives with one objective spec and one weight per column; "
            f"got values of shape {values.shape}, {len(objectives)} objectives and {weights.size} weights."
        )
    keys = [objective.key for objective in objectives]
    if len(set(keys)) != len(keys):
        raise ValueError(f"objective keys must be unique; got {', '.join(keys)}.")
    if np.isinf(values).any():
        raise ValueError("values must be finite, or NaN where not measured.")
    if window is not None and not (len(window) == 2 and 0 <= window[0] <= window[1]):
        raise ValueError(f"window must be (start, stop) positions with 0 <= start <= stop, not {window}.")
    for key, weight in zip(keys, weights):
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"the weight of {key} must be a finite non-negative number, not {weight}.")
    if not (weights > 0).any():
        raise ValueError("at least one weight must be above zero.")
    if not 0 < tie_level < 1:
        raise ValueError(f"tie_level must be between 0 and 1, not {tie_level}.")


def _weighted(objectives, weights, used, primary) -> _Weighted:
    specs = [objectives[column] for column in used]
    keys = [spec.key for spec in specs]
    return _Weighted(
        keys=keys,
        weights=weights[used] / weights[used].sum(),
        signs=np.array([1.0 if spec.higher_is_better else -1.0 for spec in specs]),
        worst=np.array([np.nan if spec.worst is None else spec.worst for spec in specs], dtype=float),
        best=np.array([np.nan if spec.best is None else spec.best for spec in specs], dtype=float),
        offsets=np.array([spec.offset for spec in specs], dtype=float),
        primary=keys.index(primary) if primary in keys else None,
    )


def _check_method(method, weighted, keys, primary) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown ranking method '{method}'; use one of {', '.join(METHODS)}.")
    if method == "utility":
        for key, sign, worst, best in zip(weighted.keys, weighted.signs, weighted.worst, weighted.best):
            if not (math.isfinite(worst) and math.isfinite(best)):
                raise ValueError(f"the utility method needs worst and best bounds for {key}, which has weight.")
            if (best - worst) * sign <= 0:
                better = "above" if sign > 0 else "below"
                raise ValueError(f"{key}: its best bound ({best:g}) must be {better} its worst ({worst:g}).")
    if method == "dynascore":
        if primary not in keys:
            raise ValueError(f"the primary objective '{primary}' is not one of the objectives.")
        if weighted.primary is None:
            raise ValueError(
                f"dynascore measures every objective in units of the primary objective {primary}, "
                f"so {primary} needs a positive weight."
            )


def _check_constraints(constraints, keys) -> None:
    for constraint in constraints:
        if constraint.key not in keys:
            raise ValueError(f"constraint {constraint} names an objective this board does not have.")
        if constraint.op not in OPERATORS:
            raise ValueError(
                f"constraint {constraint} has operator '{constraint.op}'; use one of {', '.join(OPERATORS)}."
            )


def _constraint_breaches(values, keys, constraints) -> tuple[np.ndarray, list[list[str]]]:
    breaches = [[] for _ in range(len(values))]
    broken = np.zeros(len(values), dtype=bool)
    for constraint in constraints:
        column = values[:, keys.index(constraint.key)]
        # A comparison with NaN is false, so an unmeasured value breaks the constraint: a hard
        # requirement nobody checked is not met.
        fails = ~OPERATORS[constraint.op](column, constraint.value)
        for row, value in zip(np.flatnonzero(fails).tolist(), column[fails].tolist()):
            breaches[row].append(constraint.breach(value))
        broken |= fails
    return broken, breaches


def _missing_objectives(weighted_values, weighted_keys) -> tuple[np.ndarray, list[str | None]]:
    absent = np.isnan(weighted_values)
    missing = absent.any(axis=1)
    reasons = [None] * len(weighted_values)
    for row in np.flatnonzero(missing).tolist():
        reasons[row] = "missing " + ", ".join(key for key, gone in zip(weighted_keys, absent[row]) if gone)
    return missing, reasons


def _spread(n, rows, ranked_values, fill) -> np.ndarray:
    """The ranked rows' values placed at their rows of the whole board, `fill` elsewhere."""
    spread = np.full((n, *ranked_values.shape[1:]), fill, dtype=ranked_values.dtype)
    spread[rows] = ranked_values
    return spread


def _rank_rows(method, values, resamples, rows, used, weighted, tie_level, window) -> _Ranking:
    point_values = values[np.ix_(rows, used)]
    everyone = np.arange(len(rows))
    points = _SCORERS[method]([column[None, :] for column in point_values.T], weighted)(everyone)[:, 0]
    order = np.argsort(-points, kind="stable")  # equal scores keep the caller's row order
    ordered = points[order]
    ties_next = ordered[:-1] == ordered[1:]
    intervals = np.full((len(rows), 2), np.nan)
    if resamples is not None:
        scorer = _SCORERS[method]([_by_resample(resamples[column], rows) for column in used], weighted)
        lo, hi = (0, len(rows)) if window is None else (min(window[0], len(rows)), min(window[1], len(rows)))
        _resampled_ties(order, scorer, lo, hi, tie_level, ties_next, intervals)
    positions = np.arange(1, len(order) + 1)
    ranks = np.empty(len(order), dtype=int)
    ranks[order] = np.maximum.accumulate(np.where(np.r_[True, ~ties_next], positions, 0))
    tied = np.empty(len(order), dtype=bool)
    tied[order] = np.r_[False, ties_next] | np.r_[ties_next, False]
    return _Ranking(
        order=order,
        ranks=ranks,
        tied=tied,
        scores=points,
        score_intervals=intervals,
        pareto=_pareto_optimal(point_values * weighted.signs),
        notes=tuple(_NOTES[method](point_values, weighted)),
    )


def _resampled_ties(order, scorer, lo, hi, tie_level, ties_next, intervals) -> None:
    """Score intervals of the ranked positions lo..hi-1 and the ties that decide their ranks.

    Two neighbours tie when their scores are equal or when the central `tie_level` interval of
    their paired score difference over the resamples contains 0: the ranking does not claim a
    winner that the choice of test rows could explain. A chain of ties takes the rank of its first
    member, even when its ends would not tie with each other, so above the window the pairs are
    checked in growing blocks until one is not tied: the ranks inside the window are exact without
    scoring the rows above the chain. Fills `ties_next` (pair p, p+1) and `intervals` in place.
    """
    stop = min(hi + 1, len(order))  # the row under the window decides whether its last row ties
    scores = scorer(order[lo:stop])
    intervals[order[lo:hi]] = _nanquantiles(scores[: hi - lo].copy(), [0.025, 0.975]).T
    ties_next[lo : stop - 1] |= _paired_ties(scores, tie_level)
    top, top_scores, block = lo, scores[:1], TIE_LOOKBACK
    while top > 0:
        start = max(0, top - block)
        above = np.concatenate([scorer(order[start:top]), top_scores])
        ties_next[start:top] |= _paired_ties(above, tie_level)
        if not ties_next[start:top].all():
            break
        top, top_scores, block = start, above[:1], 2 * block


def _paired_ties(scores, tie_level) -> np.ndarray:
    """Whether each row's paired score difference with the next could be zero (rows x B scores)."""
    low, high = _nanquantiles(scores[:-1] - scores[1:], [(1 - tie_level) / 2, (1 + tie_level) / 2])
    # Neighbours without a single common resample fall back to comparing scores (NaN compares false).
    return (low <= 0) & (high >= 0)


# Scoring. Each method takes the weighted objectives of the ranked rows, one (B x m) array per
# objective (or 1 x m for one that has no sampling noise: it broadcasts), does what needs every
# row, and returns a function that scores a selection of the ranked rows: (k positions x B) scores,
# higher is better. Point values are scored as B = 1, so the point score and the scores on
# resamples are one computation. On a resample, as on the board, a row missing a weighted value
# is not scored: its score there is NaN, and the methods that compare rows leave it out of that
# resample (`_absent_where_incomplete`).


def _utility_scorer(by_resample, weighted):
    """Each objective mapped linearly from [worst, best] to [0, 1] and clipped, then the weighted mean.

    The bounds are fixed inputs, so a row's score depends on its own values alone: adding a
    submission never moves another one's score.
    """

    def score(positions):
        total = np.zeros((1, len(positions)))
        for values, worst, best, weight in zip(by_resample, weighted.worst, weighted.best, weighted.weights):
            # Lower-is-better objectives have worst > best, so one formula serves both directions.
            utility = values[:, positions] - worst
            utility /= best - worst
            np.clip(utility, 0.0, 1.0, out=utility)
            utility *= weight
            total = total + utility
        return np.ascontiguousarray(total.T)

    return score


def _dynascore_scorer(by_resample, weighted):
    """Dynaboard's Dynascore, as its reference implementation (dynabench, CS224u) computes it.

    Each objective is converted to "higher is better" (multiplied by -1 where lower is better,
    then its offset added), divided by its average marginal rate of substitution (AMRS) with the
    primary objective, and the weighted sum taken. Where the AMRS is undefined (no two neighbours
    differ enough in the primary objective) or zero (the objective never changes between them),
    the reference divides by it and every score becomes NaN or infinite; here that objective
    adds 0 instead, and `_dynascore_notes` says so. The rates need every row; a row's score is
    then its own converted values times fixed scales.
    """
    by_resample = _absent_where_incomplete(by_resample)
    amrs = _amrs(by_resample, weighted)
    defined = np.isfinite(amrs) & (amrs != 0)
    scales = np.where(defined, weighted.weights[:, None] / np.abs(np.where(defined, amrs, 1.0)), 0.0)

    def score(positions):
        total = np.zeros((1, len(positions)))
        for values, sign, offset, scale in zip(by_resample, weighted.signs, weighted.offsets, scales):
            total = total + (values[:, positions] * sign + offset) * scale[:, None]
        return np.ascontiguousarray(total.T)

    return score


def _amrs(by_resample, weighted) -> np.ndarray:
    """(w x B) average marginal rates of substitution of each objective for the primary one.

    Rows sorted by the converted primary objective (stably, so rows tied on it keep submission
    order and the neighbour pairs are well defined); of the neighbour pairs whose primary
    difference exceeds the cutoff, the mean of |difference in the objective| / difference in the
    primary. An objective's offset cancels in a difference and its direction in the absolute value,
    so only the primary needs converting. The reference scales the cutoff by the largest converted
    primary value, which lets zero differences through when every converted primary value is
    negative (a lower-is-better primary without an offset); its magnitude is used here, which is
    identical whenever the largest value is non-negative. The primary's own rate is 1 wherever a
    pair is kept (each kept difference divided by itself), so it is not computed.
    """
    primary = weighted.primary
    order = _stable_order(_signed(by_resample[primary], weighted.signs[primary]))  # NaN last, never kept
    performance = np.asarray(by_resample[primary], dtype=float) * weighted.signs[primary] + weighted.offsets[primary]
    primary_differences = np.diff(np.take_along_axis(performance, order, axis=1), axis=1)
    cutoff = DYNASCORE_DELTA_CUTOFF * np.abs(np.fmax.reduce(performance, axis=1, keepdims=True))
    kept = np.abs(primary_differences) > cutoff
    pairs = kept.sum(axis=1)
    kept_differences = np.where(kept, primary_differences, np.nan)
    amrs = []
    for index, values in enumerate(by_resample):
        if index == primary:
            amrs.append(np.where(pairs > 0, 1.0, np.nan))
            continue
        ordered = np.take_along_axis(np.broadcast_to(values, order.shape), order, axis=1)
        rates = np.abs(np.diff(ordered.astype(float), axis=1))
        rates /= kept_differences
        np.copyto(rates, 0.0, where=~kept)
        total = rates.sum(axis=1)
        amrs.append(np.divide(total, pairs, out=np.full(total.shape, np.nan), where=pairs > 0))
    # An objective that repeats its value, or a primary that does, has one rate for every resample.
    return np.array(np.broadcast_arrays(*amrs))


def _stable_order(values) -> np.ndarray:
    """Each row's ascending order, equal values in column order and NaN last, as a stable argsort.

    Float32 values (the stored resamples) are sorted as 64-bit keys holding the value's bits
    above the column index: an ordinary sort of the keys gives the stable order several times
    faster than a stable argsort of the values.
    """
    if values.dtype != np.float32 or values.shape[1] >= 2**32:
        return np.argsort(values, axis=1, kind="stable")
    values = np.where(np.isnan(values), np.float32(np.nan), values + np.float32(0.0))  # one NaN, one zero
    bits = values.view(np.uint32).astype(np.uint64)
    # IEEE order as unsigned integers: negative numbers reversed below the positive ones.
    negative = bits >= 2**31
    bits = np.where(negative, (2**32 - 1) - bits, bits + 2**31)
    keys = (bits << np.uint64(32)) | np.arange(values.shape[1], dtype=np.uint64)
    keys.sort(axis=1)
    return (keys & np.uint64(2**32 - 1)).astype(np.intp)


def _signed(values, sign) -> np.ndarray:
    """Values turned higher-is-better, in their own dtype (float32 resamples sort faster)."""
    return values if sign > 0 else np.negative(values)


def _dynascore_notes(point_values, weighted) -> list[str]:
    amrs = _amrs([column[None, :] for column in point_values.T], weighted)[:, 0]
    primary = weighted.keys[weighted.primary]
    if np.isnan(amrs[weighted.primary]):
        return [
            f"Dynascore: no two ranked submissions differ enough in {primary} to convert the other "
            f"objectives into its units, so every objective adds 0 and all Dynascores are 0."
        ]
    return [
        f"Dynascore: {key} does not change between submissions neighbouring in {primary}, "
        f"so its rate of substitution is 0 and it adds 0 to every Dynascore."
        for key, rate in zip(weighted.keys, amrs)
        if rate == 0
    ]


def _win_rate_scorer(by_resample, weighted):
    """HELM's mean win rate, weighted: per objective, the share of the other rows a row beats.

    Ties count half, as in HELM's `compute_aggregate_row_win_rates`. HELM leaves a row without a
    value for an objective out of that objective (it neither wins nor counts as an opponent, so
    the denominator is the number of other rows that have it) and averages over the objectives a
    row has. Here a row missing a weighted value is not ranked at all (or, on a resample, left out
    of that resample), so every row has every objective and each denominator is the number of
    other rows compared: m - 1. A lone row has nobody to beat and no score.
    """
    signed = [_signed(values, sign) for values, sign in zip(_absent_where_incomplete(by_resample), weighted.signs)]
    everyone, ordered = {}, {}  # per objective, computed on first use: every row's rates, sorted values

    def score(positions):
        total = np.zeros((1, len(positions)))
        for index, (values, share) in enumerate(zip(signed, weighted.weights)):
            if len(values) == 1 or len(positions) * WIN_RATE_FEW_ROWS >= values.shape[1]:
                if index not in everyone:
                    everyone[index] = _win_rates(values)
                rates = everyone[index][:, positions]
            else:
                if index not in ordered:
                    ordered[index] = np.sort(values, axis=1)  # NaN last
                rates = _win_rates_of(values, ordered[index], positions)
            total = total + rates * share
        return np.ascontiguousarray(total.T)

    return score


def _win_rates(signed) -> np.ndarray:
    """Each row's win rate on each resample (resamples x rows, higher values win); NaN where absent."""
    resamples, rows = signed.shape
    order = np.argsort(signed, axis=1)  # absent rows (NaN) sort last
    ordered = np.take_along_axis(signed, order, axis=1).ravel()
    # Runs of equal values, all resamples end to end; each resample starts a new run.
    starts = np.ones(ordered.size, dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    starts[::rows] = True
    run_starts = np.flatnonzero(starts)
    run_lengths = np.diff(np.append(run_starts, ordered.size))
    # A run's middle position within its resample is (rows below it) + (others equal to it) / 2.
    run_wins = run_starts % rows + (run_lengths - 1) / 2
    wins = np.empty(signed.shape)
    np.put_along_axis(wins, order, run_wins[np.cumsum(starts) - 1].reshape(signed.shape), axis=1)
    absent = np.isnan(signed)
    opponents = rows - 1 - absent.sum(axis=1, keepdims=True)
    return np.divide(wins, opponents, out=np.full(wins.shape, np.nan), where=~absent & (opponents > 0))


def _win_rates_of(signed, ordered, positions) -> np.ndarray:
    """`_win_rates(signed)[:, positions]` for a few rows, looked up in each sorted resample (`ordered`)."""
    opponents = (~np.isnan(ordered)).sum(axis=1) - 1
    chosen = signed[:, positions]
    wins = np.empty(chosen.shape)
    for resample, (row, wanted) in enumerate(zip(ordered, chosen)):
        below = np.searchsorted(row, wanted, side="left")
        wins[resample] = below + (np.searchsorted(row, wanted, side="right") - below - 1) / 2
    opponents = opponents[:, None]
    return np.divide(wins, opponents, out=np.full(wins.shape, np.nan), where=~np.isnan(chosen) & (opponents > 0))


def _win_rate_notes(point_values, weighted) -> list[str]:
    if len(point_values) == 1:
        return ["Win rate: a single ranked submission has nobody to win against, so it has no score."]
    return []


def _by_resample(column, rows) -> np.ndarray:
    """The ranked rows of a (submissions x B) column as (B x m), for sorts over contiguous memory.

    Latency, size and cost repeat their value on every resample; such a column becomes a single
    row that broadcasts, which spares sorting or gathering it B times.
    """
    if column.shape[1] == 1 or (column == column[:, :1]).all():
        return column[rows, 0][None, :]
    return np.ascontiguousarray(column[rows].T)


def _absent_where_incomplete(by_resample) -> list[np.ndarray]:
    """The (B x m) arrays with all of a row's values NaN on the resamples where it misses one.

    Methods that compare rows then leave such a row out of that resample altogether, as the board
    leaves out a row missing a weighted value, instead of comparing it on some objectives only.
    """
    incomplete = np.zeros(np.broadcast_shapes(*(values.shape for values in by_resample)), dtype=bool)
    for values in by_resample:
        incomplete |= np.isnan(values)
    if not incomplete.any():
        return by_resample
    return [np.where(incomplete, np.nan, values) for values in by_resample]


_SCORERS = {"utility": _utility_scorer, "dynascore": _dynascore_scorer, "winrate": _win_rate_scorer}
_NOTES = {"utility": lambda point_values, weighted: [], "dynascore": _dynascore_notes, "winrate": _win_rate_notes}


def _nanquantiles(samples, quantiles) -> np.ndarray:
    """(len(quantiles) x rows) quantiles of each row ignoring NaN, as np.nanpercentile's default.

    Sorts `samples` in place: its callers no longer need them, and a copy of m x B values costs as
    much as the sort. Sorting the short rows is several times faster than np.nanpercentile, which
    walks the rows one by one in Python when any value is NaN, and than np.percentile's partitioning.
    """
    samples.sort(axis=1)
    # NaN sorts last, so only the rows that end in NaN need their values counted.
    available = np.full(len(samples), samples.shape[1])
    incomplete = np.flatnonzero(np.isnan(samples[:, -1]))
    available[incomplete] = (~np.isnan(samples[incomplete])).sum(axis=1)
    last = np.maximum(available - 1, 0)
    rows = np.arange(len(samples))
    result = []
    for quantile in quantiles:
        position = quantile * last
        below = np.floor(position).astype(int)
        low, high = samples[rows, below], samples[rows, np.minimum(below + 1, last)]
        result.append(np.where(available > 0, low + (high - low) * (position - below), np.nan))
    return np.array(result)


def _pareto_optimal(better) -> np.ndarray:
    """Whether each row is dominated by no other (`better`: rows x objectives, higher is better).

    A row dominates another when it is at least as good on every objective and better on one.
    Rows are swept in blocks, in an order where every row's dominators come before it, keeping the
    non-dominated rows seen so far (the frontier); each block is checked against the frontier and
    then against its own earlier rows. Why that is exact:
    - If a dominates b, a comes first. The sort key is the sum of the objectives rescaled to [0, 1],
      descending. Rescaling and floating-point addition are monotone and every row's sum is formed
      by the same sequence of additions, so a's sum is at least b's. Should any two sums be equal,
      the objectives themselves break the tie, and a is ahead at the first one where they differ.
    - Equal rows have equal sums, so they are adjacent in that order and share one fate (neither
      dominates the other): only the first of each is swept. Between distinct rows "at least as
      good everywhere" then means "dominates", one comparison per objective instead of two.
    - A dominated row has a non-dominated dominator: follow dominators from it (each strictly
      earlier, so the walk ends); the last one dominates it too, by transitivity. That dominator is
      in an earlier block, hence in the frontier, or earlier in the same block and not ruled out
      by the frontier (else the row would be too), which the in-block check sees. A row is only
      ever ruled out by a row that dominates it, so the flags are exact both ways.
    """
    low = better.min(axis=0)
    spread = better.max(axis=0) - low
    rescaled_sum = ((better - low) / np.where(spread > 0, spread, 1.0)).sum(axis=1)
    order = np.argsort(-rescaled_sum, kind="stable")
    if (np.diff(rescaled_sum[order]) == 0).any():
        order = np.lexsort(np.vstack([-better[:, ::-1].T, -rescaled_sum]))
    swept = better[order]
    first_of_equals = np.r_[True, (swept[1:] != swept[:-1]).any(axis=1)]
    distinct = swept[first_of_equals]
    optimal = np.zeros(len(distinct), dtype=bool)
    frontier = distinct[:0]
    for start in range(0, len(distinct), PARETO_BLOCK):
        block = distinct[start : start + PARETO_BLOCK]
        survivors = np.flatnonzero(~_covered(block, frontier))
        survivors = survivors[~_covered_by_earlier(block[survivors])]
        optimal[start + survivors] = True
        frontier = np.concatenate([frontier, block[survivors]])
    result = np.empty(len(better), dtype=bool)
    result[order] = optimal[np.cumsum(first_of_equals) - 1]
    return result


def _covered(targets, rows) -> np.ndarray:
    """Whether, for each target, some row is at least as good as it on every objective.

    The rows come strongest first, so most targets are ruled out by the first few; the chunks
    double in size and only targets still standing are compared with the next one.
    """
    covered = np.zeros(len(targets), dtype=bool)
    start, size = 0, PARETO_FIRST_CHUNK
    while start < len(rows) and not covered.all():
        standing = np.flatnonzero(~covered)
        covered[standing] = _at_least_as_good(rows[start : start + size], targets[standing]).any(axis=0)
        start, size = start + size, 2 * size
    return covered


def _covered_by_earlier(block) -> np.ndarray:
    earlier = np.tri(len(block), k=-1, dtype=bool).T  # [i, j]: row i comes before row j
    return (_at_least_as_good(block, block) & earlier).any(axis=0)


def _at_least_as_good(rows, targets) -> np.ndarray:
    """[i, j]: row i is at least as good as target j on every objective."""
    result = np.ones((len(rows), len(targets)), dtype=bool)
    for objective in range(rows.shape[1]):
        result &= rows[:, None, objective] >= targets[None, :, objective]
    return result
