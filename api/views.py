from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import (
    FORBIDDEN,
    HOLDOUT_BUDGET_SPENT,
    IDEMPOTENCY_KEY_REUSED,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    QUOTA_EXCEEDED,
    READ_ERRORS,
    RETRY_AFTER,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA_TYPE,
    field_errors,
)
from api.serializers import (
    BenchmarkCreateSerializer,
    BenchmarkCreatedSerializer,
    BenchmarkSerializer,
    ComparisonSerializer,
    SubmissionCreateSerializer,
    SubmissionDetailSerializer,
    SubmissionSerializer,
    comparison_document,
    gates_document,
)
from leaderboard.withholding import report_shown
from leaderboard.boards import MAX_PAGE_SIZE, METHODS, board_get, board_query_parse
from leaderboard.comparisons import paired_differences
from leaderboard.errors import Rejected
from leaderboard.gates import gates_parse, regression_verdicts, regressions_parse, strict_parse, threshold_verdicts
from leaderboard.models import Benchmark, Report, Submission
from leaderboard.services import benchmark_create, submission_create
from leaderboard.views import train_csv_response

MAX_IDEMPOTENCY_KEY_LENGTH = 200


class IsStaffOrReadOnly(permissions.BasePermission):
    message = "Only staff can create benchmarks."

    def has_permission(self, request, view) -> bool:
        return request.method in permissions.SAFE_METHODS or bool(request.user and request.user.is_staff)


class BenchmarkListView(APIView):
    permission_classes = [IsStaffOrReadOnly]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses={200: BenchmarkSerializer(many=True), 401: UNAUTHORIZED})
    def get(self, request):
        return Response(BenchmarkSerializer(Benchmark.objects.all(), many=True, context={"request": request}).data)

    @extend_schema(
        request=BenchmarkCreateSerializer,
        responses={
            201: BenchmarkCreatedSerializer,
            400: field_errors("BenchmarkCreateErrors", list(BenchmarkCreateSerializer().fields)),
            401: UNAUTHORIZED,
            403: FORBIDDEN,
            413: PAYLOAD_TOO_LARGE,
            415: UNSUPPORTED_MEDIA_TYPE,
        },
    )
    def post(self, request):
        form = BenchmarkCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        train, test = data.pop("train_data"), data.pop("test_data")
        benchmark = benchmark_create(
            **data,
            train_data=train.read(),
            train_filename=train.name,
            test_data=test.read(),
            test_filename=test.name,
            created_by=request.user,
        )
        return Response(BenchmarkCreatedSerializer(benchmark, context={"request": request}).data, status=201)


class BenchmarkDetailView(APIView):
    @extend_schema(responses={200: BenchmarkSerializer, **READ_ERRORS})
    def get(self, request, slug):
        benchmark = get_object_or_404(Benchmark, slug=slug)
        return Response(BenchmarkSerializer(benchmark, context={"request": request}).data)


class BenchmarkTrainDataView(APIView):
    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.BINARY, **READ_ERRORS})
    def get(self, request, slug):
        return train_csv_response(get_object_or_404(Benchmark, slug=slug))


class SubmissionCreateView(APIView):
    permission_classes = [permissions.IsAuthenticated]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": SubmissionCreateSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Repeat a request with the same key to get the original submission back "
                f"(at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters); a replay does not count against the quota. "
                "The same key with a different request (benchmark, file, name, description or metadata) is a 422.",
            ),
            OpenApiParameter(
                "Idempotent-Replayed",
                str,
                OpenApiParameter.HEADER,
                response=[202],
                enum=["true"],
                description="Present when this is the submission an earlier request with the same key created.",
            ),
            OpenApiParameter(
                "Location", str, OpenApiParameter.HEADER, response=[202], description="The submission's API URL."
            ),
            RETRY_AFTER,
        ],
        responses={
            202: OpenApiResponse(SubmissionSerializer, description="Queued (or replayed): follow its url."),
            400: field_errors("SubmissionCreateErrors", [*SubmissionCreateSerializer().fields, "Idempotency-Key"]),
            401: UNAUTHORIZED,
            403: FORBIDDEN,
            404: NOT_FOUND,
            413: PAYLOAD_TOO_LARGE,
            415: UNSUPPORTED_MEDIA_TYPE,
            409: HOLDOUT_BUDGET_SPENT,
            422: IDEMPOTENCY_KEY_REUSED,
            429: QUOTA_EXCEEDED,
        },
    )
    def post(self, request, slug):
        benchmark = get_object_or_404(Benchmark, slug=slug)
        key = request.headers.get("Idempotency-Key", "").strip() or None
        if key and len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            raise Rejected(
                f"Idempotency-Key is {len(key)} characters; the limit is {MAX_IDEMPOTENCY_KEY_LENGTH}.",
                field="Idempotency-Key",
            )
        form = SubmissionCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        artifact = form.validated_data["artifact"]
        submission, created = submission_create(
            benchmark=benchmark,
            owner=request.user,
            name=form.validated_data["name"],
            description=form.validated_data.get("description", ""),
            metadata=form.validated_data.get("metadata"),
            artifact=artifact.read(),
            artifact_filename=artifact.name,
            idempotency_key=key,
        )
        response = Response(
            SubmissionSerializer(submission, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )
        response["Location"] = request.build_absolute_uri(submission.get_absolute_url())
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


STRICT = OpenApiParameter(
    "strict",
    bool,
    description="Decide a gate within noise by the pessimistic end of its 95% interval (the low end for >= and >, "
    "the high end for <= and <) instead of the point estimate; default false.",
)


def submission_get(pk) -> Submission:
    try:
        return Submission.objects.select_related("benchmark", "owner").get(pk=pk)
    except Submission.DoesNotExist:
        raise exceptions.NotFound(f"There is no submission {pk}.") from None


class SubmissionDetailView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "gates",
                str,
                description="Thresholds to judge, e.g. accuracy>=0.85,latency_p99_ms<=5 (>=, <=, > or <): the "
                "answer's `gates` says for each whether it passed, whether the threshold lies inside the "
                "objective's 95% interval (within_noise) and what decided it. Judge once status is succeeded.",
            ),
            STRICT,
        ],
        responses={
            200: SubmissionDetailSerializer,
            400: field_errors("SubmissionGateErrors", ["gates", "strict"]),
            **READ_ERRORS,
        },
    )
    def get(self, request, pk):
        submission = submission_get(pk)
        context = {"request": request}
        strict = strict_parse(request.query_params.get("strict"))
        if "gates" in request.query_params:
            gates = gates_parse(request.query_params["gates"], submission.benchmark)
            context["gates"] = gates_document(threshold_verdicts(submission, gates, strict=strict), strict=strict)
        return Response(SubmissionDetailSerializer(submission, context=context).data)


class SubmissionCompareView(APIView):
    @extend_schema(
        description="The submission against another of its benchmark, objective by objective: both values, the "
        "difference in the objective's direction (positive: the submission is better) and its 95% interval over "
        "the benchmark's shared resamples, paired resample by resample.",
        parameters=[
            OpenApiParameter(
                "max_regression",
                str,
                description="Regressions to judge against the other submission, e.g. accuracy=0.01,latency_p99_ms=1: "
                "each passes when the submission is at most that much worse; within noise when minus the allowance "
                "lies inside the paired interval.",
            ),
            STRICT,
        ],
        responses={
            200: ComparisonSerializer,
            400: field_errors("ComparisonErrors", ["other_id", "max_regression", "strict"]),
            **READ_ERRORS,
        },
    )
    def get(self, request, pk, other_id):
        submission, reference = submission_get(pk), submission_get(other_id)
        strict = strict_parse(request.query_params.get("strict"))
        comparison = paired_differences(submission, reference)
        regressions = None
        if "max_regression" in request.query_params:
            allowed = regressions_parse(request.query_params["max_regression"], submission.benchmark)
            regressions = gates_document(regression_verdicts(comparison, allowed, strict=strict), strict=strict)
        return Response(comparison_document(comparison, request, regressions))


class ReportDetailView(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "Report",
                {
                    "evaluator": serializers.CharField(),
                    "seconds": serializers.FloatField(),
                    "error": serializers.CharField(),
                    "document": serializers.DictField(),
                },
            ),
            **READ_ERRORS,
        }
    )
    def get(self, request, pk, name):
        report = report_shown(get_object_or_404(Report.objects.select_related("submission__benchmark"), submission_id=pk, evaluator=name))
        return Response(
            {
                "evaluator": report.evaluator,
                "seconds": report.seconds,
                "error": report.error,
                "document": report.document,
            }
        )


class LeaderboardView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("weights", str, description="e.g. accuracy:4,latency_p99_ms:1; unnamed objectives get 0."),
            OpenApiParameter("preset", str, description="a stakeholder preset of the benchmark, e.g. product-manager."),
            OpenApiParameter(
                "constraints",
                str,
                description="hard requirements, e.g. latency_p99_ms<=10,demographic_parity_difference<=0.1",
            ),
            OpenApiParameter("method", str, enum=list(METHODS), description="utility (default), dynascore or winrate."),
            OpenApiParameter("pareto", bool, description="only the submissions on the Pareto frontier."),
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int, description=f"at most {MAX_PAGE_SIZE}."),
        ],
        responses={
            200: inline_serializer(
                "Leaderboard",
                {
                    "benchmark": serializers.CharField(),
                    "released": serializers.BooleanField(
                        help_text="A guarded benchmark's public board while open: one entry per submitter (their "
                        "Ladder's best) and the baselines, with released values and no intervals; on the default "
                        "weights the score is the released utility."
                    ),
                    "weights": serializers.DictField(child=serializers.FloatField()),
                    "constraints": serializers.ListField(child=serializers.CharField()),
                    "method": serializers.CharField(),
                    "preset": serializers.CharField(),
                    "bounds": serializers.DictField(
                        child=inline_serializer(
                            "UtilityBounds", {"worst": serializers.FloatField(), "best": serializers.FloatField()}
                        ),
                        help_text="With method=utility, per weighted objective the values mapped to 0 (worst) and "
                        "1 (best); a score is the weighted mean of (value - worst) / (best - worst), each clipped "
                        "to [0, 1]. Empty for the other methods.",
                    ),
                    "entries": serializers.ListField(
                        child=serializers.DictField(),
                        help_text="Each: rank (1 + how many are significantly better), rank_interval [rank, "
                        "ranked_count - how many are significantly worse], tied (another entry of the page, or the "
                        "row just before or after it, has the same rank), submission, score, score_interval, "
                        "pareto, metrics.",
                    ),
                    "excluded": serializers.ListField(child=serializers.DictField()),
                    "unscored": serializers.ListField(child=serializers.DictField()),
                },
            ),
            400: field_errors(
                "LeaderboardQueryErrors", ["weights", "preset", "constraints", "method", "page", "page_size"]
            ),
            **READ_ERRORS,
        },
    )
    def get(self, request, slug):
        benchmark = get_object_or_404(Benchmark, slug=slug)
        board = board_get(benchmark, board_query_parse(request.query_params, benchmark))
        return Response(board_document(board, request))


def board_document(board, request) -> dict:
    def entry(item) -> dict:
        return {
            "rank": item.rank,
            "rank_interval": item.rank_interval,
            "tied": item.tied,
            "submission": {
                **item.submission,
                "url": request.build_absolute_uri(reverse("api-submission-detail", args=[item.submission["id"]])),
                "web_url": request.build_absolute_uri(reverse("submission-detail", args=[item.submission["id"]])),
            },
            "score": item.score,
            "score_interval": item.score_interval,
            "pareto": item.pareto,
            "metrics": item.metrics,
            "excluded_by": item.excluded_by,
            "unscored": item.unscored,
        }

    query = board.query
    return {
        "benchmark": board.benchmark.slug,
        "released": board.released,
        "weights": query.weights,
        "constraints": [f"{c.key}{c.op}{c.value:g}" for c in query.constraints],
        "method": query.method,
        "preset": query.preset,
        "presets": board.benchmark.presets,
        "bounds": board.utility_bounds,
        "objectives": [
            {"key": o.key, "label": o.label, "direction": o.direction, "bounds": board.bounds[o.key]}
            for o in board.objectives
        ],
        "page": query.page,
        "pages": board.pages,
        "ranked_count": board.ranked_count,
        "entries": [entry(item) for item in board.entries],
        "excluded": [entry(item) for item in board.excluded],
        "excluded_count": board.excluded_count,
        "unscored": [entry(item) for item in board.unscored],
        "unscored_count": board.unscored_count,
    }
