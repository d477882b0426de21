"""Sealed blocks of a benchmark's board columns, built once and shared by every web process.

Reading a board of 100,000 succeeded submissions from their rows means decoding 100,000 JSON
metrics and slicing 100,000 resample matrices; each web process did that for its first request,
which took seconds. A succeeded submission's metrics and resamples do not change, so the columns
are sealed into blocks of BLOCK_ROWS rows, in the order submissions finished, and any process
loads a board from a few bulk reads of blocks plus the short "tail" of submissions that finished
after the last block's watermark (leaderboard/board_columns.py reads that and decides when to
seal it).

The blocks live in the database rather than in Redis: the database is the source of truth and a
block is written in the same transactional store as the submission rows it copies; it is there in
the embedded default (SQLite, with no Redis at all); and it is neither evicted under memory
pressure nor competing for memory with the Celery broker, which at 100,000 submissions and nine
sampled objectives would be most of a gigabyte.

A block is never edited: a block that lost rows (a deleted submission, one that stopped being
succeeded or was evaluated again) or adopts a straggler (a success stamped below the watermark by
a lagging clock or a late commit) is replaced by a new one with the same index and watermark, so a
process that holds the old block's id knows its copy is stale. The layout, a digest of the
objective keys and the number of resamples, keeps blocks of another objective list or B apart.
"""

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import numpy as np
import psycopg
from django.core.exceptions import EmptyResultSet
from django.db import IntegrityError, connection, transaction
from django.db.models import FloatField, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from leaderboard.models import Benchmark, BoardBlock, BoardBlockResamples, Submission

# Rows per sealed block: large enough that a board is a few dozen reads, small enough that sealing
# one (reading and writing 4,096 submissions' resamples) takes under a second (0.7 s at B = 200).
BLOCK_ROWS = 4096

EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
MICROSECOND = timedelta(microseconds=1)


def layout_of(keys, resample_count: int) -> str:
    return hashlib.sha256(json.dumps([list(keys), int(resample_count)]).encode()).hexdigest()[:16]


def succeeded(benchmark: Benchmark):
    return Submission.objects.filter(benchmark=benchmark, status=Submission.Status.SUCCEEDED)


def after(mark) -> Q:
    """The rows that finished after `mark` = (finished_at, pk) in (finished_at, pk) order; all if None."""
    if mark is None:
        return Q()
    finished_at, pk = mark
    return Q(finished_at__gt=finished_at) | Q(finished_at=finished_at, pk__gt=pk)


def fetch(rows) -> list[tuple]:
    """The tuples of a values_list queryset, bytea columns read in binary on PostgreSQL.

    psycopg's text mode sends bytea as hex and decodes it in Python: 80 MB of resamples took
    1,187 ms that way against 158 ms binary. The query is logged as Django's cursor would, so
    CaptureQueriesContext and the debug toolbar still see it. Columns come back as the driver's
    types (no field converters): only ints, floats, booleans, bytes, UUIDs and datetimes are asked for.
    """
    if connection.vendor != "postgresql":
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]
    try:
        sql, params = rows.query.sql_with_params()
    except EmptyResultSet:  # an empty pk__in: Django would not ask the database either
        return []
    connection.ensure_connection()
    started = time.monotonic()
    # Django's cursor class binds parameters on the client, which psycopg allows only with text
    # results: a plain psycopg cursor binds them on the server and can ask for binary ones.
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        result = cursor.fetchall()
    if connection.queries_logged:
        connection.queries_log.append({"sql": f"{sql} -- {params!r}", "time": f"{time.monotonic() - started:.3f}"})
    return result


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


@dataclass
class Rows:
    """Board rows read from submissions, in the order read."""

    ids: list  # UUIDs
    created: np.ndarray  # int64 microseconds since the epoch
    baseline: np.ndarray  # bool
    values: np.ndarray  # (n x keys) float64
    finished: list  # finished_at, None if unset
    resamples: dict  # key -> (n x B) float32, or None where no row stored the key; only when asked for

    def __len__(self) -> int:
        return len(self.ids)


def read_rows(scope, keys: list[str], resample_count: int | None = None, limit: int | None = None) -> Rows:
    """The rows `scope` (a queryset of submissions, maybe ordered) selects, the first `limit` of them.

    With `resample_count`, also each key's resamples from the whole stored matrices (sealing
    needs every key, so one read of the matrix beats one SUBSTR per key).
    """
    numbers = {f"value_{index}": Cast(KeyTextTransform(key, "metrics"), FloatField()) for index, key in enumerate(keys)}
    fields = ["pk", "created_at", "is_baseline", "finished_at", *numbers]
    if resample_count is not None:
        fields += ["resample_keys", "resamples"]
    selected = scope.annotate(**numbers).values_list(*fields)
    read = fetch(selected[:limit] if limit is not None else selected)
    width = len(keys)
    values = np.array([row[4 : 4 + width] for row in read], dtype=float).reshape(len(read), width)
    rows = Rows(
        ids=[row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0])) for row in read],
        created=np.array([micros(row[1]) for row in read], dtype=np.int64),
        baseline=np.array([row[2] for row in read], dtype=bool),
        values=values,
        finished=[row[3] for row in read],
        resamples={},
    )
    if resample_count is not None:
        row_bytes = resample_count * 4
        for column, key in enumerate(keys):
            matrix, stored = None, False
            for row, record in enumerate(read):
                layout, data = record[-2], record[-1]
                if isinstance(layout, str):
                    layout = json.loads(layout)
                if key not in (layout or []):
                    continue
                stored = True
                if matrix is None:
                    matrix = repeated(values[:, column], resample_count)
                start = layout.index(key) * row_bytes
                part = bytes(data or b"")[start : start + row_bytes]
                # A matrix stored for another number of resamples keeps the point value, as the
                # SUBSTR read of board_columns does.
                if len(part) == row_bytes:
                    matrix[row] = np.frombuffer(part, dtype=np.float32)
            rows.resamples[key] = matrix if stored else None
    return rows


def repeated(point: np.ndarray, resample_count: int) -> np.ndarray:
    """A row's point value on every resample: no noise to tie by."""
    return np.repeat(point.astype(np.float32)[:, None], resample_count, axis=1)


@dataclass
class Block:
    pk: int
    index: int
    rows: int
    last_finished_at: datetime
    last_pk: uuid.UUID
    ids: bytes  # 16 bytes per row
    created: np.ndarray  # int64 microseconds
    baseline: np.ndarray  # bool
    values: np.ndarray  # (rows x keys) float64

    @property
    def mark(self) -> tuple:
        return (self.pk, self.index, self.rows, self.last_finished_at, self.last_pk)

    @property
    def watermark(self) -> tuple:
        return (self.last_finished_at, self.last_pk)

    def uuids(self) -> list:
        return [uuid.UUID(bytes=self.ids[at : at + 16]) for at in range(0, len(self.ids), 16)]


MARK_FIELDS = ("pk", "index", "rows", "last_finished_at", "last_pk")


def block_marks(benchmark: Benchmark, layout: str) -> list[tuple]:
    """The sealed blocks' (pk, index, rows, watermark): cheap, no arrays."""
    return [
        tuple(mark)
        for mark in BoardBlock.objects.filter(benchmark=benchmark, layout=layout)
        .order_by("index")
        .values_list(*MARK_FIELDS)
    ]


def read_blocks(benchmark: Benchmark, layout: str, key_count: int) -> list[Block]:
    """Every sealed block of the layout, in one query."""
    read = fetch(
        BoardBlock.objects.filter(benchmark=benchmark, layout=layout)
        .order_by("index")
        .values_list(*MARK_FIELDS, "ids", "created", "baseline", "values")
    )
    blocks = []
    for pk, index, rows, last_finished_at, last_pk, ids, created, baseline, values in read:
        blocks.append(
            Block(
                pk=pk,
                index=index,
                rows=rows,
                last_finished_at=last_finished_at,
                last_pk=last_pk if isinstance(last_pk, uuid.UUID) else uuid.UUID(str(last_pk)),
                ids=bytes(ids),
                created=np.frombuffer(created, dtype="<i8"),
                baseline=np.frombuffer(baseline, dtype=np.uint8).astype(bool),
                values=np.frombuffer(values, dtype="<f8").reshape(rows, key_count),
            )
        )
    return blocks


def read_resamples(block_pks: list[int], key: str, resample_count: int) -> dict:
    """{block pk: (rows x B) float32} of `key`, in one query; a block without a row for it is all point values."""
    return {
        pk: np.frombuffer(data, dtype="<f4").reshape(-1, resample_count)
        for pk, data in fetch(
            BoardBlockResamples.objects.filter(block_id__in=block_pks, key=key).values_list("block_id", "data")
        )
    }


def seal(benchmark: Benchmark, layout: str, keys: list[str], resample_count: int, index: int, mark) -> bool:
    """Seal the first BLOCK_ROWS successes after `mark` as block `index`; False if fewer are there.

    True also when a concurrent process sealed that index first: its block is loaded instead.
    """
    # Which rows first, then their columns: ordering the whole tail by a JSON-decoding select list
    # would decode every row of it, not only the block's.
    chosen = list(
        succeeded(benchmark)
        .filter(after(mark), finished_at__isnull=False)
        .order_by("finished_at", "pk")
        .values_list("finished_at", "pk")[:BLOCK_ROWS]
    )
    if len(chosen) < BLOCK_ROWS:
        return False
    rows = read_rows(succeeded(benchmark).filter(pk__in=[pk for _, pk in chosen]), keys, resample_count)
    if len(rows) < BLOCK_ROWS:  # one stopped being succeeded meanwhile: the next load sees to it
        return False
    try:
        with transaction.atomic():
            _write(benchmark, layout, index, rows, chosen[-1])
    except IntegrityError:
        pass
    return True


def rewrite(
    benchmark: Benchmark, layout: str, keys: list[str], resample_count: int, block: Block, drop: set, adopt
) -> None:
    """Replace `block` by one without the submissions in `drop` and with those in `adopt` (pks).

    The watermark stays: it is the boundary of the tail, whichever rows are left below it.
    Nothing is done if another process replaced the block first.
    """
    keep = np.array([pk not in drop for pk in block.uuids()], dtype=bool).reshape(block.rows)
    adopted = read_rows(succeeded(benchmark).filter(pk__in=list(adopt)), keys, resample_count) if adopt else None
    with transaction.atomic():
        old = {
            key: np.frombuffer(data, dtype="<f4").reshape(-1, resample_count)
            for key, data in fetch(BoardBlockResamples.objects.filter(block_id=block.pk).values_list("key", "data"))
        }
        if not BoardBlock.objects.filter(pk=block.pk).delete()[0]:
            return
        kept_ids = [pk for pk, keeping in zip(block.uuids(), keep) if keeping]
        # A key none of the remaining rows stored keeps no matrix, so the board still says "none stored".
        layouts = succeeded(benchmark).filter(pk__in=kept_ids).order_by().values_list("resample_keys", flat=True)
        stored = {key for layout in (layouts.distinct() if kept_ids else []) for key in (layout or [])}
        rows = Rows(
            ids=kept_ids + (adopted.ids if adopted else []),
            created=np.concatenate([block.created[keep], adopted.created if adopted else np.empty(0, np.int64)]),
            baseline=np.concatenate([block.baseline[keep], adopted.baseline if adopted else np.empty(0, bool)]),
            values=np.concatenate([block.values[keep], adopted.values if adopted else np.empty((0, len(keys)))]),
            finished=[],
            resamples={},
        )
        for column, key in enumerate(keys):
            mine = old.get(key) if key in stored else None
            theirs = adopted.resamples.get(key) if adopted else None
            if mine is None and theirs is None:
                continue
            mine = mine[keep] if mine is not None else repeated(block.values[keep, column], resample_count)
            if adopted:
                theirs = theirs if theirs is not None else repeated(adopted.values[:, column], resample_count)
                mine = np.concatenate([mine, theirs])
            rows.resamples[key] = mine
        _write(benchmark, layout, block.index, rows, block.watermark)


def _write(benchmark: Benchmark, layout: str, index: int, rows: Rows, watermark: tuple) -> None:
    block = _insert(
        BoardBlock,
        benchmark_id=benchmark.pk,
        layout=layout,
        index=index,
        rows=len(rows),
        ids=b"".join(pk.bytes for pk in rows.ids),
        created=rows.created.astype("<i8").tobytes(),
        baseline=rows.baseline.astype(np.uint8).tobytes(),
        values=np.ascontiguousarray(rows.values, dtype="<f8").tobytes(),
        last_finished_at=watermark[0],
        last_pk=watermark[1],
    )
    for key, matrix in rows.resamples.items():
        if matrix is not None:
            data = np.ascontiguousarray(matrix, dtype="<f4").tobytes()
            _insert(BoardBlockResamples, block_id=block, key=key, data=data)


def _insert(model, **fields) -> int:
    """Insert one row and return its pk; bytea sent in binary on PostgreSQL.

    Django's client-side binding quotes bytes as hex text: a block's 30 MB of resamples took
    longer to quote and parse than to store.
    """
    if connection.vendor != "postgresql":
        return model.objects.create(**fields).pk
    names = ", ".join(connection.ops.quote_name(model._meta.get_field(name).column) for name in fields)
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({names}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {connection.ops.quote_name(model._meta.pk.column)}"
    )
    connection.ensure_connection()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, list(fields.values()))
        pk = cursor.fetchone()[0]
    if connection.queries_logged:
        connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})
    return pk
