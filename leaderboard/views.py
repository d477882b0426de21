from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from leaderboard.budget import holdout_budget
from leaderboard.withholding import holdout_facts
from leaderboard.boards import board_get, board_points, board_query_parse, submission_standing
from leaderboard.closing_views import final_selection_context, private_board_context
from leaderboard.errors import Conflict, Rejected
from leaderboard.forms import ApiTokenForm, SubmissionForm
from leaderboard.models import ApiToken, Benchmark, Submission
from leaderboard.resolution import benchmark_resolution, resolution_sentence
from leaderboard.selectors import (
    benchmark_time_span,
    benchmark_train_csv,
    benchmarks_with_counts,
    decay_series,
    submission_charts,
    submission_quota_usage,
    submission_reports_export,
    submission_sections,
)
from leaderboard.services import api_token_create, api_token_revoke, submission_create

# The scatter's default vertical objective: the first of these the benchmark has.
SCATTER_DEFAULT_Y = ("latency_p99_ms", "cost_usd_per_million", "size_bytes", "demographic_parity_difference")


def home(request):
    benchmarks = [
        {"benchmark": benchmark, "leader": _default_leader(benchmark)} for benchmark in benchmarks_with_counts()
    ]
    return render(request, "home.html", {"benchmarks": benchmarks})


def _default_leader(benchmark):
    try:
        board = board_get(benchmark, board_query_parse({"page_size": "1"}, benchmark))
    except Rejected:
        return None
    return next(iter(board.entries), None)


def benchmark_detail(request, slug):
    """The adaptive leaderboard; with htmx, only the board is sent back as the reader moves a slider."""
    benchmark = get_object_or_404(Benchmark, slug=slug)
    error, board = None, None
    for params in (request.GET, {}):
        try:
            board = board_get(benchmark, board_query_parse(params, benchmark), whole_frontier=True)
            break
        except Rejected as rejection:
            error = error or rejection.message
    context = {"benchmark": benchmark, "board": board, "error": error}
    if board is not None:
        context.update(_board_charts(benchmark, board, request.GET))
    if request.headers.get("HX-Request"):
        response = render(request, "_board.html", context)
        if board is not None:
            # The address bar always holds the whole state in its canonical form, so a view can be shared.
            response["HX-Push-Url"] = context["board_url"]
        return response
    recent = benchmark.submissions.exclude(status=Submission.Status.SUCCEEDED).select_related("owner")[:20]
    context.update(recent=recent, time_span=benchmark_time_span(benchmark), quota=_quota_usage(request, benchmark))
    context.update(holdout=holdout_facts(benchmark), budget=holdout_budget(benchmark, request.user))
    context["resolution"] = resolution_sentence(benchmark_resolution(benchmark))
    context.update(private_board_context(benchmark))
    return render(request, "benchmark_detail.html", context)


def _board_charts(benchmark: Benchmark, board, params) -> dict:
    """The scatter of two chosen objectives, the decay overlay, and the URLs that keep the board's state."""
    from leaderboard import charts  # matplotlib is loaded by the pages that draw, not by every process

    keys = [objective.key for objective in board.objectives]
    unknown = [params[axis] for axis in ("x", "y") if params.get(axis) and params[axis] not in keys]
    x = params.get("x") if params.get("x") in keys else benchmark.primary_metric
    default_y = next((key for key in SCATTER_DEFAULT_Y if key in keys and key != x), keys[-1])
    y = params.get("y") if params.get("y") in keys else default_y
    state = {**board.query.as_params(), "x": x, "y": y}
    base = reverse("benchmark-detail", args=[benchmark.slug])

    def page_url(page):
        return f"{base}?{urlencode({**state, 'page': str(page)})}" if 1 <= page <= board.pages else None

    context = {
        "chart_x": x,
        "chart_y": y,
        "board_url": f"{base}?{urlencode(state)}",
        "previous_page_url": page_url(board.query.page - 1),
        "next_page_url": page_url(board.query.page + 1),
        "scatter": None,
        "scatter_error": None,
        "decay_overlay": None,
        "chart_note": None,
    }
    if unknown:
        # The chart still shows the default pair; the reader learns why their choice was not used.
        context["chart_note"] = (
            f"No objective {', '.join(repr(key) for key in unknown)} on this benchmark; the chart shows "
            f"{x} against {y}."
        )
    if x == y:
        context["scatter_error"] = "Choose two different objectives for the chart."
    else:
        try:
            context["scatter"] = charts.pareto_chart(board_points(board, x, y), x, y)
        except (Rejected, ValueError) as problem:
            context["scatter_error"] = str(getattr(problem, "message", problem))
    series = decay_series(benchmark, board.entries)
    if series:
        context["decay_overlay"] = charts.decay_overlay_chart(series)
    return context


def benchmark_train_data(request, slug):
    return train_csv_response(get_object_or_404(Benchmark, slug=slug))


def train_csv_response(benchmark: Benchmark) -> HttpResponse:
    """The public training split as a CSV download, for the page and the API alike."""
    response = HttpResponse(benchmark_train_csv(benchmark), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{benchmark.slug}-train.csv"'
    return response


@login_required
def submission_new(request, slug):
    benchmark = get_object_or_404(Benchmark, slug=slug)
    form = SubmissionForm(request.POST or None, request.FILES or None)
    status = 400 if request.method == "POST" else 200
    if request.method == "POST" and form.is_valid():
        artifact = form.cleaned_data["artifact"]
        try:
            submission, _ = submission_create(
                benchmark=benchmark,
                owner=request.user,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                metadata=form.cleaned_data["metadata"],
                artifact=artifact.read(),
                artifact_filename=artifact.name,
            )
        except Rejected as rejection:
            form.add_error(rejection.field if rejection.field in form.fields else None, rejection.message)
            if isinstance(rejection, Conflict):
                status = 409  # a closed benchmark: nothing in the form can fix it
        else:
            messages.success(request, "Submitted. The evaluation is queued; this page follows it.")
            return redirect(submission)
    context = {"benchmark": benchmark, "form": form, "quota": _quota_usage(request, benchmark)}
    return render(request, "submission_new.html", context, status=status)


def _quota_usage(request, benchmark: Benchmark):
    return submission_quota_usage(benchmark=benchmark, owner=request.user) if request.user.is_authenticated else None


@login_required
def account_tokens(request):
    """The person's API tokens, and a form for a new one whose key is shown in this one response only."""
    form = ApiTokenForm(request.POST or None)
    created, key = None, None
    if request.method == "POST" and form.is_valid():
        try:
            created, key = api_token_create(owner=request.user, name=form.cleaned_data["name"])
        except Rejected as rejection:
            form.add_error("name", rejection.message)
        else:
            form = ApiTokenForm()
    context = {"form": form, "tokens": request.user.api_tokens.all(), "created": created, "key": key}
    status = 400 if request.method == "POST" and key is None else 200
    response = render(request, "account_tokens.html", context, status=status)
    response["Cache-Control"] = "no-store"  # the new key must not be kept by a cache or the back button
    return response


@login_required
@require_POST
def account_token_revoke(request, pk):
    try:
        token = api_token_revoke(owner=request.user, token_id=pk)
    except ApiToken.DoesNotExist:
        raise Http404("No such token.") from None
    messages.success(request, f"Revoked the token '{token.name}': requests with it are now refused (401).")
    return redirect("account-tokens")


def submission_detail(request, pk):
    """The submission and everything measured; while it runs, its body polls for progress (htmx)."""
    submission = get_object_or_404(Submission.objects.select_related("benchmark", "owner"), pk=pk)
    context = {**_submission_context(submission), **final_selection_context(submission, request.user)}
    return render(request, "submission_detail.html", context)


def submission_body(request, pk):
    """The part of the submission page that changes while it is evaluated, for htmx to swap in."""
    submission = get_object_or_404(Submission.objects.select_related("benchmark", "owner"), pk=pk)
    context = {**_submission_context(submission), **final_selection_context(submission, request.user)}
    return render(request, "_submission_body.html", context)


def _submission_context(submission: Submission) -> dict:
    finished = submission.status == Submission.Status.SUCCEEDED
    charts = submission_charts(submission) if submission.is_finished else None
    return {
        "submission": submission,
        "sections": submission_sections(submission),
        "standing": submission_standing(submission) if finished else None,
        "charts": charts,
        "fairness_url": reverse("fairness-report", args=[submission.pk])
        if charts and charts.fairness_measured
        else None,
    }


def submission_reports_json(request, pk):
    submission = get_object_or_404(Submission.objects.select_related("benchmark", "owner"), pk=pk)
    response = JsonResponse(submission_reports_export(submission), json_dumps_params={"indent": 1})
    response["Content-Disposition"] = f'attachment; filename="holdout-{submission.pk}-reports.json"'
    return response


def page_not_found(request, exception):
    """API clients get JSON, people get the page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": f"Nothing at {request.path}; see /api/docs/ for the endpoints."}, status=404)
    return render(request, "404.html", status=404)
