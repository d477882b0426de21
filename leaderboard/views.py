from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from leaderboard.errors import Rejected
from leaderboard.forms import SubmissionForm
from leaderboard.models import Benchmark, Submission
from leaderboard.selectors import benchmark_train_csv, benchmarks_with_counts, leaderboard_get, submission_sections
from leaderboard.services import submission_create


def home(request):
    benchmarks = [
        {"benchmark": benchmark, "leader": next(iter(leaderboard_get(benchmark).entries), None)}
        for benchmark in benchmarks_with_counts()
    ]
    return render(request, "home.html", {"benchmarks": benchmarks})


def benchmark_detail(request, slug):
    benchmark = get_object_or_404(Benchmark, slug=slug)
    recent = benchmark.submissions.exclude(status=Submission.Status.SUCCEEDED).select_related("owner")[:20]
    return render(
        request,
        "benchmark_detail.html",
        {"benchmark": benchmark, "board": leaderboard_get(benchmark), "recent": recent},
    )


def benchmark_train_data(request, slug):
    benchmark = get_object_or_404(Benchmark, slug=slug)
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
