from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode

from leaderboard.errors import Rejected
from leaderboard.forms import SubmissionForm
from leaderboard.models import Benchmark, Submission
from leaderboard.boards import board_get, board_query_parse
from leaderboard.selectors import benchmark_train_csv, benchmarks_with_counts, submission_sections
from leaderboard.services import submission_create


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
            board = board_get(benchmark, board_query_parse(params, benchmark))
            break
        except Rejected as rejection:
            error = error or rejection.message
    context = {"benchmark": benchmark, "board": board, "error": error}
    if request.headers.get("HX-Request"):
        response = render(request, "_board.html", context)
        if board is not None:
            # The address bar always holds the whole state in its canonical form, so a view can be shared.
            response["HX-Push-Url"] = f"{reverse('benchmark-detail', args=[slug])}?{urlencode(board.query.as_params())}"
        return response
    recent = benchmark.submissions.exclude(status=Submission.Status.SUCCEEDED).select_related("owner")[:20]
    return render(request, "benchmark_detail.html", {**context, "recent": recent})


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
        else:
            messages.success(request, "Submitted. The evaluation is queued; this page follows it.")
            return redirect(submission)
    status = 400 if request.method == "POST" else 200
    return render(request, "submission_new.html", {"benchmark": benchmark, "form": form}, status=status)


def submission_detail(request, pk):
    submission = get_object_or_404(Submission.objects.select_related("benchmark", "owner"), pk=pk)
    return render(
        request,
        "submission_detail.html",
        {"submission": submission, "sections": submission_sections(submission)},
    )


def page_not_found(request, exception):
    """API clients get JSON, people get the page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": f"Nothing at {request.path}; see /api/docs/ for the endpoints."}, status=404)
    return render(request, "404.html", status=404)
