"""The board columns from the shared column store equal a read of the submission rows, whatever happened to them."""

from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from leaderboard import board_columns as columns_module
from leaderboard import column_store
from leaderboard.board_columns import board_columns
from leaderboard.models import BoardBlock, BoardBlockResamples, Submission
from tests.conftest import baseline_named, succeeded_submission

RESAMPLES = 8
KEYS = ["accuracy", "roc_auc", "f1_macro", "latency_p99_ms"]


@pytest.fixture
def store(adult_benchmark, adult_baselines, user, monkeypatch):
    """A benchmark whose blocks hold three rows, and a helper adding succeeded submissions to it."""
    monkeypatch.setattr(column_store, "BLOCK_ROWS", 3)
    columns_module._kept.clear()
    adult_benchmark.bootstrap_resamples = RESAMPLES
    adult_benchmark.save()
    model = baseline_named(adult_baselines, "onnx:")
    made = []

    def add(**extra):
        index = len(made)
        rng = np.random.default_rng(index)
        metrics = {"accuracy": 0.7 + 0.01 * index, "roc_auc": 0.6 + 0.02 * (index % 4)}
        if index % 2 == 0:
            metrics["latency_p99_ms"] = 1.0 + index  # NaN on odd rows
        resamples = {"accuracy": metrics["accuracy"] + rng.normal(0, 0.01, RESAMPLES)} if index % 5 != 4 else {}
        if index % 3 == 0:
            resamples["roc_auc"] = metrics["roc_auc"] + rng.normal(0, 0.02, RESAMPLES)
        submission = succeeded_submission(
            adult_benchmark, user, model, f"model-{index}", metrics, baseline=index == 0, resamples=resamples or None
        )
        made.append(submission)
        return submission

    return adult_benchmark, add, made


def from_rows(benchmark, keys):
    """The board as the submission rows say, decoded here without the column store's code."""
    rows = list(
        Submission.objects.filter(benchmark=benchmark, status=Submission.Status.SUCCEEDED).order_by("created_at", "pk")
    )
    values = np.array(
        [[float(row.metrics[key]) if row.metrics.get(key) is not None else np.nan for key in keys] for row in rows]
    ).reshape(len(rows), len(keys))
    resamples = {}
    for column, key in enumerate(keys):
        if not any(key in (row.resample_keys or []) for row in rows):
            resamples[key] = None
            continue
        matrix = np.repeat(values[:, [column]].astype(np.float32), benchmark.bootstrap_resamples, axis=1)
        for at, row in enumerate(rows):
            if key in (row.resample_keys or []):
                stored = np.frombuffer(bytes(row.resamples), dtype=np.float32).reshape(len(row.resample_keys), -1)
                matrix[at] = stored[row.resample_keys.index(key)]
        resamples[key] = matrix
    ids, created, baseline = [row.pk for row in rows], [row.created_at for row in rows], [row.is_baseline for row in rows]
    return ids, created, baseline, values, resamples


def assert_matches_rows(benchmark, keys=KEYS):
    columns = board_columns(benchmark, keys)
    ids, created, baseline, values, resamples = from_rows(benchmark, keys)
    assert columns.ids == ids
    assert columns.created == created
    assert columns.baseline.tolist() == baseline
    np.testing.assert_array_equal(columns.values, values)
    assert not columns.values.flags.writeable
    for key in keys:
        matrix = columns.resamples(benchmark, key)
        if resamples[key] is None:
            assert matrix is None, key
        else:
            np.testing.assert_array_equal(matrix, resamples[key], err_msg=key)
            assert not matrix.flags.writeable
    return columns


def new_process():
    columns_module._kept.clear()


def blocks(benchmark, keys=KEYS):
    layout = column_store.layout_of(keys, benchmark.bootstrap_resamples)
    return list(BoardBlock.objects.filter(benchmark=benchmark, layout=layout).order_by("index"))


def test_columns_from_the_store_equal_the_rows(store):
    benchmark, add, made = store
    for _ in range(7):
        add()
    columns = assert_matches_rows(benchmark)
    assert [block.rows for block in blocks(benchmark)] == [3, 3]
    assert columns.resamples(benchmark, "f1_macro") is None  # no row stored any
    # Rows 4 stored no accuracy resamples and odd rows no roc_auc ones: their point value repeats.
    accuracy = columns.resamples(benchmark, "accuracy")
    assert np.all(accuracy[4] == np.float32(columns.values[4, 0]))
    # A block whose rows stored no resamples of a key keeps no matrix of it.
    assert not BoardBlockResamples.objects.filter(key="f1_macro").exists()
    assert not BoardBlockResamples.objects.filter(key="latency_p99_ms").exists()
    new_process()
    assert_matches_rows(benchmark)


def test_a_new_process_reads_the_blocks_not_the_sealed_rows(store):
    benchmark, add, made = store
    for _ in range(6):
        add()
    board_columns(benchmark, KEYS)
    assert [block.rows for block in blocks(benchmark)] == [3, 3]
    expected = from_rows(benchmark, KEYS)
    new_process()
    with CaptureQueriesContext(connection) as queries:
        columns = board_columns(benchmark, KEYS)
        for key in KEYS:
            columns.resamples(benchmark, key)
    reading_rows = [
        query["sql"]
        for query in queries.captured_queries
        if any(f'"leaderboard_submission"."{column}"' in query["sql"] for column in ("resamples", "metrics"))
    ]
    # The empty tail is asked for once (its point values); nothing reads a sealed row's resamples.
    assert len(reading_rows) == 1 and '"resamples"' not in reading_rows[0].split("FROM")[0]
    # The count, the block marks, the blocks, the tail, then one query per key for every block.
    assert len(queries.captured_queries) == 4 + len(KEYS)
    assert columns.ids == expected[0]
    np.testing.assert_array_equal(columns.resamples(benchmark, "accuracy"), expected[4]["accuracy"])

    # Changing what the sealed rows say (which a succeeded submission never does) shows it is the store that is read.
    Submission.objects.filter(pk=made[0].pk).update(metrics={"accuracy": 0.0}, resamples=b"")
    new_process()
    columns = board_columns(benchmark, KEYS)
    row = columns.ids.index(made[0].pk)
    assert columns.values[row, 0] == pytest.approx(0.7)
    assert columns.resamples(benchmark, "accuracy")[row][0] != np.float32(0.7)


def test_the_tail_is_sealed_when_it_holds_a_block(store):
    benchmark, add, made = store
    add(), add()
    assert_matches_rows(benchmark)
    assert blocks(benchmark) == []
    add()
    assert_matches_rows(benchmark)
    assert [block.rows for block in blocks(benchmark)] == [3]
    add(), add()
    assert_matches_rows(benchmark)
    assert len(blocks(benchmark)) == 1
    add()
    assert_matches_rows(benchmark)
    assert [block.rows for block in blocks(benchmark)] == [3, 3]
    last = blocks(benchmark)[-1]
    assert (last.last_finished_at, last.last_pk) == (Submission.objects.get(pk=made[5].pk).finished_at, made[5].pk)


def test_a_sealed_block_that_lost_a_submission_is_rewritten(store):
    benchmark, add, made = store
    for _ in range(7):
        add()
    assert_matches_rows(benchmark)
    before = blocks(benchmark)
    Submission.objects.filter(pk=made[1].pk).delete()
    assert_matches_rows(benchmark)  # this process, which had the block
    after = blocks(benchmark)
    assert [block.rows for block in after] == [2, 3]
    assert after[0].pk != before[0].pk and after[1].pk == before[1].pk
    assert (after[0].last_finished_at, after[0].last_pk) == (before[0].last_finished_at, before[0].last_pk)
    new_process()
    assert_matches_rows(benchmark)

    # One that stops being succeeded leaves too; seen first by a process that never loaded the board.
    Submission.objects.filter(pk=made[4].pk).update(status=Submission.Status.FAILED)
    new_process()
    assert_matches_rows(benchmark)
    assert [block.rows for block in blocks(benchmark)] == [2, 2]


def test_a_success_evaluated_again_is_not_shown_twice(store):
    benchmark, add, made = store
    for _ in range(4):
        add()
    assert_matches_rows(benchmark)
    later = Submission.objects.get(pk=made[0].pk).finished_at + timedelta(hours=1)
    Submission.objects.filter(pk=made[0].pk).update(finished_at=later, metrics={"accuracy": 0.5, "roc_auc": 0.5})
    columns = assert_matches_rows(benchmark)
    assert columns.ids.count(made[0].pk) == 1
    new_process()
    assert_matches_rows(benchmark)


def test_a_success_stamped_below_the_watermark_is_adopted(store):
    benchmark, add, made = store
    for _ in range(6):
        add()
    assert_matches_rows(benchmark)
    straggler = add()
    first = blocks(benchmark)[0]
    Submission.objects.filter(pk=straggler.pk).update(finished_at=first.last_finished_at - timedelta(seconds=1))
    assert_matches_rows(benchmark)
    assert [block.rows for block in blocks(benchmark)] == [3, 4]
    new_process()
    with CaptureQueriesContext(connection) as queries:
        assert_matches_rows(benchmark)
    # Adopted, the store agrees with the count again: no process reads every succeeded pk.
    assert not any('SELECT "leaderboard_submission"."id" FROM' in query["sql"] for query in queries.captured_queries)


def test_another_objective_list_uses_other_blocks(store):
    benchmark, add, made = store
    for _ in range(4):
        add()
    assert_matches_rows(benchmark)
    other = ["roc_auc", "accuracy"]
    assert_matches_rows(benchmark, other)
    assert [block.rows for block in blocks(benchmark, other)] == [3]
    assert BoardBlock.objects.filter(benchmark=benchmark).values("layout").distinct().count() == 2
    benchmark.bootstrap_resamples = RESAMPLES * 2
    benchmark.save()
    columns = board_columns(benchmark, other)
    assert columns.resample_count == RESAMPLES * 2
    assert BoardBlock.objects.filter(benchmark=benchmark).values("layout").distinct().count() == 3


def test_appended_rows_keep_the_loaded_resamples(store):
    benchmark, add, made = store
    for _ in range(4):
        add()
    columns = assert_matches_rows(benchmark)
    add()
    appended = board_columns(benchmark, KEYS)
    assert appended is not columns and len(appended.ids) == 5
    assert set(appended._resamples) == set(KEYS)  # loaded before, extended without being asked
    assert_matches_rows(benchmark)


def test_the_sweep_seals_grown_boards_ahead_of_the_requests(store):
    from leaderboard.boards import benchmark_objectives, boards_seal
    from workers.tasks import sweep_stuck_submissions

    benchmark, add, _ = store
    for _ in range(7):
        add()
    assert not BoardBlock.objects.filter(benchmark=benchmark).exists()
    assert boards_seal(most=1) == {"blocks_sealed": 1}  # a sweep does a bounded share of the work
    assert sweep_stuck_submissions()["blocks_sealed"] == 1  # the periodic task runs the same step
    assert sweep_stuck_submissions()["blocks_sealed"] == 0  # one row of tail is left: nothing to seal
    assert BoardBlock.objects.filter(benchmark=benchmark).count() == 2
    keys = [o.key for o in benchmark_objectives(benchmark)]
    with CaptureQueriesContext(connection) as queries:
        columns = board_columns(benchmark, keys)
    assert not any("INSERT" in query["sql"] for query in queries.captured_queries)  # the request sealed nothing
    assert len(columns.ids) == 7
