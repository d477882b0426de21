from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from leaderboard.errors import QuotaExceeded, Rejected


class QuotaExhausted(exceptions.APIException):
    """429 with Retry-After (DRF sets the header from `wait`) and the quota in the body for programs."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "quota_exceeded"

    def __init__(self, error: QuotaExceeded):
        super().__init__(error.message)
        self.wait = error.retry_after
        self.quota = {
            "quota": error.quota,
            "used": error.used,
            "resets_at": error.resets_at.isoformat().replace("+00:00", "Z"),
        }


def exception_handler(error, context):
    """Domain rejections become 400s that name the field, like DRF's own validation errors; a used-up
    quota becomes a 429 that says when to come back."""
    if isinstance(error, QuotaExceeded):
        error = QuotaExhausted(error)
    elif isinstance(error, Rejected):
        error = exceptions.ValidationError({error.field or "detail": [error.message]})
    response = drf_exception_handler(error, context)
    if isinstance(error, QuotaExhausted) and response is not None:
        response.data.update(error.quota)
    return response
