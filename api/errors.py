import sys

from django.db import InterfaceError, OperationalError
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from api.limits import is_api, refusal, unreadable_body
from leaderboard.errors import Conflict, IdempotencyKeyReused, NotAllowed, QuotaExceeded, Rejected


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


class KeyReused(exceptions.APIException):
    """422, as the IETF Idempotency-Key draft answers a key reused with another payload; the body names
    the submission the key made."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"

    def __init__(self, error: IdempotencyKeyReused):
        super().__init__(error.message)
        self.submission = str(error.submission_id)


class StateConflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class BodyRefused(exceptions.APIException):
    """A body Django would not parse (too large, too many fields): 413 or 400 with the limit."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code


def exception_handler(error, context):
    """Domain rejections become 400s that name the field, like DRF's own validation errors; a used-up
    quota becomes a 429 that says when to come back; a reused Idempotency-Key a 422 naming its submission;
    a state conflict (a closed benchmark) a 409 and another's submission a 403, both {"detail": message}."""
    refused = unreadable_body(error)
    if refused:
        error = BodyRefused(*refused)
    elif isinstance(error, QuotaExceeded):
        error = QuotaExhausted(error)
    elif isinstance(error, IdempotencyKeyReused):
        error = KeyReused(error)
    elif isinstance(error, Conflict):
        error = StateConflict(error.message)
    elif isinstance(error, NotAllowed):
        error = exceptions.PermissionDenied(error.message)
    elif isinstance(error, Rejected):
        error = exceptions.ValidationError({error.field or "detail": [error.message]})
    response = drf_exception_handler(error, context)
    if isinstance(error, QuotaExhausted) and response is not None:
        response.data.update(error.quota)
    if isinstance(error, KeyReused) and response is not None:
        response.data["submission"] = error.submission
    return response


# Django's own error answers (the root URLconf's handler400/403/500): JSON under /api/, pages elsewhere.


def bad_request(request, exception):
    refused = unreadable_body(exception)
    if refused:
        return refusal(request, *refused)
    if is_api(request):
        message = (
            "The request could not be read (400 Bad Request): check its Host header and its body against the "
            "API's description at /api/docs/."
        )
        return refusal(request, 400, message)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if is_api(request):
        reason = f": {exception}" if str(exception) else ""
        return refusal(request, 403, f"Not allowed (403 Forbidden){reason}.")
    return defaults.permission_denied(request, exception)


# Seconds a client is asked to wait when the database cannot be reached: a restart takes about this long.
DATABASE_RETRY_AFTER_SECONDS = 5


def server_error(request):
    # Called while the uncaught exception is being handled, so it is at hand here, whether a view or a
    # middleware (the session's) raised it.
    if isinstance(sys.exc_info()[1], (OperationalError, InterfaceError)):
        response = refusal(
            request,
            503,
            "Holdout cannot reach its database at the moment (a restart or a failover); the platform is at fault, "
            f"not the request, which was not completed. Try again in {DATABASE_RETRY_AFTER_SECONDS} s: with the "
            "same Idempotency-Key a submission is never made twice.",
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    if is_api(request):
        message = (
            "Holdout failed on this request (500 Internal Server Error); the error is logged. Try again; if it "
            "happens again, report the time and the request."
        )
        return refusal(request, 500, message)
    return defaults.server_error(request)
