"""The error responses the OpenAPI schema documents, shared by the views so every endpoint says the same."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field, inline_serializer
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong and what to do about it.")


# A field's messages are a list; a body that could not be parsed at all says so in one string.
@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
class MessagesField(serializers.Field):
    pass


class QuotaExceededSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="The quota, how many were used and when it resets, in words.")
    quota = serializers.IntegerField(help_text="Submissions per person per UTC day on this benchmark.")
    used = serializers.IntegerField(help_text="Today's submissions that count (platform-fault failures do not).")
    resets_at = serializers.DateTimeField(help_text="The next midnight UTC.")


def field_errors(component: str, fields: list[str]) -> OpenApiResponse:
    """A 400 whose body is keyed by the input to fix ('detail' when no single input is at fault)."""
    body = inline_serializer(component, {name: MessagesField(required=False) for name in [*fields, "detail"]})
    return OpenApiResponse(body, description="A bad input: each key names an input, each message says what to fix.")


UNAUTHORIZED = OpenApiResponse(
    ErrorSerializer, description="Missing, unknown or revoked token; send `Authorization: Token <key>`."
)
FORBIDDEN = OpenApiResponse(ErrorSerializer, description="Signed in but not allowed (or a web session without CSRF).")
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such benchmark, submission or report.")
UNSUPPORTED_MEDIA_TYPE = OpenApiResponse(ErrorSerializer, description="Send multipart/form-data.")
QUOTA_EXCEEDED = OpenApiResponse(
    QuotaExceededSerializer,
    description="The benchmark's daily submission quota is used up; `Retry-After` says how many seconds until "
    "it resets at midnight UTC. A repeated Idempotency-Key still returns its submission.",
)
PAYLOAD_TOO_LARGE = OpenApiResponse(
    ErrorSerializer,
    description="The body is larger than this endpoint accepts (refused from Content-Length before it is read), "
    "or its form fields other than files are over Django's DATA_UPLOAD_MAX_MEMORY_SIZE; the message says the limit.",
)
HOLDOUT_BUDGET_SPENT = OpenApiResponse(
    ErrorSerializer,
    description="A guarded benchmark's holdout budget is spent: the submitter has had as many releases of "
    "information (Ladder steps and reports) as its owner allows; the message counts them.",
)
IDEMPOTENCY_KEY_REUSED = OpenApiResponse(
    inline_serializer(
        "IdempotencyKeyReused",
        {
            "detail": serializers.CharField(help_text="Which submission the key made and how this request differs."),
            "submission": serializers.UUIDField(help_text="The submission the key made."),
        },
    ),
    description="The Idempotency-Key already made a submission from a different request (another benchmark, file, "
    "name, description or metadata); send a new key, or the original request to get that submission back.",
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds until the quota resets (the next midnight UTC).",
)
READ_ERRORS = {401: UNAUTHORIZED, 404: NOT_FOUND}
