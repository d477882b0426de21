import hashlib
import uuid
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone

from leaderboard.holdout_split import DEFAULT_PUBLIC_FRACTION
from leaderboard.ladder import VARIANTS
from leaderboard.objectives import OBJECTIVES
from leaderboard.ranking import parse_constraints


def presets_problems(presets, keys: list[str]) -> list[str]:
    """What is wrong with a benchmark's presets, in words its owner can act on; empty if nothing."""
    if not isinstance(presets, dict):
        return ['presets must be an object {"slug": {"label": ..., "weights": {...}}}.']
    problems = []
    for slug, preset in presets.items():
        weights = preset.get("weights") if isinstance(preset, dict) else None
        if not isinstance(weights, dict):
            problems.append(f"preset '{slug}' needs \"weights\": {{objective: weight}}.")
            continue
        unknown = [key for key in weights if key not in keys]
        if unknown:
            problems.append(f"preset '{slug}' weighs {', '.join(unknown)}, not objectives of this benchmark.")
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights.values()):
            problems.append(f"preset '{slug}': every weight must be a non-negative number.")
        elif not any(weights.values()):
            problems.append(f"preset '{slug}': at least one weight must be above zero.")
        try:
            parse_constraints(str(preset.get("constraints") or ""), keys)
        except ValueError as error:
            problems.append(f"preset '{slug}': {error}")
    return problems


def default_bootstrap_resamples() -> int:
    return settings.HOLDOUT_BOOTSTRAP_RESAMPLES


class HoldoutPolicy(models.TextChoices):
    OPEN = "open"
    GUARDED = "guarded"


LADDER_VARIANTS = [(variant, variant) for variant in VARIANTS]


class Benchmark(models.Model):
    class Task(models.TextChoices):
        BINARY = "binary"
        MULTICLASS = "multiclass"
        REGRESSION = "regression"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    task = models.CharField(max_length=16, choices=Task.choices)
    target_column = models.CharField(max_length=200)
    feature_columns = models.JSONField(default=list)
    sensitive_columns = models.JSONField(default=list, blank=True)
    time_column = models.CharField(max_length=200, blank=True)
    # JSON so an integer label stays an integer: it is compared with the test set's values.
    positive_label = models.JSONField(null=True, blank=True)
    class_labels = models.JSONField(default=list, blank=True)
    primary_metric = models.CharField(max_length=32)
    # {objective key: default weight}; the leaderboard shows these objectives.
    objectives = models.JSONField(default=dict)
    # The evaluators that measure this benchmark's submissions, and their settings
    # ({evaluator: {option: value}}, over each evaluator's documented DEFAULT_OPTIONS).
    evaluators = models.JSONField(default=list)
    evaluator_options = models.JSONField(default=dict, blank=True)
    train_data = models.FileField(upload_to="benchmarks/")
    test_data = models.FileField(upload_to="benchmarks/")
    train_rows = models.PositiveIntegerField()
    test_rows = models.PositiveIntegerField()
    # Every submission of a benchmark is resampled with the same rows, so comparisons are paired.
    bootstrap_seed = models.PositiveIntegerField(default=20261125)
    bootstrap_resamples = models.PositiveIntegerField(default=default_bootstrap_resamples)
    # Utility bounds {key: [worst acceptable, best achievable]}; a missing side is filled from
    # the baselines (worst) or the objective's natural best, so adding a submission never moves them.
    objective_bounds = models.JSONField(default=dict, blank=True)
    # Stakeholder presets {slug: {"label": ..., "weights": {key: weight}, "constraints": "key>=number,..."}},
    # editable by the owner; "constraints" is optional (a floor a stakeholder takes for granted).
    presets = models.JSONField(default=dict, blank=True)
    time_limit_seconds = models.PositiveIntegerField(default=600)
    daily_submission_quota = models.PositiveIntegerField(
        default=20, help_text="Submissions per person per UTC day; 0 means no limit. Staff are not limited."
    )
    # The holdout policy (issue 13). Open: every objective and report is released. Guarded: the
    # test rows are split once into a public part, on which everything a submitter sees is
    # computed and released through the Ladder (leaderboard/ladder.py), and a private part kept for
    # the final standings when the owner closes the benchmark.
    holdout_policy = models.CharField(max_length=8, choices=HoldoutPolicy.choices, default=HoldoutPolicy.OPEN)
    public_fraction = models.FloatField(default=DEFAULT_PUBLIC_FRACTION)
    # Positions (little-endian int64, in the stored test table's order) of the public rows, drawn at
    # creation (leaderboard/holdout_split.py) and never redrawn; empty on an open benchmark.
    public_rows = models.BinaryField(null=True, blank=True, editable=False)
    ladder_variant = models.CharField(max_length=16, choices=LADDER_VARIANTS, default="parameter-free")
    ladder_step = models.FloatField(
        null=True, blank=True, help_text="The fixed-step Ladder's step; empty: the step its error bound is smallest at."
    )
    final_selections = models.PositiveIntegerField(
        default=2, help_text="Submissions each submitter picks for the private board; 0: all of them count."
    )
    holdout_budget = models.PositiveIntegerField(
        default=0, help_text="Releases of new information (Ladder steps, reports) per submitter; 0: no cap."
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        problems = presets_problems(self.presets, list(self.objectives))
        if problems:
            raise ValidationError({"presets": problems})

    def get_absolute_url(self) -> str:
        return reverse("benchmark-detail", args=[self.slug])

    @property
    def primary_objective(self):
        return OBJECTIVES[self.primary_metric]

    @property
    def is_guarded(self) -> bool:
        return self.holdout_policy == HoldoutPolicy.GUARDED

    @property
    def public_positions(self) -> np.ndarray:
        """The public rows' positions in the test table; empty on an open benchmark."""
        return np.frombuffer(bytes(self.public_rows or b""), dtype="<i8")

    @property
    def private_positions(self) -> np.ndarray:
        """The other test rows, in the stored table's order; empty on an open benchmark."""
        if not self.is_guarded:
            return np.empty(0, dtype="<i8")
        return np.setdiff1d(np.arange(self.test_rows, dtype="<i8"), self.public_positions)

    @property
    def is_closed(self) -> bool:
        return self.closed_at is not None


class EvaluationStatus(models.TextChoices):
    """Where an evaluation stands: a submission's, and a private score's after closing."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Submission(models.Model):
    Status = EvaluationStatus
    FINISHED = (Status.SUCCEEDED, Status.FAILED)
    # A running submission is in one of two phases: evaluation (any other stage) or latency.
    LATENCY_QUEUED = "latency-queued"
    LATENCY = "latency"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    benchmark = models.ForeignKey(Benchmark, on_delete=models.PROTECT, related_name="submissions")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="submissions")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    is_baseline = models.BooleanField(default=False)
    artifact = models.FileField(upload_to="artifacts/")
    artifact_sha256 = models.CharField(max_length=64)
    artifact_bytes = models.PositiveBigIntegerField()
    artifact_format = models.CharField(max_length=8)
    metadata = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    # SHA-256 of the request that created the submission (leaderboard.metadata.request_fingerprint):
    # a repeated Idempotency-Key is a replay only when it brings the same request.
    request_fingerprint = models.CharField(max_length=64, blank=True, default="", editable=False)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=64, default="queued")
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    # Who a failure is on: a platform fault (lost worker, storage) is not the submitter's to fix.
    fault = models.CharField(max_length=16, blank=True, choices=[("model", "model"), ("platform", "platform")])
    attempts = models.PositiveIntegerField(default=0)
    latency_attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Past this moment a queued or running submission is considered stuck by the sweep.
    deadline_at = models.DateTimeField(null=True, blank=True)
    # The worker process working on it (leaderboard/holders.py) and when it last said so: a dead
    # holder's submission is taken over long before its deadline.
    holder = models.CharField(max_length=300, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The message the submission waits for or was started from: its queue, when it was sent, and
    # when a worker claimed it (None: its last send failed, so nothing is on its way). A message
    # sent after this one and already claimed means this one was lost rather than waiting behind a backlog.
    sent_queue = models.CharField(max_length=16, default="evaluate")
    sent_at = models.DateTimeField(default=timezone.now, null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)

    metrics = models.JSONField(default=dict, blank=True)
    intervals = models.JSONField(default=dict, blank=True)
    # The sampled objectives on the benchmark's shared bootstrap resamples, for paired ties:
    # float32, one row per key in resample_keys, one column per resample (NaN where undefined).
    resamples = models.BinaryField(null=True, blank=True)
    resample_keys = models.JSONField(default=list, blank=True)
    # On a guarded benchmark, what the Ladder released when it succeeded (leaderboard/releases.py):
    # {"primary": {"metric", "value", "improved", "reason", "threshold", "steps"}}; empty when open.
    released = models.JSONField(default=dict, blank=True)
    final = models.BooleanField(
        default=False,
        help_text="Guarded benchmarks: chosen by its submitter for the private board (leaderboard/closing.py).",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Also the board's version question (count and last finish of the succeeded), answered
            # from the index alone: 10 ms at 100,000 submissions, against 65 ms reading the rows.
            models.Index(fields=["benchmark", "status", "finished_at"], name="submission_board_idx"),
            models.Index(fields=["status", "deadline_at"]),
            models.Index(fields=["sent_queue", "sent_at"], name="submission_sent_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="unique_idempotency_key_per_owner",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.benchmark.slug})"

    def get_absolute_url(self) -> str:
        return reverse("submission-detail", args=[self.id])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def in_latency_phase(self) -> bool:
        return self.status == self.Status.RUNNING and self.stage in (self.LATENCY_QUEUED, self.LATENCY)

    def next_deadline(self):
        return timezone.now() + timedelta(seconds=self.benchmark.time_limit_seconds)


class LadderEntry(models.Model):
    """One submitter's Ladder on a guarded benchmark: the value released and how often it moved."""

    benchmark = models.ForeignKey(Benchmark, on_delete=models.CASCADE, related_name="ladders")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ladders")
    target = models.CharField(max_length=16, default="primary")  # what it releases: "primary" or "utility" (default board)
    best = models.FloatField(null=True, blank=True)
    best_submission = models.ForeignKey(
        "Submission", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    steps = models.PositiveIntegerField(default=0)
    submissions = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["benchmark", "owner", "target"], name="one_ladder_per_submitter_target")
        ]

    def __str__(self) -> str:
        return f"{self.target} ladder of {self.owner} on {self.benchmark.slug}"


class PrivateScore(models.Model):
    """A counted submission measured on a closed guarded benchmark's private rows (leaderboard/closing.py).

    Made only when the benchmark closes, so before that no private value exists anywhere."""

    Status = EvaluationStatus
    FINISHED = (Status.SUCCEEDED, Status.FAILED)

    class Counted(models.TextChoices):
        CHOSEN = "chosen"  # its owner selected it as final
        DEFAULT = "default"  # its owner selected none: their Ladder's released best stands in
        ALL = "all"  # the benchmark counts every succeeded submission (final_selections 0)
        BASELINE = "baseline"  # the platform's reference point, as on the public board

    submission = models.OneToOneField(Submission, on_delete=models.CASCADE, related_name="private_score")
    counted_as = models.CharField(max_length=16, choices=Counted.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    metrics = models.JSONField(default=dict, blank=True)
    intervals = models.JSONField(default=dict, blank=True)
    # As Submission.resamples: float32, one row per key, one column per resample of the private rows.
    resamples = models.BinaryField(null=True, blank=True)
    resample_keys = models.JSONField(default=list, blank=True)
    # Evaluators other than performance that could not measure it: {evaluator: why}.
    evaluator_errors = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Past this moment a queued or running score is sent again by the sweep (leaderboard/closing.py).
    deadline_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["status", "deadline_at"], name="private_score_due_idx")]

    def __str__(self) -> str:
        return f"private score of {self.submission_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class BoardBlock(models.Model):
    """Sealed rows of a benchmark's board columns, shared by every web process (leaderboard/column_store.py).

    The arrays are little-endian, one entry per row in (finished_at, pk) order; the watermark is
    the last row's (finished_at, pk) at sealing, and stays the block's boundary if rows leave it.
    """

    benchmark = models.ForeignKey(Benchmark, on_delete=models.CASCADE, related_name="board_blocks")
    # A digest of (objective keys, resamples per submission): another objective list or B uses other blocks.
    layout = models.CharField(max_length=16)
    index = models.PositiveIntegerField()
    rows = models.PositiveIntegerField()
    ids = models.BinaryField()  # 16 bytes per row: the submission's UUID
    created = models.BinaryField()  # int64 microseconds since the epoch, UTC
    baseline = models.BinaryField()  # uint8
    values = models.BinaryField()  # float64, rows x keys, NaN where not measured
    last_finished_at = models.DateTimeField()
    last_pk = models.UUIDField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["benchmark", "layout", "index"], name="one_board_block_per_index")
        ]

    def __str__(self) -> str:
        return f"board block {self.index} of {self.benchmark_id} ({self.layout})"


class BoardBlockResamples(models.Model):
    """One objective's paired resamples of a block's rows: float32, rows x B."""

    block = models.ForeignKey(BoardBlock, on_delete=models.CASCADE, related_name="resamples")
    key = models.CharField(max_length=64)
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["block", "key"], name="one_block_resamples_per_key")]

    def __str__(self) -> str:
        return f"{self.key} resamples of block {self.block_id}"


class Report(models.Model):
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="reports")
    evaluator = models.CharField(max_length=32)
    document = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    intervals = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    seconds = models.FloatField(default=0.0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["evaluator"]
        constraints = [models.UniqueConstraint(fields=["submission", "evaluator"], name="one_report_per_evaluator")]

    def __str__(self) -> str:
        return f"{self.evaluator} report of {self.submission_id}"


class ApiToken(models.Model):
    """A key for the API that a person made on the web, named so they know what to revoke.

    Only the key's SHA-256 is stored: the key is shown once, and a copy of the database holds
    nothing that authenticates. A revoked token stays listed, so its owner sees when it was revoked.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner})"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
