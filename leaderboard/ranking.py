"""Ranking as a pure function over a matrix of objective values: no database, no Django.

Rows are submissions, columns objectives. Each column has a direction; the reader's weights say
how much each objective counts. A later method (utility bounds, Dynascore, win rate) replaces the
scoring step, the rest stays.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranking:
    order: np.ndarray  # row indices, best first; rows without a score come last
    ranks: np.ndarray  # rank of each row (1 = best), shared by exact ties; 0 for unscored rows
    scores: np.ndarray  # score of each row (higher is better), NaN where an objective is missing
    tied: np.ndarray  # whether a row shares its rank with another


def rank_submissions(values: np.ndarray, *, higher_is_better: np.ndarray, weights: np.ndarray) -> Ranking:
    """Weighted sum of direction-signed objective values, normalised by the total weight.

    With one objective weighted this is that objective's value (negated when lower is better).
    A row missing a weighted objective is not scored rather than guessed.
    """
    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(weights) or len(weights) != len(higher_is_better):
        raise ValueError("values must be rows x objectives, with one weight and direction per objective")
    if np.any(weights < 0) or not np.any(weights > 0):
        raise ValueError("weights must be non-negative with at least one positive")
    signs = np.where(np.asarray(higher_is_better, dtype=bool), 1.0, -1.0)
    used = weights > 0
    signed = values[:, used] * signs[used]
    scores = signed @ weights[used] / weights[used].sum()

    scored = ~np.isnan(scores)
    # Stable sort on the negated score keeps submission order (oldest first) among exact ties.
    order_scored = np.flatnonzero(scored)[np.argsort(-scores[scored], kind="stable")]
    order = np.concatenate([order_scored, np.flatnonzero(~scored)])

    ranks = np.zeros(len(scores), dtype=int)
    tied = np.zeros(len(scores), dtype=bool)
    ordered = scores[order_scored]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    # Competition ranking (1, 1, 3): a tie takes the position of the first of its group.
    ranks[order_scored] = np.maximum.accumulate(np.where(starts_group, np.arange(1, len(ordered) + 1), 0))
    group_sizes = np.bincount(ranks[order_scored])
    tied[order_scored] = group_sizes[ranks[order_scored]] > 1
    return Ranking(order=order, ranks=ranks, scores=scores, tied=tied)
