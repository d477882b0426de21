"""The public board of a guarded benchmark while its competition runs: what the Ladders released.

One row per submitter, the submission their default-board Ladder (or, before it moved, their
primary-metric Ladder) holds as best, and one per baseline; the values are the released ones
(leaderboard/withholding.py), with no resamples, because an interval from the exact values would
pin them. On the default board a submitter's score is the utility their Ladder released, so the
board and the submission resource say the same number; other weights score the released values.
Without resamples a rank is 1 + the rows with a strictly better score, so equal released values
tie.
"""

from dataclasses import dataclass, field, replace

import numpy as np
from django.db.models import Q

from leaderboard.board_columns import BoardColumns
from leaderboard.models import LadderEntry, Submission
from leaderboard.ranking import ObjectiveSpec, RankedBoard, metric_value, rank_board
from leaderboard.withholding import released_metrics


@dataclass
class ReleasedColumns(BoardColumns):
    shown: dict = field(default_factory=dict)  # submission id -> its released metrics
    utilities: np.ndarray = field(default_factory=lambda: np.empty(0))  # released default utility, NaN if none


def released_columns(benchmark, keys: list[str]) -> ReleasedColumns:
    succeeded = Submission.objects.filter(benchmark=benchmark, status=Submission.Status.SUCCEEDED)
    representatives = _representatives(benchmark)
    rows = list(succeeded.filter(Q(is_baseline=True) | Q(pk__in=representatives)).order_by("created_at", "pk"))
    shown = {submission.pk: released_metrics(submission) for submission in rows}
    values = np.array(
        [[metric_value(shown[submission.pk].get(key)) for key in keys] for submission in rows], dtype=float
    ).reshape(len(rows), len(keys))
    values.flags.writeable = False
    utilities = np.array([metric_value((submission.released.get("utility") or {}).get("value")) for submission in rows])
    return ReleasedColumns(
        version=("released", tuple(keys), len(rows)),
        ids=[submission.pk for submission in rows],
        created=[submission.created_at for submission in rows],
        baseline=np.array([submission.is_baseline for submission in rows], dtype=bool),
        values=values,
        keys=list(keys),
        resample_count=benchmark.bootstrap_resamples,
        _resamples={key: None for key in keys},
        shown=shown,
        utilities=utilities,
    )


def _representatives(benchmark) -> list:
    """Each submitter's best on the default board's Ladder, else on the primary metric's."""
    chosen = {}
    for owner, target, best in (
        LadderEntry.objects.filter(benchmark=benchmark, best_submission__isnull=False)
        .order_by("target")  # "primary" before "utility": the utility ladder's choice wins
        .values_list("owner", "target", "best_submission")
    ):
        chosen[owner] = best
    return list(chosen.values())


def by_released_utility(ranked: RankedBoard, columns: ReleasedColumns, pareto_only: bool) -> tuple[RankedBoard, list]:
    """The default board ranked by each row's released utility (a baseline's: its released values')."""
    scored = ~np.isnan(ranked.scores)
    utilities = np.where(np.isnan(columns.utilities), ranked.scores, columns.utilities)
    utilities = np.where(scored, utilities, np.nan)[:, None]
    by_utility = rank_board(
        utilities,
        [ObjectiveSpec("utility", True, worst=0.0, best=1.0)],
        np.ones(1),
        primary="utility",
    )
    ranked = replace(
        ranked,
        order=by_utility.order,
        ranks=by_utility.ranks,
        rank_intervals=by_utility.rank_intervals,
        tied=by_utility.tied,
        scores=by_utility.scores,
        score_intervals=by_utility.score_intervals,
    )
    order = [row for row in ranked.order if ranked.pareto[row]] if pareto_only else list(ranked.order)
    return ranked, order
