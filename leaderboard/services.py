"""Writes: every change to benchmarks and submissions goes through these functions.

The API, the web forms, the admin and the management commands all call them, so a rule is
enforced in one place.
"""

import functools
import hashlib
import logging
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from evaluators.artifacts import ArtifactRejected, inspect_artifact
from leaderboard.errors import Conflict, IdempotencyKeyReused, QuotaExceeded, Rejected
from leaderboard.holders import HEARTBEAT_STALE_SECONDS, holder_dead, holder_describe
from leaderboard.holdout_split import DEFAULT_PUBLIC_FRACTION, public_rows
from leaderboard.metadata import metadata_canonical, metadata_check, request_fingerprint
from leaderboard.models import ApiToken, Benchmark, HoldoutPolicy, Report, Submission
from leaderboard.objectives import TASKS, default_presets, evaluators_applying, objective_keys, performance_keys
from leaderboard.budget import holdout_budget_enforce
from leaderboard.releases import submission_releases
from leaderboard.selectors import QuotaUsage, submission_quota_usage
from leaderboard.tables import table_read, table_to_parquet

log = logging.getLogger(__name__)
# A message not taken this long after it was sent, from a queue the broker says is empty, was lost:
# a worker claims a message it takes at once, and with the 15 s sweep a lost one is sent again within a minute.
LOST_MESSAGE_SECONDS = 30

EVALUATE_TASK = "holdout.evaluate_submission"
LATENCY_TASK = "holdout.measure_latency"
MAX_NAME_LENGTH = 120
MAX_TOKEN_NAME_LENGTH = 64
# A recognisable prefix lets secret scanners and people tell a Holdout key from other strings.
API_TOKEN_PREFIX = "hdt_"
# A token's last use is written at most this often, so a busy CI job does not write on every call.
TOKEN_USE_RESOLUTION = timedelta(minutes=1)


# --- Benchmarks ---------------------------------------------------------------------------------


def benchmark_create(
    *,
    slug: str,
    name: str,
    task: str,
    target_column: str,
    train_data: bytes,
    train_filename: str,
    test_data: bytes,
    test_filename: str,
    feature_columns: Sequence[str] | None = None,
    sensitive_columns: Sequence[str] = (),
    time_column: str = "",
    positive_label: Any = None,
    primary_metric: str = "",
    description: str = "",
    time_limit_seconds: int | None = None,
    daily_submission_quota: int | None = None,
    holdout_policy: str = HoldoutPolicy.OPEN,
    public_fraction: float | None = None,
    created_by=None,
) -> Benchmark:
    """Validate the spec against both splits, then store the benchmark; nothing is kept on error.

    The returned benchmark carries `creation_warnings`: what is allowed but the owner should know
    (test rows that are copies of training rows). They are not stored; each door shows them: the
    command prints them, the admin shows them as warning messages."""
    slug = (slug or "").strip()
    if not slug or slug != slugify(slug):
        raise Rejected("slug must be lowercase letters, digits and hyphens, e.g. 'adult-income'.", field="slug")
    if Benchmark.objects.filter(slug=slug).exists():
        raise Rejected(f"a benchmark with slug '{slug}' already exists.", field="slug")
    if not (name or "").strip():
        raise Rejected("name is required.", field="name")
    if task not in TASKS:
        raise Rejected(f"unknown task '{task}'; use one of: {', '.join(TASKS)}.", field="task")
    holdout_policy, public_fraction = _holdout_policy_check(holdout_policy, public_fraction)
    for data, field in ((train_data, "train_data"), (test_data, "test_data")):
        if len(data) > settings.HOLDOUT_MAX_DATASET_BYTES:
            raise Rejected(
                f"{field} is {len(data) / 1e6:.1f} MB; the limit is {settings.HOLDOUT_MAX_DATASET_BYTES / 1e6:.0f} MB.",
                field=field,
            )
    train = table_read(train_data, filename=train_filename, field="train_data")
    test = table_read(test_data, filename=test_filename, field="test_data")

    spec = _benchmark_spec_check(
        train=train,
        test=test,
        task=task,
        target_column=(target_column or "").strip(),
        feature_columns=feature_columns,
        sensitive_columns=sensitive_columns,
        time_column=(time_column or "").strip(),
        positive_label=positive_label,
        primary_metric=(primary_metric or "").strip(),
    )
    warnings = _split_overlap_warnings(train, test, [*spec["feature_columns"], spec["target_column"]])
    keep = list(dict.fromkeys([*spec["feature_columns"], *spec["sensitive_columns"], spec["target_column"]]))
    if spec["time_column"]:
        keep.append(spec["time_column"])
        for frame in (train, test):
            frame[spec["time_column"]] = pd.to_datetime(frame[spec["time_column"]], format="mixed")

    evaluators = evaluators_applying(sensitive_columns=spec["sensitive_columns"], time_column=spec["time_column"])
    evaluator_options = {}
    if spec["time_column"] and train[spec["time_column"]].notna().any():
        # Submissions are trained on the public split, so its end is their training cutoff unless they say otherwise.
        evaluator_options["decay"] = {"training_split_end": train[spec["time_column"]].max().date().isoformat()}
    keys = objective_keys(task, evaluators)
    benchmark = Benchmark(
        slug=slug,
        name=name.strip(),
        description=description or "",
        task=task,
        evaluators=evaluators,
        objectives={key: (1.0 if key == spec["primary_metric"] else 0.0) for key in keys},
        presets=default_presets(primary=spec["primary_metric"], keys=keys),
        evaluator_options=evaluator_options,
        train_rows=len(train),
        test_rows=len(test),
        created_by=created_by,
        **spec,
    )
    benchmark.holdout_policy, benchmark.public_fraction = holdout_policy, public_fraction
    if holdout_policy == HoldoutPolicy.GUARDED:
        benchmark.public_rows = _public_rows_draw(
            test, spec, task=task, fraction=public_fraction, seed=benchmark.bootstrap_seed
        )
    if time_limit_seconds:
        benchmark.time_limit_seconds = time_limit_seconds
    if daily_submission_quota is not None:
        benchmark.daily_submission_quota = daily_submission_quota
    saved_files = []
    try:
        with transaction.atomic():
            benchmark.train_data.save(f"{slug}/train.parquet", ContentFile(table_to_parquet(train[keep])), save=False)
            saved_files.append(benchmark.train_data)
            benchmark.test_data.save(f"{slug}/test.parquet", ContentFile(table_to_parquet(test[keep])), save=False)
            saved_files.append(benchmark.test_data)
            benchmark.save()
    except IntegrityError:
        _files_delete(saved_files)
        raise Rejected(f"a benchmark with slug '{slug}' already exists.", field="slug") from None
    except BaseException:
        _files_delete(saved_files)
        raise
    benchmark.creation_warnings = warnings
    return benchmark


def _holdout_policy_check(policy, fraction) -> tuple[str, float]:
    policy = (policy or HoldoutPolicy.OPEN).strip()
    if policy not in HoldoutPolicy.values:
        raise Rejected(
            f"holdout policy '{policy}' is not one of {', '.join(HoldoutPolicy.values)}: 'open' releases every "
            "score, 'guarded' splits the test rows into a public and a private part.",
            field="holdout_policy",
        )
    if fraction is None:
        return policy, DEFAULT_PUBLIC_FRACTION
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.05 <= fraction <= 0.95:
        raise Rejected(
            f"public fraction {fraction!r} is not a number from 0.05 to 0.95 (the share of test rows shown "
            f"during the competition; default {DEFAULT_PUBLIC_FRACTION}).",
            field="public_fraction",
        )
    return policy, float(fraction)


def _public_rows_draw(test: pd.DataFrame, spec: dict, *, task: str, fraction: float, seed: int) -> bytes:
    try:
        positions = public_rows(
            test,
            target_column=spec["target_column"],
            task=task,
            time_column=spec["time_column"],
            fraction=fraction,
            seed=seed,
        )
    except ValueError as error:
        raise Rejected(str(error), field="public_fraction") from None
    return positions.astype("<i8").tobytes()


def _split_overlap_warnings(train: pd.DataFrame, test: pd.DataFrame, columns: list[str]) -> list[str]:
    """A warning when test rows are exact copies of training rows in every feature and the target:
    a model can score on those by remembering its training data, so the test measures less than it
    seems. Not a refusal: duplicates can be honest (a few common records), and the owner decides."""
    copied = int(_rows_in(test[columns], train[columns]).sum())
    if not copied:
        return []
    return [
        f"{copied} of {len(test)} test rows ({copied / len(test):.1%}) are exact copies of training rows "
        f"(the same value in every feature column and the target, {', '.join(columns)}): a model can score "
        "on them by remembering its training data. If the test split was meant to be new data, remove them "
        "from it (or from the training split) and create the benchmark again."
    ]


def _rows_in(rows: pd.DataFrame, others: pd.DataFrame) -> np.ndarray:
    """Whether each row of `rows` equals some row of `others`, by a hash of its values."""
    rows, others = _common_dtypes(rows, others)
    found = set(pd.util.hash_pandas_object(others, index=False).to_numpy().tolist())
    return pd.util.hash_pandas_object(rows, index=False).isin(found).to_numpy()


def _common_dtypes(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Equal values hash alike only with equal dtypes: 3 in an int column and 3.0 in a float one
    # (a column with a gap in one split) are the same value.
    a, b = a.copy(), b.copy()
    for column in a.columns:
        if a[column].dtype != b[column].dtype:
            numeric = pd.api.types.is_numeric_dtype(a[column]) and pd.api.types.is_numeric_dtype(b[column])
            kind = "float64" if numeric else str
            a[column], b[column] = a[column].astype(kind), b[column].astype(kind)
    return a, b


def _files_delete(files) -> None:
    for file in files:
        if file.name:  # a refusal before the file was stored leaves nothing to delete
            file.storage.delete(file.name)


def _benchmark_spec_check(
    *,
    train: pd.DataFrame,
    test: pd.DataFrame,
    task: str,
    target_column: str,
    feature_columns: Sequence[str] | None,
    sensitive_columns: Sequence[str],
    time_column: str,
    positive_label: Any,
    primary_metric: str,
) -> dict:
    if not target_column:
        raise Rejected("target_column is required.", field="target_column")
    if feature_columns is None or len(feature_columns) == 0:
        feature_columns = [c for c in train.columns if c not in (target_column, time_column)]
    feature_columns = [str(c).strip() for c in feature_columns]
    sensitive_columns = [str(c).strip() for c in sensitive_columns]
    for field, names in (("feature_columns", feature_columns), ("sensitive_columns", sensitive_columns)):
        duplicated = sorted({c for c in names if names.count(c) > 1})
        if duplicated:
            raise Rejected(f"{field} names a column more than once: {', '.join(duplicated)}.", field=field)
    if target_column in feature_columns:
        raise Rejected(f"the target column '{target_column}' cannot also be a feature.", field="feature_columns")
    if time_column and time_column in feature_columns:
        raise Rejected(
            f"the time column '{time_column}' cannot also be a feature: a model must not see when a row was taken.",
            field="feature_columns",
        )
    if not feature_columns:
        raise Rejected("the benchmark needs at least one feature column.", field="feature_columns")

    required = {
        "target_column": [target_column],
        "feature_columns": feature_columns,
        "sensitive_columns": sensitive_columns,
        "time_column": [time_column] if time_column else [],
    }
    for split, frame in (("train_data", train), ("test_data", test)):
        for field, names in required.items():
            missing = [c for c in names if c not in frame.columns]
            if missing:
                raise Rejected(
                    f"{split} has no column {', '.join(repr(c) for c in missing)} (named in {field}); "
                    f"its columns are: {', '.join(map(str, frame.columns))}.",
                    field=field,
                )
        if frame[target_column].isna().any():
            raise Rejected(
                f"{split} has {int(frame[target_column].isna().sum())} rows with no value in the target "
                f"column '{target_column}'.",
                field="target_column",
            )
    if time_column:
        for split, frame in (("train_data", train), ("test_data", test)):
            parsed = pd.to_datetime(frame[time_column], errors="coerce", format="mixed")
            if parsed.isna().any():
                raise Rejected(
                    f"{split} has {int(parsed.isna().sum())} values in the time column '{time_column}' "
                    "that are not dates or timestamps.",
                    field="time_column",
                )

    class_labels: list = []
    if task == "regression":
        for split, frame in (("train_data", train), ("test_data", test)):
            if not pd.api.types.is_numeric_dtype(frame[target_column]) or pd.api.types.is_bool_dtype(
                frame[target_column]
            ):
                raise Rejected(
                    f"a regression target must be numeric, but '{target_column}' in {split} holds text "
                    f"such as {frame[target_column].iloc[0]!r}.",
                    field="target_column",
                )
        positive_label = None
    else:
        train_labels = set(train[target_column].unique().tolist())
        test_labels = set(test[target_column].unique().tolist())
        if len(train_labels) < 2:
            raise Rejected(
                f"the target '{target_column}' has only one class in train_data ({next(iter(train_labels))!r}); "
                "a classification benchmark needs at least two.",
                field="target_column",
            )
        if len(test_labels) < 2:
            raise Rejected(
                f"the target '{target_column}' has only one class in test_data ({next(iter(test_labels))!r}); "
                "a classification benchmark needs at least two.",
                field="target_column",
            )
        unseen = test_labels - train_labels
        if unseen:
            raise Rejected(
                f"test_data has target classes that train_data never shows: {sorted(map(str, unseen))}.",
                field="target_column",
            )
        class_labels = sorted(train_labels)
        if task == "binary":
            if len(class_labels) != 2:
                raise Rejected(
                    f"a binary target has two classes, but '{target_column}' has {len(class_labels)}; "
                    "use task 'multiclass'.",
                    field="task",
                )
            positive_label = _positive_label_resolve(positive_label, class_labels)
        else:
            positive_label = None
    primary_metric = primary_metric or ("rmse" if task == "regression" else "accuracy")
    if primary_metric not in performance_keys(task):
        raise Rejected(
            f"primary_metric '{primary_metric}' does not apply to a {task} task; use one of: "
            f"{', '.join(performance_keys(task))}.",
            field="primary_metric",
        )
    return {
        "target_column": target_column,
        "feature_columns": feature_columns,
        "sensitive_columns": sensitive_columns,
        "time_column": time_column,
        "positive_label": positive_label,
        "class_labels": [_json_scalar(label) for label in class_labels],
        "primary_metric": primary_metric,
    }


def _positive_label_resolve(given: Any, class_labels: list) -> Any:
    if given in (None, ""):
        if set(class_labels) in ({0, 1}, {False, True}):
            return _json_scalar(class_labels[1])
        raise Rejected(
            f"name the positive label of this binary target: one of {[str(c) for c in class_labels]}.",
            field="positive_label",
        )
    for label in class_labels:
        if label == given or str(label) == str(given).strip():
            return _json_scalar(label)
    raise Rejected(
        f"positive_label {given!r} is not a class of the target; the classes are {[str(c) for c in class_labels]}.",
        field="positive_label",
    )


def _json_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --- Submissions --------------------------------------------------------------------------------


def submission_create(
    *,
    benchmark: Benchmark,
    owner,
    name: str,
    artifact: bytes,
    artifact_filename: str,
    description: str = "",
    metadata: dict | None = None,
    idempotency_key: str | None = None,
    is_baseline: bool = False,
) -> tuple[Submission, bool]:
    """Check the artifact without loading it, store it and queue its evaluation.

    Returns (submission, created); a repeated idempotency key with the same request returns the
    original submission, even when the owner's quota is used up (a replay is not a new submission),
    and raises IdempotencyKeyReused with a different request.
    Raises QuotaExceeded when the owner has used the benchmark's daily quota; baselines, which the
    platform submits as the benchmark's reference points, are not counted against anyone.
    Raises Conflict (a 409) once the owner has closed the benchmark (leaderboard/closing.py).
    """
    request = _SubmissionRequest(
        benchmark=benchmark,
        artifact_sha256=hashlib.sha256(artifact).hexdigest(),
        name=_submission_name_check(name),
        description=description or "",
        metadata=metadata_check({} if metadata is None else metadata),
    )
    # Said before the file is inspected, so a person over quota is not told to fix their model first.
    existing = _replay_or_quota(request, owner, idempotency_key, is_baseline)
    if existing:
        return existing, False
    try:
        info = inspect_artifact(
            artifact,
            filename=artifact_filename,
            max_bytes=settings.HOLDOUT_MAX_ARTIFACT_BYTES,
            skops_trusted=settings.HOLDOUT_SKOPS_TRUSTED_TYPES,
        )
    except ArtifactRejected as error:
        raise Rejected(str(error), field="artifact") from None

    submission = Submission(
        benchmark=benchmark,
        owner=owner,
        name=request.name,
        description=request.description,
        metadata=request.metadata,
        idempotency_key=idempotency_key or None,
        request_fingerprint=request.fingerprint,
        is_baseline=is_baseline,
        artifact_sha256=info.sha256,
        artifact_bytes=info.size_bytes,
        artifact_format=info.format,
    )
    submission.deadline_at = submission.next_deadline()
    try:
        with transaction.atomic():
            # One owner's submissions are created one at a time, so the quota count and the idempotency
            # check below see every committed submission: two concurrent requests cannot both take the
            # last slot, nor both store the same key.
            _owner_lock(owner)
            existing = _replay_or_quota(request, owner, idempotency_key, is_baseline)
            if existing:
                return existing, False
            submission.artifact.save(
                f"{benchmark.slug}/{submission.id}.{info.format}", ContentFile(artifact), save=False
            )
            submission.save()
            submission_enqueue(submission)
    except IntegrityError:
        _files_delete([submission.artifact])
        # Only the same key stored meanwhile is a replay; any other failed save is an error, never
        # another of the owner's submissions.
        existing = _replay(request, owner, idempotency_key)
        if existing:
            return existing, False
        raise
    except BaseException:
        _files_delete([submission.artifact])
        raise
    return submission, True


@dataclass(frozen=True)
class _SubmissionRequest:
    """What a submission request asks for, checked: what a repeated Idempotency-Key must match."""

    benchmark: Benchmark
    artifact_sha256: str
    name: str
    description: str
    metadata: dict

    @property
    def fingerprint(self) -> str:
        return request_fingerprint(
            benchmark_id=self.benchmark.pk,
            artifact_sha256=self.artifact_sha256,
            name=self.name,
            description=self.description,
            metadata=self.metadata,
        )

    def differences(self, submission: Submission) -> list[str]:
        """What differs from the submission as stored, in words (empty when it was edited since)."""
        differences = []
        if submission.benchmark_id != self.benchmark.pk:
            differences.append(f"benchmark ('{self.benchmark.slug}', not '{submission.benchmark.slug}')")
        if submission.artifact_sha256 != self.artifact_sha256:
            differences.append("artifact (another file)")
        if submission.name != self.name:
            differences.append(f"name ('{self.name}', not '{submission.name}')")
        if submission.description != self.description:
            differences.append("description")
        if metadata_canonical(submission.metadata or {}) != metadata_canonical(self.metadata):
            differences.append("metadata")
        return differences


def _submission_name_check(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise Rejected("name is required: say what this model is, e.g. 'logreg-v2'.", field="name")
    if len(name) > MAX_NAME_LENGTH:
        raise Rejected(f"name is {len(name)} characters; the limit is {MAX_NAME_LENGTH}.", field="name")
    return name


def _replay_or_quota(request: _SubmissionRequest, owner, idempotency_key, is_baseline) -> Submission | None:
    """The original submission of a repeated key and request (a replay costs no quota), else None once
    the owner's quota is checked; raises QuotaExceeded when it is used up."""
    existing = _replay(request, owner, idempotency_key)
    if existing:
        return existing
    _closed_refuse(request.benchmark)
    if not is_baseline:
        _quota_enforce(benchmark=request.benchmark, owner=owner)
        holdout_budget_enforce(request.benchmark, owner)
    return None


def _closed_refuse(benchmark: Benchmark) -> None:
    """A closed benchmark takes no submission; asked of the database, as a caller's copy may predate the closing."""
    closed_at = Benchmark.objects.filter(pk=benchmark.pk).values_list("closed_at", flat=True).first()
    if closed_at is not None:
        raise Conflict(
            f"'{benchmark.slug}' was closed by its owner at {closed_at:%Y-%m-%d %H:%M:%S} UTC and takes no new "
            "submissions; its final standings are on the private board.",
            field="benchmark",
        )


def _replay(request: _SubmissionRequest, owner, idempotency_key) -> Submission | None:
    """The owner's submission made with this key, when this request is the one that made it; None for
    no key or a new one. The same key with another request is refused rather than answered with a
    submission that is not what was asked for."""
    if not idempotency_key:
        return None
    existing = (
        Submission.objects.select_related("benchmark").filter(owner=owner, idempotency_key=idempotency_key).first()
    )
    if existing is None or existing.request_fingerprint == request.fingerprint:
        return existing
    differences = request.differences(existing)
    raise IdempotencyKeyReused(
        f"Idempotency-Key '{idempotency_key}' was already used for a different request: it made submission "
        f"{existing.pk} ('{existing.name}' on '{existing.benchmark.slug}'), and this request differs in "
        f"{', '.join(differences) or 'what it asks for'}. Send a new key for a new submission, or repeat the "
        "original request exactly to get that submission back.",
        submission_id=existing.pk,
    )


def _owner_lock(owner) -> None:
    """Hold the owner's row until the transaction ends (PostgreSQL; SQLite's writes are serial anyway)."""
    get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk", flat=True).first()


def _quota_enforce(*, benchmark: Benchmark, owner) -> None:
    usage = submission_quota_usage(benchmark=benchmark, owner=owner)
    if usage.exhausted:
        retry_after = usage.seconds_to_reset()
        raise QuotaExceeded(
            quota_exceeded_message(benchmark, usage, retry_after),
            quota=usage.quota,
            used=usage.used,
            resets_at=usage.resets_at,
            retry_after=retry_after,
        )


def quota_exceeded_message(benchmark: Benchmark, usage: QuotaUsage, retry_after: int) -> str:
    return (
        f"You have used {usage.used} of the {usage.quota} submissions a day that '{benchmark.slug}' allows "
        f"each person; the quota resets at {usage.resets_at:%Y-%m-%d %H:%M} UTC, in {_duration_words(retry_after)}. "
        "Submissions that failed through the platform's fault do not count."
    )


def _duration_words(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def submission_enqueue(submission: Submission) -> None:
    _send_on_commit(EVALUATE_TASK, submission, queue="evaluate")


def _send_on_commit(task: str, submission: Submission, *, queue: str) -> None:
    """Send a task once the row is committed, so a worker never sees a missing or stale row.

    A broker that is down loses nothing: the row is marked as sent nowhere (sent_at None), and the
    next sweep sends it again at once instead of waiting to call the message lost.
    """
    sent_at = submission.sent_at

    def send() -> None:
        try:
            current_app.send_task(task, args=[str(submission.id)], queue=queue)
        except Exception:  # noqa: BLE001 - the database is the record; the sweep retries.
            log.exception("could not send %s for submission %s; the next sweep sends it", task, submission.id)
            # Only this send's mark: a later send (the sweep's) may already have succeeded.
            Submission.objects.filter(pk=submission.id, sent_at=sent_at).update(sent_at=None)

    transaction.on_commit(send)


def submission_start(submission_id, *, holder: str = "") -> Submission | None:
    """Claim a submission for evaluation; None when it is finished or a live worker holds it.

    The row lock makes two deliveries of the same message (a redelivery after a lost ack, or the
    sweep's re-send) start at most one evaluation. A holder that died (leaderboard/holders.py) is
    taken over at once, so a redelivery after a lost worker is not dropped until the deadline.
    """
    now = timezone.now()
    with transaction.atomic():
        submission = Submission.objects.select_for_update().select_related("benchmark").filter(pk=submission_id).first()
        if submission is None or submission.is_finished or submission.in_latency_phase:
            return None
        if submission.status == Submission.Status.RUNNING and _held_by_live_worker(submission, now):
            return None
        if submission.attempts >= settings.HOLDOUT_MAX_ATTEMPTS:
            _attempts_exhausted_fail_locked(submission, now)
            return None
        if submission.status == Submission.Status.RUNNING:
            log.warning("taking over submission %s from %s", submission.pk, holder_describe(submission.holder))
        submission.status = Submission.Status.RUNNING
        submission.stage = "starting"
        submission.progress = 0.0
        submission.attempts += 1
        submission.started_at = now
        submission.error = ""
        _claim(submission, holder, now)
        submission.save()
    return submission


def _held_by_live_worker(submission: Submission, now) -> bool:
    """A worker is on it: its time limit has not passed and its holder has not died."""
    within_deadline = submission.deadline_at is not None and submission.deadline_at > now
    return within_deadline and not holder_dead(submission.holder, submission.heartbeat_at, now)


def _claim(submission: Submission, holder: str, now) -> None:
    submission.holder = holder
    submission.heartbeat_at = now
    submission.claimed_at = now
    submission.deadline_at = submission.next_deadline()


def _taken_over(locked: Submission, submission: Submission) -> bool:
    """Whether another worker has claimed the submission since `submission` (the caller's copy) was.

    A worker cut off from the database for longer than a heartbeat's staleness is taken for dead
    and its submission started again elsewhere; when it comes back, what it writes must not mix
    with the new attempt's reports or end it: the new holder alone records the results. A copy
    that holds no claim (a service or test call, not a worker's) writes as before."""
    if not submission.holder or locked.holder == submission.holder:
        return False
    log.warning(
        "submission %s was taken over by %s; %s drops its results", submission.pk,
        holder_describe(locked.holder), holder_describe(submission.holder),
    )
    return True


def submission_heartbeat(submission: Submission, *, holder: str) -> bool:
    """The holder says it is still working; False when the submission is no longer its own."""
    return bool(
        Submission.objects.filter(pk=submission.pk, holder=holder, status=Submission.Status.RUNNING)
        .exclude(holder="")
        .update(heartbeat_at=timezone.now())
    )


def submission_progress(submission: Submission, *, stage: str, progress: float) -> None:
    Submission.objects.filter(pk=submission.pk, status=Submission.Status.RUNNING).update(stage=stage, progress=progress)
    submission.stage, submission.progress = stage, progress


def report_record(
    submission: Submission,
    *,
    evaluator: str,
    seconds: float,
    metrics: dict | None = None,
    intervals: dict | None = None,
    document: dict | None = None,
    error: str = "",
) -> None:
    """Store one evaluator's report and merge its scalars into the submission's."""
    with transaction.atomic():
        locked = Submission.objects.select_for_update().get(pk=submission.pk)
        if _taken_over(locked, submission):
            return
        Report.objects.update_or_create(
            submission=submission,
            evaluator=evaluator,
            defaults={
                "document": document or {},
                "metrics": metrics or {},
                "intervals": intervals or {},
                "seconds": seconds,
                "error": error,
            },
        )
        locked.metrics = {**locked.metrics, **(metrics or {})}
        locked.intervals = {**locked.intervals, **(intervals or {})}
        locked.save(update_fields=["metrics", "intervals"])


def submission_resamples_store(submission: Submission, *, resample_values: dict[str, list]) -> None:
    """Keep objectives' values on the benchmark's resamples, compactly, for paired ties.

    Each phase stores its own objectives (evaluation, then latency and cost), so the keys given
    replace theirs and the others' are kept.
    """
    resamples = submission.benchmark.bootstrap_resamples
    given = {key: values for key, values in resample_values.items() if len(values) == resamples}
    with transaction.atomic():
        locked = (
            Submission.objects.select_for_update().only("resamples", "resample_keys", "holder").get(pk=submission.pk)
        )
        if _taken_over(locked, submission):
            return
        rows = {}
        if locked.resamples and len(locked.resamples) == 4 * resamples * len(locked.resample_keys):
            stored = np.frombuffer(bytes(locked.resamples), dtype=np.float32).reshape(-1, resamples)
            rows = dict(zip(locked.resample_keys, stored))
        for key, values in given.items():
            rows[key] = _resample_row(values)
        keys = list(rows)
        matrix = np.array([rows[key] for key in keys], dtype=np.float32).reshape(len(keys), resamples)
        Submission.objects.filter(pk=submission.pk).update(resamples=matrix.tobytes(), resample_keys=keys)


def _resample_row(values: list) -> np.ndarray:
    return np.array([np.nan if value is None else value for value in values], dtype=np.float32)


def resamples_matrix(resample_values: dict[str, list], resamples: int) -> tuple[list[str], bytes | None]:
    """Values on the B shared resamples as they are stored: the keys, and a float32 (keys x B) matrix
    with NaN where undefined (None when there is none); values of another length are left out."""
    rows = {key: _resample_row(values) for key, values in resample_values.items() if len(values) == resamples}
    if not rows:
        return [], None
    return list(rows), np.array(list(rows.values()), dtype=np.float32).tobytes()


def submission_latency_handoff(submission: Submission) -> None:
    """Queue the latency phase: it runs on its own queue, one at a time, so nothing competes for the CPU."""
    with transaction.atomic():
        locked = Submission.objects.select_for_update().get(pk=submission.pk)
        if locked.status != Submission.Status.RUNNING or _taken_over(locked, submission):
            return
        locked.stage = Submission.LATENCY_QUEUED
        locked.progress = max(locked.progress, 0.8)
        locked.deadline_at = locked.next_deadline()
        # Waiting for the latency queue, it is nobody's until a latency worker claims it.
        locked.holder, locked.heartbeat_at = "", None
        locked.sent_queue, locked.sent_at = "latency", timezone.now()
        locked.save(
            update_fields=["stage", "progress", "deadline_at", "holder", "heartbeat_at", "sent_queue", "sent_at"]
        )
        _send_on_commit(LATENCY_TASK, locked, queue="latency")


def submission_latency_start(submission_id, *, holder: str = "") -> Submission | None:
    """Claim the latency phase; None when it is not waiting for it or a live worker holds it."""
    now = timezone.now()
    with transaction.atomic():
        submission = Submission.objects.select_for_update().select_related("benchmark").filter(pk=submission_id).first()
        if submission is None or not submission.in_latency_phase:
            return None
        if submission.stage == Submission.LATENCY and _held_by_live_worker(submission, now):
            return None
        if submission.latency_attempts >= settings.HOLDOUT_MAX_ATTEMPTS:
            _attempts_exhausted_fail_locked(submission, now)
            return None
        if submission.stage == Submission.LATENCY:
            log.warning(
                "taking over the latency phase of %s from %s", submission.pk, holder_describe(submission.holder)
            )
        submission.stage = Submission.LATENCY
        submission.latency_attempts += 1
        _claim(submission, holder, now)
        submission.save()
    return submission


def submission_succeed(submission: Submission) -> None:
    with transaction.atomic():
        locked = Submission.objects.select_for_update().get(pk=submission.pk)
        if locked.is_finished or _taken_over(locked, submission):
            return
        if locked.benchmark.is_guarded and not locked.is_baseline:
            locked.released = submission_releases(locked)
        locked.status = Submission.Status.SUCCEEDED
        locked.stage = "done"
        locked.progress = 1.0
        locked.finished_at = timezone.now()
        locked.deadline_at = None
        locked.holder, locked.heartbeat_at = "", None
        locked.save()


def submission_fail(submission: Submission, message: str, *, stage: str, fault: str = "model") -> None:
    with transaction.atomic():
        locked = Submission.objects.select_for_update().get(pk=submission.pk)
        if not locked.is_finished and not _taken_over(locked, submission):
            _submission_fail_locked(locked, message, stage=stage, fault=fault)


def _submission_fail_locked(submission: Submission, message: str, *, stage: str, fault: str = "model") -> None:
    submission.status = Submission.Status.FAILED
    submission.fault = fault
    submission.stage = stage
    submission.error = message
    submission.finished_at = timezone.now()
    submission.deadline_at = None
    submission.holder, submission.heartbeat_at = "", None
    submission.save()


def _attempts_exhausted_fail_locked(submission: Submission, now) -> None:
    """Fail a submission out of attempts, blaming whoever ended its last one.

    An attempt whose worker is alive ran into its time limit (the model's doing: the sandbox's own
    limits fail the model directly, so a worker that outlives its deadline was waiting on it); an
    attempt whose worker died was lost by the platform, however often that happened, and then the
    submission is the platform's failure and does not count against the owner's quota."""
    attempts = submission.latency_attempts if submission.in_latency_phase else submission.attempts
    phase = "latency measurement" if submission.in_latency_phase else "evaluation"
    started = f"the {phase} was started {attempts} times and never finished (last stage: {submission.stage})"
    if submission.holder and holder_dead(submission.holder, submission.heartbeat_at, now):
        message = (
            f"{started}; the last attempt was lost with its worker ({holder_describe(submission.holder)}), which "
            "stopped while the model was still being evaluated. The platform is at fault, not the model; this "
            "submission does not count against your quota: submit it again."
        )
        _submission_fail_locked(submission, message, stage=submission.stage, fault="platform")
        return
    message = (
        f"{started}; each attempt was stopped by its {submission.benchmark.time_limit_seconds} s time limit or "
        "lost with its worker. Check that the model predicts the test set well within the limit, then submit it again."
    )
    _submission_fail_locked(submission, message, stage=submission.stage)


def submissions_sweep() -> dict:
    """Re-send submissions whose worker died or whose message was lost; fail those out of
    attempts or never picked up.

    The database is the record of work, so a message lost by the broker or a worker killed
    mid-evaluation costs time, never a submission. A submission only waiting behind a backlog is
    left where it is: sending it again would only double the backlog.
    """
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0}
    unfinished = [Submission.Status.QUEUED, Submission.Status.RUNNING]
    expired = Submission.objects.filter(status__in=unfinished, deadline_at__lt=now)
    # Claimed ones are few (one per worker process); each holder is checked below.
    held = Submission.objects.filter(status=Submission.Status.RUNNING).exclude(holder="")
    # Waiting long enough that its message should have been taken: the broker says if it is there.
    waiting = Submission.objects.filter(
        Q(status=Submission.Status.QUEUED) | Q(stage=Submission.LATENCY_QUEUED),
        Q(sent_at__lt=now - timedelta(seconds=LOST_MESSAGE_SECONDS)) | Q(sent_at__isnull=True),
    )
    candidates = (
        set(expired.values_list("pk", flat=True))
        | set(held.values_list("pk", flat=True))
        | set(waiting.values_list("pk", flat=True))
    )
    queue_empty = functools.cache(broker_queue_empty)  # one question per queue and sweep
    for pk in candidates:
        with transaction.atomic():
            submission = Submission.objects.select_for_update().select_related("benchmark").get(pk=pk)
            outcome = _sweep_one(submission, now, queue_empty=queue_empty)
            if outcome:
                counts[outcome] += 1
    return counts


def _sweep_one(submission: Submission, now, *, queue_empty=None) -> str | None:
    """'requeued', 'failed', or None when the submission is fine where it is (its row is locked)."""
    if submission.is_finished or submission.deadline_at is None:
        return None
    waiting_for_message = submission.status == Submission.Status.QUEUED or submission.stage == Submission.LATENCY_QUEUED
    lost = waiting_for_message and _message_lost(submission, now, queue_empty or broker_queue_empty)
    if waiting_for_message:
        if submission.deadline_at >= now and not lost:
            return None
    elif _held_by_live_worker(submission, now):
        return None
    if now - submission.created_at > timedelta(seconds=settings.HOLDOUT_QUEUE_TIMEOUT_SECONDS):
        _submission_fail_locked(
            submission,
            f"no worker finished this submission within {settings.HOLDOUT_QUEUE_TIMEOUT_SECONDS} s of "
            "its upload; the platform is at fault, not the model: check that a Celery worker "
            "serves the 'evaluate' queue, then submit again.",
            stage=submission.stage,
            fault="platform",
        )
        return "failed"
    if waiting_for_message and not lost and _message_waiting(submission, now):
        log.info("submission %s is still waiting in the %s queue; not sent again", submission.pk, submission.sent_queue)
        return None
    attempts = submission.latency_attempts if submission.in_latency_phase else submission.attempts
    if attempts >= settings.HOLDOUT_MAX_ATTEMPTS:
        _attempts_exhausted_fail_locked(submission, now)
        return "failed"
    if submission.status == Submission.Status.RUNNING and submission.holder:
        log.warning(
            "submission %s lost its worker %s; sending it again", submission.pk, holder_describe(submission.holder)
        )
    _resend_locked(submission, now)
    return "requeued"


def _message_lost(submission: Submission, now, queue_empty) -> bool:
    """Whether the broker lost the message a submission waits for: it was sent a while ago, no
    worker claimed it, and its queue holds nothing (a broker restarted without it, a send that
    failed while the broker was down, marked at once). A worker holds at most the one message it runs (prefetch
    1, acknowledged late), which it claims at once, so an empty queue means nothing is coming."""
    if submission.sent_at is None:
        return True  # its send failed: nothing is on its way
    if now - submission.sent_at < timedelta(seconds=LOST_MESSAGE_SECONDS):
        return False
    if submission.claimed_at is not None and submission.claimed_at >= submission.sent_at:
        return False
    return queue_empty(submission.sent_queue or "evaluate") is True


def broker_queue_empty(queue: str) -> bool | None:
    """Whether the broker's queue holds no message, or None when the broker cannot say (it is down)."""
    from amqp.exceptions import ChannelError

    try:
        with current_app.connection_for_read() as connection:
            return connection.default_channel.queue_declare(queue=queue, passive=True).message_count == 0
    except ChannelError as error:
        # Redis keeps no empty list, so an empty queue is "not found" (kombu's virtual transports
        # raise the bare ChannelError); on RabbitMQ a queue nobody declared holds no message either.
        if getattr(error, "reply_code", None) == 404 or "NOT_FOUND" in str(error):
            return True
        log.warning("could not ask the broker how many messages the %s queue holds", queue, exc_info=True)
        return None
    except Exception:  # noqa: BLE001 - a broker that cannot answer leaves the deadline rule in charge
        log.warning("could not ask the broker how many messages the %s queue holds", queue, exc_info=True)
        return None


def _message_waiting(submission: Submission, now) -> bool:
    """Whether the message a submission waits for is still in its queue behind a backlog.

    Queues are first in, first out: a message sent later and already claimed means this one was
    lost (a broker that lost it, a worker killed between taking and claiming it). Otherwise it is
    waiting if workers on its queue are busy (a live holder claimed from that queue); with nobody
    busy, a message still undelivered was lost, or no worker serves the queue (sending again then
    costs one duplicate per time limit, which the claim drops).
    """
    queue = submission.sent_queue
    claimed_from_queue = Submission.objects.filter(sent_queue=queue, claimed_at__gte=F("sent_at"))
    if claimed_from_queue.filter(sent_at__gt=submission.sent_at).exists():
        return False
    busy = claimed_from_queue.filter(
        status=Submission.Status.RUNNING,
        heartbeat_at__gt=now - timedelta(seconds=HEARTBEAT_STALE_SECONDS),
    ).exclude(holder="")
    return busy.exists()


def _resend_locked(submission: Submission, now) -> None:
    submission.holder, submission.heartbeat_at = "", None
    submission.sent_at = now
    submission.deadline_at = submission.next_deadline()
    if submission.in_latency_phase:
        # The evaluation's reports are stored; only the latency phase is sent again.
        submission.stage = Submission.LATENCY_QUEUED
        submission.sent_queue = "latency"
        submission.save()
        _send_on_commit(LATENCY_TASK, submission, queue="latency")
        return
    submission.status = Submission.Status.QUEUED
    submission.stage = "queued"
    submission.progress = 0.0
    submission.sent_queue = "evaluate"
    submission.save()
    submission_enqueue(submission)


# --- API tokens ---------------------------------------------------------------------------------


def api_token_create(*, owner, name: str) -> tuple[ApiToken, str]:
    """Make a named token; returns it and its key, which is not stored and cannot be shown again."""
    name = (name or "").strip()
    if not name:
        raise Rejected("give the token a name that says where it is used, e.g. 'github-actions'.", field="name")
    if len(name) > MAX_TOKEN_NAME_LENGTH:
        raise Rejected(f"the name is {len(name)} characters; the limit is {MAX_TOKEN_NAME_LENGTH}.", field="name")
    key = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(owner=owner, name=name, key_hash=ApiToken.hash_key(key))
    return token, key


def api_token_revoke(*, owner, token_id) -> ApiToken:
    """Revoke one of the owner's tokens; revoking it again keeps the first moment.

    Raises ApiToken.DoesNotExist for a token that is not the owner's, so nobody learns it exists.
    """
    token = ApiToken.objects.get(pk=token_id, owner=owner)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_use(*, key: str) -> ApiToken | None:
    """The token with this key, revoked or not, with its last use noted; None for an unknown key."""
    token = ApiToken.objects.select_related("owner").filter(key_hash=ApiToken.hash_key(key)).first()
    if token is None or token.revoked_at is not None:
        return token
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_USE_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
