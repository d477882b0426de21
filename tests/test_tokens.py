"""API tokens made and revoked on the web: the key is shown once, only its hash is kept."""

import hashlib
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from leaderboard.models import ApiToken, Submission
from leaderboard.services import api_token_create
from tests.conftest import baseline_named

TOKENS_URL = "/account/tokens/"


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def create(client, name="github-actions"):
    return client.post(TOKENS_URL, {"name": name})


def shown_key(response) -> str:
    return re.search(r'id="new-token-key">([^<]+)<', response.content.decode()).group(1)


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def submit(client, benchmark, baselines):
    onnx = baseline_named(baselines, "onnx:")
    return client.post(
        f"/api/v1/benchmarks/{benchmark.slug}/submissions/",
        {"name": "from-ci", "artifact": SimpleUploadedFile(onnx.filename, onnx.data)},
        format="multipart",
    )


def test_creating_a_token_shows_its_key_once_and_stores_only_its_hash(signed_in, user):
    response = create(signed_in)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    key = shown_key(response)
    assert key.startswith("hdt_") and len(key) > 40
    token = ApiToken.objects.get()
    assert token.owner == user and token.name == "github-actions"
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(ApiToken.objects.values().get())
    again = signed_in.get(TOKENS_URL).content.decode()
    assert "github-actions" in again and key not in again


def test_the_key_authenticates_api_calls_as_its_owner(signed_in, user, adult_benchmark, adult_baselines):
    key = shown_key(create(signed_in))
    response = submit(token_client(key), adult_benchmark, adult_baselines)
    assert response.status_code == 202, response.json()
    assert Submission.objects.get().owner == user


def test_a_revoked_key_is_refused_with_401_and_says_so(signed_in, adult_benchmark, adult_baselines):
    key = shown_key(create(signed_in, "laptop"))
    token = ApiToken.objects.get()

    revoked = signed_in.post(f"{TOKENS_URL}{token.pk}/revoke/", follow=True)

    assert revoked.status_code == 200 and "Revoked the token &#x27;laptop&#x27;" in revoked.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    response = submit(token_client(key), adult_benchmark, adult_baselines)
    assert response.status_code == 401
    assert "was revoked on" in response.json()["detail"] and "/account/tokens/" in response.json()["detail"]
    assert response["WWW-Authenticate"] == "Token"
    assert not Submission.objects.exists()
    page = signed_in.get(TOKENS_URL).content.decode()
    assert f"{token.revoked_at:%Y-%m-%d %H:%M} UTC" in page
    assert f"/account/tokens/{token.pk}/revoke/" not in page, "a revoked token has no revoke button"


def test_an_unknown_key_is_refused(adult_benchmark, adult_baselines):
    response = submit(token_client("hdt_not-a-key"), adult_benchmark, adult_baselines)
    assert response.status_code == 401 and response.json()["detail"] == "Invalid token."


def test_nobody_can_revoke_another_persons_token(signed_in, db):
    bob = get_user_model().objects.create_user("bob")
    token, _ = api_token_create(owner=bob, name="bobs-ci")

    response = signed_in.post(f"{TOKENS_URL}{token.pk}/revoke/")

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert "bobs-ci" not in signed_in.get(TOKENS_URL).content.decode()


def test_revoking_takes_a_post_with_a_csrf_token(user, db):
    from django.test import Client

    token, _ = api_token_create(owner=user, name="ci")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(f"{TOKENS_URL}{token.pk}/revoke/").status_code == 405
    assert client.post(f"{TOKENS_URL}{token.pk}/revoke/").status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None


def test_last_used_is_noted_when_the_key_is_used(signed_in, adult_benchmark):
    key = shown_key(create(signed_in))
    assert ApiToken.objects.get().last_used_at is None
    assert "never" in signed_in.get(TOKENS_URL).content.decode()

    assert token_client(key).get("/api/v1/benchmarks/").status_code == 200

    used = ApiToken.objects.get().last_used_at
    assert used is not None
    assert f"{used:%Y-%m-%d %H:%M} UTC" in signed_in.get(TOKENS_URL).content.decode()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "give the token a name"),
        ("   ", "give the token a name"),
        ("x" * 65, "the name is 65 characters; the limit is 64."),
    ],
)
def test_a_token_name_must_be_given_and_short(signed_in, name, message):
    response = create(signed_in, name)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_name_of_64_characters_is_fine(signed_in):
    assert create(signed_in, "x" * 64).status_code == 200
    assert ApiToken.objects.get().name == "x" * 64


def test_the_tokens_page_needs_a_signed_in_user(client, db):
    response = client.get(TOKENS_URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_signed_in_people_find_the_tokens_page_in_the_navigation(signed_in, client, db):
    assert 'href="/account/tokens/"' in signed_in.get("/").content.decode()
    client.logout()
    assert 'href="/account/tokens/"' not in client.get("/").content.decode()


def test_tokens_from_drf_create_token_still_work(api_client, adult_benchmark, adult_baselines):
    assert submit(api_client, adult_benchmark, adult_baselines).status_code == 202


def test_staff_revoke_a_leaked_token_in_the_admin_and_its_key_stops_working(client, user, adult_benchmark):
    token, key = api_token_create(owner=user, name="laptop")
    assert token_client(key).get("/api/v1/benchmarks/").status_code == 200
    get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.login(username="root", password="pw")
    listing = client.get("/admin/leaderboard/apitoken/")
    assert listing.status_code == 200 and "laptop" in listing.content.decode()
    assert client.get("/admin/leaderboard/apitoken/add/").status_code == 403, "keys are made by their owners"
    done = client.post(
        "/admin/leaderboard/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )
    assert "Revoked 1 token(s)" in done.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    response = token_client(key).post(f"/api/v1/benchmarks/{adult_benchmark.slug}/submissions/", {})
    assert response.status_code == 401
