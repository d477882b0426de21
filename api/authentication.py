from django.urls import reverse
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from leaderboard.services import api_token_use


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` with a key made on the web (/account/tokens/).

    Keys made with `manage.py drf_create_token` (DRF's one token per user) still work: a key that
    is not a web token is looked up there, so existing CI setups keep running.
    """

    def authenticate_credentials(self, key):
        token = api_token_use(key=key)
        if token is None:
            return super().authenticate_credentials(key)
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                f"This token ('{token.name}') was revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC; "
                f"make a new one at {reverse('account-tokens')}."
            )
        if not token.owner.is_active:
            raise exceptions.AuthenticationFailed("The account of this token is inactive.")
        return token.owner, token
