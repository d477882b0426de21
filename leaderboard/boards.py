"""The adaptive leaderboard: the reader's query (weights, constraints, method) and the ranked board.

The API and the web page both parse the query and build the board here; the ranking itself is
the pure function in leaderboard/ranking.py.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from django.db.models import BinaryField, F, FloatField, Func, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from leaderboard.errors import Rejected
from leaderboard.models import Benchmark, Submission
from leaderboard.objectives import OBJECTIVES, Objective
from leaderboard.ranking import Constraint, ObjectiveSpec, parse_constraints, rank_board

METHODS = ("utility", "dynascore", "winrate")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Neighbours looked back past the page start, so a tie that crosses the page edge keeps its rank.
TIE_LOOKBACK = 20
# Submissions listed apart (excluded by a constraint, or not scorable); the rest are counted.
MAX_LISTED = 100


@dataclass(frozen=True)
class BoardQuery:
    weights: dict[str, float]
    constraints: list[Constraint]
    constraints_text: str
    method: str
    preset: str
    page: int
    page_size: int
    pareto_only: bool

    def as_params(self) -> dict[str, str]:
        """The query as URL parameters: a shared link shows the same board."""
        params = {
            "weights": ",".join(f"{key}:{weight:g}" for key, weight in self.weights.items() if weight > 0),
            "method": self.method,
        }
        if self.constraints_text:
            params["constraints"] = self.constraints_text
        if self.preset:
            params["preset"] = self.preset
        if self.pareto_only:
            params["pareto"] = "1"
        if self.page > 1:
            params["page"] = str(self.page)
        return params


@dataclass(frozen=True)
class BoardEntry:
    rank: int
    tied: bool
    submission: dict  # id, name, owner, is_baseline, created_at
    score: float | None
    score_interval: list[float] | None
    pareto: bool
    metrics: dict
    excluded_by: list[str] = field(default_factory=list)
    unscored: str | None = None


@dataclass(frozen=True)
class Board:
    benchmark: Benchmark
    query: BoardQuery
    objectives: list[Objective]
    bounds: dict[str, list[float | None]]
    entries: list[BoardEntry]  # this page of the ranked submissions
    ranked_count: int
    excluded: list[BoardEntry]  # broke a constraint (the first MAX_LISTED)
    unscored: list[BoardEntry]  # missing a weighted objective (the first MAX_LISTED)
    excluded_count: int
    unscored_count: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.ranked_count / self.query.page_size))


def benchmark_objectives(benchmark: Benchmark) -> list[Objective]:
    return [OBJECTIVES[key] for key in benchmark.objectives if key in OBJECTIVES]


def weights_parse(text: str, benchmark: Benchmark) -> dict[str, float]:
    """`accuracy:4,latency_p99_ms:1` -> weights over the benchmark's objectives; unnamed ones get 0."""
    keys = [objective.key for objective in benchmark_objectives(benchmark)]
    weights = dict.fromkeys(keys, 0.0)
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, separator, number = item.partition(":")
        key = key.strip()
        if not separator:
            raise Rejected(f"weight '{item}' needs the form key:number, e.g. accuracy:2.", field="weights")
        if key not in weights:
            raise Rejected(
                f"unknown objective '{key}' in weights; this benchmark has: {', '.join(keys)}.", field="weights"
            )
        try:
            value = float(number)
        except ValueError:
            raise Rejected(f"weight of '{key}' is '{number.strip()}', not a number.", field="weights") from None
        if not math.isfinite(value) or value < 0:
            raise Rejected(f"weight of '{key}' must be a non-negative number, not {number.strip()}.", field="weights")
        weights[key] = value
    if not any(weights.values()):
        raise Rejected("at least one weight must be above zero.", field="weights")
    return weights


def board_query_parse(params: Mapping[str, str], benchmark: Benchmark) -> BoardQuery:
    keys = [objective.key for objective in benchmark_objectives(benchmark)]
    preset = (params.get("preset") or "").strip()
    if preset and preset not in benchmark.presets:
        raise Rejected(
            f"unknown preset '{preset}'; this benchmark has: {', '.join(benchmark.presets) or 'none'}.", field="preset"
        )
    weights_text = (params.get("weights") or "").strip() or _slider_weights(params, keys)
    if weights_text:
        weights = weights_parse(weights_text, benchmark)
    elif preset:
        weights = {key: float(benchmark.presets[preset]["weights"].get(key, 0.0)) for key in keys}
    else:
        weights = {key: float(benchmark.objectives.get(key, 0.0)) for key in keys}
        if not any(weights.values()):
            weights[benchmark.primary_metric] = 1.0
    constraints_text = (params.get("constraints") or "").strip()
    try:
        constraints = parse_constraints(constraints_text, keys) if constraints_text else []
    except ValueError as error:
        raise Rejected(str(error), field="constraints") from None
    method = (params.get("method") or "utility").strip()
    if method not in METHODS:
        raise Rejected(f"unknown method '{method}'; use one of: {', '.join(METHODS)}.", field="method")
    return BoardQuery(
        weights=weights,
        constraints=constraints,
        constraints_text=constraints_text,
        method=method,
        preset=preset,
        page=_positive_int(params.get("page"), default=1, field="page", limit=1_000_000),
        page_size=_positive_int(params.get("page_size"), default=PAGE_SIZE, field="page_size", limit=MAX_PAGE_SIZE),
        pareto_only=(params.get("pareto") or "").strip().lower() in ("1", "true", "yes", "on"),
    )


def _slider_weights(params: Mapping[str, str], keys: list[str]) -> str:
    """The web page's sliders send one `w_<key>` field per objective."""
    return ",".join(f"{key}:{params[f'w_{key}']}" for key in keys if params.get(f"w_{key}") not in (None, ""))


def _positive_int(text: str | None, *, default: int, field: str, limit: int) -> int:
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise Rejected(f"{field} must be a whole number, not '{text}'.", field=field) from None
    if not 1 <= value <= limit:
        raise Rejected(f"{field} must be between 1 and {limit}.", field=field)
    return value


def objective_bounds(benchmark: Benchmark, objectives: list[Objective], baselines: np.ndarray) -> dict:
    """Utility bounds per objective: the benchmark's setting, else the worst baseline (for the
    worst acceptable value) and the objective's natural best (else the best baseline).

    Only baselines and settings count, so adding a submission never moves another's score.
    """
    bounds = {}
    for column, objective in enumerate(objectives):
        setting = benchmark.objective_bounds.get(objective.key) or [None, None]
        measured = baselines[:, column] if baselines.size else np.empty(0)
        measured = measured[np.isfinite(measured)]
        worst_baseline = best_baseline = None
        if measured.size:
            low, high = float(measured.min()), float(measured.max())
            worst_baseline, best_baseline = (low, high) if objective.higher_is_better else (high, low)
        worst = _first_defined(setting[0], worst_baseline, objective.natural_worst)
        best = _first_defined(setting[1], objective.natural_best, best_baseline)
        if worst is not None and best is not None and worst == best:
            worst = objective.natural_worst if objective.natural_worst != best else None
        bounds[objective.key] = [worst, best]
    return bounds


def _first_defined(*values):
    return next((value for value in values if value is not None), None)


def board_get(benchmark: Benchmark, query: BoardQuery) -> Board:
    objectives = benchmark_objectives(benchmark)
    constrained = {constraint.key for constraint in query.constraints}
    # Ranking reads only the objectives it weighs or constrains, extracted by the database as
    # numbers; the page's rows are read whole afterwards.
    needed = [c for c, o in enumerate(objectives) if query.weights.get(o.key) or o.key in constrained]
    columns = {f"objective_{c}": Cast(KeyTextTransform(objectives[c].key, "metrics"), FloatField()) for c in needed}
    rows = list(
        Submission.objects.filter(benchmark=benchmark, status=Submission.Status.SUCCEEDED)
        .order_by("created_at")
        .annotate(**columns)
        .values_list("pk", *columns)
    )
    # Columns of `values` are the needed objectives only: nothing else changes the ranking.
    values = np.array([row[1:] for row in rows], dtype=float).reshape(len(rows), len(needed))
    ids = [row[0] for row in rows]
    bounds = objective_bounds(benchmark, objectives, _baseline_values(benchmark, objectives))
    used = [objectives[c] for c in needed]
    specs = [
        ObjectiveSpec(
            key=o.key,
            higher_is_better=o.higher_is_better,
            worst=bounds[o.key][0],
            best=bounds[o.key][1],
            # Dynascore's offset turns a lower-is-better objective into "how far under the worst
            # acceptable value", as Dynaboard turns memory into 16 GB minus memory.
            offset=0.0 if o.higher_is_better or bounds[o.key][0] is None else float(bounds[o.key][0]),
        )
        for o in used
    ]
    weights = np.array([query.weights.get(o.key, 0.0) for o in used])
    if query.method == "dynascore" and not query.weights.get(benchmark.primary_metric):
        raise Rejected(
            f"Dynascore converts every objective into units of the primary metric, {benchmark.primary_metric}: "
            f"give {benchmark.primary_metric} a weight above zero.",
            field="weights",
        )
    if not rows:
        return Board(benchmark, query, objectives, bounds, [], 0, [], [], 0, 0)
    try:
        ranked = rank_board(
            values,
            specs,
            weights,
            method=query.method,
            primary=benchmark.primary_metric,
            constraints=query.constraints,
            # Dynascore and win rate compare every row with the others on each resample.
            resamples=None if query.method == "utility" else _resample_cube(ids, used, values, weights, benchmark),
        )
    except ValueError as error:
        raise Rejected(str(error), field="weights") from None
    order = [row for row in ranked.order if ranked.pareto[row]] if query.pareto_only else list(ranked.order)
    start = (query.page - 1) * query.page_size
    page = order[start : start + query.page_size]
    ranks, tied, intervals = ranked.ranks, ranked.tied, ranked.score_intervals
    if query.method == "utility" and page and not query.pareto_only:
        # A utility score depends on its own row only, so the paired intervals and ties of the
        # page (and the neighbours just above it) need only their resamples.
        window = order[max(0, start - TIE_LOOKBACK) : start + query.page_size]
        board_input = {
            "values": values,
            "ids": ids,
            "specs": specs,
            "weights": weights,
            "primary": benchmark.primary_metric,
            "objectives": used,
            "benchmark": benchmark,
        }
        ranks, tied, intervals = _window_uncertainty(ranked, window, start, board_input)
    excluded = [row for row in range(len(rows)) if ranked.excluded[row]]
    unscored = [row for row in range(len(rows)) if ranked.unscored[row] and not ranked.excluded[row]]
    shown = {*page, *excluded[:MAX_LISTED], *unscored[:MAX_LISTED]}
    details = {
        pk: (name, owner, baseline, created_at, metrics)
        for pk, name, owner, baseline, created_at, metrics in Submission.objects.filter(
            pk__in=[ids[row] for row in shown]
        ).values_list("pk", "name", "owner__username", "is_baseline", "created_at", "metrics")
    }

    def entry(row: int) -> BoardEntry:
        name, owner, baseline, created_at, metrics = details[ids[row]]
        interval = intervals[row]
        return BoardEntry(
            rank=int(ranks[row]),
            tied=bool(tied[row]),
            submission={
                "id": str(ids[row]),
                "name": name,
                "owner": owner,
                "is_baseline": baseline,
                "created_at": created_at,
            },
            score=None if math.isnan(ranked.scores[row]) else float(ranked.scores[row]),
            score_interval=None if np.isnan(interval).any() else [float(interval[0]), float(interval[1])],
            pareto=bool(ranked.pareto[row]),
            metrics=metrics,
            excluded_by=list(ranked.excluded[row]),
            unscored=ranked.unscored[row],
        )

    return Board(
        benchmark=benchmark,
        query=query,
        objectives=objectives,
        bounds=bounds,
        entries=[entry(row) for row in page],
        ranked_count=len(order),
        excluded=[entry(row) for row in excluded[:MAX_LISTED]],
        unscored=[entry(row) for row in unscored[:MAX_LISTED]],
        excluded_count=len(excluded),
        unscored_count=len(unscored),
    )


def _baseline_values(benchmark: Benchmark, objectives: list[Objective]) -> np.ndarray:
    metrics = Submission.objects.filter(
        benchmark=benchmark, status=Submission.Status.SUCCEEDED, is_baseline=True
    ).values_list("metrics", flat=True)
    return np.array([[_number(m.get(o.key)) for o in objectives] for m in metrics], dtype=float).reshape(
        -1, len(objectives)
    )


def _window_uncertainty(ranked, window: list[int], start: int, board_input: dict):
    """Ranks, ties and score intervals for a window of the ranked order, from its rows' resamples.

    The window's rows keep their global order (utility scores do not depend on other rows), so a
    rank within the window shifted by the window's first position is the rank on the board.
    """
    values, ids = board_input["values"], board_input["ids"]
    window_rows = np.array(window)
    local = rank_board(
        values[window_rows],
        board_input["specs"],
        board_input["weights"],
        method="utility",
        primary=board_input["primary"],
        resamples=_resample_cube(
            [ids[row] for row in window_rows],
            board_input["objectives"],
            values[window_rows],
            board_input["weights"],
            board_input["benchmark"],
        ),
    )
    first_position = max(0, start - TIE_LOOKBACK)
    ranks, tied, intervals = ranked.ranks.copy(), ranked.tied.copy(), ranked.score_intervals.copy()
    for local_index, row in enumerate(window_rows):
        ranks[row] = first_position + local.ranks[local_index]
        tied[row] = local.tied[local_index]
        intervals[row] = local.score_intervals[local_index]
    return ranks, tied, intervals


def _resample_cube(ids, objectives, values, weights, benchmark) -> np.ndarray:
    """(rows × objectives × resamples): sampled objectives from storage, the rest repeated.

    Only the weighted objectives' slices of each stored matrix are read: a row of the matrix is
    one objective's resamples, contiguous, so the database cuts them out.
    """
    resamples = benchmark.bootstrap_resamples
    cube = np.repeat(values[:, :, None], resamples, axis=2).astype(float)
    needed = [column for column, weight in enumerate(weights) if weight > 0]
    layout = Submission.objects.filter(pk__in=ids[:1]).values_list("resample_keys", flat=True).first() or []
    sampled = [column for column in needed if objectives[column].key in layout]
    if not sampled:
        return cube
    row_bytes = resamples * 4
    slices = {
        f"slice_{column}": Func(
            F("resamples"),
            Value(layout.index(objectives[column].key) * row_bytes + 1),
            Value(row_bytes),
            function="SUBSTR",
            output_field=BinaryField(),
        )
        for column in sampled
    }
    position = {pk: index for index, pk in enumerate(ids)}
    # The whole board is read by its benchmark, not by a list of ten thousand ids.
    scope = (
        Submission.objects.filter(benchmark=benchmark, status=Submission.Status.SUCCEEDED)
        if len(ids) > MAX_PAGE_SIZE
        else Submission.objects.filter(pk__in=ids)
    )
    for pk, keys, *parts in scope.annotate(**slices).values_list("pk", "resample_keys", *slices):
        if pk not in position:
            continue
        # A submission stored with another layout (an older evaluation) keeps its point values.
        if keys != layout:
            continue
        for column, part in zip(sampled, parts):
            if part and len(part) == row_bytes:
                cube[position[pk], column] = np.frombuffer(bytes(part), dtype=np.float32)
    return cube


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan
