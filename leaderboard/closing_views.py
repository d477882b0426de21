"""The pages' side of closing a guarded benchmark: the "Select as final" button, and the private
board beside the public one."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from leaderboard.closing import final_select
from leaderboard.errors import Rejected
from leaderboard.models import Benchmark, Submission
from leaderboard.private_board import private_board_get


@login_required
@require_POST
def submission_final(request, pk):
    """Select (final=1) or unselect (final=0) the submission as final, then back to its page."""
    submission = get_object_or_404(Submission, pk=pk)
    final = request.POST.get("final") == "1"
    try:
        final_select(submission, by=request.user, final=final)
    except Rejected as rejection:
        messages.error(request, rejection.message)
    else:
        messages.success(
            request,
            "Selected as final: it counts on the private board when the benchmark closes."
            if final
            else "No longer final.",
        )
    return redirect(submission)


def private_board_context(benchmark: Benchmark) -> dict:
    """The private board for the benchmark page once the benchmark is closed; nothing before."""
    if not (benchmark.is_guarded and benchmark.is_closed):
        return {}
    return {"private_board": private_board_get(benchmark)}


def final_selection_context(submission: Submission, user) -> dict:
    """Whether the page offers its owner to select (or unselect) the submission as final."""
    benchmark = submission.benchmark
    offered = (
        user.is_authenticated
        and user.pk == submission.owner_id
        and benchmark.is_guarded
        and not benchmark.is_closed
        and benchmark.final_selections > 0
        and not submission.is_baseline
        and submission.status == Submission.Status.SUCCEEDED
    )
    return {"final_offered": offered}
