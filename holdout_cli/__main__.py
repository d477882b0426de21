"""`holdout`: submit a model to Holdout, wait for its evaluation and gate a CI build on the result.

Exit codes: 0 every gate passed (or nothing to gate), 1 a gate failed, 2 the evaluation failed or
did not finish within --timeout, 3 a usage, configuration, authentication or connection problem.
"""

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Mapping

from holdout_cli import __version__, output
from holdout_cli.client import ApiError, Client, ClientError, env_number
from holdout_cli.gates import GateError, MaxRegression, Threshold, keys_check, regression_parse, threshold_parse
from holdout_cli.metadata import MetadataError, ci_metadata, metadata_build, pairs_parse

EXIT_OK, EXIT_GATE_FAILED, EXIT_EVALUATION_FAILED, EXIT_USAGE = 0, 1, 2, 3
FINISHED = ("succeeded", "failed")
DEFAULT_TIMEOUT_SECONDS = 1800
LEADERBOARD_SCAN_SIZE = 500  # the API's largest page; where a submission stands when the server does not say

EPILOG = """\
environment:
  HOLDOUT_URL              the server, e.g. https://holdout.example.com (required)
  HOLDOUT_TOKEN            an API token (required to submit; reads work without one)
  HOLDOUT_RETRIES          retries of a request after a network error or a 502/503/504 (default 4)
  HOLDOUT_BACKOFF          first retry delay in seconds, doubled each retry, with jitter (default 1)
  HOLDOUT_POLL_INTERVAL    seconds between status checks while waiting (default 2)
  HOLDOUT_REQUEST_TIMEOUT  seconds to wait for one response (default 120)

exit codes:
  0  the evaluation succeeded and every gate passed (or, without --wait, the model was accepted)
  1  a gate failed; the output says which and by how much
  2  the evaluation failed (with its error), or did not finish within --timeout
  3  usage, configuration, authentication or connection problem (nothing was judged)
"""


NOISE_RULE = """\
gates and noise:
  Every sampled objective has a 95% interval. A gate whose line lies inside it (the threshold, or
  for --max-regression minus the allowed regression inside the paired interval of the difference)
  is "within noise": another draw of the test rows could turn the verdict. Such a gate is decided
  by the point estimate and reported with a warning; with --strict, by the pessimistic bound (the
  interval's low end for >= and >, its high end for <= and <). An exact objective (no interval,
  e.g. size_bytes) is decided by its value and is never within noise. --max-regression compares
  this submission with the reference resample by resample on the benchmark's shared resamples
  (the server computes the paired difference and its interval). The server judges every gate;
  GET /api/v1/submissions/{id}/?gates=...&strict=true gives the same verdicts without the client.
"""


class Usage(Exception):
    """The command line asks for something impossible: exit code 3, before anything is uploaded."""


class Parser(argparse.ArgumentParser):
    # argparse exits 2 on a bad command line, which here means "the evaluation failed".
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parser_build() -> Parser:
    parser = Parser(
        prog="holdout",
        description="Submit models to a Holdout server and gate builds on their evaluation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"holdout {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    submit = commands.add_parser(
        "submit",
        help="upload a model, optionally wait for its evaluation and check gates",
        description="Upload a model (.onnx or .skops). With --wait, a gate or --compare-to, wait for the "
        "evaluation, print every objective with its interval and rank, and check the gates.",
        epilog=NOISE_RULE + "\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument("benchmark", metavar="BENCHMARK", help="the benchmark's slug, e.g. adult")
    submit.add_argument("model_file", metavar="MODEL_FILE", help="the model: an .onnx or .skops file")
    submit.add_argument("--name", required=True, help="the submission's name on the leaderboard")
    submit.add_argument("--description", default="", help="free text shown on the submission page")
    submit.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="stored with the submission; repeatable; wins over the CI metadata the client adds",
    )
    submit.add_argument(
        "--no-ci-metadata",
        action="store_true",
        help="do not add the git commit and CI run (GitHub Actions, GitLab CI, GIT_COMMIT, git rev-parse HEAD)",
    )
    submit.add_argument("--wait", action="store_true", help="wait for the evaluation (implied by gates)")
    submit.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"give up waiting after this long with exit code 2; the evaluation goes on (default {DEFAULT_TIMEOUT_SECONDS})",
    )
    submit.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="KEY>=N",
        help="a threshold on an objective: KEY>=N, KEY<=N, KEY>N or KEY<N; repeatable",
    )
    submit.add_argument(
        "--compare-to",
        metavar="best|SUBMISSION_ID",
        help="the reference for --max-regression: the leader of the default leaderboard (other than this "
        "submission) or a named submission",
    )
    submit.add_argument(
        "--max-regression",
        action="append",
        default=[],
        metavar="OBJECTIVE=DELTA",
        help="how much worse than the reference this submission may be, in the objective's direction, judged on "
        "the paired difference and its 95%% interval; repeatable",
    )
    submit.add_argument(
        "--strict",
        action="store_true",
        help="decide a gate within noise by the pessimistic end of its 95%% interval, not the point estimate "
        "(see 'gates and noise' below)",
    )
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="sent with the upload (default: a new random key per run); the same key returns the same submission",
    )
    submit.add_argument("--json", action="store_true", help="print one JSON document on stdout and nothing else")
    submit.set_defaults(run=submit_command)

    status = commands.add_parser("status", help="a submission's status, objectives and ranks")
    status.add_argument("id", metavar="ID", help="the submission's id")
    status.add_argument("--json", action="store_true", help="print the submission as JSON")
    status.set_defaults(run=status_command)

    board = commands.add_parser("leaderboard", help="a benchmark's ranked submissions")
    board.add_argument("benchmark", metavar="BENCHMARK")
    board.add_argument("--weights", help="e.g. accuracy:4,latency_p99_ms:1 (default: the benchmark's)")
    board.add_argument("--constraints", help="e.g. latency_p99_ms<=10,demographic_parity_difference<=0.1")
    board.add_argument("--method", choices=["utility", "dynascore", "winrate"])
    board.add_argument("--preset", help="a stakeholder preset, e.g. product-manager")
    board.add_argument("--pareto", action="store_true", help="only the submissions on the Pareto frontier")
    board.add_argument("--top", type=int, metavar="N", help="how many entries (at most 500)")
    board.add_argument("--json", action="store_true", help="print the API's document")
    board.set_defaults(run=leaderboard_command)

    benchmarks = commands.add_parser("benchmarks", help="the benchmarks on the server")
    benchmarks.add_argument("--json", action="store_true", help="print the API's document")
    benchmarks.set_defaults(run=benchmarks_command)
    return parser


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    args = parser_build().parse_args(argv)
    try:
        return args.run(args, environ)
    except (Usage, ClientError, GateError, MetadataError) as error:
        return error_report(args, str(error))
    except KeyboardInterrupt:
        print("holdout: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader stopped early (`| head`): silence the flush at exit, which would fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_USAGE


def error_report(args, message: str) -> int:
    print(f"holdout: error: {message}", file=sys.stderr)
    if args.json:
        emit_json({"outcome": "error", "exit_code": EXIT_USAGE, "error": message})
    return EXIT_USAGE


def emit_json(document: dict) -> None:
    print(json.dumps(document, indent=2))


def info(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- submit -----------------------------------------------------------------------------------


def submit_command(args, environ: Mapping[str, str]) -> int:
    thresholds = [threshold_parse(text) for text in args.gate]
    regressions = [regression_parse(text) for text in args.max_regression]
    if regressions and not args.compare_to:
        raise Usage("--max-regression needs --compare-to best or --compare-to SUBMISSION_ID")
    if args.compare_to and not regressions:
        raise Usage("--compare-to needs at least one --max-regression OBJECTIVE=DELTA")
    if args.strict and not (thresholds or regressions):
        raise Usage("--strict needs a --gate or a --max-regression to decide")
    if args.timeout is not None and args.timeout <= 0:
        raise Usage("--timeout must be a positive number of seconds")
    artifact = model_read(args.model_file)
    explicit = pairs_parse(args.metadata)
    metadata = metadata_build({} if args.no_ci_metadata else ci_metadata(environ), explicit)
    client = Client.from_env(environ, token_required=True)

    benchmark = benchmark_get(client, args.benchmark)
    keys_check([gate.key for gate in thresholds + regressions], benchmark["objectives"], benchmark["slug"])
    named_reference = None
    if args.compare_to and args.compare_to != "best":
        # Checked before the upload, so a typo costs no evaluation.
        named_reference = reference_named(client, args.compare_to, benchmark["slug"])

    key = args.idempotency_key or str(uuid.uuid4())
    submission, replayed = client.submit(
        benchmark["slug"],
        filename=Path(args.model_file).name,
        artifact=artifact,
        fields={"name": args.name, "description": args.description, "metadata": json.dumps(metadata)},
        idempotency_key=key,
    )
    verb = "Found the submission this Idempotency-Key already made" if replayed else "Uploaded"
    info(f"{verb}: {submission['name']} ({submission['id']}) on {benchmark['slug']}, {submission['status']}")
    document = {"idempotency_key": key, "replayed": replayed}

    if not (args.wait or thresholds or regressions or args.timeout is not None):
        return submit_finish(
            args, EXIT_OK, "submitted", submission, document, f"Follow it: holdout status {submission['id']}"
        )

    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT_SECONDS
    submission = submission_wait(client, submission, timeout=timeout, environ=environ)
    if submission["status"] not in FINISHED:
        message = (
            f"the evaluation did not finish within {timeout:g} s (it is {output.progress_text(submission)}); "
            f"it goes on: holdout status {submission['id']}"
        )
        return submit_finish(args, EXIT_EVALUATION_FAILED, "timeout", submission, document, message)
    if submission["status"] == "failed":
        message = f"the evaluation failed at stage {submission.get('stage') or '?'}: {submission.get('error')}"
        return submit_finish(args, EXIT_EVALUATION_FAILED, "evaluation_failed", submission, document, message)

    standing = standing_get(client, submission)
    reference = named_reference
    if args.compare_to == "best":
        reference = reference_best(client, benchmark["slug"], exclude=submission["id"])
    verdicts = threshold_verdicts(client, submission, thresholds, strict=args.strict)
    comparison = None
    if reference is not None:
        comparison = compare_get(client, submission, reference, regressions, strict=args.strict)
        verdicts += comparison["regressions"]["verdicts"]
    elif regressions:
        verdicts += [regression_unchecked(gate, submission) for gate in regressions]
    failed = [verdict for verdict in verdicts if not verdict["passed"]]
    document.update(standing=standing, reference=reference, comparison=comparison, strict=args.strict, gates=verdicts)
    if not args.json:
        print(output.submission_header(submission))
        print()
        print(output.objectives_table(submission, benchmark["objectives"], standing))
        print(output.standing_text(standing))
        guarded = output.holdout_text(submission)
        if guarded:
            print(guarded)
        if verdicts:
            print()
            print(output.gates_text(verdicts, strict=args.strict))
    if failed:
        message = f"{len(failed)} of {len(verdicts)} gate(s) failed: " + "; ".join(v["reason"] for v in failed)
        return submit_finish(args, EXIT_GATE_FAILED, "gates_failed", submission, document, message, shown=True)
    message = f"all {len(verdicts)} gate(s) passed" if verdicts else "evaluated; no gates to check"
    for label, state in (("within noise", True), ("noise unknown", None)):
        unsure = [v["gate"] for v in verdicts if v["within_noise"] is state and v["warning"]]
        if unsure:
            message += f"; {label}: {', '.join(unsure)}"
    return submit_finish(args, EXIT_OK, "passed", submission, document, message, shown=True)


def submit_finish(args, code: int, outcome: str, submission: dict, document: dict, message: str, shown=False) -> int:
    """The verdict: the JSON document, or (for people) the submission if not yet shown and one last line."""
    if args.json:
        emit_json({"outcome": outcome, "exit_code": code, "message": message, "submission": submission, **document})
        return code
    if not shown:
        print(output.submission_header(submission))
    stream = sys.stdout if code == EXIT_OK else sys.stderr
    print(f"\n{'Result' if code != EXIT_EVALUATION_FAILED else 'Error'}: {message}", file=stream)
    return code


def model_read(path_text: str) -> bytes:
    path = Path(path_text)
    if not path.is_file():
        raise Usage(f"{path_text}: no such file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise Usage(f"{path_text}: {error.strerror}") from None


def submission_wait(client: Client, submission: dict, *, timeout: float, environ: Mapping[str, str]) -> dict:
    """Poll until the evaluation finishes or `timeout` passes; returns the last submission seen."""
    interval = env_number(environ, "HOLDOUT_POLL_INTERVAL", float, default=2.0, minimum=0.05)
    deadline = time.monotonic() + timeout
    progress = output.Progress()
    try:
        while submission["status"] not in FINISHED:
            progress.update(submission)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(interval, remaining))
            submission = client.get(f"/api/v1/submissions/{submission['id']}/")
    finally:
        progress.done()
    return submission


def benchmark_get(client: Client, slug: str) -> dict:
    try:
        return client.get(f"/api/v1/benchmarks/{slug}/")
    except ApiError as error:
        if error.status == 404:
            raise Usage(f"there is no benchmark {slug!r}; `holdout benchmarks` lists them") from None
        raise


def reference_named(client: Client, submission_id: str, slug: str) -> dict:
    try:
        reference = client.get(f"/api/v1/submissions/{submission_id}/")
    except ApiError as error:
        if error.status == 404:
            raise Usage(f"--compare-to {submission_id}: there is no such submission") from None
        raise
    if reference["benchmark"] != slug:
        raise Usage(f"--compare-to {submission_id}: that submission is on {reference['benchmark']}, not {slug}")
    if reference["status"] != "succeeded":
        raise Usage(f"--compare-to {submission_id}: that submission has not succeeded (it is {reference['status']})")
    return {"source": "submission", "id": reference["id"], "name": reference["name"], "metrics": reference["metrics"]}


def reference_best(client: Client, slug: str, *, exclude: str) -> dict | None:
    """The leader of the default leaderboard other than the candidate, or None on an empty board."""
    board = client.get(f"/api/v1/benchmarks/{slug}/leaderboard/", params={"page_size": "2"})
    for entry in board["entries"]:
        if entry["submission"]["id"] != exclude:
            submission = entry["submission"]
            return {"source": "best", "id": submission["id"], "name": submission["name"], "metrics": entry["metrics"]}
    return None


def threshold_verdicts(client: Client, submission: dict, thresholds: list[Threshold], *, strict: bool) -> list[dict]:
    """The server's verdicts on the thresholds: it has the intervals, and one rule judges for everyone."""
    if not thresholds:
        return []
    judged = client.get(
        f"/api/v1/submissions/{submission['id']}/",
        params={"gates": ",".join(str(gate) for gate in thresholds), "strict": "true" if strict else "false"},
    )
    if not judged.get("gates"):
        raise ClientError(f"{client.base_url} does not judge gates (it is older than this client); upgrade the server")
    return judged["gates"]["verdicts"]


def compare_get(client: Client, submission: dict, reference: dict, regressions: list[MaxRegression], *, strict: bool):
    """The paired comparison with the reference, with the server's verdicts on the allowed regressions."""
    return client.get(
        f"/api/v1/submissions/{submission['id']}/compare/{reference['id']}/",
        params={"max_regression": ",".join(str(gate) for gate in regressions), "strict": "true" if strict else "false"},
    )


def regression_unchecked(gate: MaxRegression, submission: dict) -> dict:
    # The first model on a benchmark has nothing to regress from; failing it would keep the board empty.
    return {
        "gate": gate.label(),
        "kind": "regression",
        "key": gate.key,
        "passed": True,
        "value": submission["metrics"].get(gate.key),
        "interval": None,
        "limit": gate.delta,
        "within_noise": None,
        "decided_by": None,
        "margin": None,
        "reason": "no other ranked submission on the leaderboard to compare with",
        "warning": "",
        "reference_value": None,
        "difference": None,
    }


def standing_get(client: Client, submission: dict) -> dict | None:
    """Where the submission ranks: the server's `standing` when it sends one, else found on the board."""
    if "standing" in submission:
        return submission["standing"]
    try:
        board = client.get(
            f"/api/v1/benchmarks/{submission['benchmark']}/leaderboard/",
            params={"page_size": str(LEADERBOARD_SCAN_SIZE)},
        )
    except ClientError:
        return None  # the rank is a nicety; the verdict does not depend on it
    for entry in board["entries"]:
        if entry["submission"]["id"] == submission["id"]:
            return {
                "rank": entry["rank"],
                "tied": entry.get("tied", False),
                "ranked_count": board.get("ranked_count"),
                "score": entry.get("score"),
                "score_interval": entry.get("score_interval"),
                "unscored": None,
                "objective_ranks": {},
            }
    return None


# --- reads ------------------------------------------------------------------------------------


def status_command(args, environ: Mapping[str, str]) -> int:
    client = Client.from_env(environ, token_required=False)
    try:
        submission = client.get(f"/api/v1/submissions/{args.id}/")
    except ApiError as error:
        if error.status == 404:
            raise Usage(f"there is no submission {args.id}") from None
        raise
    standing = standing_get(client, submission) if submission["status"] == "succeeded" else None
    if args.json:
        emit_json({**submission, "standing": standing})
        return EXIT_OK
    print(output.submission_header(submission))
    if submission["status"] == "succeeded":
        benchmark = benchmark_get(client, submission["benchmark"])
        print()
        print(output.objectives_table(submission, benchmark["objectives"], standing))
        print(output.standing_text(standing))
        guarded = output.holdout_text(submission)
        if guarded:
            print(guarded)
    return EXIT_OK


def leaderboard_command(args, environ: Mapping[str, str]) -> int:
    client = Client.from_env(environ, token_required=False)
    params = {
        name: value
        for name, value in (
            ("weights", args.weights),
            ("constraints", args.constraints),
            ("method", args.method),
            ("preset", args.preset),
            ("pareto", "1" if args.pareto else None),
            ("page_size", str(args.top) if args.top else None),
        )
        if value is not None
    }
    try:
        board = client.get(f"/api/v1/benchmarks/{args.benchmark}/leaderboard/", params=params)
    except ApiError as error:
        if error.status == 404:
            raise Usage(f"there is no benchmark {args.benchmark!r}; `holdout benchmarks` lists them") from None
        raise
    if args.json:
        emit_json(board)
    else:
        print(output.leaderboard_table(board))
    return EXIT_OK


def benchmarks_command(args, environ: Mapping[str, str]) -> int:
    benchmarks = Client.from_env(environ, token_required=False).get("/api/v1/benchmarks/")
    if args.json:
        emit_json(benchmarks)
    else:
        print(output.benchmarks_table(benchmarks))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
