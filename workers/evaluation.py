"""One evaluation: claim the submission, predict the hidden test set once in a sandbox, measure.

Model faults (a crash, wrong inputs, NaN) fail the submission with the model's error; anything
else is a platform fault and says so, so nobody is told to fix a model that was fine.
"""

import logging
import shutil
import tempfile
import time
from pathlib import Path

from django.conf import settings

from evaluators.performance import performance_objectives
from evaluators.sandbox import Limits, ModelFailure, predict_in_sandbox
from leaderboard.models import Submission
from leaderboard.services import (
    report_store,
    submission_fail,
    submission_progress,
    submission_start,
    submission_succeed,
)
from leaderboard.tables import table_from_parquet

log = logging.getLogger(__name__)


def submission_evaluate(submission_id: str) -> None:
    submission = submission_start(submission_id)
    if submission is None:
        return
    try:
        _evaluate(submission)
    except ModelFailure as failure:
        submission_fail(submission, f"{_stage_label(submission.stage)}: {failure}", stage=submission.stage)
    except Exception as error:  # noqa: BLE001 - a platform fault must still end the submission.
        log.exception("evaluation of %s failed in stage %s", submission.pk, submission.stage)
        submission_fail(
            submission,
            f"Holdout failed while {_stage_label(submission.stage).lower()} ({type(error).__name__}: "
            f"{str(error)[:300]}). This is a platform fault, not your model's; submit again or tell the "
            "benchmark owner.",
            stage=submission.stage,
            fault="platform",
        )


def _stage_label(stage: str) -> str:
    return {
        "starting": "Reading the test set",
        "predicting": "Running the model on the test set",
        "performance": "Computing performance",
    }.get(stage, stage.capitalize())


def _evaluate(submission: Submission) -> None:
    benchmark = submission.benchmark
    with benchmark.test_data.open("rb") as handle:
        test = table_from_parquet(handle.read())
    features = test[benchmark.feature_columns]
    y_true = test[benchmark.target_column].to_numpy()

    submission_progress(submission, stage="predicting", progress=0.1)
    workdir = Path(tempfile.mkdtemp(prefix="holdout-eval-"))
    try:
        artifact_path = workdir / f"model.{submission.artifact_format}"
        with submission.artifact.open("rb") as source, open(artifact_path, "wb") as target:
            shutil.copyfileobj(source, target)
        predictions = predict_in_sandbox(
            artifact_path=str(artifact_path),
            artifact_format=submission.artifact_format,
            features=features,
            task=benchmark.task,
            skops_trusted=settings.HOLDOUT_SKOPS_TRUSTED_TYPES,
            limits=Limits(
                memory_bytes=settings.HOLDOUT_MODEL_MEMORY_BYTES,
                cpu_seconds=settings.HOLDOUT_MODEL_CPU_SECONDS,
                # Leaves the rest of the time limit for measuring, so a slow model fails cleanly
                # here rather than being timed out by the sweep.
                wall_seconds=0.8 * benchmark.time_limit_seconds,
            ),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    submission_progress(submission, stage="performance", progress=0.7)
    started = time.perf_counter()
    performance = performance_objectives(
        y_true=y_true,
        predictions=predictions,
        task=benchmark.task,
        classes=benchmark.class_labels,
        positive_label=benchmark.positive_label,
        resamples=settings.HOLDOUT_BOOTSTRAP_RESAMPLES,
        seed=benchmark.bootstrap_seed,
    )
    report_store(
        submission,
        evaluator="performance",
        document={**performance, "rows": len(test), "predict_seconds": predictions.predict_seconds},
        seconds=time.perf_counter() - started,
    )
    submission_succeed(submission, metrics=performance["metrics"], intervals=performance["intervals"])
