"""A deliberately naive `rank_board` for the utility method: per-row Python loops, every pair tested.

It is what the ranking would be written as without numpy, so the benchmark can show what the
vectorised `leaderboard.ranking.rank_board` buys, and the tests use it as an independent oracle:
for the utility method both must give the same board. It takes the same arguments, so a caller
can swap one for the other; `primary` only matters to Dynascore and is accepted for that reason.
"""

import math
import operator

import numpy as np

from leaderboard.ranking import PARETO_TOLERANCE, Constraint, ObjectiveSpec, RankedBoard

COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def rank_board_naive(
    values: np.ndarray,
    objectives: list[ObjectiveSpec],
    weights: np.ndarray,
    *,
    method: str = "utility",
    primary: str,
    constraints: list[Constraint] = (),
    resamples: np.ndarray | None = None,
    confidence: float = 0.95,
) -> RankedBoard:
    if method != "utility":
        raise ValueError("the naive baseline implements the utility method only.")
    values = np.asarray(values, dtype=float).tolist()
    keys = [objective.key for objective in objectives]
    used = [column for column, weight in enumerate(weights) if weight > 0]
    total_weight = np.asarray(weights, dtype=float)[used].sum()
    share = {column: float(weights[column] / total_weight) for column in used}
    n = len(values)

    excluded = [[] for _ in range(n)]
    unscored = [None] * n
    for row in range(n):
        for constraint in constraints:
            value = values[row][keys.index(constraint.key)]
            if math.isnan(value) or not COMPARE[constraint.op](value, constraint.value):
                excluded[row].append(constraint.breach(value))
        missing = [keys[column] for column in used if math.isnan(values[row][column])]
        if missing:
            unscored[row] = "missing " + ", ".join(missing)
    ranked = [row for row in range(n) if not excluded[row] and unscored[row] is None]

    def utility(row_values):
        score = 0.0
        for column in used:
            objective = objectives[column]
            value = (row_values[column] - objective.worst) / (objective.best - objective.worst)
            score += min(max(value, 0.0), 1.0) * share[column]
        return score

    scores = [math.nan] * n
    for row in ranked:
        scores[row] = utility(values[row])
    resample_scores = {}
    if resamples is not None:
        for row in ranked:
            by_resample = np.asarray(resamples[row]).T.tolist()
            resample_scores[row] = [utility(resample) for resample in by_resample]

    order = sorted(ranked, key=lambda row: -scores[row])

    def score_samples(row):
        return resample_scores[row] if resamples is not None else [scores[row]]

    def better(first, second):
        return _significantly_better(
            score_samples(first), score_samples(second), confidence, scores[first] > scores[second]
        )

    ranks, tied = [0] * n, [False] * n
    rank_intervals = [[0, 0] for _ in range(n)]
    for row in ranked:
        above = sum(better(other, row) for other in ranked if other != row)
        below = sum(better(row, other) for other in ranked if other != row)
        ranks[row] = 1 + above
        rank_intervals[row] = [1 + above, len(ranked) - below]
    for row in ranked:
        tied[row] = any(ranks[other] == ranks[row] for other in ranked if other != row)

    intervals = [[math.nan, math.nan] for _ in range(n)]
    for row in resample_scores:
        intervals[row] = _nanpercentiles(resample_scores[row], [2.5, 97.5])

    def objective_samples(row, column):
        if resamples is None or all(len(set(np.asarray(resamples[other][column]).tolist())) == 1 for other in ranked):
            return None  # no resamples: the point values, with a tolerance
        return np.asarray(resamples[row][column]).tolist()

    def dominates(first, second):
        wins = False
        for column in used:
            sign = 1.0 if objectives[column].higher_is_better else -1.0
            a, b = objective_samples(first, column), objective_samples(second, column)
            if a is None:
                x, y = sign * values[first][column], sign * values[second][column]
                up = x - y > PARETO_TOLERANCE * max(abs(x), abs(y))
                down = y - x > PARETO_TOLERANCE * max(abs(x), abs(y))
            else:
                a, b = [sign * value for value in a], [sign * value for value in b]
                x, y = sign * values[first][column], sign * values[second][column]
                up, down = (
                    _significantly_better(a, b, confidence, x > y),
                    _significantly_better(b, a, confidence, y > x),
                )
            if down:
                return False
            wins = wins or up
        return wins

    pareto = [False] * n
    for row in ranked:
        pareto[row] = not any(dominates(other, row) for other in ranked if other != row)

    return RankedBoard(
        order=np.array(order, dtype=int),
        ranks=np.array(ranks, dtype=int),
        rank_intervals=np.array(rank_intervals, dtype=int).reshape(n, 2),
        tied=np.array(tied, dtype=bool),
        scores=np.array(scores, dtype=float),
        score_intervals=np.array(intervals, dtype=float).reshape(n, 2),
        pareto=np.array(pareto, dtype=bool),
        excluded=excluded,
        unscored=unscored,
    )


def _nanpercentiles(samples, percentiles):
    present = [value for value in samples if not math.isnan(value)]
    if not present:
        return [math.nan] * len(percentiles)
    return np.percentile(present, percentiles).tolist()


def _significantly_better(first, second, confidence, apart):
    """The lower end of the central interval of first - second over their common resamples is above 0
    (`apart`, the comparison of the point values, when they have none in common)."""
    differences = [a - b for a, b in zip(first, second) if not (math.isnan(a) or math.isnan(b))]
    if not differences:
        return apart
    return np.percentile(differences, 50 * (1 - confidence), method="lower") > 0
