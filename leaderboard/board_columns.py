"""A benchmark's succeeded submissions as columns (point values and paired resamples), kept per process.

A succeeded submission's metrics and resamples do not change afterwards, so ranking a board of
ten thousand need not read and decode them on every request. Each request asks the database one
cheap question (how many succeeded submissions there are and when the last one finished); when
the answer moves, the submissions that finished since are appended, and anything else (a
deletion, a changed objective list or number of resamples) reads the board again. The resamples
of an objective are read the first time a ranking weighs it.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from django.db.models import BinaryField, Count, F, FloatField, Func, Max, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from leaderboard.models import Benchmark, Submission

# Boards kept in memory at once, least recently used dropped first; at 10,000 submissions one
# board is ~2 MB of point values plus 8 MB per objective whose resamples were read.
BOARDS_KEPT = 16

_lock = threading.Lock()
_kept: "OrderedDict[int, BoardColumns]" = OrderedDict()


@dataclass
class BoardColumns:
    version: tuple  # (objective keys, resamples per submission, succeeded count, last finish)
    ids: list  # submission ids, oldest first
    created: list  # their creation times, which order the rows
    baseline: np.ndarray  # (n,) bool
    values: np.ndarray  # (n x keys) float, NaN where not measured; read-only
    keys: list[str]
    resample_count: int
    _resamples: dict = field(default_factory=dict)  # key -> (n x B) float32, read on first use

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
    elif kept is not None and kept.version[:2] == version[:2] and kept.version[3] is not None:
        columns = _appended(benchmark, kept, version)
    else:
        columns = _read(_succeeded(benchmark), benchmark, keys, version)
    with _lock:
        _kept[benchmark.pk] = columns
        _kept.move_to_end(benchmark.pk)
        while len(_kept) > BOARDS_KEPT:
            _kept.popitem(last=False)
    return columns


def _succeeded(benchmark: Benchmark):
    return Submission.objects.filter(benchmark=benchmark, status=Submission.Status.SUCCEEDED)


def _version(benchmark: Benchmark, keys: list[str]) -> tuple:
    state = _succeeded(benchmark).aggregate(count=Count("pk"), last=Max("finished_at"))
    return (tuple(keys), benchmark.bootstrap_resamples, state["count"], state["last"])


def _read(rows, benchmark: Benchmark, keys: list[str], version: tuple) -> BoardColumns:
    """The point values of the submissions `rows` selects, oldest first."""
    numbers = {f"value_{index}": Cast(KeyTextTransform(key, "metrics"), FloatField()) for index, key in enumerate(keys)}
    read = list(
        rows.order_by("created_at", "pk").annotate(**numbers).values_list("pk", "created_at", "is_baseline", *numbers)
    )
    values = np.array([row[3:] for row in read], dtype=float).reshape(len(read), len(keys))
    columns = BoardColumns(
        version=version,
        ids=[row[0] for row in read],
        created=[row[1] for row in read],
        baseline=np.array([row[2] for row in read], dtype=bool),
        values=values,
        keys=list(keys),
        resample_count=benchmark.bootstrap_resamples,
    )
    columns.values.flags.writeable = False
    return columns


def _appended(benchmark: Benchmark, kept: BoardColumns, version: tuple) -> BoardColumns:
    """`kept` with the submissions that finished since it was read, or the board read again."""
    new = _read(_succeeded(benchmark).filter(finished_at__gt=kept.version[3]), benchmark, kept.keys, version)
    if len(kept.ids) + len(new.ids) != version[2]:
        return _read(_succeeded(benchmark), benchmark, kept.keys, version)
    ids, created = kept.ids + new.ids, kept.created + new.created
    order = sorted(range(len(ids)), key=created.__getitem__)  # stable: equal times keep their order
    columns = BoardColumns(
        version=version,
        ids=[ids[row] for row in order],
        created=[created[row] for row in order],
        baseline=np.concatenate([kept.baseline, new.baseline])[order],
        values=np.concatenate([kept.values, new.values])[order],
        keys=kept.keys,
        resample_count=kept.resample_count,
    )
    columns.values.flags.writeable = False
    with _lock:
        loaded = dict(kept._resamples)
    for key, matrix in loaded.items():
        added = _read_resamples(benchmark, new, key)
        if matrix is None and added is None:
            columns._resamples[key] = None
            continue
        old = matrix if matrix is not None else _repeated(kept, key)
        columns._resamples[key] = np.concatenate([old, added if added is not None else _repeated(new, key)])[order]
    return columns


def _repeated(columns: BoardColumns, key: str) -> np.ndarray:
    point = columns.values[:, columns.keys.index(key)].astype(np.float32)
    return np.repeat(point[:, None], columns.resample_count, axis=1)


def _read_resamples(benchmark: Benchmark, columns: BoardColumns, key: str) -> np.ndarray | None:
    """Only `key`'s slice of each stored matrix is read: one matrix row per key, contiguous."""
    resamples = columns.resample_count
    row_bytes = resamples * 4
    # The whole board is selected by its benchmark, not by a list of ten thousand ids.
    scope = _succeeded(benchmark)
    if len(columns.ids) <= 1000:
        scope = scope.filter(pk__in=columns.ids)
    layouts = [
        layout
        for layout in scope.order_by().values_list("resample_keys", flat=True).distinct()
        if key in (layout or [])
    ]
    if not layouts:
        return None
    matrix = _repeated(columns, key)
    position = {pk: row for row, pk in enumerate(columns.ids)}
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
    matrix.flags.writeable = False
    return matrix
