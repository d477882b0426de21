"""The reviewers' fairness report on the web: a printable page, JSON and Markdown downloads, and
two submissions of one benchmark side by side.

The views only fetch, render and turn refusals into pages a person can act on; the report itself
is built once, in leaderboard/fairness_report.py, for every format.
"""

import json
import uuid

from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.text import slugify

from leaderboard.withholding import report_shown
from leaderboard.errors import Rejected
from leaderboard.fairness_report import (
    EMPTY_GROUPINGS,
    SECTION_TITLES,
    FairnessReportUnavailable,
    fairness_comparison,
    fairness_report,
    fairness_report_markdown,
)
from leaderboard.models import Submission
from leaderboard.resolution import separation_figures
from leaderboard.selectors import fairness_group_charts


class _Refused(Exception):
    """A request this page cannot answer: the status and the message to show."""

    def __init__(self, status: int, message: str, submission: Submission | None = None):
        super().__init__(message)
        self.status, self.message, self.submission = status, message, submission


def fairness_report_page(request, pk):
    try:
        submission = _submission(pk)
        report = _report(submission)
    except _Refused as refused:
        return _refused_page(request, "fairness_report.html", refused)
    stored = report_shown(submission.reports.get(evaluator="fairness"))
    context = {
        "report": report,
        "submission": submission,
        "titles": SECTION_TITLES,
        "grouping_sections": _grouping_sections(report),
        "charts": fairness_group_charts(stored, report["primary_metric"]["used"]),
        "downloads": _downloads(request, submission),
        "measured_at": stored.created_at,
    }
    return render(request, "fairness_report.html", context)


def fairness_report_json(request, pk):
    try:
        submission = _submission(pk)
        report = _report(submission)
    except _Refused as refused:
        return JsonResponse({"detail": refused.message}, status=refused.status)
    body = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)
    return _attachment(HttpResponse(body, content_type="application/json"), submission, "json")


def fairness_report_markdown_download(request, pk):
    try:
        submission = _submission(pk)
        report = _report(submission)
    except _Refused as refused:
        return HttpResponse(refused.message, status=refused.status, content_type="text/plain; charset=utf-8")
    response = HttpResponse(fairness_report_markdown(report), content_type="text/markdown; charset=utf-8")
    return _attachment(response, submission, "md")


def fairness_compare(request):
    """?a=<id>&b=<id>; with only a, the form to choose b among the benchmark's other submissions."""
    context = {"titles": SECTION_TITLES, "a": None, "candidates": [], "comparison": None}
    try:
        a = _submission(_parameter(request, "a"), "a")
        context.update(a=a, candidates=_candidates(a))
        if not request.GET.get("b"):
            _report(a)  # refuses early when a has nothing to compare
            return render(request, "fairness_compare.html", context)
        b = _submission(_parameter(request, "b"), "b")
        context["b"] = b
        comparison = fairness_comparison(a, b)
        context.update(comparison=comparison, comparison_sides=[("A", comparison["a"]), ("B", comparison["b"])])
        context["separation"] = separation_figures(a, b)
    except _Refused as refused:
        return _refused_page(request, "fairness_compare.html", refused, context)
    except Rejected as rejection:
        return _refused_page(request, "fairness_compare.html", _Refused(400, rejection.message), context)
    except FairnessReportUnavailable as missing:
        return _refused_page(request, "fairness_compare.html", _Refused(404, missing.message), context)
    return render(request, "fairness_compare.html", context)


# --- Helpers -------------------------------------------------------------------------------


def _parameter(request, name: str) -> str:
    value = request.GET.get(name, "").strip()
    if not value:
        raise _Refused(
            400,
            f"Say which submission to compare as ?{name}=<submission id>; the easiest way is the "
            "“Compare with another submission” link on a fairness report.",
        )
    return value


def _submission(pk, parameter: str | None = None) -> Submission:
    """The submission by id, or a refusal naming the id that did not fit."""
    where = f" (parameter {parameter})" if parameter else ""
    try:
        key = pk if isinstance(pk, uuid.UUID) else uuid.UUID(str(pk))
    except ValueError:
        raise _Refused(400, f"“{pk}”{where} is not a submission id; ids look like {uuid.UUID(int=0)}.") from None
    submission = Submission.objects.select_related("benchmark", "owner").filter(pk=key).first()
    if submission is None:
        raise _Refused(404, f"There is no submission {key}{where}; it may have been removed, or the link is mistyped.")
    return submission


def _report(submission: Submission) -> dict:
    try:
        return fairness_report(submission)
    except FairnessReportUnavailable as missing:
        raise _Refused(404, missing.message, submission) from None


def _refused_page(request, template: str, refused: _Refused, context: dict | None = None):
    context = {**(context or {}), "titles": SECTION_TITLES, "refused": refused, "submission": refused.submission}
    return render(request, template, context, status=refused.status)


def _candidates(a: Submission):
    """The submissions a can be compared with: the same benchmark's successes with a fairness report."""
    return (
        Submission.objects.filter(benchmark=a.benchmark, status=Submission.Status.SUCCEEDED)
        .filter(reports__evaluator="fairness", reports__error="")
        .exclude(pk=a.pk)
        .order_by("name", "-created_at")
    )


def _grouping_sections(report: dict) -> list[dict]:
    """The single columns and the intersections share one layout on the page."""
    return [
        {"id": kind, "title": SECTION_TITLES[kind], "groupings": report[kind], "empty": empty}
        for kind, empty in EMPTY_GROUPINGS.items()
    ]


def _downloads(request, submission: Submission) -> dict:
    """Absolute addresses, so a printed report still says where its data lives."""
    return {
        name: request.build_absolute_uri(reverse(route, args=[submission.id]))
        for name, route in (
            ("json", "fairness-report-json"),
            ("markdown", "fairness-report-markdown"),
            ("page", "fairness-report"),
        )
    }


def _attachment(response: HttpResponse, submission: Submission, extension: str) -> HttpResponse:
    name = slugify(submission.name) or "submission"
    filename = f"fairness-{submission.benchmark.slug}-{name}-{str(submission.id)[:8]}.{extension}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
