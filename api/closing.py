"""The API of closing a guarded benchmark (issue 13): final selections, the closing, the private board.

The rules are leaderboard/closing.py's and leaderboard/private_board.py's; refusals are JSON:
403 for what is not the caller's to do, 409 for what the benchmark's state does not allow now.
"""

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import FORBIDDEN, NOT_FOUND, READ_ERRORS, UNAUTHORIZED, ErrorSerializer
from api.serializers import SubmissionSerializer, interval_field
from api.views import submission_get
from leaderboard.closing import benchmark_close, final_select
from leaderboard.models import Benchmark
from leaderboard.private_board import PrivateBoard, PrivateEntry, private_board_get


def conflict(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


class IsStaff(permissions.BasePermission):
    message = "Only staff can close a benchmark."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_staff)


class SubmissionFinalView(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        description="Choose one of your succeeded submissions on a guarded benchmark as final: at closing, each "
        "submitter's final submissions (at most the benchmark's `holdout.final_selections`) are measured on the "
        "private rows. Who chose none is represented by the submission their Ladder released as best.",
        request=None,
        responses={
            200: SubmissionSerializer,
            401: UNAUTHORIZED,
            403: OpenApiResponse(ErrorSerializer, description="Not your submission."),
            404: NOT_FOUND,
            409: conflict(
                "Not selectable now: the limit is reached, it has not succeeded, it is a baseline, the benchmark is "
                "open-policy, counts every submission, or is closed."
            ),
        },
    )
    def post(self, request, pk):
        return self._answer(request, final_select(submission_get(pk), by=request.user, final=True))

    @extend_schema(
        description="Unselect a final submission (until the benchmark closes).",
        request=None,
        responses={
            200: SubmissionSerializer,
            401: UNAUTHORIZED,
            403: OpenApiResponse(ErrorSerializer, description="Not your submission."),
            404: NOT_FOUND,
            409: conflict("The benchmark is open-policy, counts every submission, or is closed."),
        },
    )
    def delete(self, request, pk):
        return self._answer(request, final_select(submission_get(pk), by=request.user, final=False))

    def _answer(self, request, submission) -> Response:
        return Response(SubmissionSerializer(submission, context={"request": request}).data)


class BenchmarkClosedSerializer(serializers.Serializer):
    benchmark = serializers.CharField()
    closed_at = serializers.DateTimeField()
    counted = serializers.IntegerField(help_text="Submissions being measured on the private rows.")
    private_leaderboard_url = serializers.URLField()


class BenchmarkCloseView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        description="Staff: close a guarded benchmark. New submissions are refused (409) from now on, and every "
        "counted submission is measured on the private rows; the private board fills as they finish.",
        request=None,
        responses={
            200: BenchmarkClosedSerializer,
            401: UNAUTHORIZED,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: conflict("Already closed (the message says when), or an open-policy benchmark."),
        },
    )
    def post(self, request, slug):
        benchmark, scores = benchmark_close(get_object_or_404(Benchmark, slug=slug), by=request.user)
        url = reverse("api-private-leaderboard", args=[benchmark.slug])
        return Response(
            {
                "benchmark": benchmark.slug,
                "closed_at": serializers.DateTimeField().to_representation(benchmark.closed_at),
                "counted": len(scores),
                "private_leaderboard_url": request.build_absolute_uri(url),
            }
        )


class PrivateSubmissionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    owner = serializers.CharField()
    is_baseline = serializers.BooleanField()
    url = serializers.URLField()
    web_url = serializers.URLField()


class PrivateEntrySerializer(serializers.Serializer):
    rank = serializers.IntegerField(
        allow_null=True, help_text="1 + how many are significantly better on the private rows (paired resamples)."
    )
    rank_interval = interval_field("[rank, measured - significantly worse].", child=serializers.IntegerField)
    tied = serializers.BooleanField()
    submission = PrivateSubmissionSerializer()
    counted_as = serializers.ChoiceField(
        choices=["chosen", "default", "all", "baseline"],
        help_text="chosen by its submitter; default: they chose none and their Ladder's released best counts; all: "
        "the benchmark counts every submission; baseline: a reference point.",
    )
    counted = serializers.CharField(help_text='counted_as in words, e.g. "by default: the released best".')
    status = serializers.CharField(help_text="Of its private score: queued, running, succeeded or failed.")
    private = serializers.DictField(
        help_text="{value, interval}: the primary metric on the private rows and its 95% interval."
    )
    public = serializers.DictField(
        help_text="{released, improved}: what the Ladder released of the primary metric on the public rows when it "
        "succeeded (null for a baseline)."
    )
    error = serializers.CharField(help_text='Why it could not be measured, or "".')


class PrivateBoardSerializer(serializers.Serializer):
    benchmark = serializers.CharField()
    part = serializers.ChoiceField(choices=["private"])
    closed_at = serializers.DateTimeField()
    metric = serializers.CharField()
    direction = serializers.ChoiceField(choices=["higher", "lower"])
    private_rows = serializers.IntegerField()
    counted = serializers.IntegerField()
    done = serializers.IntegerField(help_text="Measured or failed; the board is complete when done == counted.")
    complete = serializers.BooleanField()
    entries = PrivateEntrySerializer(many=True, help_text="Measured, best first.")
    pending = PrivateEntrySerializer(many=True, help_text="Still being measured.")
    failed = PrivateEntrySerializer(many=True)


class PrivateLeaderboardView(APIView):
    @extend_schema(
        description="A closed guarded benchmark's final standings: the counted submissions ranked by the primary "
        "metric on the private rows, each beside what the public board released of it. Refused (409) until the "
        "owner closes the benchmark: before that no private value exists.",
        responses={
            200: PrivateBoardSerializer,
            **READ_ERRORS,
            409: conflict("The private board is revealed when the owner closes the benchmark (or it is open-policy)."),
        },
    )
    def get(self, request, slug):
        board = private_board_get(get_object_or_404(Benchmark, slug=slug))
        return Response(private_board_document(board, request))


def private_board_document(board: PrivateBoard, request) -> dict:
    def entry(item: PrivateEntry) -> dict:
        pk = item.submission["id"]
        return {
            "rank": item.rank,
            "rank_interval": item.rank_interval,
            "tied": item.tied,
            "submission": {
                "id": pk,
                "name": item.submission["name"],
                "owner": item.submission["owner"],
                "is_baseline": item.submission["is_baseline"],
                "url": request.build_absolute_uri(reverse("api-submission-detail", args=[pk])),
                "web_url": request.build_absolute_uri(reverse("submission-detail", args=[pk])),
            },
            "counted_as": item.counted_as,
            "counted": item.counted_words,
            "status": item.status,
            "private": {"value": item.private_value, "interval": item.private_interval},
            "public": {"released": item.public_value, "improved": item.public_improved},
            "error": item.error,
        }

    return {
        "benchmark": board.benchmark.slug,
        "part": "private",
        "closed_at": serializers.DateTimeField().to_representation(board.benchmark.closed_at),
        "metric": board.metric,
        "direction": "higher" if board.higher_is_better else "lower",
        "private_rows": board.private_rows,
        "counted": board.counted,
        "done": board.done,
        "complete": board.complete,
        "entries": [entry(item) for item in board.entries],
        "pending": [entry(item) for item in board.pending],
        "failed": [entry(item) for item in board.failed],
    }
