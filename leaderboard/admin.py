from django import forms
from django.contrib import admin, messages
from django.forms.fields import InvalidJSONInput
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from leaderboard.closing import benchmark_close, closed_at_words
from leaderboard.errors import Rejected
from leaderboard.forms import BenchmarkForm
from leaderboard.metadata import metadata_check, metadata_parse
from leaderboard.models import ApiToken, Benchmark, LadderEntry, PrivateScore, Report, Submission
from leaderboard.services import api_token_revoke, benchmark_create

# The spec and the data are fixed once submissions exist: changing them would silently change
# what every earlier number means.
FIXED_BENCHMARK_FIELDS = (
    "slug", "task", "target_column", "feature_columns", "sensitive_columns", "time_column",
    "positive_label", "class_labels", "train_data", "test_data", "train_rows", "test_rows",
    "bootstrap_seed", "holdout_policy", "public_fraction", "created_by", "created_at",
)


@admin.register(Benchmark)
class BenchmarkAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "task", "primary_metric", "holdout_policy", "test_rows", "created_at", "closed_at")
    # Closing has consequences (submissions refused, the private rows measured): the action does it, not an edit.
    readonly_fields = (*FIXED_BENCHMARK_FIELDS, "closed_at")
    actions = ["close"]

    @admin.action(description="Close the selected guarded benchmarks and reveal their private boards")
    def close(self, request, queryset) -> None:
        for benchmark in queryset:
            try:
                benchmark, scores = benchmark_close(benchmark, by=request.user)
            except Rejected as rejection:
                self.message_user(request, f"{benchmark.slug}: {rejection.message}", level=messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Closed '{benchmark.slug}' at {closed_at_words(benchmark)}; {len(scores)} submissions are being "
                    "measured on the private rows.",
                )

    def add_view(self, request, form_url="", extra_context=None):
        """Creation goes through the same service as the API and the command, from uploaded files."""
        if not self.has_add_permission(request):
            return redirect("admin:index")
        form = BenchmarkForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                benchmark = benchmark_create(**form.service_arguments(), created_by=request.user)
            except Rejected as rejection:
                form.add_error(rejection.field if rejection.field in form.fields else None, rejection.message)
            else:
                self.message_user(request, f"Benchmark '{benchmark.name}' created.")
                for warning in benchmark.creation_warnings:
                    self.message_user(request, warning, level=messages.WARNING)
                return redirect("admin:leaderboard_benchmark_change", benchmark.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": "Create a benchmark",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/leaderboard/benchmark_create.html", context)


class ReportInline(admin.TabularInline):
    model = Report
    extra = 0
    fields = ("evaluator", "seconds", "error")
    readonly_fields = fields
    can_delete = False


class MetadataField(forms.JSONField):
    """The admin's metadata box, held to the limits the API and the form apply (leaderboard.metadata):
    staff can mend a submission's metadata but not store what a page or the database would choke on."""

    def to_python(self, value):
        try:
            if isinstance(value, str):
                return metadata_parse(value)
            return metadata_check(value if value is not None else {})
        except Rejected as rejection:
            raise forms.ValidationError(rejection.message) from None

    def bound_data(self, data, initial):
        # Django's own re-reads the text with json.loads to show it again, which recursion can break.
        if self.disabled or data is None:
            return initial if self.disabled else None
        try:
            return metadata_parse(data)
        except Rejected:
            return InvalidJSONInput(data)


class SubmissionAdminForm(forms.ModelForm):
    metadata = MetadataField(required=False)

    class Meta:
        model = Submission
        fields = "__all__"


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    form = SubmissionAdminForm
    list_display = ("name", "benchmark", "owner", "status", "stage", "attempts", "created_at")
    list_filter = ("status", "benchmark", "is_baseline")
    search_fields = ("name", "id", "artifact_sha256")
    readonly_fields = (
        "id", "benchmark", "owner", "artifact", "artifact_sha256", "artifact_bytes", "artifact_format",
        "idempotency_key", "status", "stage", "progress", "error", "fault", "attempts", "created_at",
        "started_at", "finished_at", "deadline_at", "metrics", "intervals",
        # The scheduling state is the workers' and the sweep's: an edit here could hold or repeat an evaluation.
        "latency_attempts", "holder", "heartbeat_at", "sent_queue", "sent_at", "claimed_at", "resample_keys",
    )
    inlines = [ReportInline]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Staff can see who holds which token and revoke one (a leaked key, a person who left);
    keys are made by their owners on /account/tokens/, the only place a key is ever shown."""

    list_display = ("name", "owner", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "owner__username")
    readonly_fields = ("owner", "name", "key_hash", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        for token in queryset:
            api_token_revoke(owner=token.owner, token_id=token.pk)
        self.message_user(request, f"Revoked {queryset.count()} token(s); their keys are refused from now on.")


@admin.register(LadderEntry)
class LadderEntryAdmin(admin.ModelAdmin):
    """Each submitter's Ladders on guarded benchmarks, for the owner to read; only the workers move them."""

    list_display = ("benchmark", "owner", "target", "best", "steps", "submissions", "best_submission")
    list_filter = ("benchmark", "target")
    search_fields = ("owner__username",)
    readonly_fields = ("benchmark", "owner", "target", "best", "best_submission", "steps", "submissions")

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(PrivateScore)
class PrivateScoreAdmin(admin.ModelAdmin):
    """The private board's measurements after closing; read-only: the worker and the sweep write them."""

    list_display = ("submission", "counted_as", "status", "attempts", "finished_at")
    list_filter = ("status", "counted_as", "submission__benchmark")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in PrivateScore._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
