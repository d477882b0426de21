"""Bad input gets a clear error and loses nothing: every refusal is a 4xx naming the problem, JSON
under /api/, and stores nothing; a replay is only ever the submission its Idempotency-Key made."""

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError
from django.test import Client

from leaderboard.models import Submission
from tests.conftest import baseline_named
from tests.test_leaderboard_api import board, leaderboard  # noqa: F401 - board is a fixture
from tests.test_submission_api import post

DEEP = '{"a": ' + "[" * 4999 + "]" * 4999 + "}"  # 5000 levels, 10 KB: under the size cap

BAD_METADATA = [
    pytest.param(DEEP, "metadata is nested 5000 levels deep; at most 8 are allowed.", id="5000-levels"),
    pytest.param(
        '{"a": ' * 9 + "1" + "}" * 9, "metadata is nested 9 levels deep; at most 8 are allowed.", id="9-levels"
    ),
    pytest.param('{"loss": NaN}', "metadata holds NaN, which JSON does not allow", id="NaN"),
    pytest.param('{"loss": Infinity}', "metadata holds Infinity, which JSON does not allow", id="Infinity"),
    pytest.param('{"loss": -Infinity}', "metadata holds -Infinity, which JSON does not allow", id="-Infinity"),
    pytest.param('{"loss": 1e400}', "metadata.loss is inf, not a finite number", id="overflowing-number"),
    pytest.param(
        '{"note": "\\ud800"}', "metadata.note holds '\\ud800', half of a UTF-16 surrogate pair", id="lone-surrogate"
    ),
    pytest.param('{"note": "a\\u0000b"}', "metadata.note holds a NUL character", id="NUL"),
    pytest.param(
        json.dumps({"blob": "x" * 20000}), "metadata is 19.5 KB of JSON; at most 16 KB are allowed.", id="20-KB"
    ),
    pytest.param(
        json.dumps({f"k{i}": i for i in range(201)}),
        "metadata has more than 200 keys in all; at most 200 are allowed.",
        id="201-keys",
    ),
    pytest.param(json.dumps({"k" * 101: 1}), "metadata has a key of 101 characters", id="long-key"),
    pytest.param('{"git_sha": "a", "git_sha": "b"}', "metadata names the key 'git_sha' twice", id="duplicate-key"),
    pytest.param("[1, 2]", "metadata must be a JSON object", id="array"),
    pytest.param("{not json", "metadata is not valid JSON (Expecting property name", id="not-json"),
    pytest.param('{"n": ' + "9" * 5000 + "}", "metadata holds a value that cannot be read", id="5000-digits"),
    pytest.param(
        '{"training_cutoff": "last spring"}',
        'metadata.training_cutoff is "last spring", not a date; give the last day of the model\'s training data as '
        "YYYY-MM-DD",
        id="cutoff-words",
    ),
    pytest.param('{"training_cutoff": "2023-02-30"}', 'metadata.training_cutoff is "2023-02-30"', id="cutoff-no-day"),
    pytest.param('{"training_cutoff": "20231231"}', 'metadata.training_cutoff is "20231231"', id="cutoff-compact"),
    pytest.param('{"training_cutoff": 2023}', "metadata.training_cutoff is 2023, not a date", id="cutoff-number"),
]


@pytest.fixture
def onnx(adult_baselines):
    return baseline_named(adult_baselines, "onnx:")


def upload(onnx):
    return (onnx.filename, onnx.data)


# --- 1. Metadata is checked before anything is stored -----------------------------------------


@pytest.mark.parametrize(("metadata", "message"), BAD_METADATA)
def test_bad_metadata_is_a_400_naming_the_problem_and_stores_nothing(
    api_client, adult_benchmark, onnx, metadata, message
):
    earlier = post(api_client, adult_benchmark, artifact=upload(onnx)).json()
    response = post(api_client, adult_benchmark, artifact=upload(onnx), metadata=metadata)
    assert response.status_code == 400, response.content[:500]
    assert list(response.json()) == ["metadata"]
    assert message in response.json()["metadata"][0]
    assert "Idempotent-Replayed" not in response.headers
    assert [str(pk) for pk in Submission.objects.values_list("id", flat=True)] == [earlier["id"]]


@pytest.mark.parametrize(("metadata", "message"), BAD_METADATA[:10] + BAD_METADATA[-4:])
def test_the_web_form_refuses_the_same_metadata_with_the_same_message(
    client, user, adult_benchmark, onnx, metadata, message
):
    client.force_login(user)
    response = client.post(
        f"/benchmarks/{adult_benchmark.slug}/submit/",
        {"name": "from the web", "artifact": SimpleUploadedFile(onnx.filename, onnx.data), "metadata": metadata},
    )
    assert response.status_code == 400
    assert message in response.context["form"].errors["metadata"][0]
    assert not Submission.objects.exists()


@pytest.mark.parametrize(("metadata", "message"), BAD_METADATA[:10] + BAD_METADATA[-4:])
def test_the_admin_holds_edited_metadata_to_the_same_limits(
    client, user, api_client, adult_benchmark, onnx, metadata, message
):
    created = post(api_client, adult_benchmark, artifact=upload(onnx), metadata='{"git_sha": "abc"}').json()
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    address = f"/admin/leaderboard/submission/{created['id']}/change/"
    form = client.get(address).context["adminform"].form
    fields = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    fields.update({"reports-TOTAL_FORMS": "0", "reports-INITIAL_FORMS": "0"})  # the reports inline, empty
    response = client.post(address, {**fields, "metadata": metadata})
    assert response.status_code == 200, "the change page is shown again with the error, not saved"
    assert message in response.context["adminform"].form.errors["metadata"][0]
    assert Submission.objects.get(pk=created["id"]).metadata == {"git_sha": "abc"}
    response = client.post(address, {**fields, "metadata": '{"git_sha": "def"}'})
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert Submission.objects.get(pk=created["id"]).metadata == {"git_sha": "def"}


def test_metadata_at_the_limits_is_accepted_and_kept_as_sent(api_client, adult_benchmark, onnx):
    nested = {"a": {"b": {"c": {"d": {"e": {"f": [1.5, None, True, "é"]}}}}}}  # the 8th level is the list
    metadata = {"training_cutoff": "2023-12-31", "nested": nested, **{f"k{i}": i for i in range(192)}}  # 200 keys
    response = post(api_client, adult_benchmark, artifact=upload(onnx), metadata=json.dumps(metadata))
    assert response.status_code == 202, response.json()
    assert response.json()["metadata"] == metadata
    assert api_client.get(response.json()["url"]).status_code == 200


# --- 2. A failed save is never answered as a replay ---------------------------------------------


def test_a_failed_save_is_an_error_not_another_submission_of_the_owner(api_client, adult_benchmark, onnx, monkeypatch):
    earlier = post(api_client, adult_benchmark, artifact=upload(onnx), name="earlier").json()

    def refuse(self, *args, **kwargs):
        raise IntegrityError("CHECK constraint failed")  # what SQLite said to NaN before metadata was checked

    monkeypatch.setattr(Submission, "save", refuse)
    api_client.raise_request_exception = False
    response = post(api_client, adult_benchmark, artifact=upload(onnx), name="later")
    assert response.status_code == 500
    assert "Idempotent-Replayed" not in response.headers
    assert response.json()["detail"].startswith("Holdout failed on this request (500 Internal Server Error)")
    assert earlier["id"] not in response.content.decode()


def test_a_key_made_on_one_benchmark_is_not_replayed_on_another(
    api_client, adult_benchmark, lending_benchmark, onnx
):
    first = post(api_client, adult_benchmark, artifact=upload(onnx), headers={"Idempotency-Key": "ci-1"}).json()
    other = post(api_client, lending_benchmark, artifact=upload(onnx), headers={"Idempotency-Key": "ci-1"})
    assert other.status_code == 422
    assert other.json()["submission"] == first["id"]
    assert "differs in benchmark ('lending', not 'adult')" in other.json()["detail"]
    assert Submission.objects.count() == 1


# --- 3. An Idempotency-Key reused with a different request ---------------------------------------


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        ({"name": "another-name"}, "name ('another-name', not 'my-model')"),
        ({"metadata": '{"git_sha": "def456"}'}, "metadata"),
        ({"description": "retrained"}, "description"),
        ({"artifact": "other"}, "artifact (another file)"),
    ],
)
def test_a_key_reused_with_a_different_request_is_a_422_naming_the_submission_it_made(
    api_client, adult_benchmark, onnx, adult_baselines, change, difference
):
    key = {"Idempotency-Key": "ci-run-9"}
    original = {"metadata": '{"git_sha": "abc123"}'}
    first = post(api_client, adult_benchmark, artifact=upload(onnx), headers=key, **original).json()
    fields = {**original, **change}
    artifact = upload(onnx)
    if fields.pop("artifact", None):
        forest = baseline_named(adult_baselines, "Random forest")
        artifact = (forest.filename, forest.data)
    response = post(api_client, adult_benchmark, artifact=artifact, headers=key, **fields)
    assert response.status_code == 422
    body = response.json()
    assert body["submission"] == first["id"]
    assert body["detail"] == (
        f"Idempotency-Key 'ci-run-9' was already used for a different request: it made submission {first['id']} "
        f"('my-model' on 'adult'), and this request differs in {difference}. Send a new key for a new submission, "
        "or repeat the original request exactly to get that submission back."
    )
    assert Submission.objects.count() == 1


def test_the_same_request_with_its_metadata_written_differently_is_still_a_replay(api_client, adult_benchmark, onnx):
    key = {"Idempotency-Key": "ci-run-10"}
    first = post(api_client, adult_benchmark, artifact=upload(onnx), headers=key, metadata='{"a": 1, "b": [2]}')
    again = post(api_client, adult_benchmark, artifact=upload(onnx), headers=key, metadata='{ "b":[2] ,"a":1 }')
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"


def test_a_submission_made_before_fingerprints_is_replayed_once_the_migration_fills_its_own(
    api_client, adult_benchmark, onnx
):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("leaderboard.migrations.0005_submission_request_fingerprint")
    key = {"Idempotency-Key": "before-the-upgrade"}
    first = post(api_client, adult_benchmark, artifact=upload(onnx), headers=key, metadata='{"git_sha": "abc"}')
    Submission.objects.update(request_fingerprint="")  # as every row was when the field was added
    migration.fingerprints_from_stored_requests(apps, None)
    again = post(api_client, adult_benchmark, artifact=upload(onnx), headers=key, metadata='{"git_sha": "abc"}')
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"


# --- 4. Bodies over the upload cap, and Django's own errors, as JSON -------------------------------


def raw_post(
    live_server, path: str, content_length: str | None, **headers: str
) -> tuple[http.client.HTTPResponse, bytes, float]:
    """Send only the headers of a POST declaring `content_length` bytes (none: no such header) and
    `headers`, then read the answer."""
    address = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=15)
    started = time.monotonic()
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", "multipart/form-data; boundary=holdout")
        if content_length is not None:
            connection.putheader("Content-Length", content_length)
        for name, value in headers.items():
            connection.putheader(name.replace("_", "-"), value)
        connection.endheaders()
        response = connection.getresponse()
        return response, response.read(), time.monotonic() - started
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/api/v1/benchmarks/adult/submissions/", "102.5 MB: a model file of at most 100 MB"),
        ("/api/v1/benchmarks/", "1002.5 MB: two data files of at most 500 MB each"),
    ],
)
def test_a_body_declared_over_the_cap_is_refused_from_its_header_before_it_is_read(
    live_server, transactional_db, path, limit
):
    response, body, seconds = raw_post(live_server, path, "2147483648")
    assert response.status == 413 and response.getheader("Content-Type") == "application/json"
    assert json.loads(body)["detail"] == (
        f"The request body is 2048.0 MB (Content-Length: 2147483648); this address accepts at most {limit} and "
        "the form fields (at most 2.5 MB). Nothing was read or stored."
    )
    assert seconds < 5, "answered without waiting for the body"


def test_the_web_form_refuses_a_body_over_the_cap_with_a_page(live_server, transactional_db):
    response, body, _ = raw_post(live_server, "/benchmarks/adult/submit/", "2147483648")
    assert response.status == 413 and response.getheader("Content-Type").startswith("text/html")
    assert b"The request body is 2048.0 MB" in body and b"a model file of at most 100 MB" in body


@pytest.mark.parametrize("content_length", [None, "100"])
def test_a_chunked_body_is_a_411_asking_for_its_length(live_server, transactional_db, content_length):
    response, body, seconds = raw_post(
        live_server, "/api/v1/benchmarks/adult/submissions/", content_length, Transfer_Encoding="chunked"
    )
    assert response.status == 411 and response.getheader("Content-Type") == "application/json"
    assert json.loads(body)["detail"].startswith("Send the body with a Content-Length header")
    assert seconds < 5


def test_a_content_length_that_is_not_a_size_is_a_400(client, db):
    response = client.generic("POST", "/api/v1/benchmarks/adult/submissions/", b"", CONTENT_LENGTH="-1")
    assert response.status_code == 400
    assert response.json() == {"detail": "Content-Length is '-1'; it must be the body's size in bytes."}


def test_a_10_mb_metadata_field_is_a_json_413_that_says_the_limit(api_client, adult_benchmark, onnx):
    response = post(api_client, adult_benchmark, artifact=upload(onnx), metadata="x" * (10 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["detail"].startswith(
        "The form fields other than files come to more than 2.5 MB, the most Holdout reads "
        "(DATA_UPLOAD_MAX_MEMORY_SIZE); metadata may be at most 16 KB of JSON."
    )
    assert not Submission.objects.exists()


def test_the_web_form_answers_a_10_mb_metadata_field_with_a_page_that_says_the_limit(
    client, user, adult_benchmark, onnx
):
    client.force_login(user)
    response = client.post(
        f"/benchmarks/{adult_benchmark.slug}/submit/",
        {"name": "big", "artifact": SimpleUploadedFile(onnx.filename, onnx.data), "metadata": "x" * (10 << 20)},
    )
    assert response.status_code == 413
    assert b"The form fields other than files come to more than 2.5 MB" in response.content
    assert not Submission.objects.exists()


def test_more_form_fields_than_django_reads_is_a_json_400(api_client, adult_benchmark, onnx):
    fields = {f"extra{i}": "x" for i in range(1001)}
    response = post(api_client, adult_benchmark, artifact=upload(onnx), **fields)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "The request has more than 1000 form fields; send only the documented ones (see /api/docs/). "
        "Nothing was stored."
    }
    assert not Submission.objects.exists()


def test_django_level_errors_under_the_api_are_json(client, api_client, user, adult_benchmark, monkeypatch):
    bad_host = client.get("/api/v1/benchmarks/", HTTP_HOST="evil.example")
    assert bad_host.status_code == 400
    assert bad_host.json()["detail"].startswith("The request could not be read (400 Bad Request)")

    wrong_method = api_client.delete(f"/api/v1/benchmarks/{adult_benchmark.slug}/leaderboard/")
    assert wrong_method.status_code == 405 and wrong_method.json() == {"detail": 'Method "DELETE" not allowed.'}

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    no_csrf = browser.post(f"/api/v1/benchmarks/{adult_benchmark.slug}/submissions/", {"name": "x"})
    assert no_csrf.status_code == 403 and no_csrf.json()["detail"].startswith("CSRF Failed")

    from api.views import LeaderboardView

    def broken(self, request, slug):
        raise RuntimeError("a bug")

    monkeypatch.setattr(LeaderboardView, "get", broken)
    crashing = Client(raise_request_exception=False)
    failed = crashing.get(f"/api/v1/benchmarks/{adult_benchmark.slug}/leaderboard/")
    assert failed.status_code == 500
    assert failed.json()["detail"].startswith("Holdout failed on this request (500 Internal Server Error)")
    page = crashing.get("/no/such/page/")
    assert page.status_code == 404 and b"See the benchmarks" in page.content, "people still get pages"


@pytest.mark.parametrize("error", ["OperationalError", "InterfaceError"])
def test_a_database_that_cannot_be_reached_is_a_503_to_retry_not_a_500(adult_benchmark, monkeypatch, error):
    import django.db

    from api.views import LeaderboardView
    from leaderboard import views as pages

    def unreachable(*args, **kwargs):
        raise getattr(django.db, error)("server closed the connection unexpectedly")

    monkeypatch.setattr(LeaderboardView, "get", unreachable)
    monkeypatch.setattr(pages, "get_object_or_404", unreachable)
    crashing = Client(raise_request_exception=False)
    answer = crashing.get(f"/api/v1/benchmarks/{adult_benchmark.slug}/leaderboard/")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.json()["detail"].startswith("Holdout cannot reach its database at the moment")
    page = crashing.get(f"/benchmarks/{adult_benchmark.slug}/")
    assert page.status_code == 503 and b"cannot reach its database" in page.content


# --- 5. Weights ----------------------------------------------------------------------------------


def test_weights_near_the_float_maximum_rank_as_their_proportions_do(client, board):  # noqa: F811
    huge = leaderboard(client, board, "?weights=accuracy:1e308,latency_p99_ms:1e308").json()
    even = leaderboard(client, board, "?weights=accuracy:1,latency_p99_ms:1").json()
    assert [(e["submission"]["name"], e["rank"]) for e in huge["entries"]] == [
        (e["submission"]["name"], e["rank"]) for e in even["entries"]
    ]
    assert [e["score"] for e in huge["entries"]] == pytest.approx([e["score"] for e in even["entries"]])
    assert len({e["score"] for e in huge["entries"]}) > 1, "the scores are not all 0"
    page = client.get(f"/benchmarks/{board.slug}/?weights=accuracy:1e308,latency_p99_ms:1e308").content.decode()
    assert page.index("fast") < page.index("accurate-slow")


@pytest.mark.parametrize("weight", ["nan", "inf", "-inf", "1e309", "-1"])
def test_a_weight_that_is_not_finite_and_non_negative_is_a_400_naming_it(client, board, weight):  # noqa: F811
    response = leaderboard(client, board, f"?weights=accuracy:1,latency_p99_ms:{weight}")
    assert response.status_code == 400
    assert response.json() == {
        "weights": [f"weight of 'latency_p99_ms' must be a finite non-negative number, not {weight}."]
    }


# --- 6. training_cutoff --------------------------------------------------------------------------


def test_a_declared_training_cutoff_places_the_decay_windows(api_client, lending_benchmark, lending_baselines):
    from workers.evaluation import submission_evaluate

    lending_benchmark.evaluators = ["decay"]  # performance and decay are all this needs
    lending_benchmark.save(update_fields=["evaluators"])
    split_end = lending_benchmark.evaluator_options["decay"]["training_split_end"]
    model = baseline_named(lending_baselines, "Logistic regression")
    declared = '{"training_cutoff": "2024-02-29"}'
    created = post(api_client, lending_benchmark, artifact=(model.filename, model.data), metadata=declared).json()
    submission_evaluate(created["id"])

    report = api_client.get(f"/api/v1/submissions/{created['id']}/reports/decay/")
    assert report.status_code == 200
    document = report.json()["document"]
    assert split_end != "2024-02-29"
    assert document["training_cutoff"] == {
        "date": "2024-02-29",
        "source": "metadata",
        "note": "Windows starting before the training cutoff: 2024-01, 2024-02.",
    }
    first, third = document["windows"][0], document["windows"][2]
    assert first["label"] == "2024-01" and first["days_since_cutoff"] < 0
    assert third["label"] == "2024-03" and third["days_since_cutoff"] == 16.5  # to mid-March, 12:00
