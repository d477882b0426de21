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
   The rows are listed by their point score, best first. With bootstrap resamples the score is
   also computed on every resample.
4. Ranks, as Chatbot Arena reports them. Over the m ranked rows and the B shared resamples:
   - j is significantly better than i when the central 95% (`confidence`) interval of the paired
     difference score_j - score_i over the resamples lies above 0. Its ends are order statistics
     of the B' resamples on which both have a score: the k-th smallest and the k-th largest
     difference, k = floor(0.025 * (B' - 1)) + 1 (numpy's "lower" and "higher" percentile methods,
     never narrower than the interpolated interval). So j is significantly better than i exactly
     when at most k - 1 of the B' differences are <= 0. Without resamples, or when every weighted
     objective repeats its value, B' = 1 and this is a strictly better score; a pair without a
     common resample compares point scores.
   - rank = 1 + the number of rows significantly better;
   - rank interval = [rank, m - the number of rows significantly worse]: the best and the worst
     place the row could hold if every difference the resamples cannot establish went its way;
   - tied = another ranked row has the same rank.
   A row's rank does not depend on which rows are asked for, and rows that are equal on every
   resample always share it (their differences with any third row are the same numbers). A rank
   counts significant differences, so a row with a more certain score can show a larger rank than
   one listed below it.
   Testing all pairs costs m^2 * B. Instead each row's scores, shifted on each resample by the
   same amount for every row (the mean over rows, so that the noise all rows share is removed and
   differences are unchanged), are summarised by a few order statistics, which settle most pairs
   by a union bound (`_Paired`); only the pairs they leave open get the exact paired count.
   With a `window`, ranks, rank intervals, ties and score intervals are computed for the rows in it
   only (a page); elsewhere they are 0, False and NaN.
5. The Pareto frontier of the ranked rows on the weighted objectives: a row is on it when no other
   row dominates it. A dominates B when A is significantly better than B on at least one weighted
   objective and significantly worse on none. On an objective with resamples "significantly
   better" is the paired test above on the objective's values; on one without (every row repeats
   its value, like size) it is better by more than 1e-9 of the larger magnitude of the two values,
   so a difference in the last bits of a float is no reason to be on the frontier.
"""

import hashlib
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("utility", "dynascore", "winrate")
OPERATORS = {"<=": np.less_equal, ">=": np.greater_equal, "<": np.less, ">": np.greater}
# Dynaboard's delta_cutoff_proportion: neighbours closer than this share of the best performance
# are too close for their difference to divide by.
DYNASCORE_DELTA_CUTOFF = 0.0001
# Pareto: an objective without resamples needs a difference above this share of the larger
# magnitude before one row is better on it.
PARETO_TOLERANCE = 1e-9
# Row blocks compared at once, sized so that their (block x rows) boolean tables stay a few
# megabytes on a board of 100,000.
PAIR_BLOCK = 64
# The Pareto sweep compares the undecided rows with possible dominators in chunks of 32, 64, 128,
# ... rows, strongest first: most dominated rows are settled by the first chunk.
PARETO_FIRST_CHUNK = 32
# ...and a target the bounds leave open is compared exactly with this many rivals at a time,
# strongest first, stopping at the first that dominates it.
PARETO_EXACT_CHUNK = 256
# What a board's RankingMemo may hold: at 100,000 submissions and 200 resamples one objective's
# win rates on every resample are 80 MB, its order statistics a few MB.
MEMO_BYTES = 512 * 2**20
# Resamples whose rates of substitution or win rates are computed at once.
RESAMPLE_CHUNK = 25


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
    order: np.ndarray  # row indices of the ranked rows, best point score first
    ranks: np.ndarray  # (n,) int: 1 + rows significantly better; 0 if not ranked or outside the window
    rank_intervals: np.ndarray  # (n, 2) int: [rank, ranked rows - rows significantly worse]; 0 where ranks is
    tied: np.ndarray  # (n,) bool: another ranked row has the same rank (computed for the window's rows)
    scores: np.ndarray  # (n,) float: higher is better; NaN for rows not ranked
    score_intervals: np.ndarray  # (n, 2) float: 95% percentile interval over resamples, NaN if unavailable
    pareto: np.ndarray  # (n,) bool: ranked and not dominated on the weighted objectives
    excluded: Sequence[list[str]]  # per row: the constraints it breaks, e.g. "latency_p99_ms<=10 (is 12.3)"
    unscored: Sequence[str | None]  # per row: why it could not be scored, e.g. "missing roc_auc"
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
    rank_intervals: np.ndarray
    tied: np.ndarray
    scores: np.ndarray
    score_intervals: np.ndarray
    pareto: np.ndarray
    notes: tuple[str, ...]


_NOTHING_RANKED = _Ranking(
    order=np.empty(0, dtype=int),
    ranks=np.empty(0, dtype=int),
    rank_intervals=np.empty((0, 2), dtype=int),
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
    confidence: float = 0.95,
    window: tuple[int, int] | None = None,
    pareto_only: bool = False,
    whole_frontier: bool = False,
    memo: "RankingMemo | None" = None,
) -> RankedBoard:
    """Rank the rows of `values` (submissions x objectives, NaN = not measured) by the reader's weights.

    `primary` is the key of the performance objective, which Dynascore measures everything against.
    `resamples` holds each value on the same B bootstrap resamples of the test rows for every
    submission: a (submissions x objectives x B) array, or one (submissions x B) array per
    objective with None for an objective without sampling noise (it repeats its value). Resample b
    of one submission is compared with resample b of another, which is a bootstrap draw of their
    difference whether the resamples are shared test rows or independent draws. Without it every
    difference counts (see the module docstring). `confidence` is the level of the intervals that
    decide significance. `window` (start, stop) limits ranks, rank intervals, ties and score
    intervals to those positions of the listed order: the ranked order, or its Pareto-optimal rows
    alone with `pareto_only` (a page of the frontier); Pareto flags too, unless `pareto_only` or
    `whole_frontier` asks for every row's. `memo` keeps the work that does not depend on the weights for the next
    ranking of the same values and resamples (the caller's promise: pass a memo with one board only).
    """
    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=float)
    resamples = _resample_columns(resamples, values)
    _check_inputs(values, objectives, weights, resamples, confidence, window)
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
        memo = RankingMemo() if memo is None else memo
        ranking = _rank_rows(
            method, values, resamples, rows, used, weighted, confidence, window, pareto_only, whole_frontier, memo
        )

    n = len(values)
    return RankedBoard(
        order=rows[ranking.order],
        ranks=_spread(n, rows, ranking.ranks, 0),
        rank_intervals=_spread(n, rows, ranking.rank_intervals, 0),
        tied=_spread(n, rows, ranking.tied, False),
        scores=_spread(n, rows, ranking.scores, np.nan),
        score_intervals=_spread(n, rows, ranking.score_intervals, np.nan),
        pareto=_spread(n, rows, ranking.pareto, False),
        excluded=excluded,
        unscored=unscored,
        notes=ranking.notes,
    )


def utility_samples(
    values: np.ndarray, objectives: list[ObjectiveSpec], weights: np.ndarray, *, primary: str, resamples=None
) -> tuple[np.ndarray, np.ndarray]:
    """The utility score of each row, as a point and on each resample: ((n,), (n x B)), B = 1 without
    resamples; NaN where a weighted value is missing. The same computation rank_board ranks by,
    for a caller that needs one row's scores on their own (the Ladder on the default board)."""
    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=float)
    resamples = _resample_columns(resamples, values)
    _check_inputs(values, objectives, weights, resamples, 0.95, None)
    used = np.flatnonzero(weights > 0)
    weighted = _weighted(objectives, weights, used, primary)
    _check_method("utility", weighted, [objective.key for objective in objectives], primary)
    rows = np.arange(len(values))
    points = _utility_scores([column[None, :] for column in values[:, used].T], weighted)[:, 0]
    if resamples is None:
        return points, points[:, None]
    samples = _utility_scores(_absent_where_incomplete([_by_resample(resamples[c], rows) for c in used]), weighted)
    return points, samples


def metric_value(value) -> float:
    """A stored metric as rank_board takes it: a finite number, else NaN (absent, a boolean, infinity)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return math.nan


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


def _check_inputs(values, objectives, weights, resamples, confidence, window) -> None:
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
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}.")


def _weighted(objectives, weights, used, primary) -> _Weighted:
    specs = [objectives[column] for column in used]
    keys = [spec.key for spec in specs]
    scaled = weights[used]
    if not np.isfinite(scaled.sum()):
        # Weights near the float maximum (1e308) sum to infinity: their proportions are what count.
        scaled = scaled / scaled.max()
    return _Weighted(
        keys=keys,
        weights=scaled / scaled.sum(),
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


class RowReasons(Sequence):
    """Per row, why it is set apart (a list of broken constraints, or a missing objective), worded
    when read: a board of 100,000 rows shows a hundred of them, and a string per row would cost
    more than ranking it. `mask` says which rows have a reason."""

    def __init__(self, mask: np.ndarray, word: Callable[[int], object], empty):
        self.mask, self._word, self._empty = mask, word, empty

    def __len__(self) -> int:
        return len(self.mask)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[index] for index in range(*row.indices(len(self)))]
        return self._word(int(row)) if self.mask[row] else (list(self._empty) if isinstance(self._empty, list) else self._empty)

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return repr(list(self))


def _constraint_breaches(values, keys, constraints) -> tuple[np.ndarray, RowReasons]:
    columns = [values[:, keys.index(constraint.key)] for constraint in constraints]
    # A comparison with NaN is false, so an unmeasured value breaks the constraint: a hard
    # requirement nobody checked is not met.
    fails = [~OPERATORS[c.op](column, c.value) for c, column in zip(constraints, columns)]
    broken = np.logical_or.reduce(fails) if fails else np.zeros(len(values), dtype=bool)

    def word(row):
        return [c.breach(float(column[row])) for c, column, fail in zip(constraints, columns, fails) if fail[row]]

    return broken, RowReasons(broken, word, [])


def _missing_objectives(weighted_values, weighted_keys) -> tuple[np.ndarray, RowReasons]:
    absent = np.isnan(weighted_values)
    missing = absent.any(axis=1)

    def word(row):
        return "missing " + ", ".join(key for key, gone in zip(weighted_keys, absent[row]) if gone)

    return missing, RowReasons(missing, word, None)


def _spread(n, rows, ranked_values, fill) -> np.ndarray:
    """The ranked rows' values placed at their rows of the whole board, `fill` elsewhere."""
    spread = np.full((n, *ranked_values.shape[1:]), fill, dtype=ranked_values.dtype)
    spread[rows] = ranked_values
    return spread


def _rank_rows(
    method, values, resamples, rows, used, weighted, confidence, window, pareto_only, whole_frontier, memo
) -> _Ranking:
    point_values = values[np.ix_(rows, used)]
    board = _Board(values, resamples, rows, used, weighted, memo)
    points = board.point_scores(method)
    order = np.argsort(-points, kind="stable")  # equal scores keep the caller's row order
    objectives = [board.objective_paired(index, confidence) for index in range(len(used))]
    # Listing the frontier needs every row's flag; a page needs only its own rows'.
    whole = window is None or pareto_only or whole_frontier
    # The strongest rows first, where the Pareto sweep looks for dominators.
    ahead = memo.get(("ahead", board.rows_key), lambda: np.argsort(-_rescaled_sum(point_values * weighted.signs), kind="stable"))
    if whole:
        pareto = memo.get(("pareto", board.rows_key, confidence), lambda: _pareto_optimal(objectives, ahead=ahead))
    listed = order[pareto[order]] if pareto_only else order
    score = _score_paired(method, board, points, confidence)
    ranks, rank_intervals, tied = _ranks(score, listed, window)
    shown = np.flatnonzero(ranks)
    if not whole:
        pareto = np.zeros(len(rows), dtype=bool)
        pareto[shown] = _pareto_optimal(objectives, shown, ahead=ahead)
    intervals = np.full((len(rows), 2), np.nan)
    if resamples is not None and len(shown):
        intervals[shown] = _nanquantiles(score.rows_samples(shown), [0.025, 0.975]).T
    return _Ranking(
        order=order,
        ranks=ranks,
        rank_intervals=rank_intervals,
        tied=tied,
        scores=points,
        score_intervals=intervals,
        pareto=pareto,
        notes=tuple(_dynascore_notes(board.point_amrs(), weighted) if method == "dynascore" else
                    _NOTES[method](point_values, weighted)),
    )


class RankingMemo:
    """Work on one board that does not depend on the reader's weights, kept between its rankings.

    A board's rows and resamples do not change while it is kept (leaderboard/board_columns.py
    starts a new board, with a new memo, when they do), so a reader moving a slider reuses what
    the last ranking computed: each weighted objective's order statistics on the resamples,
    Dynascore's rates of substitution, the win rates on every resample, the Pareto frontier. The
    keys name everything an entry depends on besides the board (the rows compared, the
    objective's bounds and direction). Past `budget` bytes the least recently used entries are
    dropped, and computed again when asked for.
    """

    def __init__(self, budget: int | None = None):
        self.budget = MEMO_BYTES if budget is None else budget
        self._entries: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self._lock = threading.Lock()

    def get(self, key, make):
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = make()
        with self._lock:
            self._entries[key], self._sizes[key] = value, _nbytes(value)
            self._entries.move_to_end(key)
            while sum(self._sizes.values()) > self.budget and len(self._entries) > 1:
                dropped, _ = self._entries.popitem(last=False)
                del self._sizes[dropped]
        return value

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(item) for item in value)
    if isinstance(value, dict):
        return sum(_nbytes(item) for item in value.values())
    return 0


class _Board:
    """The ranked rows' weighted objectives and the weight-independent work on them, memoised.

    Positions given to its methods index the ranked rows (`rows`); `index` is a weighted objective's
    place among the weighted ones.
    """

    def __init__(self, values, resamples, rows, used, weighted, memo: RankingMemo):
        self.values, self.resamples, self.rows, self.used = values, resamples, rows, used
        self.weighted, self.memo = weighted, memo
        self._all = None
        # Every row ranked (no constraint, nothing missing): the columns are used as they are,
        # without copying 80 MB to gather their rows.
        self.every_row = len(rows) == len(values)
        # A constraint or a missing weighted objective changes the rows compared, and with them
        # the rates of substitution and the win rates: memo keys name the rows by a digest.
        self.rows_key = (
            hashlib.blake2b(rows.tobytes(), digest_size=16).digest(), tuple(used.tolist()), resamples is not None
        )

    def spec(self, index: int) -> tuple:
        w = self.weighted
        return (int(self.used[index]), *(float(a[index]) for a in (w.signs, w.worst, w.best, w.offsets)))

    def _column(self, index: int):
        return None if self.resamples is None else self.resamples[self.used[index]]

    def sampled(self, index: int) -> bool:
        """Its values differ between resamples somewhere (latency, size and cost repeat theirs)."""
        column = self._column(index)
        if column is None or column.shape[1] == 1:
            return False
        # Two resamples that differ somewhere settle it at once for a column that has noise.
        return self.memo.get(
            ("sampled", int(self.used[index])),
            lambda: bool((column[:, 1] != column[:, 0]).any()) or not bool((column == column[:, :1]).all()),
        )

    def gapped(self, index: int) -> bool:
        """Some row has no value on some resample."""
        if not self.sampled(index):
            return False
        return self.memo.get(("gapped", int(self.used[index])), lambda: bool(np.isnan(self._column(index)).any()))

    def by_resample(self, index: int, positions=slice(None)) -> np.ndarray:
        """(B x len) the objective on the given ranked rows; 1 x len without noise."""
        rows = self.rows[positions]
        if not self.sampled(index):
            return self.values[rows, self.used[index]][None, :]
        return np.ascontiguousarray(self._column(index)[rows].T)

    def all_by_resample(self) -> list[np.ndarray]:
        """Every weighted objective as (B x m), absent on a resample where a row misses one; read once
        per ranking, for whichever memo entry needs it first."""
        if self._all is None:
            self._all = _absent_where_incomplete([self.by_resample(index) for index in range(len(self.used))])
        return self._all

    def sampled_rows(self, index: int, positions=slice(None)) -> np.ndarray:
        """(len x B) the resamples of a sampled objective on the given ranked rows, as stored."""
        if self.every_row and isinstance(positions, slice):
            return self._column(index)[positions]
        return self._column(index)[self.rows[positions]]

    def absent_aware(self, index: int) -> np.ndarray:
        """(B x m) the objective as `all_by_resample` gives it, without reading the others when no
        row misses a value on any resample (then nothing is made absent)."""
        if any(self.gapped(other) for other in range(len(self.used))):
            return self.all_by_resample()[index]
        return self.by_resample(index)

    def signed_samples(self, index: int, positions) -> np.ndarray:
        """(len x B) the objective on the given ranked rows, higher is better."""
        sign = self.weighted.signs[index]
        if not self.sampled(index):
            return (self.values[self.rows[positions], self.used[index]] * sign)[:, None]
        return _signed(self.sampled_rows(index, positions), sign)

    def objective_paired(self, index: int, confidence: float) -> "_Paired":
        """The objective, higher is better, as a `_Paired` for the Pareto frontier."""
        points = self.values[self.rows, self.used[index]] * self.weighted.signs[index]
        if not self.sampled(index):
            return _paired(points[:, None], points, confidence, PARETO_TOLERANCE)
        statistics = self.memo.get(
            ("objective", self.spec(index), self.rows_key, confidence),
            lambda: _paired(self.signed_samples(index, slice(None)), points, confidence, PARETO_TOLERANCE).statistics,
        )
        return _Paired(lambda positions: self.signed_samples(index, positions), points, confidence, PARETO_TOLERANCE,
                       *statistics)

    def point_scores(self, method: str) -> np.ndarray:
        """(m,) every ranked row's score on the point values."""
        points = [self.values[self.rows, column][None, :] for column in self.used]
        if method == "utility":
            return _utility_scores(points, self.weighted)[:, 0]
        if method == "dynascore":
            return _dynascore_scores(points, self.weighted, amrs=self.point_amrs())[:, 0]
        rates = [
            self.memo.get(("point winrate", self.spec(index), self.rows_key),
                          lambda index=index: _win_rates(_signed(points[index], self.weighted.signs[index])))
            for index in range(len(self.used))
        ]
        return _weighted_sum(rates, self.weighted.weights)[:, 0]

    def point_amrs(self) -> np.ndarray:
        """(w x 1) Dynascore's rates of substitution on the point values."""
        key = ("point amrs", tuple(self.spec(index) for index in range(len(self.used))), self.rows_key)
        return self.memo.get(
            key, lambda: _amrs([self.values[self.rows, column][None, :] for column in self.used], self.weighted)
        )

    def amrs(self) -> np.ndarray:
        """(w x B) Dynascore's rates of substitution over the ranked rows on each resample."""
        key = ("amrs", tuple(self.spec(index) for index in range(len(self.used))), self.rows_key)
        return self.memo.get(key, lambda: _amrs(self.all_by_resample(), self.weighted))

    def win_rates(self, index: int) -> np.ndarray:
        """(B x m) the objective's win rates on each resample; 1 x m when it and the rows' absences repeat."""
        return self.memo.get(
            ("winrate", self.spec(index), self.rows_key),
            lambda: _win_rates(_signed(self.absent_aware(index), self.weighted.signs[index])),
        )


def _score_paired(method, board: _Board, points, confidence) -> "_Paired":
    """Every ranked row's score on the resamples, as a `_Paired` whose bounds take no work over n x B.

    Each method's score is a weighted sum of terms that do not depend on the weights (utility:
    the clipped utility of an objective; Dynascore: its converted value over its rate of
    substitution; win rate: its win rate). If at most a_k of term k's shifted samples lie below
    its order statistic s_k, at most sum(a_k) of the score's lie below sum(w_k s_k): so that sum
    bounds the score's sum(a_k)-th smallest from below (and alike from above), from order
    statistics of each term that are memoised. These bounds are looser than the score's own,
    which would need every row's score on every resample sorted on every request, so they leave
    more pairs to the exact test; that one needs the resamples of those rows only. A margin of
    1e-5 of the scores' magnitude keeps rounding (the terms are computed and sorted in float32, a
    few 1e-7 of their magnitude, and the score is summed in two ways) from deciding a pair.
    """
    count = len(board.used)
    sampled = [board.sampled(index) for index in range(count)]
    if not any(sampled):
        return _paired(points[:, None], points, confidence, 0.0)
    if method == "utility":
        varying = sampled
    elif method == "winrate":
        gapped = any(board.gapped(index) for index in range(count))
        varying = [sampled[index] or gapped for index in range(count)]
    else:  # the rates of substitution change between resamples, and every term with them
        varying = [True] * count
    resamples = next(board.by_resample(index, slice(0, 1)).shape[0] for index in range(count) if sampled[index])

    def rows_samples(positions):
        if method == "winrate":
            rates = [board.win_rates(index)[:, positions] for index in range(count)]
            return _weighted_sum(rates, board.weighted.weights)
        by = [board.by_resample(index, positions) for index in range(count)]
        if method == "utility":
            return _utility_scores(by, board.weighted)
        return _dynascore_scores(by, board.weighted, amrs=board.amrs())

    allowed = int(_allowed((1 - confidence) / 2, resamples))
    middle = (resamples - 1 - allowed) // 2
    # How many samples of each varying term a bound may set aside: from the bottom for `low`
    # and `below`, from the top for `high` and `above` (see `_Paired`).
    aside = {"low": allowed // 2, "below": middle, "high": allowed - allowed // 2, "above": resamples - 1 - middle - allowed}
    varied = [index for index in range(count) if varying[index]]
    shares = {name: dict(zip(varied, _split(total, len(varied)))) for name, total in aside.items()}
    bounds = {name: np.zeros(len(points)) for name in aside}
    complete = np.ones(len(points), dtype=bool)
    magnitude = 0.0
    for index in range(count):
        weight = board.weighted.weights[index]
        if not varying[index]:
            term = _term(method, board, index)[0]
            for name in bounds:
                bounds[name] += weight * term
            magnitude += weight * float(np.max(np.abs(term), initial=0.0, where=~np.isnan(term)))
            continue
        positions = (shares["low"][index], shares["below"][index])
        positions += (resamples - 1 - shares["high"][index], resamples - 1 - shares["above"][index])
        statistics, term_complete, term_magnitude = _term_statistics(method, board, index, positions, resamples)
        for name, position in zip(("low", "below", "high", "above"), positions):
            bounds[name] += weight * statistics[position]
        complete &= term_complete
        magnitude += weight * term_magnitude
    margin = 1e-5 * magnitude
    return _Paired(
        rows_samples,
        points,
        confidence,
        0.0,
        complete,
        low=np.where(complete, bounds["low"] - margin, -np.inf),
        high=np.where(complete, bounds["high"] + margin, np.inf),
        below=np.where(complete, bounds["below"] - margin, -np.inf),
        above=np.where(complete, bounds["above"] + margin, np.inf),
        resample_count=resamples,
    )


def _scaled_point_statistics(board: "_Board", index: int, positions, resamples: int) -> tuple[dict, np.ndarray, float]:
    """`_term_statistics` of a Dynascore term without noise of its own, in closed form.

    Its term on resample b is c_j * r_b: the row's converted value c_j times 1 / |AMRS_b| (r_b >= 0),
    and after the shift (c_j - mean c) * r_b. Its p-th smallest over the resamples is therefore
    (c_j - mean c) times the p-th smallest r when that is >= 0, else times the p-th largest: no
    m x B matrix to make and sort.
    """
    values = board.values[board.rows, board.used[index]]
    converted = values * board.weighted.signs[index] + board.weighted.offsets[index]
    scale = np.broadcast_to(_dynascore_scales(board.amrs(), np.ones(len(board.used)))[index], (resamples,))
    complete = ~np.isnan(converted)
    centred = converted - (converted[complete].mean() if complete.any() else 0.0)
    ordered = np.sort(scale)
    statistics = {
        position: np.where(centred >= 0, centred * ordered[position], centred * ordered[resamples - 1 - position])
        for position in set(positions)
    }
    magnitude = float(np.max(np.abs(converted[complete]), initial=0.0)) * float(ordered[-1])
    return statistics, complete, 2 * magnitude


def _split(total: int, parts: int) -> list[int]:
    """`total` split into `parts` whole numbers as equal as can be."""
    base, extra = divmod(total, parts)
    return [base + (part < extra) for part in range(parts)]


def _term(method, board: _Board, index: int) -> np.ndarray:
    """(B x m) the objective's term of the score before its weight; 1 x m when it does not vary.

    In the values' own precision (float32 for stored resamples): the bounds built from it allow
    for the rounding, and at 100,000 rows a float64 copy would be another 160 MB.
    """
    if method == "utility":
        return _utility(board.by_resample(index), board.weighted.worst[index], board.weighted.best[index])
    if method == "winrate":
        return board.win_rates(index)
    values = board.absent_aware(index)
    kind = np.float32 if values.dtype == np.float32 else np.float64
    scale = _dynascore_scales(board.amrs(), np.ones(len(board.used)))[index].astype(kind)
    sign, offset = kind(board.weighted.signs[index]), kind(board.weighted.offsets[index])
    return (values * sign + offset) * scale[:, None]


def _term_statistics(method, board: _Board, index: int, positions, resamples: int) -> tuple[dict, np.ndarray, float]:
    """The term's order statistics at `positions` (0 = smallest) after the shift `_Paired` describes,
    which rows have it on every resample, and its largest magnitude; memoised."""

    def make():
        if method == "dynascore" and not board.sampled(index) and not any(
            board.gapped(other) for other in range(len(board.used))
        ):
            return _scaled_point_statistics(board, index, positions, resamples)
        if method == "utility":  # the resamples are stored rows x B: no transpose; float32 is enough
            worst, best = (np.float32(bound) for bound in (board.weighted.worst[index], board.weighted.best[index]))
            term = _utility(board.sampled_rows(index), worst, best)
        else:
            term = np.broadcast_to(_term(method, board, index), (resamples, len(board.rows))).T
        # Sorted in float32, twice as fast; the rounding (a utility computed in float32, a few
        # 1e-7 of the magnitude) is well inside the bounds' margin.
        term = np.array(term, dtype=np.float32, order="C")
        complete = ~np.isnan(term).any(axis=1)
        everyone = complete.all()
        kept = term if everyone else term[complete]
        magnitude = float(max(np.max(kept, initial=0.0), -np.min(kept, initial=0.0)))
        shift = kept.mean(axis=0, dtype=np.float64).astype(np.float32) if len(kept) else np.zeros(resamples, np.float32)
        term -= shift
        term.sort(axis=1)
        statistics = {position: term[:, position].astype(float) for position in set(positions)}
        return statistics, complete, magnitude + float(np.abs(shift).max(initial=0.0))

    key = (method, "term", board.spec(index), board.rows_key, tuple(positions))
    if method == "dynascore":
        key += tuple(board.spec(other) for other in range(len(board.used)))
    return board.memo.get(key, make)


@dataclass(frozen=True)
class _Paired:
    """One quantity of m rows on B shared resamples (higher is better), and which rows are significantly
    better than which: exactly for given pairs (`better`), and for whole blocks of pairs by bounds
    that are proven to agree with it where they decide (`certainly_better`, `possibly_better`).

    The bounds, for rows with a value on every resample: let `allowed` be the most differences
    <= 0 a significantly better row may have (the module docstring's k - 1). If j's `low` (at
    most its (allowed // 2)-th smallest shifted sample, counting from 0) is above i's `high` (at
    least its (allowed - allowed // 2)-th largest), then j's sample can be <= i's only on the
    resamples where j's is at or below that threshold or i's is above it: at most `allowed`, so j
    is significantly better. If j's `above` (at least its (middle + allowed)-th smallest) is below
    i's `below` (at most its middle-th smallest, middle = (B - 1 - allowed) // 2), then j's sample
    is below i's on at least allowed + 1 resamples, so it is not. `_paired` takes the order
    statistics themselves; `_score_paired` bounds them. Shifting every row's samples on a resample
    by the same amount keeps each comparison between them (subtraction of one number is monotone
    in floating point), and removing the noise all rows share makes the bounds tight. A row missing
    a value on some resample is left to the exact test. With B = 1 the bounds are the exact test.
    """

    rows_samples: Callable[[np.ndarray], np.ndarray]  # positions -> (len x B) samples; B = 1 without resamples
    points: np.ndarray  # (m,) point values, compared when a pair has no resample in common
    confidence: float
    tolerance: float  # with B = 1: the share of the larger magnitude a difference must exceed
    complete: np.ndarray  # (m,) bool: has a value on every resample
    low: np.ndarray  # (m,) the bounds above; -inf or +inf for rows missing a value; the values when B = 1
    high: np.ndarray
    below: np.ndarray
    above: np.ndarray
    resample_count: int

    @property
    def statistics(self) -> tuple:
        """What a memo keeps of it: everything but the samples and the points."""
        return self.complete, self.low, self.high, self.below, self.above, self.resample_count

    def certainly_better(self, rows, targets) -> np.ndarray:
        """[r, t]: row r is significantly better than target t, as far as the bounds can tell (else unknown)."""
        if self.resample_count == 1:
            if self.tolerance == 0:
                return self.below[rows][:, None] > self.below[targets][None, :]
            return (self.low[rows][:, None] > self.below[targets][None, :]) & (
                self.below[rows][:, None] > self.high[targets][None, :]
            )
        return self.low[rows][:, None] > self.high[targets][None, :]

    def possibly_better(self, rows, targets) -> np.ndarray:
        """[r, t]: the bounds cannot rule out that row r is significantly better than target t."""
        if self.resample_count == 1:
            return self.certainly_better(rows, targets)
        return self.above[rows][:, None] >= self.below[targets][None, :]

    def better(
        self, rows, target, *, reverse: bool = True, forward: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Exactly, for each of `rows`: whether it is significantly better than `target` (unless not
        `forward`), and (with `reverse`) whether `target` is significantly better than it."""
        rows = np.asarray(rows)
        if self.resample_count == 1:
            return self.compared(rows, target, None, None, reverse=reverse, forward=forward)
        ours, theirs = self.rows_samples(rows), self.rows_samples(np.array([target]))[0]
        return self.compared(rows, target, ours, theirs, reverse=reverse, forward=forward)

    def compared(
        self, rows, target, ours, theirs, *, reverse: bool = True, forward: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """`better`, given the samples of `rows` (len x B) and of `target` (B,) already read."""
        if self.resample_count == 1:
            up = self.certainly_better(rows, [target])[:, 0] if forward else None
            return up, self.certainly_better([target], rows)[0] if reverse else None
        if self.complete[rows].all() and self.complete[target]:
            common = np.full(len(rows), self.resample_count)
        else:
            common = (~np.isnan(ours) & ~np.isnan(theirs)).sum(axis=1)
        allowed = _allowed((1 - self.confidence) / 2, common)
        # A comparison with NaN is false, so only the common resamples are counted.
        up = np.count_nonzero(ours <= theirs, axis=1) <= allowed if forward else None
        down = np.count_nonzero(ours >= theirs, axis=1) <= allowed if reverse else None
        apart = np.flatnonzero(common == 0)
        if len(apart):
            if forward:
                up[apart] = self._beyond(self.points[rows][apart], self.points[target])
            if reverse:
                down[apart] = self._beyond(self.points[target], self.points[rows][apart])
        return up, down

    def _beyond(self, first, second) -> np.ndarray:
        return first - second > self.tolerance * np.maximum(np.abs(first), np.abs(second))


def _allowed(alpha, count):
    """The most of `count` paired differences that may be <= 0 for the interval to lie above 0."""
    # The small margin keeps alpha * (count - 1) from landing just under a whole number by rounding.
    return np.floor(alpha * (np.asarray(count) - 1) + 1e-9).astype(int)


def _paired(samples, points, confidence, tolerance) -> _Paired:
    """`samples` (m x B) as a `_Paired` with their own order statistics for bounds."""
    resamples = samples.shape[1]

    def rows_samples(positions):
        return samples[positions]

    if resamples == 1:
        # Without resamples `below` and `above` hold the values, `low` and `high` the values moved by
        # the tolerance down and up: a is better than b by more than the tolerance of the larger
        # magnitude when a's low is above b and a is above b's high.
        column = samples[:, 0]
        margin = tolerance * np.abs(column)
        return _Paired(rows_samples, points, confidence, tolerance, ~np.isnan(column),
                       column - margin, column + margin, column, column, 1)
    allowed = int(_allowed((1 - confidence) / 2, resamples))
    first, last = allowed // 2, allowed - allowed // 2
    middle = (resamples - 1 - allowed) // 2
    complete = ~np.isnan(samples).any(axis=1)
    everyone = complete.all()
    shift = np.mean(samples if everyone else samples[complete], axis=0) if complete.any() else 0.0
    shifted = samples - shift
    shifted.sort(axis=1)  # several times faster than np.partition on rows this short
    low, below, above, high = (shifted[:, index] for index in (first, middle, middle + allowed, resamples - 1 - last))
    return _Paired(
        rows_samples,
        points,
        confidence,
        tolerance,
        complete,
        low=np.where(complete, low, -np.inf),
        high=np.where(complete, high, np.inf),
        below=np.where(complete, below, -np.inf),
        above=np.where(complete, above, np.inf),
        resample_count=resamples,
    )


def _significance(paired: _Paired, targets, *, worse: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """For each target: how many rows are significantly better than it, and how many significantly worse.

    The bounds settle most rows in blocks of targets; each target then tests the rows they left
    open, whose samples are read once per block.
    """
    if paired.resample_count == 1 and paired.tolerance == 0:
        values = paired.below
        present = np.sort(values[~np.isnan(values)])
        chosen = values[targets]
        return len(present) - np.searchsorted(present, chosen, side="right"), np.searchsorted(present, chosen)
    everyone = np.arange(len(paired.points))
    better, below = np.zeros(len(targets), dtype=int), np.zeros(len(targets), dtype=int)
    for start in range(0, len(targets), PAIR_BLOCK):
        block = targets[start : start + PAIR_BLOCK]
        sure = paired.certainly_better(everyone, block)
        undecided = paired.possibly_better(everyone, block) & ~sure
        better[start : start + len(block)] = sure.sum(axis=0)
        if worse:
            sure = paired.certainly_better(block, everyone)
            undecided |= (paired.possibly_better(block, everyone) & ~sure).T
            below[start : start + len(block)] = sure.sum(axis=1)
        undecided[block, np.arange(len(block))] = False
        # The rows left open, read once for the block, with their own order statistics: bounds
        # as tight as `_paired`'s settle most of these pairs before any is counted.
        read = np.union1d(np.flatnonzero(undecided.any(axis=1)), block)
        tight = (
            _paired(paired.rows_samples(read), paired.points[read], paired.confidence, paired.tolerance)
            if paired.resample_count > 1
            else _Paired(paired.rows_samples, paired.points[read], paired.confidence, paired.tolerance,
                         *(part[read] for part in paired.statistics[:5]), 1)
        )
        for column, target in enumerate(block):
            others = np.flatnonzero(undecided[:, column])
            if len(others):
                up, down = _settled(tight, np.searchsorted(read, others), int(np.searchsorted(read, target)), worse)
                better[start + column] += up.sum()
                below[start + column] += down.sum() if worse else 0
    return better, below


def _settled(paired: _Paired, rows, target, reverse: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """`paired.better(rows, target)`, with the pairs the bounds decide left uncounted, and each
    direction counted only for the rows it leaves open (a row is seldom open both ways)."""
    up = paired.certainly_better(rows, [target])[:, 0]
    open_up = paired.possibly_better(rows, [target])[:, 0] & ~up
    if open_up.any():
        up[open_up] = paired.better(rows[open_up], target, reverse=False)[0]
    down = None
    if reverse:
        down = paired.certainly_better([target], rows)[0]
        open_down = paired.possibly_better([target], rows)[0] & ~down
        if open_down.any():
            down[open_down] = paired.better(rows[open_down], target, forward=False)[1]
    return up, down


def _ranks(paired: _Paired, listed, window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks, rank intervals and ties of the listed rows in `window`; 0, 0 and False for the others.

    A row is tied when another row of the window, or the listed row just before or after it, has
    the same rank: a row's rank is exact wherever it is computed, but finding every row on the
    board that shares it would take an exact rank for each row the bounds cannot rule out, which
    grows with the board (about a second at 10,000 rows, minutes at 100,000).
    """
    start, stop = (0, len(listed)) if window is None else (min(window[0], len(listed)), min(window[1], len(listed)))
    shown = listed[start:stop]
    around = listed[max(start - 1, 0) : stop + 1] if len(shown) else shown
    better, worse = _significance(paired, shown)
    ranks = np.zeros(len(paired.points), dtype=int)
    ranks[shown] = 1 + better
    bordering = np.setdiff1d(around, shown, assume_unique=True)
    compared = np.concatenate([ranks[shown], 1 + _significance(paired, bordering, worse=False)[0]])
    intervals = np.zeros((len(ranks), 2), dtype=int)
    intervals[shown, 0], intervals[shown, 1] = 1 + better, len(ranks) - worse
    tied = np.zeros(len(ranks), dtype=bool)
    tied[shown] = np.bincount(compared)[ranks[shown]] > 1
    return ranks, intervals, tied


def _rescaled_sum(better) -> np.ndarray:
    """Each row's objectives (higher is better) rescaled to [0, 1] over the rows and summed."""
    low = better.min(axis=0)
    spread = better.max(axis=0) - low
    return ((better - low) / np.where(spread > 0, spread, 1.0)).sum(axis=1)


# Scoring. Each method takes the weighted objectives of the ranked rows, one (B x m) array per
# objective (or 1 x m for one that has no sampling noise: it broadcasts), does what needs every
# row, and returns every row's scores: (m x B), or m x 1 when no weighted objective has noise;
# higher is better. Point values are scored as B = 1, so the point score and the scores on
# resamples are one computation. On a resample, as on the board, a row missing a weighted value
# is not scored: its score there is NaN, and the methods that compare rows leave it out of that
# resample (`_absent_where_incomplete`).


def _utility_scores(by_resample, weighted):
    """Each objective mapped linearly from [worst, best] to [0, 1] and clipped, then the weighted mean.

    The bounds are fixed inputs, so a row's score depends on its own values alone: adding a
    submission never moves another one's score.
    """

    total = np.zeros((1, by_resample[0].shape[1]))
    for values, worst, best, weight in zip(by_resample, weighted.worst, weighted.best, weighted.weights):
        utility = _utility(values, worst, best)
        utility *= weight
        total = total + utility
    return np.ascontiguousarray(total.T)


def _utility(values, worst, best) -> np.ndarray:
    """Values mapped linearly from [worst, best] to [0, 1] and clipped, in a new float64 array."""
    # Lower-is-better objectives have worst > best, so one formula serves both directions.
    utility = values - worst
    utility /= best - worst
    np.clip(utility, 0.0, 1.0, out=utility)
    return utility


def _dynascore_scores(by_resample, weighted, amrs=None):
    """Dynaboard's Dynascore, as its reference implementation (dynabench, CS224u) computes it.

    Each objective is converted to "higher is better" (multiplied by -1 where lower is better,
    then its offset added), divided by its average marginal rate of substitution (AMRS) with the
    primary objective, and the weighted sum taken. `amrs` gives rates computed before (over every
    ranked row), so that a few rows' scores can be computed alone. Where the AMRS is undefined (no two neighbours
    differ enough in the primary objective) or zero (the objective never changes between them),
    the reference divides by it and every score becomes NaN or infinite; here that objective
    adds 0 instead, and `_dynascore_notes` says so. The rates need every row; a row's score is
    then its own converted values times fixed scales.
    """
    by_resample = _absent_where_incomplete(by_resample)
    scales = _dynascore_scales(_amrs(by_resample, weighted) if amrs is None else amrs, weighted.weights)

    total = np.zeros((1, by_resample[0].shape[1]))
    for values, sign, offset, scale in zip(by_resample, weighted.signs, weighted.offsets, scales):
        total = total + (values * sign + offset) * scale[:, None]
    return np.ascontiguousarray(total.T)


def _dynascore_scales(amrs, weights) -> np.ndarray:
    """(w x B) each weight over its objective's |AMRS|; 0 where the rate is undefined or zero."""
    defined = np.isfinite(amrs) & (amrs != 0)
    return np.where(defined, weights[:, None] / np.abs(np.where(defined, amrs, 1.0)), 0.0)


def _amrs(by_resample, weighted) -> np.ndarray:
    """(w x B) average marginal rates of substitution of each objective for the primary one.

    Resamples are independent, so they are taken RESAMPLE_CHUNK at a time: the temporaries of a
    board of 100,000 stay a few tens of megabytes instead of a gigabyte.
    """
    count = max(values.shape[0] for values in by_resample)
    if count <= RESAMPLE_CHUNK:
        return _chunk_amrs(by_resample, weighted)
    return np.concatenate(
        [
            _chunk_amrs([values if len(values) == 1 else values[start : start + RESAMPLE_CHUNK] for values in by_resample], weighted)
            for start in range(0, count, RESAMPLE_CHUNK)
        ],
        axis=1,
    )


def _chunk_amrs(by_resample, weighted) -> np.ndarray:
    """`_amrs` on some resamples.

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
        rates = np.subtract(ordered[:, 1:], ordered[:, :-1], dtype=float)  # np.diff in float64, one pass
        np.abs(rates, out=rates)
        rates /= kept_differences
        np.copyto(rates, 0.0, where=~kept)
        total = rates.sum(axis=1)
        amrs.append(np.divide(total, pairs, out=np.full(total.shape, np.nan), where=pairs > 0))
    # An objective that repeats its value, or a primary that does, has one rate for every resample.
    return np.array(np.broadcast_arrays(*amrs))


def _stable_order(values) -> np.ndarray:
    """Each row's ascending order, equal values in column order and NaN last, as a stable argsort."""
    if values.dtype != np.float32 or values.shape[1] >= 2**31:
        return np.argsort(values, axis=1, kind="stable")
    return (_sorted_keys(values) & np.uint64(2**31 - 1)).astype(np.intp)


def _sorted_keys(values) -> np.ndarray:
    """Float32 rows (under 2**31 columns) as sorted 64-bit keys: the value's order above its column.

    The value's bits, made to order as unsigned integers (negative numbers reversed below the
    positive ones; one NaN, last, and one zero), sit above the column index, so sorting the keys
    gives the stable order, and equal values equal high bits. The keys are below 2**63 and their
    top eleven bits are never all set, so as float64 they are finite non-negative numbers that
    order as the integers do: they are sorted as float64, which numpy sorts with SIMD several times
    faster than it sorts 64-bit integers or argsorts float32 here (100 ms against 250-470 ms for
    200 x 100,000).
    """
    values = np.where(np.isnan(values), np.float32(np.nan), values + np.float32(0.0))
    bits = values.view(np.uint32)
    ordered = np.where(bits >= np.uint32(2**31), ~bits, bits | np.uint32(2**31)).astype(np.uint64)
    keys = (ordered << np.uint64(31)) | np.arange(values.shape[1], dtype=np.uint64)
    keys.view(np.float64).sort(axis=1)
    return keys


def _signed(values, sign) -> np.ndarray:
    """Values turned higher-is-better, in their own dtype (float32 resamples sort faster)."""
    return values if sign > 0 else np.negative(values)


def _dynascore_notes(point_amrs, weighted) -> list[str]:
    amrs = point_amrs[:, 0]
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


def _win_rate_scores(by_resample, weighted):
    """HELM's mean win rate, weighted: per objective, the share of the other rows a row beats.

    Ties count half, as in HELM's `compute_aggregate_row_win_rates`. HELM leaves a row without a
    value for an objective out of that objective (it neither wins nor counts as an opponent, so
    the denominator is the number of other rows that have it) and averages over the objectives a
    row has. Here a row missing a weighted value is not ranked at all (or, on a resample, left out
    of that resample), so every row has every objective and each denominator is the number of
    other rows compared: m - 1. A lone row has nobody to beat and no score.
    """
    signed = [_signed(values, sign) for values, sign in zip(_absent_where_incomplete(by_resample), weighted.signs)]
    return _weighted_sum([_win_rates(values) for values in signed], weighted.weights)


def _weighted_sum(terms, weights) -> np.ndarray:
    """(m x B) the weighted sum of (B x m) terms (1 x m ones broadcast)."""
    total = np.zeros((1, terms[0].shape[1]))
    for term, weight in zip(terms, weights):
        total = total + term * weight
    return np.ascontiguousarray(total.T)


def _win_rates(signed) -> np.ndarray:
    """Each row's win rate on each resample (resamples x rows, higher values win); NaN where absent.

    Float32 for float32 values (the stored resamples: at 100,000 rows and 200 resamples, 80 MB
    instead of 160 MB, a memo keeps it). Resamples are independent, so they are taken
    RESAMPLE_CHUNK at a time, as in `_amrs`.
    """
    if len(signed) > RESAMPLE_CHUNK:
        return np.concatenate([_win_rates(signed[start : start + RESAMPLE_CHUNK]) for start in range(0, len(signed), RESAMPLE_CHUNK)])
    resamples, rows = signed.shape
    if signed.dtype == np.float32 and rows < 2**31:
        keys = _sorted_keys(signed)
        order = (keys & np.uint64(2**31 - 1)).astype(np.intp)
        ordered = (keys >> np.uint64(31)).ravel()  # equal values, equal keys; absent rows (NaN) last
    else:
        order = np.argsort(signed, axis=1)  # absent rows (NaN) sort last
        ordered = np.take_along_axis(signed, order, axis=1).ravel()
    # Runs of equal values, all resamples end to end; each resample starts a new run.
    starts = np.ones(ordered.size, dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    starts[::rows] = True
    run_starts = np.flatnonzero(starts)
    run_lengths = np.diff(np.append(run_starts, ordered.size))
    # A run's middle position within its resample is (rows below it) + (others equal to it) / 2:
    # whole and half numbers under 2**24, exact in float32 too.
    kind = np.float32 if signed.dtype == np.float32 else np.float64
    run_wins = (run_starts % rows + (run_lengths - 1) / 2).astype(kind)
    wins = np.empty(signed.shape, dtype=kind)
    np.put_along_axis(wins, order, np.repeat(run_wins, run_lengths).reshape(signed.shape), axis=1)
    absent = np.isnan(signed)
    opponents = (rows - 1 - absent.sum(axis=1, keepdims=True)).astype(kind)
    return np.divide(wins, opponents, out=np.full(wins.shape, np.nan, dtype=kind), where=~absent & (opponents > 0))


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


_SCORES = {"utility": _utility_scores, "dynascore": _dynascore_scores, "winrate": _win_rate_scores}
_NOTES = {"utility": lambda point_values, weighted: [], "winrate": _win_rate_notes}


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


def _pareto_optimal(objectives: list[_Paired], targets=None, *, ahead) -> np.ndarray:
    """Whether each of `targets` (every row when None) is dominated by no row (see the module
    docstring for "dominates").

    Dominance by significance is not transitive (a difference too small to establish can sit
    between two that are), so a row is checked against every other row, not just the frontier;
    the bounds of `_Paired` keep that affordable. First the targets some row certainly dominates
    are set aside, comparing with the strongest rows (`ahead`, strongest first) first in doubling chunks,
    since most dominated rows fall to the first few; then each remaining target is compared
    exactly with the rows the bounds say might dominate it, strongest first, until one does.
    """
    m = len(ahead)
    targets = np.arange(m) if targets is None else np.asarray(targets, dtype=int)
    dominated = np.zeros(len(targets), dtype=bool)
    standing = np.arange(len(targets))
    start, size = 0, PARETO_FIRST_CHUNK
    while start < m and len(standing):
        beaten = _dominance(objectives, ahead[start : start + size], targets[standing], certain=True).any(axis=0)
        dominated[standing[beaten]] = True
        standing = standing[~beaten]
        # Chunks grow, but their (chunk x standing) tables stay a few megabytes.
        start, size = start + size, max(PARETO_FIRST_CHUNK, min(2 * size, 2**22 // max(len(standing), 1)))
    place = np.empty(m, dtype=int)
    place[ahead] = np.arange(m)
    everyone = np.arange(m)
    for first in range(0, len(standing), PAIR_BLOCK):
        block = standing[first : first + PAIR_BLOCK]
        possible = _dominance(objectives, everyone, targets[block], certain=False)
        for at, (column, target) in enumerate(zip(block, targets[block])):
            rivals = np.flatnonzero(possible[:, at])
            rivals = rivals[np.argsort(place[rivals])]
            dominated[column] = any(
                _dominates(objectives, rivals[at : at + PARETO_EXACT_CHUNK], target).any()
                for at in range(0, len(rivals), PARETO_EXACT_CHUNK)
            )
    return ~dominated


def _dominance(objectives: list[_Paired], rows, targets, *, certain: bool) -> np.ndarray:
    """[r, t]: row r dominates target t for certain (`certain`), or the bounds cannot rule it out."""
    better = np.zeros((len(rows), len(targets)), dtype=bool)
    not_worse = np.ones((len(rows), len(targets)), dtype=bool)
    for objective in objectives:
        if certain:
            better |= objective.certainly_better(rows, targets)
            not_worse &= ~objective.possibly_better(targets, rows).T
        else:
            better |= objective.possibly_better(rows, targets)
            not_worse &= ~objective.certainly_better(targets, rows).T
    return better & not_worse


def _dominates(objectives: list[_Paired], rows, target) -> np.ndarray:
    """Exactly: whether each of `rows` dominates `target`."""
    better = np.zeros(len(rows), dtype=bool)
    not_worse = np.ones(len(rows), dtype=bool)
    for objective in objectives:
        up, down = objective.better(rows, target)
        better |= up
        not_worse &= ~down
    return better & not_worse
