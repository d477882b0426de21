"""How large a request may be, refused from its headers before a byte of the body is read.

Without this a request that declares a 2 GB body is read until the web worker is killed; with it,
the answer is a 413 that says the limit, as JSON under /api/ and as a page elsewhere.
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve

from leaderboard.metadata import MAX_METADATA_BYTES

MB = 1024 * 1024
# Django's own default, used when DATA_UPLOAD_MAX_MEMORY_SIZE is switched off (None).
DEFAULT_FIELDS_BYTES = 2621440
SUBMISSION_UPLOADS = ("api-submission-create", "submission-new")


def is_api(request) -> bool:
    return request.path.startswith("/api/")


def refusal(request, status: int, message: str):
    """An error answer in the request's language: JSON {"detail": ...} for the API, a page for people."""
    if is_api(request):
        response = JsonResponse({"detail": message}, status=status)
    else:
        response = render(request, "request_refused.html", {"status": status, "message": message}, status=status)
    # Said here because the body limit answers before CommonMiddleware would: with it a client that is
    # still sending knows where the answer ends.
    response["Content-Length"] = str(len(response.content))
    return response


def fields_bytes() -> int:
    """The most the form fields beside the files may hold (Django refuses more while parsing)."""
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE or DEFAULT_FIELDS_BYTES


def body_limit(path: str) -> tuple[int, str]:
    """The largest body a path accepts, and what it is made of in words: a submission carries one
    model file, anything else (a benchmark's creation, in the API or the admin) at most its two tables."""
    try:
        name = resolve(path).url_name
    except Resolver404:
        name = None
    fields = f"the form fields (at most {fields_bytes() / MB:.1f} MB)"
    if name in SUBMISSION_UPLOADS:
        artifact = settings.HOLDOUT_MAX_ARTIFACT_BYTES
        return artifact + fields_bytes(), f"a model file of at most {artifact / MB:.0f} MB and {fields}"
    dataset = settings.HOLDOUT_MAX_DATASET_BYTES
    return 2 * dataset + fields_bytes(), f"two data files of at most {dataset / MB:.0f} MB each and {fields}"


class RequestBodyLimitMiddleware:
    """Refuses a body larger than its path can accept from the Content-Length header alone; first in
    the chain, so no other middleware (CSRF reads a form) has read it yet."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            # Django reads a body only up to its Content-Length, so a chunked one would be read as empty
            # (a missing file, a misleading answer); and with both headers the length must be ignored.
            return refusal(
                request,
                411,
                "Send the body with a Content-Length header rather than Transfer-Encoding: chunked: Holdout "
                "checks a body's size before reading it. Nothing was read or stored.",
            )
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            size = int(declared)
        except ValueError:
            size = -1
        if size < 0:
            return refusal(request, 400, f"Content-Length is {declared!r}; it must be the body's size in bytes.")
        limit, made_of = body_limit(request.path_info)
        if size > limit:
            return refusal(
                request,
                413,
                f"The request body is {size / MB:.1f} MB (Content-Length: {size}); this address accepts at most "
                f"{limit / MB:.1f} MB: {made_of}. Nothing was read or stored.",
            )
        return self.get_response(request)


def unreadable_body(error: Exception) -> tuple[int, str] | None:
    """(status, message) for the body limits Django enforces while it parses a form; None for other errors."""
    if isinstance(error, RequestDataTooBig):
        return 413, (
            f"The form fields other than files come to more than {fields_bytes() / MB:.1f} MB, the most Holdout "
            f"reads (DATA_UPLOAD_MAX_MEMORY_SIZE); metadata may be at most {MAX_METADATA_BYTES // 1024} KB of JSON. "
            "Send the model as a file field. Nothing was stored."
        )
    if isinstance(error, TooManyFieldsSent):
        return 400, (
            f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} form fields; send only the "
            "documented ones (see /api/docs/). Nothing was stored."
        )
    if isinstance(error, TooManyFilesSent):
        return 400, (
            f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files; send only the documented "
            "ones (see /api/docs/). Nothing was stored."
        )
    return None
