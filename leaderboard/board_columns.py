"""A benchmark's succeeded submissions as columns (point values and paired resamples), kept per process.

A succeeded submission's metrics and resamples do not change afterwards, so ranking a board of
ten thousand need not read and decode them on every request. Each request asks the database one
cheap question (how many succeeded submissions there are and when the last one finished); when
the answer moves, the submissions that finished since are appended. The columns come from the
sealed blocks every process shares (leaderboard/column_store.py) and a tail of the submissions
that finished after the last block, read from their rows; a process that finds a block's worth of
tail seals it for everyone. The resamples of an objective are read the first time a ranking
weighs it.

The rows are in (created_at, pk) order, oldest first, whatever order they were sealed in: ties in
score keep that order.
"""

import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from django.db.models import BinaryField, Count, F, Func, Max, Q, Value

from leaderboard import column_store
from leaderboard.column_store import EPOCH, MICROSECOND, Rows, after, read_rows, succeeded
from leaderboard.models import Benchmark
from leaderboard.ranking import RankingMemo

# Boards kept in memory at once, least recently used dropped first; at 10,000 submissions one
# board is ~2 MB of point values plus 8 MB per objective whose resamples were read.
BOARDS_KEPT = 16

# Loads that find the store changing under them (rows deleted, stragglers adopted) before they
# give up on it and read the board from its rows.
LOAD_ATTEMPTS = 3

_lock = threading.Lock()
_kept: "OrderedDict[int, BoardColumns]" = OrderedDict()


@dataclass
class _View:
    """Where the rows of a store-backed BoardColumns came from, to append to it and read resamples."""

    layout: str
    marks: tuple  # the sealed blocks' (pk, index, rows, last_finished_at, last_pk), by index
    sealed: int  # rows in those blocks
    blocks: list  # (block pk, the block's rows' positions in the columns)
    tail: Q  # selects the tail: succeeded submissions after the last watermark
    tail_rows: dict  # tail submission pk -> its position in the columns
    last: tuple | None  # the greatest (finished_at, pk) the columns hold; None: nothing finished
    order: tuple  # (created µs, pk high, pk low) per row: to merge appended rows into the order


class SubmissionIds(Sequence):
    """The board's submission ids, oldest first, as UUIDs made when read: 100,000 UUID objects would
    take a fifth of a second to make for every board a process loads, and a request reads a page."""

    def __init__(self, halves: np.ndarray):
        self.halves = halves  # (n x 2) uint64: each id's high and low 64 bits

    def __len__(self) -> int:
        return len(self.halves)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return SubmissionIds(self.halves[row])
        high, low = self.halves[row]
        return uuid.UUID(int=(int(high) << 64) | int(low))

    def index(self, pk, start=0, stop=None) -> int:
        found = np.flatnonzero((self.halves[:, 0] == pk.int >> 64) & (self.halves[:, 1] == pk.int & (2**64 - 1)))
        found = found[(found >= start) & (found < (len(self) if stop is None else stop))]
        if not len(found):
            raise ValueError(f"{pk} is not on the board")
        return int(found[0])

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


class Moments(Sequence):
    """Creation times, made datetimes when read (as SubmissionIds, for the same reason)."""

    def __init__(self, micros: np.ndarray):
        self.micros = micros  # microseconds since the epoch, UTC

    def __len__(self) -> int:
        return len(self.micros)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return Moments(self.micros[row])
        return EPOCH + int(self.micros[row]) * MICROSECOND

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


@dataclass
class BoardColumns:
    version: tuple  # (objective keys, resamples per submission, succeeded count, last finish)
    ids: Sequence  # submission ids (UUIDs), oldest first
    created: Sequence  # their creation times, which order the rows
    baseline: np.ndarray  # (n,) bool
    values: np.ndarray  # (n x keys) float, NaN where not measured; read-only
    keys: list[str]
    resample_count: int
    _resamples: dict = field(default_factory=dict)  # key -> (n x B) float32, read on first use
    _view: _View | None = field(default=None, repr=False, compare=False)
    # The rankings' weight-independent work on exactly these rows: a new version gets a new memo.
    memo: RankingMemo = field(default_factory=RankingMemo, repr=False, compare=False)

    def resamples(self, benchmark: Benchmark, key: str) -> np.ndarray | None:
        """(n x B) float32 values of `key` on the shared resamples; None if no row stored any.

        A row stored without them (an objective without sampling noise, or an evaluation from
        before resamples were kept) repeats its point value, so it has no noise to tie by.
        """
        with _lock:
            if key not in self._resamples:
                self._resamples[key] = _read_resamples(benchmark, self, key)
            return self._resamples[key]


def board_columns(benchmark: Benchmark, keys: list[str]) -> BoardColumns:
    """The benchmark's succeeded submissions as columns of `keys`, up to date with the database."""
    version = _version(benchmark, keys)
    with _lock:
        kept = _kept.get(benchmark.pk)
    if kept is not None and kept.version == version:
        columns = kept
    elif kept is not None and kept._view is not None and kept.version[:2] == version[:2]:
        columns = _refreshed(benchmark, kept, version)
    else:
        columns = _loaded(benchmark, list(keys), version)
    with _lock:
        _kept[benchmark.pk] = columns
        _kept.move_to_end(benchmark.pk)
        while len(_kept) > BOARDS_KEPT:
            _kept.popitem(last=False)
    return columns


def _succeeded(benchmark: Benchmark):
    return succeeded(benchmark)


def _version(benchmark: Benchmark, keys: list[str]) -> tuple:
    # count(*), not count(pk): the index on (benchmark, status, finished_at) answers it alone.
    state = _succeeded(benchmark).aggregate(count=Count("*"), last=Max("finished_at"))
    return (tuple(keys), benchmark.bootstrap_resamples, state["count"], state["last"])


def _loaded(benchmark: Benchmark, keys: list[str], version: tuple) -> BoardColumns:
    """The board from the sealed blocks (sealing what the tail has grown) and the tail.

    The blocks and the tail must hold exactly the succeeded submissions. When their count says
    otherwise, one read of the succeeded pks tells which: blocks that hold a submission no longer
    succeeded (or succeeded again, so it is in the tail too) are rewritten without it, and a success
    below the watermark (a lagging clock, a late commit) is adopted by the last block.
    """
    resample_count = benchmark.bootstrap_resamples
    layout = column_store.layout_of(keys, resample_count)
    for _ in range(LOAD_ATTEMPTS):
        blocks = _sealed(benchmark, layout, keys, version[2])
        mark = blocks[-1].watermark if blocks else None
        tail_q = after(mark) | Q(finished_at__isnull=True) if blocks else Q()
        tail = read_rows(_succeeded(benchmark).filter(tail_q), keys)
        if sum(block.rows for block in blocks) + len(tail) == version[2]:
            return _assembled(benchmark, keys, version, layout, blocks, tail, tail_q)
        present = set(_succeeded(benchmark).values_list("pk", flat=True))
        in_tail = set(tail.ids)
        sealed = set()
        changes = {}
        for block in blocks:
            ids = block.uuids()
            sealed.update(ids)
            lost = {pk for pk in ids if pk not in present or pk in in_tail}
            if lost:
                changes[block.index] = (block, lost, set())
        missing = present - sealed - in_tail
        if missing and blocks:
            # Those that finished after the tail was read are not stragglers: the next request reads them.
            below = _succeeded(benchmark).filter(pk__in=list(missing)).exclude(tail_q)
            missing = set(below.values_list("pk", flat=True))
        if missing:
            block, lost, _ = changes.get(blocks[-1].index, (blocks[-1], set(), set()))
            changes[block.index] = (block, lost, missing)
        if not changes:
            # Only successes since the count was read: the view holds them all and nothing else.
            return _assembled(benchmark, keys, version, layout, blocks, tail, tail_q)
        for block, lost, adopt in changes.values():
            column_store.rewrite(benchmark, layout, keys, resample_count, block, lost, adopt)
    # The store kept changing under us: the rows themselves are the truth.
    everything = read_rows(_succeeded(benchmark), keys)
    return _assembled(benchmark, keys, version, layout, [], everything, Q(), store=False)


def _sealed(benchmark: Benchmark, layout: str, keys: list[str], count: int) -> list:
    """The layout's sealed blocks, after sealing every full block's worth of tail."""
    while _seal_next(benchmark, layout, keys, count):
        pass
    return column_store.read_blocks(benchmark, layout, len(keys))


def _seal_next(benchmark: Benchmark, layout: str, keys: list[str], count: int) -> bool:
    """Seal the next block if the tail holds a block's worth of `count` succeeded; whether one was."""
    marks = column_store.block_marks(benchmark, layout)
    if count - sum(mark[2] for mark in marks) < column_store.BLOCK_ROWS:
        return False
    index = marks[-1][1] + 1 if marks else 0
    mark = (marks[-1][3], marks[-1][4]) if marks else None
    return column_store.seal(benchmark, layout, keys, benchmark.bootstrap_resamples, index, mark)


def blocks_seal(benchmark: Benchmark, keys: list[str], most: int) -> int:
    """Seal up to `most` blocks of the board's tail ahead of the requests; how many were sealed.

    The periodic sweep calls it, so a web request seldom finds a block's worth of tail to seal
    (0.7 s a block; a board of 100,000 built from nothing is 24 blocks, 15 s).
    """
    layout = column_store.layout_of(keys, benchmark.bootstrap_resamples)
    count = _succeeded(benchmark).count()
    sealed = 0
    while sealed < most and _seal_next(benchmark, layout, keys, count):
        sealed += 1
    return sealed


def _assembled(benchmark, keys, version, layout, blocks, tail: Rows, tail_q: Q, store: bool = True) -> BoardColumns:
    """Blocks then tail, put in (created_at, pk) order by one permutation."""
    ids = b"".join([block.ids for block in blocks] + [pk.bytes for pk in tail.ids])
    created = np.concatenate([block.created for block in blocks] + [tail.created]).astype(np.int64)
    halves = np.frombuffer(ids, dtype=">u8").reshape(-1, 2)
    order = np.lexsort((halves[:, 1], halves[:, 0], created))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    baseline = np.concatenate([block.baseline for block in blocks] + [tail.baseline])[order]
    values = np.concatenate([block.values for block in blocks] + [tail.values]).reshape(len(order), len(keys))[order]
    columns = BoardColumns(
        version=version,
        ids=SubmissionIds(halves[order]),
        created=Moments(created[order]),
        baseline=baseline,
        values=values,
        keys=list(keys),
        resample_count=benchmark.bootstrap_resamples,
    )
    view = None
    if store:
        offsets = np.cumsum([0] + [block.rows for block in blocks])
        sealed = int(offsets[-1])
        finished = [(moment, pk) for moment, pk in zip(tail.finished, tail.ids) if moment is not None]
        view = _View(
            layout=layout,
            marks=tuple(block.mark for block in blocks),
            sealed=sealed,
            blocks=[(block.pk, position[offsets[at] : offsets[at + 1]]) for at, block in enumerate(blocks)],
            tail=tail_q,
            tail_rows={pk: int(position[sealed + at]) for at, pk in enumerate(tail.ids)},
            last=max(([blocks[-1].watermark] if blocks else []) + finished, default=None),
            order=(created[order], halves[order, 0], halves[order, 1]),
        )
    columns._view = view
    _freeze(columns)
    return columns


def _freeze(columns: BoardColumns) -> None:
    columns.values.flags.writeable = False
    columns.baseline.flags.writeable = False


def _refreshed(benchmark: Benchmark, kept: BoardColumns, version: tuple) -> BoardColumns:
    """`kept` with the submissions that finished since, or the board loaded again.

    Loaded again when the blocks changed (another process sealed or rewrote one), when the tail
    holds a block's worth to seal, or when the count says rows went or came below the watermark.
    """
    view = kept._view
    marks = tuple(column_store.block_marks(benchmark, view.layout))
    if marks != view.marks or version[2] - view.sealed >= column_store.BLOCK_ROWS:
        return _loaded(benchmark, kept.keys, version)
    since = after(view.last) if view.last is not None else Q(finished_at__isnull=False)
    new = read_rows(_succeeded(benchmark).filter(since), kept.keys)
    if view.sealed + len(view.tail_rows) + len(new) != version[2]:
        return _loaded(benchmark, kept.keys, version)
    if not len(new):
        return BoardColumns(
            version=version, ids=kept.ids, created=kept.created, baseline=kept.baseline, values=kept.values,
            keys=kept.keys, resample_count=kept.resample_count, _resamples=dict(kept._resamples), _view=view,
            memo=kept.memo,
        )
    return _appended(benchmark, kept, new, since, version)


def _appended(benchmark: Benchmark, kept: BoardColumns, new: Rows, since: Q, version: tuple) -> BoardColumns:
    """`kept` and the `new` tail rows merged into one (created_at, pk) order; loaded resamples stay loaded."""
    view = kept._view
    halves = np.frombuffer(b"".join(pk.bytes for pk in new.ids), dtype=">u8").reshape(-1, 2)
    created = np.concatenate([view.order[0], new.created])
    high = np.concatenate([view.order[1], halves[:, 0]])
    low = np.concatenate([view.order[2], halves[:, 1]])
    order = np.lexsort((low, high, created))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    n = len(kept.ids)
    columns = BoardColumns(
        version=version,
        ids=SubmissionIds(np.column_stack([high, low])[order]),
        created=Moments(created[order]),
        baseline=np.concatenate([kept.baseline, new.baseline])[order],
        values=np.concatenate([kept.values, new.values])[order],
        keys=kept.keys,
        resample_count=kept.resample_count,
    )
    tail_rows = {pk: int(position[row]) for pk, row in view.tail_rows.items()}
    tail_rows.update({pk: int(position[n + at]) for at, pk in enumerate(new.ids)})
    last = max([*([view.last] if view.last else []), *((m, pk) for m, pk in zip(new.finished, new.ids) if m)])
    columns._view = _View(
        layout=view.layout,
        marks=view.marks,
        sealed=view.sealed,
        blocks=[(pk, position[rows]) for pk, rows in view.blocks],
        tail=view.tail,
        tail_rows=tail_rows,
        last=last,
        order=(created[order], high[order], low[order]),
    )
    _freeze(columns)
    with _lock:
        loaded = dict(kept._resamples)
    added_position = {pk: at for at, pk in enumerate(new.ids)}
    for key, matrix in loaded.items():
        added = _repeated_rows(new.values[:, kept.keys.index(key)], kept.resample_count)
        stored = _substr_resamples(_succeeded(benchmark).filter(since), added_position, added, key, kept.resample_count)
        if matrix is None and not stored:
            columns._resamples[key] = None
            continue
        old = matrix if matrix is not None else _repeated(kept, key)
        combined = np.concatenate([old, added])[order]
        combined.flags.writeable = False
        columns._resamples[key] = combined
    return columns


def _repeated_rows(point: np.ndarray, resample_count: int) -> np.ndarray:
    return np.repeat(point.astype(np.float32)[:, None], resample_count, axis=1)


def _repeated(columns: BoardColumns, key: str) -> np.ndarray:
    return _repeated_rows(columns.values[:, columns.keys.index(key)], columns.resample_count)


def _read_resamples(benchmark: Benchmark, columns: BoardColumns, key: str) -> np.ndarray | None:
    """The sealed blocks' resamples of `key` in one query, the tail's read from its rows.

    The matrix of repeated point values is made only when some row stored the key: latency, size
    and cost never do, and at 100,000 rows each such matrix would be 80 MB made to be thrown away.
    """
    view = columns._view
    if view is None:
        # Columns made elsewhere (a subset, a test): the whole board is selected by its benchmark,
        # not by a list of ten thousand ids.
        scope = _succeeded(benchmark)
        if len(columns.ids) <= 1000:
            scope = scope.filter(pk__in=columns.ids)
        position = {pk: row for row, pk in enumerate(columns.ids)}
        matrix = _repeated(columns, key)
        stored = _substr_resamples(scope, position, matrix, key, columns.resample_count)
    else:
        data = column_store.read_resamples([pk for pk, _ in view.blocks], key, columns.resample_count)
        scope = _succeeded(benchmark).filter(view.tail) if view.tail_rows else None
        layouts = _layouts_with(scope, key) if scope is not None else []
        if not data and not layouts:
            return None
        matrix = _repeated(columns, key)
        for pk, rows in view.blocks:
            if pk in data and len(rows):
                matrix[rows] = data[pk]
        stored = bool(data)
        if layouts:
            stored = _substr_resamples(scope, view.tail_rows, matrix, key, columns.resample_count, layouts) or stored
    if not stored:
        return None
    matrix.flags.writeable = False
    return matrix


def _layouts_with(scope, key: str) -> list:
    """The stored resample layouts (key lists) among `scope`'s rows that hold `key`."""
    return [
        layout
        for layout in scope.order_by().values_list("resample_keys", flat=True).distinct()
        if key in (layout or [])
    ]


def _substr_resamples(scope, position: dict, matrix: np.ndarray, key: str, resamples: int, layouts=None) -> bool:
    """Fill `matrix` rows (`position`: pk -> row) from `key`'s slice of each stored matrix; False if none had the key.

    Only the slice is read: one matrix row per key, contiguous.
    """
    row_bytes = resamples * 4
    layouts = _layouts_with(scope, key) if layouts is None else layouts
    for layout in layouts:
        part = Func(
            F("resamples"),
            Value(layout.index(key) * row_bytes + 1),
            Value(row_bytes),
            function="SUBSTR",
            output_field=BinaryField(),
        )
        for pk, data in scope.filter(resample_keys=layout).annotate(part=part).values_list("pk", "part"):
            # A matrix stored for another number of resamples keeps the point value.
            if pk in position and data and len(data) == row_bytes:
                matrix[position[pk]] = np.frombuffer(bytes(data), dtype=np.float32)
    return bool(layouts)
