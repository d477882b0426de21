import gzip
import io
import json
import pickle
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from leaderboard.models import Submission
from tests.conftest import baseline_named


def post(api_client, benchmark, *, artifact=None, name="my-model", headers=None, **fields):
    payload = {"name": name, **fields}
    if artifact is not None:
        payload["artifact"] = SimpleUploadedFile(artifact[0], artifact[1])
    return api_client.post(
        f"/api/v1/benchmarks/{benchmark.slug}/submissions/", payload, format="multipart", headers=headers or {}
    )


def test_it_accepts_an_onnx_model_with_202_and_queues_it(
    api_client, adult_benchmark, adult_baselines, django_capture_on_commit_callbacks
):
    onnx = baseline_named(adult_baselines, "onnx:")
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(
            api_client, adult_benchmark, artifact=(onnx.filename, onnx.data), metadata=json.dumps({"git_sha": "abc123"})
        )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["stage"] == "queued"
    assert body["url"].endswith(f"/api/v1/submissions/{body['id']}/")
    assert body["artifact"]["format"] == "onnx" and body["artifact"]["bytes"] == len(onnx.data)
    assert body["metadata"] == {"git_sha": "abc123"}
    assert len(callbacks) == 1, "the evaluation is enqueued once, after the commit"
    detail = api_client.get(body["url"]).json()
    for key in (
        "status",
        "stage",
        "progress",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "metrics",
        "intervals",
    ):
        assert key in detail


def test_it_accepts_a_skops_model(api_client, adult_benchmark, adult_baselines):
    forest = baseline_named(adult_baselines, "Random forest")
    response = post(api_client, adult_benchmark, artifact=(forest.filename, forest.data))
    assert response.status_code == 202, response.json()
    assert Submission.objects.get().artifact_format == "skops"


def test_it_needs_a_token(client, adult_benchmark):
    response = client.post(f"/api/v1/benchmarks/{adult_benchmark.slug}/submissions/", {"name": "x"})
    assert response.status_code == 401
    assert "credentials" in response.json()["detail"]


def test_an_unknown_benchmark_is_a_404(api_client, db):
    response = api_client.post("/api/v1/benchmarks/nope/submissions/", {"name": "x"}, format="multipart")
    assert response.status_code == 404


class Unpicklable:
    pass


def joblib_like(obj) -> bytes:
    return gzip.compress(pickle.dumps(obj))


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        ("model.pkl", pickle.dumps({"weights": [1, 2]}), "pickle"),
        ("model.joblib", joblib_like({"weights": [1, 2]}), "pickle"),
        ("model.onnx", pickle.dumps([1]), "pickle"),
        ("model.onnx", b"", "empty"),
        ("model.onnx", b"this is not a protobuf at all \xff\xfe" * 10, "ONNX"),
        ("model.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64, ".onnx"),
        ("model.skops", b"not a zip file" * 10, "zip"),
    ],
)
def test_it_refuses_an_artifact_it_cannot_accept_before_queueing(api_client, adult_benchmark, filename, data, message):
    response = post(api_client, adult_benchmark, artifact=(filename, data))
    assert response.status_code == 400, response.json()
    errors = response.json()["artifact"]
    assert message.lower() in " ".join(errors).lower()
    assert not Submission.objects.exists()


def test_a_pickle_refusal_says_why_and_how_to_export(api_client, adult_benchmark):
    response = post(api_client, adult_benchmark, artifact=("model.pkl", pickle.dumps([1])))
    message = response.json()["artifact"][0]
    assert "arbitrary code" in message and "skops" in message and "onnx" in message.lower()


def test_an_onnx_file_inside_a_skops_name_is_refused_as_mismatched(api_client, adult_benchmark, adult_baselines):
    onnx = baseline_named(adult_baselines, "onnx:")
    response = post(api_client, adult_benchmark, artifact=("model.skops", onnx.data))
    assert response.status_code == 400
    assert not Submission.objects.exists()


def test_a_skops_file_with_an_unlisted_type_names_the_type(api_client, adult_benchmark, adult_baselines):
    forest = baseline_named(adult_baselines, "Random forest")
    with zipfile.ZipFile(io.BytesIO(forest.data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    schema = files["schema.json"].decode().replace('"Tree"', '"EvilTree"', 1)
    files["schema.json"] = schema.encode()
    crafted = io.BytesIO()
    with zipfile.ZipFile(crafted, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    response = post(api_client, adult_benchmark, artifact=("model.skops", crafted.getvalue()))
    assert response.status_code == 400
    assert "sklearn.tree._tree.EvilTree" in response.json()["artifact"][0]


def test_an_oversized_artifact_is_refused_with_the_limit(api_client, adult_benchmark, adult_baselines, settings):
    settings.HOLDOUT_MAX_ARTIFACT_BYTES = 1000
    onnx = baseline_named(adult_baselines, "onnx:")
    response = post(api_client, adult_benchmark, artifact=(onnx.filename, onnx.data))
    assert response.status_code == 400
    assert "limit" in response.json()["artifact"][0]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"metadata": "{not json"}, "metadata"),
        ({"metadata": "[1, 2]"}, "metadata"),
        ({"metadata": json.dumps({"blob": "x" * 20000})}, "metadata"),
    ],
)
def test_it_names_a_bad_field(api_client, adult_benchmark, adult_baselines, fields, field):
    onnx = baseline_named(adult_baselines, "onnx:")
    response = post(api_client, adult_benchmark, artifact=(onnx.filename, onnx.data), **fields)
    assert response.status_code == 400
    assert field in response.json()


def test_a_missing_artifact_is_named(api_client, adult_benchmark):
    response = post(api_client, adult_benchmark)
    assert response.status_code == 400 and "artifact" in response.json()


def test_a_repeated_idempotency_key_returns_the_original_submission(api_client, adult_benchmark, adult_baselines):
    onnx = baseline_named(adult_baselines, "onnx:")
    first = post(api_client, adult_benchmark, artifact=(onnx.filename, onnx.data), headers={"Idempotency-Key": "ci-42"})
    again = post(api_client, adult_benchmark, artifact=(onnx.filename, onnx.data), headers={"Idempotency-Key": "ci-42"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Submission.objects.count() == 1


def test_the_schema_and_docs_are_served_locally(client, db):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/benchmarks/{slug}/submissions/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"cdn" not in docs.content.lower()


def test_an_unknown_api_path_is_a_json_404(client, db):
    response = client.get("/api/v1/submissions/not-a-uuid/")
    assert response.status_code == 404
    assert "see /api/docs/" in response.json()["detail"]
    page = client.get("/no/such/page/")
    assert page.status_code == 404 and b"See the benchmarks" in page.content


def test_a_submission_says_where_it_stands_once_it_has_succeeded(api_client, adult_benchmark, adult_baselines, user):
    import numpy as np

    from tests.conftest import succeeded_submission

    onnx = baseline_named(adult_baselines, "onnx:")

    def succeeded(name, metrics):
        flat = np.full(adult_benchmark.bootstrap_resamples, metrics["accuracy"])
        return succeeded_submission(
            adult_benchmark, user, onnx, name, metrics, baseline=True, resamples={"accuracy": flat}
        )

    succeeded("weaker", {"accuracy": 0.80, "latency_p99_ms": 0.5})
    stronger = succeeded("stronger", {"accuracy": 0.86, "latency_p99_ms": 2.0})
    queued = post(api_client, adult_benchmark, artifact=(onnx.filename, onnx.data)).json()
    assert queued["standing"] is None

    standing = api_client.get(f"/api/v1/submissions/{stronger.pk}/").json()["standing"]

    assert standing["rank"] == 1 and standing["ranked_count"] == 2 and standing["tied"] is False
    assert standing["unscored"] is None and isinstance(standing["score"], float)
    assert standing["objective_ranks"]["accuracy"] == {"rank": 1, "of": 2}
    assert standing["objective_ranks"]["latency_p99_ms"] == {"rank": 2, "of": 2}
    assert standing["rank_interval"] == [1, 1]

    # A byte-identical model: the same values on every resample, so neither is significantly better.
    twin = succeeded("twin", {"accuracy": 0.86, "latency_p99_ms": 2.0})
    for submission in (stronger, twin):
        standing = api_client.get(f"/api/v1/submissions/{submission.pk}/").json()["standing"]
        assert (standing["rank"], standing["rank_interval"], standing["tied"]) == (1, [1, 2], True)
    standing = api_client.get(f"/api/v1/submissions/{twin.pk}/").json()["standing"]
    assert standing["ranked_count"] == 3
