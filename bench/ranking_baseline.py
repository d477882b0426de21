"""A deliberately naive `rank_board` for the utility method: per-row Python loops, pairwise Pareto.

It is what the ranking would be written as without numpy, so the benchmark can show what the
vectorised `leaderboard.ranking.rank_board` buys, and the tests use it as an independent oracle:
for the utility method both must give the same board. It takes the same arguments, so a caller
can swap one for the other; `primary` only matters to Dynascore and is accepted for that reason.
"""

import math
import operator

import numpy as np

from leaderboard.ranking import Constraint, ObjectiveSpec, RankedBoard

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
    tie_level: float = 0.95,
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
    ranks = [0] * n
    tied = [False] * n
    for position, row in enumerate(order):
        ranks[row] = position + 1
        if position == 0:
            continue
        above = order[position - 1]
        ties = scores[above] == scores[row]
        if resamples is not None:
            differences = [a - b for a, b in zip(resample_scores[above], resample_scores[row])]
            low, high = _nanpercentiles(differences, [50 * (1 - tie_level), 50 * (1 + tie_level)])
            ties = ties or (low <= 0 <= high)
        if ties:
            ranks[row] = ranks[above]
            tied[row] = tied[above] = True

    intervals = [[math.nan, math.nan] for _ in range(n)]
    for row in resample_scores:
        intervals[row] = _nanpercentiles(resample_scores[row], [2.5, 97.5])

    pareto = [False] * n
    for row in ranked:
        pareto[row] = not any(_dominates(values[other], values[row], objectives, used) for other in ranked)

    return RankedBoard(
        order=np.array(order, dtype=int),
        ranks=np.array(ranks, dtype=int),
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


def _dominates(first, second, objectives, used):
    strictly = False
    for column in used:
        a, b = first[column], second[column]
        if not objectives[column].higher_is_better:
            a, b = -a, -b
        if a < b:
            return False
        strictly = strictly or a > b
    return strictly
