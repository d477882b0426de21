"""The `holdout` command-line client, run as the installed executable against the live server and a
real Celery worker (and, for the network failures a live server cannot stage, a tiny local server)."""

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from leaderboard.models import Submission
from tests.conftest import baseline_named
from tests.test_evaluation import onnx_with_inputs

HOLDOUT = Path(sys.executable).with_name("holdout")
# Variables of the CI the tests may themselves run in: the client would put them into submissions.
CI_VARIABLE_PREFIXES = ("GITHUB_", "GITLAB_", "CI_", "GIT_", "BUILD_URL", "HOLDOUT_")


def holdout(*args: str, url: str | None, token: str | None = None, env: dict | None = None, cwd=None):
    assert HOLDOUT.exists(), f"{HOLDOUT} is missing: run scripts/setup.sh"
    environ = {name: value for name, value in os.environ.items() if not name.startswith(CI_VARIABLE_PREFIXES)}
    environ.update(HOLDOUT_POLL_INTERVAL="0.25", HOLDOUT_BACKOFF="0.05", HOLDOUT_RETRIES="2")
    if url:
        environ["HOLDOUT_URL"] = url
    if token:
        environ["HOLDOUT_TOKEN"] = token
    environ.update(env or {})
    return subprocess.run(
        [str(HOLDOUT), *args], env=environ, cwd=cwd, capture_output=True, text=True, timeout=240, check=False
    )


@pytest.fixture
def token(user):
    return Token.objects.create(user=user).key


def model_file(tmp_path: Path, filename: str, data: bytes) -> str:
    path = tmp_path / filename
    path.write_bytes(data)
    return str(path)


def test_gates_pass_with_exit_0_fail_with_exit_1_and_the_margin_and_a_repeated_key_returns_the_same_submission(
    live_server, celery_worker, token, adult_benchmark, adult_baselines, tmp_path
):
    good = baseline_named(adult_baselines, "onnx:")
    github = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SHA": "0123456789abcdef",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_RUN_ID": "42",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/churn",
    }
    passed = holdout(
        "submit",
        "adult",
        model_file(tmp_path, good.filename, good.data),
        "--name",
        "candidate",
        "--gate",
        "accuracy>=0.8",
        "--gate",
        "latency_p99_ms <= 10000",
        "--compare-to",
        "best",
        "--max-regression",
        "accuracy=0.01",
        "--metadata",
        "team=churn",
        "--metadata",
        "git_ref=release",
        url=live_server.url,
        token=token,
        env=github,
        cwd=tmp_path,
    )
    assert passed.returncode == 0, passed.stderr
    for text in (
        "succeeded",
        "95% interval",
        "roc_auc",
        "latency_p99_ms",
        "PASS  accuracy>=0.8",
        "no other ranked submission",
        "Rank on the default leaderboard: 1",
    ):
        assert text in passed.stdout
    good_submission = Submission.objects.get(name="candidate")
    assert good_submission.metadata == {
        "ci": "github-actions",
        "git_sha": "0123456789abcdef",
        "git_ref": "release",
        "ci_repository": "acme/churn",
        "ci_run_id": "42",
        "ci_run_url": "https://github.com/acme/churn/actions/runs/42",
        "team": "churn",
    }

    weak = baseline_named(adult_baselines, "Majority class")
    weak_path = model_file(tmp_path, weak.filename, weak.data)
    failed = holdout(
        "submit",
        "adult",
        weak_path,
        "--name",
        "weak",
        "--json",
        "--idempotency-key",
        "ci-run-42",
        "--gate",
        "accuracy>=0.9",
        "--gate",
        "accuracy>=0.5",
        "--compare-to",
        "best",
        "--max-regression",
        "accuracy=0.01",
        url=live_server.url,
        token=token,
        cwd=tmp_path,
    )
    assert failed.returncode == 1, failed.stderr
    document = json.loads(failed.stdout)
    weak_accuracy, good_accuracy = document["submission"]["metrics"]["accuracy"], good_submission.metrics["accuracy"]
    assert document["outcome"] == "gates_failed" and document["exit_code"] == 1
    assert document["reference"]["id"] == str(good_submission.pk)
    short, fine, regression = document["gates"]
    assert not short["passed"] and short["margin"] == pytest.approx(0.9 - weak_accuracy)
    assert fine["passed"]
    assert not regression["passed"] and regression["margin"] == pytest.approx(good_accuracy - weak_accuracy - 0.01)
    assert f"short by {0.9 - weak_accuracy:.4f}" in short["reason"]

    # The same key again (a retried CI job) evaluates nothing new: the gates are checked on the original.
    replayed = holdout(
        "submit",
        "adult",
        weak_path,
        "--name",
        "weak",
        "--idempotency-key",
        "ci-run-42",
        "--compare-to",
        "best",
        "--max-regression",
        "accuracy=0.2",
        url=live_server.url,
        token=token,
        cwd=tmp_path,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert document["submission"]["id"] in replayed.stderr and "already made" in replayed.stderr
    assert "PASS  accuracy max regression 0.2" in replayed.stdout
    assert Submission.objects.count() == 2

    against_named = holdout(
        "submit",
        "adult",
        weak_path,
        "--name",
        "weak",
        "--idempotency-key",
        "ci-run-42",
        "--compare-to",
        str(good_submission.pk),
        "--max-regression",
        "accuracy=0.01",
        url=live_server.url,
        token=token,
        cwd=tmp_path,
    )
    assert against_named.returncode == 1
    assert "FAIL  accuracy max regression 0.01" in against_named.stdout and "over by" in against_named.stderr

    status = holdout("status", str(good_submission.pk), url=live_server.url)
    assert status.returncode == 0, status.stderr
    assert all(key in status.stdout for key in adult_benchmark.objectives)
    board = holdout("leaderboard", "adult", "--weights", "accuracy:1", url=live_server.url)
    assert board.returncode == 0, board.stderr
    assert board.stdout.index("candidate") < board.stdout.index("weak")
    listed = holdout("benchmarks", "--json", url=live_server.url)
    assert [b["slug"] for b in json.loads(listed.stdout)] == ["adult"]


def test_a_broken_model_exits_2_with_the_evaluations_error(
    live_server, celery_worker, token, adult_benchmark, tmp_path
):
    broken = model_file(tmp_path, "wrong.onnx", onnx_with_inputs(["salary", "age"]))
    result = holdout(
        "submit",
        "adult",
        broken,
        "--name",
        "wrong",
        "--wait",
        "--gate",
        "accuracy>=0.8",
        url=live_server.url,
        token=token,
    )
    assert result.returncode == 2
    assert "failed at stage predicting" in result.stderr and "salary" in result.stderr


def test_usage_configuration_and_authentication_problems_exit_3_before_anything_is_uploaded(
    live_server, broker, token, adult_benchmark, tmp_path
):
    model = model_file(tmp_path, "model.onnx", onnx_with_inputs(["age"]))
    url = live_server.url

    def submit(*extra, **kwargs):
        return holdout("submit", "adult", model, "--name", "m", *extra, **{"url": url, "token": token, **kwargs})

    assert holdout(url=url).returncode == 3
    assert "HOLDOUT_URL is not set" in holdout("benchmarks", url=None).stderr
    unknown = submit("--gate", "accuracyy>=0.8")
    assert unknown.returncode == 3
    assert "accuracyy is not an objective of benchmark adult" in unknown.stderr and "latency_p99_ms" in unknown.stderr
    assert "cannot read gate" in submit("--gate", "accuracy=>0.8").stderr
    assert "--max-regression needs --compare-to" in submit("--max-regression", "accuracy=0.01").stderr
    assert submit("--compare-to", "best", "--max-regression", "accurate=0.01").returncode == 3
    missing = holdout("submit", "adult", str(tmp_path / "nope.onnx"), "--name", "m", url=url, token=token)
    assert missing.returncode == 3 and "no such file" in missing.stderr
    assert "no benchmark 'nope'" in holdout("submit", "nope", model, "--name", "m", url=url, token=token).stderr
    bad_token = submit(token="not-a-token")
    assert bad_token.returncode == 3 and "the server answered 401" in bad_token.stderr
    as_json = submit("--json", token="not-a-token")
    assert json.loads(as_json.stdout) == {
        "outcome": "error",
        "exit_code": 3,
        "error": bad_token.stderr.split("error: ", 1)[1].strip(),
    }
    assert Submission.objects.count() == 0

    # No worker runs in this test, so the evaluation cannot finish in time.
    late = submit("--wait", "--timeout", "0.5")
    assert late.returncode == 2 and "did not finish within 0.5 s" in late.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_server_exits_3_after_the_retries(tmp_path):
    result = holdout("benchmarks", url=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 3
    assert result.stderr.count("retrying in") == 2 and "after 3 attempt(s)" in result.stderr
    assert "Connection refused" in result.stderr


class FlakyServer(ThreadingHTTPServer):
    """Stages what a live server cannot: a lost response, a 503 from a proxy, a quota's 429."""

    def __init__(self, script: list[str]):
        super().__init__(("127.0.0.1", 0), FlakyHandler)
        self.script = script  # what each upload attempt meets: "drop", "503", "429" or "answer"
        self.keys: list[str] = []
        self.created: dict[str, dict] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FlakyHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.reply(200, {"slug": "demo", "objectives": [{"key": "accuracy", "direction": "higher"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers["Idempotency-Key"]
        server = self.server
        server.keys.append(key)
        # Like the API: the first request with a key creates the submission, a repeat returns it.
        replayed = key in server.created
        submission = server.created.setdefault(
            key, {"id": f"submission-{len(server.created) + 1}", "name": "m", "benchmark": "demo", "status": "queued"}
        )
        step = server.script[len(server.keys) - 1] if len(server.keys) <= len(server.script) else "answer"
        if step == "drop":
            self.close_connection = True  # the submission exists, its response is lost
        elif step in ("503", "429"):
            self.reply(int(step), {"detail": "busy"}, {"Retry-After": "60"})
        else:
            self.reply(202, submission, {"Idempotent-Replayed": "true"} if replayed else {})

    def reply(self, status: int, body: dict, headers: dict | None = None):
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {
            "Content-Type": "application/json",
            "Content-Length": str(len(data)),
            **(headers or {}),
        }.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def flaky_server(request):
    server = FlakyServer(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("flaky_server", [["drop", "503"]], indirect=True)
def test_a_retried_upload_sends_the_same_key_and_gets_the_one_submission_back(flaky_server, tmp_path):
    model = model_file(tmp_path, "model.onnx", b"model bytes")
    result = holdout("submit", "demo", model, "--name", "m", "--json", url=flaky_server.url, token="t")
    assert result.returncode == 0, result.stderr
    assert len(flaky_server.keys) == 3 and len(set(flaky_server.keys)) == 1
    assert list(flaky_server.created.values()) == [json.loads(result.stdout)["submission"]]
    assert json.loads(result.stdout)["replayed"] is True
    assert "Remote end closed connection" in result.stderr and "answered 503" in result.stderr


@pytest.mark.parametrize("flaky_server", [["429"]], indirect=True)
def test_an_upload_over_quota_is_not_retried_and_exits_3_with_when_to_retry(flaky_server, tmp_path):
    model = model_file(tmp_path, "model.onnx", b"model bytes")
    result = holdout("submit", "demo", model, "--name", "m", url=flaky_server.url, token="t")
    assert result.returncode == 3
    assert "the server answered 429: busy (retry after 60 s)" in result.stderr
    assert len(flaky_server.keys) == 1


def test_the_client_imports_nothing_of_the_servers_stack():
    code = (
        "import sys, holdout_cli.__main__; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'numpy', 'pandas', 'leaderboard', 'api'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_regression_of_exactly_the_allowance_passes_and_direction_decides_what_worse_means():
    from holdout_cli.gates import regression_check, regression_parse, threshold_check, threshold_parse

    accuracy = regression_parse("accuracy=0.01")
    assert regression_check(
        accuracy, {"accuracy": 0.85}, {"accuracy": 0.86}, higher_better=True, reference_label="r"
    ).passed
    latency = regression_parse("latency_p99_ms=1")
    slower = regression_check(
        latency, {"latency_p99_ms": 7.5}, {"latency_p99_ms": 5}, higher_better=False, reference_label="r"
    )
    assert not slower.passed and slower.margin == pytest.approx(1.5) and "over by 1.5000" in slower.reason
    assert regression_check(
        latency, {"latency_p99_ms": 1}, {"latency_p99_ms": 5}, higher_better=False, reference_label="r"
    ).passed
    missing = threshold_check(threshold_parse("roc_auc>0.5"), {"accuracy": 0.9})
    assert not missing.passed and missing.reason == "roc_auc was not measured"
