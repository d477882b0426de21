import json
from dataclasses import asdict

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from leaderboard.boards import Standing, submission_standing
from leaderboard.budget import holdout_budget
from leaderboard.models import Benchmark, HoldoutPolicy, Submission
from leaderboard.objectives import TASKS
from leaderboard.resolution import benchmark_resolution, resolution_document, separation_figures
from leaderboard.selectors import benchmark_objectives
from leaderboard.errors import Rejected
from leaderboard.metadata import (
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_METADATA_KEY_LENGTH,
    MAX_METADATA_KEYS,
    METADATA_EXAMPLE,
    metadata_check,
    metadata_parse,
)
from leaderboard.services import MAX_NAME_LENGTH
from leaderboard.withholding import released_intervals, released_metrics, withheld_keys

MAX_DESCRIPTION_LENGTH = 5000


def interval_field(help_text: str, child=serializers.FloatField) -> serializers.ListField:
    """A [low, high] pair, null when there is none."""
    return serializers.ListField(child=child(), min_length=2, max_length=2, allow_null=True, help_text=help_text)


def _absolute(request, path: str) -> str:
    return request.build_absolute_uri(path) if request else path


class ObjectiveSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    direction = serializers.ChoiceField(choices=["higher", "lower"])
    default_weight = serializers.FloatField()


class HoldoutSerializer(serializers.Serializer):
    """How much of the test set a submitter's scores are computed on, and how they are released."""

    policy = serializers.ChoiceField(choices=HoldoutPolicy.values, source="holdout_policy")
    public_fraction = serializers.FloatField(allow_null=True)
    public_rows = serializers.IntegerField(allow_null=True)
    private_rows = serializers.IntegerField(allow_null=True)
    ladder = serializers.CharField(allow_null=True, help_text="The Ladder variant scores are released through.")
    ladder_step = serializers.FloatField(allow_null=True)
    final_selections = serializers.IntegerField(allow_null=True)
    budget_cap = serializers.IntegerField(allow_null=True, help_text="Releases per submitter; null: no cap.")
    closed_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, benchmark):
        if not benchmark.is_guarded:
            return {key: None for key in self.fields} | {"policy": benchmark.holdout_policy}
        public = len(benchmark.public_positions)
        return {
            "policy": benchmark.holdout_policy,
            "public_fraction": benchmark.public_fraction,
            "public_rows": public,
            "private_rows": benchmark.test_rows - public,
            "ladder": benchmark.ladder_variant,
            "ladder_step": benchmark.ladder_step,
            "final_selections": benchmark.final_selections,
            "budget_cap": benchmark.holdout_budget or None,
            "closed_at": serializers.DateTimeField().to_representation(benchmark.closed_at) if benchmark.closed_at else None,
        }


class ResolutionPartSerializer(serializers.Serializer):
    rows = serializers.IntegerField(help_text="The test rows this figure is for.")
    standard_error = serializers.FloatField(help_text="Of the paired difference of a typical pair of models.")
    resolvable_difference = serializers.FloatField(
        help_text="1.96 standard errors: a difference below it cannot be told from chance at 95% (one of exactly "
        "this size is just significant, half the time)."
    )
    detectable_difference = serializers.FloatField(
        help_text="(1.96 + 0.84) standard errors: a true difference found significant at 95% with 80% power."
    )
    scaled = serializers.BooleanField(
        help_text="Scaled from the rows the baselines were measured on (the public part of a guarded benchmark) "
        "as standard error x sqrt(measured rows / rows), not measured on these rows."
    )


class ResolutionSerializer(serializers.Serializer):
    """The smallest difference in the primary metric the test set can resolve (leaderboard/resolution.py)."""

    metric = serializers.CharField(help_text="The primary metric.")
    source = serializers.ChoiceField(
        choices=["baselines", "worst case", "unmeasured"],
        help_text="baselines: the median paired standard error over the pairs of evaluated baselines; worst case "
        "(accuracy, before two baselines are evaluated): sqrt(1/rows), two models that disagree on every row; "
        "unmeasured: a metric without a model-free formula, measured once baselines are evaluated.",
    )
    baseline_pairs = serializers.IntegerField(help_text="The baseline pairs the figure is the median over.")
    confidence = serializers.FloatField()
    power = serializers.FloatField(help_text="The power of detectable_difference.")
    whole = ResolutionPartSerializer(allow_null=True, help_text="All test rows; null when unmeasured.")
    public = ResolutionPartSerializer(
        allow_null=True, help_text="The public part a guarded benchmark scores submitters on; null when open."
    )
    summary = serializers.CharField(help_text="The same in plain words, as the benchmark page says it.")


class BenchmarkSerializer(serializers.ModelSerializer):
    objectives = serializers.SerializerMethodField()
    holdout = HoldoutSerializer(source="*", read_only=True)
    resolution = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    train_data_url = serializers.SerializerMethodField()
    leaderboard_url = serializers.SerializerMethodField()

    class Meta:
        model = Benchmark
        fields = [
            "slug",
            "name",
            "description",
            "task",
            "target_column",
            "feature_columns",
            "sensitive_columns",
            "time_column",
            "positive_label",
            "class_labels",
            "primary_metric",
            "objectives",
            "train_rows",
            "test_rows",
            "time_limit_seconds",
            "daily_submission_quota",
            "holdout",
            "resolution",
            "created_at",
            "url",
            "train_data_url",
            "leaderboard_url",
        ]

    def get_objectives(self, benchmark) -> list[dict]:
        return ObjectiveSerializer(
            [
                {
                    "key": o.key,
                    "label": o.label,
                    "direction": o.direction,
                    "default_weight": benchmark.objectives.get(o.key, 0.0),
                }
                for o in benchmark_objectives(benchmark)
            ],
            many=True,
        ).data

    @extend_schema_field(ResolutionSerializer)
    def get_resolution(self, benchmark) -> dict:
        return resolution_document(benchmark_resolution(benchmark))

    def get_url(self, benchmark) -> str:
        return _absolute(self.context.get("request"), reverse("api-benchmark-detail", args=[benchmark.slug]))

    def get_train_data_url(self, benchmark) -> str:
        return _absolute(self.context.get("request"), reverse("api-benchmark-train-data", args=[benchmark.slug]))

    def get_leaderboard_url(self, benchmark) -> str:
        return _absolute(self.context.get("request"), reverse("api-leaderboard", args=[benchmark.slug]))


# Over multipart both arrive as text, which is what the schema says to send.
@extend_schema_field({"type": "string", "description": 'Comma-separated names, or a JSON list: ["a", "b"].'})
class ColumnListField(serializers.Field):
    """Column names as a JSON list or as comma-separated text (what a multipart form can send)."""

    def to_internal_value(self, data):
        if isinstance(data, list):
            names = data
        elif isinstance(data, str):
            text = data.strip()
            if text.startswith("["):
                try:
                    names = json.loads(text)
                except json.JSONDecodeError:
                    raise serializers.ValidationError("not valid JSON; send a list or comma-separated names.")
            else:
                names = [name for name in text.split(",")]
        else:
            raise serializers.ValidationError("send a list of column names or comma-separated names.")
        names = [str(name).strip() for name in names if str(name).strip()]
        if len(names) > 2000:
            raise serializers.ValidationError("at most 2000 columns.")
        return names

    def to_representation(self, value):
        return value


class BenchmarkCreatedSerializer(BenchmarkSerializer):
    """A new benchmark, with what was allowed at creation but its owner should know."""

    warnings = serializers.ListField(child=serializers.CharField(), source="creation_warnings", read_only=True)

    class Meta(BenchmarkSerializer.Meta):
        fields = [*BenchmarkSerializer.Meta.fields, "warnings"]


class BenchmarkCreateSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(max_length=MAX_DESCRIPTION_LENGTH, required=False, allow_blank=True)
    task = serializers.ChoiceField(choices=TASKS)
    target_column = serializers.CharField(max_length=200)
    feature_columns = ColumnListField(required=False)
    sensitive_columns = ColumnListField(required=False)
    time_column = serializers.CharField(max_length=200, required=False, allow_blank=True)
    positive_label = serializers.CharField(max_length=200, required=False, allow_blank=True)
    primary_metric = serializers.CharField(max_length=32, required=False, allow_blank=True)
    time_limit_seconds = serializers.IntegerField(min_value=10, max_value=24 * 3600, required=False)
    daily_submission_quota = serializers.IntegerField(min_value=0, max_value=100000, required=False)
    holdout_policy = serializers.ChoiceField(
        choices=HoldoutPolicy.values,
        required=False,
        help_text="open: every score released; guarded: a public part shown through the Ladder, a private part kept.",
    )
    public_fraction = serializers.FloatField(
        min_value=0.05, max_value=0.95, required=False, help_text="Guarded: the share of test rows shown (0.3)."
    )
    train_data = serializers.FileField()
    test_data = serializers.FileField()


@extend_schema_field(
    {
        "type": "string",
        "description": f"A JSON object as text, e.g. {METADATA_EXAMPLE}: at most {MAX_METADATA_BYTES // 1024} KB, "
        f"{MAX_METADATA_DEPTH} levels deep, {MAX_METADATA_KEYS} keys of at most {MAX_METADATA_KEY_LENGTH} "
        "characters; strict JSON (no NaN or Infinity), valid Unicode; training_cutoff, if given, YYYY-MM-DD.",
    }
)
class MetadataField(serializers.Field):
    """Free metadata as a JSON object, sent as JSON text in a multipart form; leaderboard.metadata checks it."""

    def to_internal_value(self, data):
        try:
            return metadata_check(data) if isinstance(data, dict) else metadata_parse(str(data))
        except Rejected as rejection:
            raise serializers.ValidationError(rejection.message) from None

    def to_representation(self, value):
        return value


class SubmissionCreateSerializer(serializers.Serializer):
    artifact = serializers.FileField(help_text="The model: an .onnx or .skops file. Pickle and joblib are refused.")
    name = serializers.CharField(max_length=MAX_NAME_LENGTH)
    description = serializers.CharField(max_length=MAX_DESCRIPTION_LENGTH, required=False, allow_blank=True)
    metadata = MetadataField(required=False, help_text=f"JSON object, e.g. {METADATA_EXAMPLE}.")


class ObjectiveRankSerializer(serializers.Serializer):
    rank = serializers.IntegerField(help_text="1 + how many measured submissions are strictly better on it.")
    of = serializers.IntegerField(help_text="How many succeeded submissions were measured on it.")


class StandingSerializer(serializers.Serializer):
    """Where a succeeded submission stands on its benchmark's default board (its default weights)."""

    rank = serializers.IntegerField(
        allow_null=True,
        help_text="1 + how many ranked submissions are significantly better (paired bootstrap); null when it is "
        "not ranked, see unscored.",
    )
    rank_interval = interval_field(
        "[rank, ranked_count - how many are significantly worse]: the places it could hold.",
        child=serializers.IntegerField,
    )
    tied = serializers.BooleanField(help_text="The submission listed just before or after it has the same rank.")
    ranked_count = serializers.IntegerField()
    score = serializers.FloatField(allow_null=True)
    score_interval = interval_field("95% interval.")
    unscored = serializers.CharField(allow_null=True, help_text="Why it has no rank, if it has none.")
    objective_ranks = serializers.DictField(child=ObjectiveRankSerializer(), help_text="{objective: {rank, of}}")


def standing_document(standing: Standing | None) -> dict | None:
    if standing is None:
        return None
    return {
        "rank": standing.rank,
        "rank_interval": standing.rank_interval,
        "tied": standing.tied,
        "ranked_count": standing.ranked_count,
        "score": standing.score,
        "score_interval": standing.score_interval,
        "unscored": standing.unscored,
        "objective_ranks": {key: {"rank": rank, "of": of} for key, (rank, of) in standing.objective_ranks.items()},
    }


class HoldoutBudgetSerializer(serializers.Serializer):
    """Releases of information about a guarded benchmark's hidden rows its submitter has had."""

    used = serializers.IntegerField(help_text="Ladder steps plus reports released.")
    ladder_steps = serializers.DictField(child=serializers.IntegerField(), help_text="{primary, utility}: moves.")
    reports = serializers.IntegerField(help_text="Succeeded submissions whose (coarse) reports were released.")
    pending = serializers.IntegerField(help_text="Submissions still being evaluated: each will release its reports.")
    cap = serializers.IntegerField(allow_null=True, help_text="The benchmark's cap per submitter; null: none.")
    left = serializers.IntegerField(allow_null=True, help_text="cap - used - pending; null without a cap.")


class SubmissionSerializer(serializers.ModelSerializer):
    benchmark = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    url = serializers.SerializerMethodField()
    web_url = serializers.SerializerMethodField()
    reports = serializers.SerializerMethodField()
    report_errors = serializers.SerializerMethodField()
    artifact = serializers.SerializerMethodField()
    standing = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()
    intervals = serializers.SerializerMethodField()
    withheld = serializers.SerializerMethodField()
    holdout_budget = serializers.SerializerMethodField()

    class Meta:
        model = Submission
        fields = [
            "id",
            "benchmark",
            "owner",
            "name",
            "description",
            "is_baseline",
            "status",
            "stage",
            "progress",
            "error",
            "fault",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "metrics",
            "intervals",
            "released",
            "withheld",
            "holdout_budget",
            "final",
            "standing",
            "reports",
            "report_errors",
            "artifact",
            "metadata",
            "url",
            "web_url",
        ]

    def get_url(self, submission) -> str:
        return _absolute(self.context.get("request"), reverse("api-submission-detail", args=[submission.id]))

    @extend_schema_field(serializers.DictField(child=serializers.FloatField(allow_null=True)))
    def get_metrics(self, submission) -> dict:
        """{objective: value}. On a guarded benchmark before it closes, what was released: the primary
        metric through the submitter's Ladder (see `released`), the other objectives computed from the
        test labels rounded to the benchmark's release resolution (listed in `withheld`)."""
        return released_metrics(submission)

    @extend_schema_field(serializers.DictField(child=serializers.ListField(child=serializers.FloatField())))
    def get_intervals(self, submission) -> dict:
        """{objective: [low, high]} 95% intervals; on a guarded benchmark before it closes, only of the
        objectives that do not read the test labels."""
        return released_intervals(submission)

    @extend_schema_field(HoldoutBudgetSerializer(allow_null=True))
    def get_holdout_budget(self, submission) -> dict | None:
        """The submitter's holdout budget on a guarded benchmark (null on an open one)."""
        budget = holdout_budget(submission.benchmark, submission.owner)
        return budget.as_document() if budget else None

    def get_withheld(self, submission) -> list[str]:
        """The objectives whose exact value is withheld (guarded benchmark, before it closes); [] otherwise."""
        return withheld_keys(submission)

    def get_web_url(self, submission) -> str:
        return _absolute(self.context.get("request"), submission.get_absolute_url())

    def get_reports(self, submission) -> dict[str, str]:
        """Links to the full documents of the evaluators that measured this submission."""
        request = self.context.get("request")
        return {
            evaluator: _absolute(request, reverse("api-report-detail", args=[submission.id, evaluator]))
            for evaluator in submission.reports.filter(error="").values_list("evaluator", flat=True)
        }

    def get_report_errors(self, submission) -> dict[str, str]:
        """Why each evaluator that failed could not measure this submission."""
        return dict(submission.reports.exclude(error="").values_list("evaluator", "error"))

    def get_artifact(self, submission) -> dict:
        return {
            "format": submission.artifact_format,
            "bytes": submission.artifact_bytes,
            "sha256": submission.artifact_sha256,
        }

    @extend_schema_field(StandingSerializer(allow_null=True))
    def get_standing(self, submission) -> dict | None:
        """null until the submission has succeeded."""
        return standing_document(submission_standing(submission))


class GateVerdictSerializer(serializers.Serializer):
    gate = serializers.CharField(help_text="The gate as read, e.g. accuracy>=0.85 or accuracy max regression 0.01.")
    kind = serializers.ChoiceField(choices=["threshold", "regression"])
    key = serializers.CharField()
    passed = serializers.BooleanField()
    value = serializers.FloatField(allow_null=True, help_text="The submission's value; null when not measured.")
    interval = interval_field(
        "95% interval: of the value (threshold) or of the paired difference (regression); null if exact.",
    )
    limit = serializers.FloatField(help_text="The threshold, or the allowed regression.")
    within_noise = serializers.BooleanField(
        allow_null=True,
        help_text="The line (the threshold, or minus the allowed regression) lies inside the interval; "
        "null when the noise is unknown. An exact objective is never within noise.",
    )
    decided_by = serializers.ChoiceField(
        choices=["point", "pessimistic bound", "exact value"],
        allow_null=True,
        help_text="point: the point estimate (default); pessimistic bound (strict): the interval's low end for "
        ">= and >, its high end for <= and <; exact value: an objective without noise. null if not measured.",
    )
    margin = serializers.FloatField(allow_null=True, help_text="How far past the line a failing gate is.")
    reason = serializers.CharField()
    warning = serializers.CharField(help_text='Why the verdict is not firm (within noise, unknown noise), or "".')
    reference_value = serializers.FloatField(allow_null=True, help_text="Regression: the reference's value.")
    difference = serializers.FloatField(
        allow_null=True, help_text="Regression: submission - reference in the objective's direction (positive: better)."
    )


class GatesSerializer(serializers.Serializer):
    strict = serializers.BooleanField(help_text="Whether gates within noise were decided by the pessimistic bound.")
    passed = serializers.BooleanField(help_text="Every gate passed.")
    verdicts = GateVerdictSerializer(many=True)


def gates_document(verdicts, *, strict: bool) -> dict:
    return {
        "strict": strict,
        "passed": all(verdict.passed for verdict in verdicts),
        "verdicts": [asdict(verdict) for verdict in verdicts],
    }


class SubmissionDetailSerializer(SubmissionSerializer):
    gates = serializers.SerializerMethodField()

    class Meta(SubmissionSerializer.Meta):
        fields = [*SubmissionSerializer.Meta.fields, "gates"]

    @extend_schema_field(GatesSerializer(allow_null=True))
    def get_gates(self, submission) -> dict | None:
        """The verdicts of the `gates` query parameter; null without one."""
        return self.context.get("gates")


class ObjectiveDifferenceSerializer(serializers.Serializer):
    key = serializers.CharField()
    direction = serializers.ChoiceField(choices=["higher", "lower"])
    value = serializers.FloatField(allow_null=True, help_text="The submission's value.")
    reference_value = serializers.FloatField(allow_null=True, help_text="The other submission's value.")
    difference = serializers.FloatField(
        allow_null=True,
        help_text="value - reference_value in the objective's direction: positive when the submission is better.",
    )
    interval = interval_field(
        "95% percentile interval of the paired difference over the resamples where both are defined; "
        "null for an exact objective or when the noise is unknown (see note).",
    )
    significant = serializers.BooleanField(
        allow_null=True, help_text="The interval excludes 0 (exact: the difference is not 0); null if unknown."
    )
    exact = serializers.BooleanField(help_text="Neither submission has noise on it (no interval, no resamples).")
    paired_resamples = serializers.IntegerField(help_text="Resamples behind the interval.")
    note = serializers.CharField(help_text='What the interval leaves out, or why there is none; "" if nothing.')


class ComparedSubmissionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    url = serializers.URLField()


class SeparationSerializer(serializers.Serializer):
    """The primary metric's paired difference against the test set's size (leaderboard/resolution.py)."""

    metric = serializers.CharField(help_text="The primary metric.")
    rows = serializers.IntegerField(help_text="The test rows it was measured on (a guarded benchmark's public part).")
    difference = serializers.FloatField(allow_null=True, help_text="In the metric's direction: positive, better.")
    standard_error = serializers.FloatField(
        allow_null=True, help_text="Of the paired difference: the spread of its shared resamples; null if unknown."
    )
    resolvable_difference = serializers.FloatField(
        allow_null=True, help_text="1.96 standard errors: the difference that would just be significant at 95%."
    )
    significant = serializers.BooleanField(allow_null=True, help_text="|difference| > 1.96 standard errors.")
    rows_needed = serializers.FloatField(
        allow_null=True,
        help_text="rows x (1.96 standard errors / |difference|)²: the rows at which this difference would be just "
        "significant; null when the difference is 0 or the noise unknown.",
    )
    more_rows = serializers.IntegerField(
        allow_null=True, help_text="max(0, rows_needed - rows), rounded up; 0: already separated."
    )
    rows_needed_80_power = serializers.FloatField(
        allow_null=True, help_text="The same with (1.96 + 0.84) standard errors: separated 80% of the time."
    )
    more_rows_80_power = serializers.IntegerField(allow_null=True)
    summary = serializers.CharField(help_text="The same in plain words.")


class ComparisonSerializer(serializers.Serializer):
    benchmark = serializers.CharField()
    submission = ComparedSubmissionSerializer()
    reference = ComparedSubmissionSerializer(help_text="The submission compared with ({other_id}).")
    resamples = serializers.IntegerField(help_text="The benchmark's shared bootstrap resamples.")
    objectives = ObjectiveDifferenceSerializer(many=True)
    exact = serializers.ListField(child=serializers.CharField(), help_text="The objectives without noise.")
    regressions = GatesSerializer(allow_null=True, help_text="The verdicts of `max_regression`; null without it.")
    separation = SeparationSerializer(help_text="The primary metric: how many more test rows would separate them.")


def comparison_document(comparison, request, regressions: dict | None) -> dict:
    def compared(submission) -> dict:
        url = reverse("api-submission-detail", args=[submission.pk])
        return {"id": str(submission.pk), "name": submission.name, "url": _absolute(request, url)}

    return {
        "benchmark": comparison.submission.benchmark.slug,
        "submission": compared(comparison.submission),
        "reference": compared(comparison.reference),
        "resamples": comparison.resamples,
        "objectives": [
            {
                "key": o.key,
                "direction": "higher" if o.higher_is_better else "lower",
                "value": o.value,
                "reference_value": o.reference_value,
                "difference": o.difference,
                "interval": o.interval,
                "significant": o.significant,
                "exact": o.exact,
                "paired_resamples": o.paired_resamples,
                "note": o.note,
            }
            for o in comparison.objectives
        ],
        "exact": [o.key for o in comparison.objectives if o.exact],
        "regressions": regressions,
        "separation": separation_figures(comparison.submission, comparison.reference),
    }
