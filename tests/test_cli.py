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
from tests.test_guarded import guarded_benchmark  # noqa: F401 (a fixture)
from tests.environment import PROJECT_DIR
from tests.test_evaluation import onnx_with_inputs

HOLDOUT = Path(sys.executable).with_name("holdout")
# Variables of the CI the tests may themselves run in: the client would put them into submissions.
CI_VARIABLE_PREFIXES = ("GITHUB_", "GITLAB_", "CI_", "GIT_", "BUILD_URL", "HOLDOUT_")


def holdout(*args: str, url: str | None, token: str | None = None, env: dict | None = None, cwd=None):
    assert HOLDOUT.exists(), f"{HOLDOUT} is missing: run scripts/setup.sh"
    environ = {name: value for name, value in os.environ.items() if not name.startswith(CI_VARIABLE_PREFIXES)}
    environ.update(HOLDOUT_POLL_INTERVAL="0.25", HOLDOUT_BACKOFF="0.05", HOLDOUT_RETRIES="2")
    # The installed executable with this checkout's client, whichever checkout the shared virtualenv was installed from.
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR), environ.get("PYTHONPATH")]))
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
    assert f"short by {0.9 - weak_accuracy:.6g}" in short["reason"] and short["decided_by"] == "point"
    assert regression["difference"] == pytest.approx(weak_accuracy - good_accuracy)
    assert regression["within_noise"] is False and regression["interval"][1] < 0

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


def test_a_gate_within_noise_passes_on_the_point_estimate_and_fails_with_strict_on_the_pessimistic_bound(
    live_server, celery_worker, token, adult_benchmark, adult_baselines, tmp_path
):
    good = baseline_named(adult_baselines, "onnx:")
    good_path = model_file(tmp_path, good.filename, good.data)

    def submit(path, name, *gates):
        # The name is the idempotency key: submitting a name again judges the evaluated submission anew.
        result = holdout(
            "submit", "adult", path, "--name", name, "--idempotency-key", name, *gates, url=live_server.url, token=token
        )
        return result, (json.loads(result.stdout) if "--json" in gates else None)

    far, document = submit(good_path, "good", "--json", "--gate", "accuracy>=0.5", "--gate", "size_bytes<=1e9")
    assert far.returncode == 0, far.stderr
    accuracy, size = document["gates"]
    assert accuracy["within_noise"] is False and accuracy["decided_by"] == "point" and accuracy["warning"] == ""
    assert size["within_noise"] is False and size["decided_by"] == "exact value" and size["interval"] is None
    stored = Submission.objects.get(name="good")
    point, (low, high) = stored.metrics["accuracy"], stored.intervals["accuracy"]
    assert accuracy["interval"] == pytest.approx([low, high]) and low < point
    inside = f"accuracy>={(low + point) / 2!r}"

    # The same key again: nothing is evaluated anew.
    noisy, _ = submit(good_path, "good", "--gate", inside)
    assert noisy.returncode == 0, noisy.stderr
    assert f"PASS  {inside}" in noisy.stdout and "! within noise" in noisy.stdout
    assert "decided by the point estimate" in noisy.stdout and f"within noise: {inside}" in noisy.stdout
    strict, document = submit(good_path, "good", "--json", "--strict", "--gate", inside, "--gate", "accuracy>=0.5")
    assert strict.returncode == 1, strict.stderr
    (failed, passed) = document["gates"]
    assert document["strict"] is True and not failed["passed"] and passed["passed"]
    assert failed["within_noise"] is True and failed["decided_by"] == "pessimistic bound"
    assert failed["margin"] == pytest.approx((low + point) / 2 - low)
    assert passed["within_noise"] is False and passed["decided_by"] == "pessimistic bound"

    # The same model again: on the shared resamples its paired difference is exactly 0 everywhere.
    twin, document = submit(
        good_path, "twin", "--json", "--compare-to", str(stored.pk), "--max-regression", "accuracy=0.001"
    )
    assert twin.returncode == 0, twin.stderr
    (regression,) = document["gates"]
    assert regression["difference"] == 0 and regression["interval"] == [0, 0] and regression["within_noise"] is False
    compared = {objective["key"]: objective for objective in document["comparison"]["objectives"]}
    for key in ("accuracy", "roc_auc", "log_loss", "demographic_parity_difference"):
        assert compared[key]["interval"] == [0, 0] and compared[key]["significant"] is False, key
    assert "size_bytes" in document["comparison"]["exact"]

    weak = baseline_named(adult_baselines, "Majority class")
    weak_path = model_file(tmp_path, weak.filename, weak.data)
    worse, document = submit(
        weak_path, "weak", "--json", "--compare-to", str(stored.pk), "--max-regression", "accuracy=0.01"
    )
    assert worse.returncode == 1, worse.stderr
    (regression,) = document["gates"]
    difference, (difference_low, difference_high) = regression["difference"], regression["interval"]
    assert difference_high < -0.01 and regression["within_noise"] is False and not regression["passed"]
    assert compared["accuracy"]["value"] - document["submission"]["metrics"]["accuracy"] == pytest.approx(-difference)
    allowance = f"accuracy={-(difference_low + difference) / 2!r}"  # minus it lies between the low end and the point
    lenient, document = submit(
        weak_path, "weak", "--json", "--compare-to", str(stored.pk), "--max-regression", allowance
    )
    assert lenient.returncode == 0, lenient.stderr
    assert document["gates"][0]["within_noise"] is True and document["gates"][0]["decided_by"] == "point"
    assert "within noise" in document["message"]
    strict, document = submit(
        weak_path, "weak", "--json", "--strict", "--compare-to", str(stored.pk), "--max-regression", allowance
    )
    assert strict.returncode == 1, strict.stderr
    assert document["gates"][0]["decided_by"] == "pessimistic bound" and not document["gates"][0]["passed"]
    assert Submission.objects.count() == 3


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
    assert "--strict needs a --gate or a --max-regression" in submit("--strict").stderr
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


def test_on_a_guarded_benchmark_submit_says_what_was_released_and_judges_gates_on_it(
    live_server, celery_worker, token, guarded_benchmark, adult_baselines, tmp_path
):
    benchmark, _, _ = guarded_benchmark
    model = baseline_named(adult_baselines, "onnx:")
    result = holdout(
        "submit",
        benchmark.slug,
        model_file(tmp_path, model.filename, model.data),
        "--name",
        "guarded-candidate",
        "--gate",
        "accuracy>=0.5",
        url=live_server.url,
        token=token,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for text in (
        "released",
        "Ladder",
        "rounded",
        "Guarded benchmark: scores on its public rows",
        "accuracy released: 0.8",
        "(first score released: 0.8",
        "holdout budget: 3 releases used (1 + 1 Ladder steps, 1 reports), no cap",
        "accuracy's interval is withheld on a guarded benchmark",
        "PASS  accuracy>=0.5: released accuracy is",
    ):
        assert text in result.stdout, (text, result.stdout[-600:])
