"""One evaluation, in two phases, each a Celery task that claims the submission first.

The evaluation phase predicts the hidden test set once in the sandboxed model process (which also
runs the probes the evaluators ask for) and runs every enabled evaluator on that one prediction
pass. The latency phase runs on its own queue, one at a time, so nothing competes for the CPU
while the model is timed; cost, which needs the timings, runs after it.

A model fault (a crash, wrong inputs, NaN) fails the submission with the model's error; a
failing evaluator other than performance fails only its own report; anything else is a platform
fault and says so, so nobody is told to fix a model that was fine.

While a task works, a heartbeat thread keeps its claim fresh (workers/heartbeat.py), so a killed
worker's submission is taken over within seconds rather than a time limit. Every database write
survives a lost connection (a restarted database, a terminated backend): the connection is
closed and the write tried again, so the result is not lost with it.
"""

import functools
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from evaluators.base import EvaluationInput, Evaluator, EvaluatorResult
from evaluators.latency import MAX_SESSIONS, session_disturbed
from evaluators.probes import PROBE_NAMES
from evaluators.registry import evaluator_get, evaluator_options
from evaluators.sandbox import Limits, ModelFailure, SandboxRun, run_in_sandbox
from leaderboard.closing import private_score_fail, private_score_start, private_score_succeed
from leaderboard.holders import holder_this_process
from leaderboard.models import Benchmark, Submission
from leaderboard.services import (
    report_record,
    resamples_matrix,
    submission_fail,
    submission_latency_handoff,
    submission_latency_start,
    submission_progress,
    submission_resamples_store,
    submission_start,
    submission_succeed,
)
from leaderboard.selectors import latency_calibrations_recent
from leaderboard.tables import table_from_parquet
from workers.heartbeat import heartbeat

log = logging.getLogger(__name__)

STAGE_LABELS = {
    "starting": "Reading the test set",
    "predicting": "Running the model on the test set",
    "inspecting": "Measuring the model in memory",
    "explaining": "Explaining the model's predictions (SHAP)",
    Submission.LATENCY: "Measuring latency",
}


# The stage a submission shows while the model process runs each probe of the evaluation phase.
PROBE_STAGES = {"inspect": ("inspecting", 0.12), "explain": ("explaining", 0.15)}

# Test tables a worker process keeps read (workers/evaluation.py _test_table), most recent first.
TEST_TABLES_KEPT = 4

# Waits between tries of a database write whose connection was lost: about half a minute in all,
# enough for a database restart or failover, well within a heartbeat's staleness.
DATABASE_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
# Temporary folders of this worker carry its pid, so a worker starting after a killed one can tell
# which are left over (workers/cleanup.py).
EVAL_DIR_PREFIX = "holdout-eval-"


def submission_evaluate(submission_id: str) -> None:
    holder = holder_this_process()
    submission = durably(submission_start, submission_id, holder=holder)
    if submission is not None:
        with heartbeat(submission, holder=holder), _failures_recorded(submission):
            _evaluation_phase(submission)


def submission_measure_latency(submission_id: str) -> None:
    holder = holder_this_process()
    submission = durably(submission_latency_start, submission_id, holder=holder)
    if submission is not None:
        with heartbeat(submission, holder=holder), _failures_recorded(submission):
            _latency_phase(submission)


def durably(write: Callable, *args, **kwargs):
    """Run a database call, reconnecting and trying again while the connection is lost.

    Without this a terminated connection fails the task before it can record anything, and the
    submission waits out its time limit for a second attempt.
    """
    for delay in (*DATABASE_RETRY_DELAYS, None):
        try:
            return write(*args, **kwargs)
        except (OperationalError, InterfaceError):
            if delay is None or connection.in_atomic_block:
                raise  # out of tries, or inside a caller's transaction, which must see the error
            log.warning("database call %s failed; reconnecting in %g s", write.__name__, delay, exc_info=True)
            connection.close()
            time.sleep(delay)


@contextmanager
def _failures_recorded(submission: Submission):
    try:
        yield
    except ModelFailure as failure:
        durably(submission_fail, submission, f"{_stage_label(submission.stage)}: {failure}", stage=submission.stage)
    except Exception as error:  # noqa: BLE001 - a platform fault must still end the submission.
        log.exception("evaluation of %s failed in stage %s", submission.pk, submission.stage)
        durably(
            submission_fail,
            submission,
            f"Holdout failed while {_stage_label(submission.stage).lower()} ({type(error).__name__}: "
            f"{str(error)[:300]}). This is a platform fault, not your model's; submit again or tell the "
            "benchmark owner.",
            stage=submission.stage,
            fault="platform",
        )


def _stage_label(stage: str) -> str:
    return STAGE_LABELS.get(stage, f"Measuring {stage}")


def _evaluation_phase(submission: Submission) -> None:
    benchmark = submission.benchmark
    test = _test_set(benchmark)
    base = _evaluation_input(submission, test)
    evaluators = [e for e in _enabled_evaluators(benchmark, queue="evaluate") if e.applies(base)]

    durably(submission_progress, submission, stage="predicting", progress=0.1)

    def probe_started(name: str) -> None:
        stage, progress = PROBE_STAGES.get(name, (name, 0.15))
        durably(submission_progress, submission, stage=stage, progress=progress)

    run = _sandbox_run(submission, test, base, evaluators, predict=True, on_probe=probe_started)
    data = replace(base, predictions=run.predictions, probes=run.probes)

    resample_values: dict[str, list] = {}
    for position, evaluator in enumerate(evaluators):
        durably(submission_progress, submission, stage=evaluator.name, progress=0.2 + 0.6 * position / len(evaluators))
        result = _evaluator_record(submission, evaluator, data, run)
        if result is not None:
            resample_values.update(_resampled_metrics(result))
    durably(submission_resamples_store, submission, resample_values=resample_values)

    if _enabled_evaluators(benchmark, queue="latency"):
        durably(submission_latency_handoff, submission)
    else:
        durably(submission_succeed, submission)


# The evaluators that judge predictions against the labels, which is what changes with the rows:
# a private score runs these alone. Interpretability explains the model without labels, and size,
# latency and cost measure the model, not the rows.
LABEL_EVALUATORS = ("performance", "fairness", "decay")


def private_score_evaluate(score_id: int) -> None:
    """Measure a counted submission on a closed benchmark's private rows (leaderboard/closing.py)."""
    score = durably(private_score_start, score_id)
    if score is None:
        return
    try:
        outcome = _private_phase(score.submission)
    except ModelFailure as failure:
        durably(private_score_fail, score, f"the model failed on the private rows: {failure}")
    except Exception as error:  # noqa: BLE001 - a platform fault must still end the score.
        log.exception("the private score %s of %s failed", score.pk, score.submission_id)
        durably(
            private_score_fail,
            score,
            f"Holdout failed while measuring the private rows ({type(error).__name__}: {str(error)[:300]}); a "
            "platform fault, not the model's.",
        )
    else:
        durably(private_score_succeed, score, **outcome)


def _private_phase(submission: Submission) -> dict:
    """The evaluation phase's prediction pass and label-based evaluators, on the private rows.

    Nothing is written to the submission or its reports: the private values live on its PrivateScore."""
    benchmark = submission.benchmark
    test = _test_set(benchmark, part="private")
    base = _evaluation_input(submission, test)
    evaluators = [
        e for e in _enabled_evaluators(benchmark, queue="evaluate") if e.name in LABEL_EVALUATORS and e.applies(base)
    ]
    run = _sandbox_run(submission, test, base, evaluators, predict=True)
    data = replace(base, predictions=run.predictions, probes=run.probes)
    metrics, intervals, resample_values, errors = {}, {}, {}, {}
    for evaluator in evaluators:
        result, error, _ = _evaluator_run(submission, evaluator, data)
        if result is None:
            errors[evaluator.name] = error
            continue
        metrics.update(result.metrics)
        intervals.update(result.intervals)
        resample_values.update(_resampled_metrics(result))
    keys, matrix = resamples_matrix(resample_values, benchmark.bootstrap_resamples)
    return {"metrics": metrics, "intervals": intervals, "resamples": matrix, "resample_keys": keys, "errors": errors}


def _latency_phase(submission: Submission) -> None:
    test = _test_set(submission.benchmark)
    # The model process runs on this machine, so this machine's recent sessions tell its spread.
    base = replace(
        _evaluation_input(submission, test),
        machine_calibrations_ms=durably(latency_calibrations_recent, host=platform.node(), limit=MAX_SESSIONS),
        submission_seed=submission.pk.int % 2**63,
    )
    evaluators = [e for e in _enabled_evaluators(submission.benchmark, queue="latency") if e.applies(base)]

    def timed(name: str, fraction: float) -> None:
        # The timing blocks move the line from where the evaluate phase left it to the reports.
        durably(submission_progress, submission, stage=Submission.LATENCY, progress=0.8 + 0.05 * fraction)

    run = _sandbox_run(submission, test, base, evaluators, predict=False, on_progress=timed)
    if session_disturbed(run.probes.get("latency"), base.machine_calibrations_ms):
        # The whole session ran on a slow or busy machine: once more, and the calmer one is kept.
        again = _sandbox_run(submission, test, base, evaluators, predict=False, on_progress=timed)
        run = _session_calmer(run, again)
    data = replace(base, probes=run.probes)
    resample_values: dict[str, list] = {}
    for position, evaluator in enumerate(evaluators):
        # The stage stays "latency" so a sweep after a lost worker re-sends this phase alone.
        progress = 0.85 + 0.1 * position / len(evaluators)
        durably(submission_progress, submission, stage=Submission.LATENCY, progress=progress)
        previous = durably(_previous_reports, submission)
        result = _evaluator_record(submission, evaluator, replace(data, previous=previous), run)
        if result is not None:
            resample_values.update(_resampled_metrics(result))
    durably(submission_resamples_store, submission, resample_values=resample_values)
    durably(submission_succeed, submission)


def _previous_reports(submission: Submission) -> dict:
    return {
        report.evaluator: {"metrics": report.metrics, "document": report.document}
        for report in submission.reports.filter(error="")
    }


def _session_calmer(first: SandboxRun, second: SandboxRun) -> SandboxRun:
    """Of two latency sessions, the one whose calibration ran fastest; its document records both."""
    calibrations = [_calibration_median(run) for run in (first, second)]
    kept = second if calibrations[1] is not None and (calibrations[0] is None or calibrations[1] < calibrations[0]) else first
    outcome = kept.probes["latency"]
    if outcome.document is not None:
        outcome.document["session_remeasured"] = {"calibration_medians_ms": calibrations, "kept": [first, second].index(kept)}
    return kept


def _calibration_median(run: SandboxRun) -> float | None:
    outcome = run.probes.get("latency")
    return None if outcome is None or outcome.document is None else outcome.document["calibration"]["median_ms"]


def _resampled_metrics(result: EvaluatorResult) -> dict[str, list]:
    """The scalar objectives' values on the shared resamples, where the evaluator kept them."""
    kept = result.document.get("resample_values") or {}
    return {key: values for key, values in kept.items() if key in result.metrics}


def _evaluator_record(
    submission: Submission, evaluator: Evaluator, data: EvaluationInput, run: SandboxRun
) -> EvaluatorResult | None:
    """Run one evaluator and store its report; only performance may fail the submission."""
    probe_seconds = sum(run.probes[name].seconds for name in evaluator.probes if name in run.probes)
    result, error, seconds = _evaluator_run(submission, evaluator, data)
    if result is None:
        durably(report_record, submission, evaluator=evaluator.name, seconds=probe_seconds + seconds, error=error)
        return None
    durably(
        report_record,
        submission,
        evaluator=evaluator.name,
        seconds=probe_seconds + seconds,
        metrics=result.metrics,
        intervals=result.intervals,
        document=_with_sandbox(result.document, run),
    )
    return result


def _evaluator_run(
    submission: Submission, evaluator: Evaluator, data: EvaluationInput
) -> tuple[EvaluatorResult | None, str, float]:
    """One evaluator under the benchmark's options: its result, or None and why it failed, and the
    seconds it took. A failing performance evaluator is raised: without it nothing was measured."""
    data = replace(data, options=_options(submission, evaluator))
    started = time.perf_counter()
    try:
        return evaluator.evaluate(data), "", time.perf_counter() - started
    except Exception as error:
        if evaluator.name == "performance":
            raise
        log.warning("evaluator %s failed on %s: %s", evaluator.name, submission.pk, error, exc_info=True)
        return None, _evaluator_error(error), time.perf_counter() - started


def _with_sandbox(document: dict, run: SandboxRun) -> dict:
    """The report says how the model process that produced its numbers was isolated, e.g.
    {"network": {"isolated": true, "summary": "network: none (own namespace)"}}."""
    if run.isolation is None:
        return document
    return {**document, "sandbox": run.isolation}


def _options(submission: Submission, evaluator: Evaluator) -> dict:
    """The evaluator's documented defaults under this benchmark's settings for it."""
    return evaluator_options(evaluator.name, submission.benchmark.evaluator_options.get(evaluator.name))


def _evaluator_error(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 500 else text[:499] + "…"


def _enabled_evaluators(benchmark: Benchmark, *, queue: str) -> list[Evaluator]:
    names = dict.fromkeys(["performance", *benchmark.evaluators])
    return [evaluator for evaluator in map(evaluator_get, names) if evaluator.queue == queue]


def _test_set(benchmark: Benchmark, part: str = "public") -> pd.DataFrame:
    """The rows a submission is evaluated on. "public": what a submitter is shown is computed on,
    the whole set of an open benchmark and the public part of a guarded one, so during the
    competition the model never sees the private rows. "private": a guarded benchmark's other
    rows, read only once its owner has closed it (leaderboard/closing.py)."""
    if part not in ("public", "private"):
        raise ValueError(f"unknown part of the test set: {part!r}")
    if part == "private" and not (benchmark.is_guarded and benchmark.is_closed):
        raise RuntimeError(f"the private rows of '{benchmark.slug}' are read only after a guarded benchmark closes")
    test = _test_table(benchmark.pk, benchmark.test_data.name, benchmark.created_at)
    if not benchmark.is_guarded:
        return test.copy()
    positions = benchmark.public_positions if part == "public" else benchmark.private_positions
    return test.iloc[positions].reset_index(drop=True)


@functools.lru_cache(maxsize=TEST_TABLES_KEPT)
def _test_table(benchmark_id: int, name: str, created_at) -> pd.DataFrame:
    """A benchmark's hidden test table, read from storage once per worker process: it never changes
    once the benchmark exists (the file is fixed; the key holds the creation time, so a benchmark
    deleted and made again under the same id and file name is read anew), and each submission's
    evaluation and latency phases, and each private score, would read it again."""
    with Benchmark.objects.get(pk=benchmark_id).test_data.open("rb") as handle:
        return table_from_parquet(handle.read())


def _evaluation_input(submission: Submission, test: pd.DataFrame) -> EvaluationInput:
    benchmark = submission.benchmark
    return EvaluationInput(
        task=benchmark.task,
        y_true=test[benchmark.target_column].to_numpy(),
        predictions=None,
        features=test[benchmark.feature_columns],
        sensitive=test[benchmark.sensitive_columns],
        times=test[benchmark.time_column] if benchmark.time_column else None,
        classes=benchmark.class_labels,
        positive_label=benchmark.positive_label,
        primary_metric=benchmark.primary_metric,
        primary_higher_is_better=benchmark.primary_objective.higher_is_better,
        resamples=benchmark.bootstrap_resamples,
        seed=benchmark.bootstrap_seed,
        metadata=submission.metadata,
        options={},
        artifact_bytes=submission.artifact_bytes,
        artifact_format=submission.artifact_format,
    )


def _sandbox_run(
    submission: Submission,
    test: pd.DataFrame,
    base: EvaluationInput,
    evaluators: list[Evaluator],
    *,
    predict: bool,
    on_probe=None,
    on_progress=None,
) -> SandboxRun:
    probes: dict[str, dict] = {}
    for evaluator in evaluators:
        probes.update(evaluator.probe_params(replace(base, options=_options(submission, evaluator))))
    # In PROBE_NAMES order: inspect reads the model's memory before explain or latency grow it.
    probes = {name: probes[name] for name in PROBE_NAMES if name in probes}
    workdir = Path(tempfile.mkdtemp(prefix=f"{EVAL_DIR_PREFIX}{os.getpid()}-"))
    try:
        artifact_path = workdir / f"model.{submission.artifact_format}"
        with submission.artifact.open("rb") as source, open(artifact_path, "wb") as target:
            shutil.copyfileobj(source, target)
        return run_in_sandbox(
            artifact_path=str(artifact_path),
            artifact_format=submission.artifact_format,
            features=base.features,
            task=submission.benchmark.task,
            skops_trusted=settings.HOLDOUT_SKOPS_TRUSTED_TYPES,
            limits=Limits(
                memory_bytes=settings.HOLDOUT_MODEL_MEMORY_BYTES,
                cpu_seconds=settings.HOLDOUT_MODEL_CPU_SECONDS,
                # Leaves the rest of the time limit for measuring, so a slow model fails cleanly
                # here rather than being timed out by the sweep.
                wall_seconds=0.8 * submission.benchmark.time_limit_seconds,
            ),
            predict=predict,
            probes=probes,
            on_probe=on_probe,
            on_progress=on_progress,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
