"""The adaptive leaderboard: the reader's query (weights, constraints, method) and the ranked board.

The API and the web page both parse the query and build the board here; the ranking itself is
the pure function in leaderboard/ranking.py.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from leaderboard.board_columns import BoardColumns, blocks_seal, board_columns
from leaderboard.errors import Rejected
from leaderboard.models import Benchmark, Submission
from leaderboard.objectives import OBJECTIVES_IN_ORDER, Objective
from leaderboard.ranking import Constraint, ObjectiveSpec, RankedBoard, parse_constraints, rank_board
from leaderboard.released_board import ReleasedColumns, by_released_utility, released_columns
from leaderboard.withholding import withholding_in_force

METHODS = ("utility", "dynascore", "winrate")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
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
    rank_interval: list[int] | None  # [rank, ranked - significantly worse]; None when not ranked
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
    # The ranking behind the page, kept so a chart of the same board does not rank it again.
    ranked: RankedBoard | None = field(default=None, repr=False, compare=False)
    listed: list[int] = field(default_factory=list, repr=False, compare=False)  # rows in board order
    columns: BoardColumns | None = field(default=None, repr=False, compare=False)

    @property
    def released(self) -> bool:
        """A guarded benchmark's public board while open: released values, one row per submitter."""
        return isinstance(self.columns, ReleasedColumns)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.ranked_count / self.query.page_size))

    @property
    def utility_bounds(self) -> dict[str, dict[str, float]]:
        """The bounds that map each weighted objective to [0, 1] (worst -> 0, best -> 1), so a reader can
        recompute a utility score; empty for the other methods, which do not use them."""
        if self.query.method != "utility":
            return {}
        return {
            o.key: {"worst": self.bounds[o.key][0], "best": self.bounds[o.key][1]}
            for o in self.objectives
            if self.query.weights.get(o.key, 0) > 0
        }


def benchmark_objectives(benchmark: Benchmark) -> list[Objective]:
    """The benchmark's objectives in the catalogue's order (PostgreSQL's jsonb does not keep key order)."""
    return [objective for objective in OBJECTIVES_IN_ORDER if objective.key in benchmark.objectives]


def objective_amounts_parse(
    text: str, benchmark: Benchmark, *, field: str, separator: str, amount: str, placeholder: str, example: str
) -> list[tuple[str, float]]:
    """`key<separator>number, ...` over the benchmark's objectives, each number finite and at least 0:
    the shape of both the board's weights and a gate's allowed regressions, refused in one wording."""
    keys = [objective.key for objective in benchmark_objectives(benchmark)]
    amounts = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, found, number = (part.strip() for part in item.partition(separator))
        if not found:
            raise Rejected(f"{field} '{item}' needs the form key{separator}{placeholder}, e.g. {example}.", field=field)
        if key not in keys:
            raise Rejected(
                f"unknown objective '{key}' in {field}; this benchmark has: {', '.join(keys)}.", field=field
            )
        try:
            value = float(number)
        except ValueError:
            raise Rejected(f"{amount} of '{key}' is '{number}', not a number.", field=field) from None
        if not math.isfinite(value) or value < 0:
            raise Rejected(f"{amount} of '{key}' must be a finite non-negative number, not {number}.", field=field)
        amounts.append((key, value))
    return amounts


def weights_parse(text: str, benchmark: Benchmark) -> dict[str, float]:
    """`accuracy:4,latency_p99_ms:1` -> weights over the benchmark's objectives; unnamed ones get 0."""
    weights = dict.fromkeys((objective.key for objective in benchmark_objectives(benchmark)), 0.0)
    weights.update(
        objective_amounts_parse(
            text, benchmark, field="weights", separator=":", amount="weight", placeholder="number", example="accuracy:2"
        )
    )
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
    # A preset may carry hard requirements (a floor on the primary metric, say); constraints the
    # reader sends, even none, replace them.
    if "constraints" in params or not preset:
        constraints_text = (params.get("constraints") or "").strip()
    else:
        constraints_text = str(benchmark.presets[preset].get("constraints") or "").strip()
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


# Blocks of board columns one sweep seals at most, across benchmarks: about 3 s of work.
SWEEP_SEALS = 4


def boards_seal(most: int = SWEEP_SEALS) -> dict:
    """Seal the shared columns of boards that grew by a block or more (the sweep's part)."""
    sealed = 0
    for benchmark in Benchmark.objects.order_by("pk"):
        if sealed >= most:
            break
        sealed += blocks_seal(benchmark, [o.key for o in benchmark_objectives(benchmark)], most - sealed)
    return {"blocks_sealed": sealed}


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


def _columns_and_bounds(benchmark: Benchmark, objectives: list[Objective]) -> tuple[BoardColumns, dict]:
    """The rows the board ranks and the utility bounds. The bounds come from the baselines' measured
    values and the settings whatever the board shows, so a guarded board's released scores and
    its Ladders use the same ones."""
    keys = [objective.key for objective in objectives]
    measured = board_columns(benchmark, keys)
    bounds = objective_bounds(benchmark, objectives, measured.values[measured.baseline])
    return (released_columns(benchmark, keys) if withholding_in_force(benchmark) else measured), bounds


def board_get(benchmark: Benchmark, query: BoardQuery, *, whole_frontier: bool = False) -> Board:
    """The board the query asks for. Pareto flags are computed for the page's rows, or for every
    row with `whole_frontier` (the page's scatter draws the frontier beyond the page)."""
    objectives = benchmark_objectives(benchmark)
    if query.method == "dynascore" and not query.weights.get(benchmark.primary_metric):
        raise Rejected(
            f"Dynascore converts every objective into units of the primary metric, {benchmark.primary_metric}: "
            f"give {benchmark.primary_metric} a weight above zero.",
            field="weights",
        )
    columns, bounds = _columns_and_bounds(benchmark, objectives)
    if not columns.ids:
        return Board(benchmark, query, objectives, bounds, [], 0, [], [], 0, 0)
    ranked, order = _ranked(benchmark, query, objectives, bounds, columns, whole_frontier=whole_frontier)
    start = (query.page - 1) * query.page_size
    page = order[start : start + query.page_size]
    broken, missing = _reason_masks(ranked)
    excluded = np.flatnonzero(broken).tolist()
    unscored = np.flatnonzero(missing & ~broken).tolist()
    entry = _entry_maker(ranked, columns, {*page, *excluded[:MAX_LISTED], *unscored[:MAX_LISTED]})
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
        ranked=ranked,
        listed=order,
        columns=columns,
    )


def _reason_masks(ranked: RankedBoard) -> tuple[np.ndarray, np.ndarray]:
    """Which rows broke a constraint and which could not be scored, without wording every row's reason."""
    return ranked.excluded.mask, ranked.unscored.mask


def objective_specs(objectives: list[Objective], bounds: dict) -> list[ObjectiveSpec]:
    return [
        ObjectiveSpec(
            key=o.key,
            higher_is_better=o.higher_is_better,
            worst=bounds[o.key][0],
            best=bounds[o.key][1],
            # Dynascore's offset turns a lower-is-better objective into "how far under the worst
            # acceptable value", as Dynaboard turns memory into 16 GB minus memory.
            offset=0.0 if o.higher_is_better or bounds[o.key][0] is None else float(bounds[o.key][0]),
        )
        for o in objectives
    ]


def _ranked(
    benchmark, query, objectives, bounds, columns: BoardColumns, *, row: int | None = None, whole_frontier: bool = False
) -> tuple[RankedBoard, list[int]]:
    """The board ranked by the query, and the order of the rows it lists (the Pareto set alone if asked).

    Ranks, rank intervals, ties and score intervals are computed for the requested page, or for
    `row` alone when given (their cost grows with the rows they cover), so a single row's standing
    first finds its position from the point scores.
    """
    specs = objective_specs(objectives, bounds)
    weights = np.array([query.weights.get(o.key, 0.0) for o in objectives])
    unbounded = [o.key for o, w in zip(objectives, weights) if w > 0 and None in bounds[o.key]]
    if query.method == "utility" and unbounded:
        raise Rejected(
            f"the utility method maps each weighted objective between a worst acceptable and a best value, "
            f"but no baseline measured {', '.join(unbounded)} and the benchmark sets no bounds for it: weigh "
            f"it 0, use another method, or ask the owner to set its bounds.",
            field="weights",
        )
    arguments = dict(method=query.method, primary=benchmark.primary_metric, constraints=query.constraints)
    start = (query.page - 1) * query.page_size
    window = (start, start + query.page_size)
    try:
        if row is not None:
            # The point scores alone place the row; an empty window ranks nothing.
            points = rank_board(columns.values, specs, weights, window=(0, 0), memo=columns.memo, **arguments)
            position = np.flatnonzero(points.order == row)
            window = (int(position[0]), int(position[0]) + 1) if len(position) else (0, 0)
        # The Pareto flags need every row's resamples, whichever rows the window holds.
        resamples = None if isinstance(columns, ReleasedColumns) else [
            columns.resamples(benchmark, o.key) if weight > 0 else None for o, weight in zip(objectives, weights)
        ]
        ranked = rank_board(
            columns.values,
            specs,
            weights,
            resamples=resamples,
            window=window,
            pareto_only=query.pareto_only and row is None,
            # A released board is listed by another order than the one ranked here, so its page's
            # rows need every row's flag.
            whole_frontier=whole_frontier or isinstance(columns, ReleasedColumns),
            memo=columns.memo,
            **arguments,
        )
    except ValueError as error:
        raise Rejected(str(error), field="weights") from None
    if isinstance(columns, ReleasedColumns) and _is_default(query, benchmark):
        return by_released_utility(ranked, columns, query.pareto_only and row is None)
    order = [row for row in ranked.order if ranked.pareto[row]] if query.pareto_only else list(ranked.order)
    return ranked, order


def _is_default(query: BoardQuery, benchmark: Benchmark) -> bool:
    """The query ranks as the default board does (the page it asks for aside)."""
    default = board_query_parse({}, benchmark)
    return (query.weights, query.method, query.constraints_text) == (default.weights, default.method, "")


def _entry_maker(ranked: RankedBoard, columns: BoardColumns, rows: set[int]):
    """A function from a row to its board entry; the listed rows' details are read in one query."""
    details = {
        pk: (name, owner, baseline, created_at, metrics)
        for pk, name, owner, baseline, created_at, metrics in Submission.objects.filter(
            pk__in=[columns.ids[row] for row in rows]
        ).values_list("pk", "name", "owner__username", "is_baseline", "created_at", "metrics")
    }

    def entry(row: int) -> BoardEntry:
        pk = columns.ids[row]
        name, owner, baseline, created_at, metrics = details[pk]
        interval = ranked.score_intervals[row]
        return BoardEntry(
            rank=int(ranked.ranks[row]),
            rank_interval=[int(place) for place in ranked.rank_intervals[row]] if ranked.ranks[row] else None,
            tied=bool(ranked.tied[row]),
            submission={"id": str(pk), "name": name, "owner": owner, "is_baseline": baseline, "created_at": created_at},
            score=None if math.isnan(ranked.scores[row]) else float(ranked.scores[row]),
            score_interval=None if np.isnan(interval).any() else [float(interval[0]), float(interval[1])],
            pareto=bool(ranked.pareto[row]),
            metrics=columns.shown[pk] if isinstance(columns, ReleasedColumns) else metrics,
            excluded_by=list(ranked.excluded[row]),
            unscored=ranked.unscored[row],
        )

    return entry


@dataclass(frozen=True)
class Standing:
    """Where one succeeded submission stands on its benchmark's default board."""

    rank: int | None  # None when it is not ranked (a missing weighted objective)
    rank_interval: list[int] | None  # [rank, ranked count - significantly worse], None when not ranked
    tied: bool
    ranked_count: int
    score: float | None
    score_interval: list[float] | None
    unscored: str | None
    objective_ranks: dict[str, tuple[int, int]]  # key -> (rank among the measured, how many were measured)


def submission_standing(submission: Submission) -> Standing | None:
    """The submission's rank under the benchmark's default weights, and its rank on each objective.

    An objective's rank counts the succeeded submissions strictly better on it, so equal values
    share a rank; None for a submission that has not succeeded.
    """
    if submission.status != Submission.Status.SUCCEEDED:
        return None
    benchmark = submission.benchmark
    objectives = benchmark_objectives(benchmark)
    columns, bounds = _columns_and_bounds(benchmark, objectives)
    try:
        row = columns.ids.index(submission.pk)
    except ValueError:
        # It succeeded after the columns were read, or (guarded) it is not its submitter's released best.
        return None
    try:
        ranked, order = _ranked(benchmark, board_query_parse({}, benchmark), objectives, bounds, columns, row=row)
    except Rejected:
        ranked, order = None, []
    objective_ranks = {}
    for column, objective in enumerate(objectives):
        measured = columns.values[:, column]
        measured = measured[~np.isnan(measured)]
        value = columns.values[row, column]
        if np.isnan(value):
            continue
        better = measured > value if objective.higher_is_better else measured < value
        objective_ranks[objective.key] = (int(better.sum()) + 1, len(measured))
    ranked_here = ranked is not None and bool(ranked.ranks[row])
    interval = ranked.score_intervals[row] if ranked_here else None
    return Standing(
        rank=int(ranked.ranks[row]) if ranked_here else None,
        rank_interval=[int(place) for place in ranked.rank_intervals[row]] if ranked_here else None,
        tied=bool(ranked.tied[row]) if ranked_here else False,
        ranked_count=len(order),
        score=float(ranked.scores[row]) if ranked_here else None,
        score_interval=None if interval is None or np.isnan(interval).any() else [float(v) for v in interval],
        unscored=(ranked.unscored[row] or "; ".join(ranked.excluded[row]) or None) if ranked is not None else None,
        objective_ranks=objective_ranks,
    )


# Points drawn on the benchmark page's scatter, best ranked first; the rest of a big board is counted.
MAX_PLOTTED = 2000


def board_points(board: Board, x_key: str, y_key: str) -> list[dict]:
    """The board's listed submissions as points on two objectives, for the scatter beside it."""
    keys = [objective.key for objective in board.objectives]
    for key in (x_key, y_key):
        if key not in keys:
            raise Rejected(
                f"unknown objective '{key}' for the chart; this benchmark has: {', '.join(keys)}.", field="x"
            )
    if board.ranked is None:
        return []
    ranked, columns, order = board.ranked, board.columns, board.listed
    names = dict(
        Submission.objects.filter(pk__in=[columns.ids[row] for row in order[:MAX_PLOTTED]]).values_list("pk", "name")
    )
    x, y = columns.values[:, keys.index(x_key)], columns.values[:, keys.index(y_key)]
    return [
        {
            "label": names[columns.ids[row]],
            "x": None if np.isnan(x[row]) else float(x[row]),
            "y": None if np.isnan(y[row]) else float(y[row]),
            "pareto": bool(ranked.pareto[row]),
            # Ranks are computed for the page's rows only; the others are drawn without one.
            "rank": int(ranked.ranks[row]) or None,
            "baseline": bool(columns.baseline[row]),
        }
        for row in order[:MAX_PLOTTED]
    ]
