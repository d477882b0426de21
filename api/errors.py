from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler

from leaderboard.errors import Rejected


def exception_handler(error, context):
    """Domain rejections become 400s that name the field, like DRF's own validation errors."""
    if isinstance(error, Rejected):
        error = exceptions.ValidationError({error.field or "detail": [error.message]})
    return drf_exception_handler(error, context)
