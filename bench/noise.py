"""How much of a board is noise: one model submitted again and again, quiet and with one core busy.

Starts its own service on the embedded default (SQLite, file broker; its own port and folder):
gunicorn, an evaluate worker and a latency worker, as `make run` does, with the Adult demo
benchmark and its five baselines (which set the utility bounds). Then, in two rounds, submits the
demo's logistic regression as skops and as ONNX (the same fitted pipeline) `--copies` times each:
first on the otherwise idle service, then while a background process keeps one core busy. Prints

- per objective, the spread of the point values across each format's copies (min, max, coefficient
  of variation), and whether skops and ONNX agree on the deterministic objectives;
- for every preset and method, whether every pair of copies of one format is tied (no copy is
  significantly better than another: on a board of the copies alone every rank is 1), and the ranks
  the copies get on the whole board;
- the latency p99 coefficient of variation per format, without and with the background load.

    .venv/bin/python bench/noise.py [--copies 5] [--rounds quiet,loaded]

Kills only the processes it started, by their ids.
"""

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from submit_to_result import PROJECT, PYTHON, free_port, manage, prepare  # noqa: E402

WAIT_SECONDS = 1800
# Objectives computed from the one prediction pass with seeded resamples: equal for equal predictions.
DETERMINISTIC_EVALUATORS = ["performance", "fairness", "interpretability"]
METHODS = ("utility", "dynascore", "winrate")
# The copies of one format agree on a deterministic objective when they differ by no more than this.
EQUAL_RELATIVE = 1e-6


def start_service(env: dict, port: int, var_dir: Path) -> list[subprocess.Popen]:
    log = open(var_dir / "services.log", "wb")

    def spawn(*arguments):
        return subprocess.Popen(
            [PYTHON, "-m", *arguments], cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    processes = [
        spawn("gunicorn", "leaderboard.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"),
        spawn("celery", "-A", "workers.app", "worker", "-Q", "evaluate", "--concurrency", "1",
              "--hostname", "evaluate@%h", "--loglevel", "WARNING"),
        spawn("celery", "-A", "workers.app", "worker", "-Q", "latency", "--concurrency", "1",
              "--hostname", "latency@%h", "--loglevel", "WARNING"),
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/api/v1/benchmarks/", timeout=2)
            return processes
        except requests.RequestException:
            time.sleep(0.2)
    stop(processes)
    raise SystemExit("the service did not answer within 60 s; see services.log")


def stop(processes: list[subprocess.Popen]) -> None:
    """A worker in the middle of an evaluation is not waited for: the bench is over."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for(port: int, token: str, ids: list[str]) -> list[dict]:
    deadline = time.monotonic() + WAIT_SECONDS
    done = {}
    while len(done) < len(ids):
        for submission_id in ids:
            if submission_id in done:
                continue
            body = requests.get(
                f"http://127.0.0.1:{port}/api/v1/submissions/{submission_id}/",
                headers={"Authorization": f"Token {token}"},
                timeout=10,
            ).json()
            if "status" not in body:
                raise SystemExit(f"GET submission {submission_id}: {body}")
            if body["status"] in ("succeeded", "failed"):
                done[submission_id] = body
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(ids) - len(done)} submissions did not finish within {WAIT_SECONDS} s")
        time.sleep(1)
    return [done[submission_id] for submission_id in ids]


def submit(port: int, token: str, baseline, name: str) -> str:
    response = requests.post(
        f"http://127.0.0.1:{port}/api/v1/benchmarks/adult/submissions/",
        headers={"Authorization": f"Token {token}"},
        files={"artifact": (baseline.filename, baseline.data)},
        data={"name": name},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["id"]


def baseline_ids(env: dict) -> list[str]:
    output = manage(
        env, "shell", "-c",
        "from leaderboard.models import Submission\n"
        "print(' '.join(str(pk) for pk in Submission.objects.filter(is_baseline=True).values_list('pk', flat=True)))",
    )
    return output.strip().splitlines()[-1].split()  # the shell's own notices come first


def round_of_copies(port: int, token: str, copies: dict, n: int, label: str) -> dict[str, list[dict]]:
    """Submit every format's copy n times, interleaved, and wait for all of them."""
    ids = {fmt: [] for fmt in copies}
    for index in range(n):
        for fmt, baseline in copies.items():
            ids[fmt].append(submit(port, token, baseline, f"{label} {fmt} copy {index + 1}"))
    results = wait_for(port, token, [i for fmt in copies for i in ids[fmt]])
    by_id = {result["id"]: result for result in results}
    failed = [result for result in results if result["status"] != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} copies failed: {failed[0]['error']}")
    return {fmt: [by_id[i] for i in ids[fmt]] for fmt in copies}


def spread_table(rounds: dict[str, dict[str, list[dict]]]) -> None:
    keys = sorted({key for results in rounds.values() for copies in results.values() for r in copies for key in r["metrics"]})
    print(f"\n{'round':<7} {'format':<6} {'objective':<30} {'min':>12} {'max':>12} {'CV':>8}  interval of the first copy")
    for (label, results), key in itertools.product(rounds.items(), keys):
        for fmt, copies in results.items():
            values = np.array([copy["metrics"].get(key, np.nan) for copy in copies], dtype=float)
            if np.isnan(values).all():
                continue
            cv = values.std(ddof=1) / abs(values.mean()) if values.mean() else 0.0
            interval = copies[0]["intervals"].get(key)
            shown = f"[{interval[0]:.4g}, {interval[1]:.4g}]" if interval else "exact"
            print(f"{label:<7} {fmt:<6} {key:<30} {values.min():>12.6g} {values.max():>12.6g} {cv:>8.2%}  {shown}")


def format_agreement(rounds) -> None:
    from leaderboard.objectives import objective_keys

    print("\nskops and ONNX on the deterministic objectives (largest difference over all copies):")
    for label, results in rounds.items():
        for key in objective_keys("binary", DETERMINISTIC_EVALUATORS):
            values = {fmt: [copy["metrics"].get(key) for copy in copies] for fmt, copies in results.items()}
            flat = [v for vs in values.values() for v in vs if v is not None]
            if not flat:
                continue
            difference = max(flat) - min(flat)
            within = all(v is not None for vs in values.values() for v in vs) and difference <= EQUAL_RELATIVE * max(
                1.0, max(abs(v) for v in flat)
            )
            print(f"  {label:<7} {key:<30} {difference:.3g}  {'equal' if within else 'DIFFERENT'}")


def tie_table(env: dict, port: int, rounds) -> None:
    """Every pair of one format's copies tied? On a board of the copies alone, every rank is 1."""
    code = r'''
import json, sys
import numpy as np
from leaderboard.boards import _ranked, benchmark_objectives, board_query_parse, objective_bounds
from leaderboard.board_columns import BoardColumns, board_columns
from leaderboard.models import Benchmark
request = json.loads(sys.stdin.read())
benchmark = Benchmark.objects.get(slug="adult")
objectives = benchmark_objectives(benchmark)
keys = [o.key for o in objectives]
columns = board_columns(benchmark, keys)
bounds = objective_bounds(benchmark, objectives, columns.values[columns.baseline])
answers = {}
for group, ids in request["groups"].items():
    rows = [columns.ids.index(__import__("uuid").UUID(i)) for i in ids]
    copies = BoardColumns(
        version=("copies", group), ids=[columns.ids[r] for r in rows], created=[columns.created[r] for r in rows],
        baseline=columns.baseline[rows], values=columns.values[rows], keys=keys, resample_count=columns.resample_count,
    )
    for key in keys:
        sampled = columns.resamples(benchmark, key)
        copies._resamples[key] = None if sampled is None else sampled[rows]
    for preset in request["presets"]:
        for method in request["methods"]:
            try:
                query = board_query_parse({"preset": preset, "method": method, "page_size": "100"}, benchmark)
                ranked, order = _ranked(benchmark, query, objectives, bounds, copies)
                ranks = [int(ranked.ranks[r]) for r in range(len(rows))]
                answers[f"{group}|{preset}|{method}"] = ranks
            except Exception as error:
                answers[f"{group}|{preset}|{method}"] = str(error)
print(json.dumps(answers))
'''
    presets = list(requests.get(f"http://127.0.0.1:{port}/api/v1/benchmarks/adult/leaderboard/", timeout=60).json()["presets"])
    groups = {f"{label} {fmt}": [copy["id"] for copy in copies] for label, results in rounds.items() for fmt, copies in results.items()}
    answers = json.loads(
        subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", code], cwd=PROJECT, env=env, check=True, capture_output=True,
            text=True, input=json.dumps({"groups": groups, "presets": presets, "methods": METHODS}),
        ).stdout.strip().splitlines()[-1]
    )
    print("\nEvery pair of one format's copies tied? (ranks on a board of the copies alone; all 1 = every pair tied)")
    print(f"{'copies':<14} {'preset':<20} " + " ".join(f"{m:<22}" for m in METHODS))
    all_tied = True
    for group in groups:
        for preset in presets:
            cells = []
            for method in METHODS:
                answer = answers[f"{group}|{preset}|{method}"]
                if isinstance(answer, str):
                    cells.append(f"n/a ({answer[:14]})")
                    continue
                tied = all(rank == 1 for rank in answer)
                all_tied &= tied
                cells.append(("tied " if tied else "NOT ") + ",".join(map(str, answer)))
            print(f"{group:<14} {preset:<20} " + " ".join(f"{cell:<22}" for cell in cells))
    print(f"every pair tied under every preset and method: {'yes' if all_tied else 'NO'}")
    print("\nRanks of the copies on the whole board (API, default page):")
    for preset, method in itertools.product(presets, METHODS):
        response = requests.get(
            f"http://127.0.0.1:{port}/api/v1/benchmarks/adult/leaderboard/",
            params={"preset": preset, "method": method, "page_size": 100}, timeout=60,
        )
        if response.status_code != 200:
            print(f"  {preset:<20} {method:<10} {response.status_code}: {response.json().get('detail', '')[:60]}")
            continue
        rank_of = {entry["submission"]["id"]: entry["rank"] for entry in response.json()["entries"]}
        shown = "  ".join(
            f"{group}: {sorted({rank_of.get(i) for i in ids}, key=lambda r: (r is None, r))}" for group, ids in groups.items()
        )
        print(f"  {preset:<20} {method:<10} {shown}")


def report_errors(rounds) -> None:
    """A copy whose evaluator failed has no figure for it: say which and why, rather than drop it silently."""
    failed = [
        (label, fmt, copy["name"], evaluator, error)
        for label, results in rounds.items()
        for fmt, copies in results.items()
        for copy in copies
        for evaluator, error in copy.get("report_errors", {}).items()
    ]
    if failed:
        print(f"\n{len(failed)} evaluator failures among the copies:")
        for label, fmt, name, evaluator, error in failed:
            print(f"  {label:<7} {fmt:<6} {name}: {evaluator}: {error}")


def p99_variation(rounds) -> None:
    print("\nlatency_p99_ms coefficient of variation across copies (target: at most 10% under load):")
    for fmt in next(iter(rounds.values())):
        cells = []
        for label, results in rounds.items():
            values = [copy["metrics"]["latency_p99_ms"] for copy in results[fmt] if "latency_p99_ms" in copy["metrics"]]
            if len(values) < 2:
                cells.append(f"{label} n/a ({len(values)} copies measured)")
                continue
            cells.append(
                f"{label} {statistics.stdev(values) / statistics.mean(values):.1%} "
                f"(median {statistics.median(values):.4g} ms, {len(values)} copies)"
            )
        print(f"  {fmt:<6} " + "   ".join(cells))


def dump_latency_reports(env: dict, rounds, path: Path) -> None:
    """{round: {format: [latency report document, ...]}}, to study what moves between sessions."""
    code = (
        "import json, sys\n"
        "from leaderboard.models import Report\n"
        "ids = json.loads(sys.stdin.read())\n"
        "documents = {str(r.submission_id): r.document for r in Report.objects.filter(submission_id__in=ids, evaluator='latency')}\n"
        "print(json.dumps(documents))"
    )
    ids = [copy["id"] for results in rounds.values() for copies in results.values() for copy in copies]
    documents = json.loads(
        subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", code], cwd=PROJECT, env=env, check=True, capture_output=True,
            text=True, input=json.dumps(ids),
        ).stdout.strip().splitlines()[-1]
    )
    dumped = {
        label: {fmt: [documents.get(copy["id"]) for copy in copies] for fmt, copies in results.items()}
        for label, results in rounds.items()
    }
    path.write_text(json.dumps(dumped))
    print(f"\nlatency report documents written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--rounds", default="quiet,loaded", help="quiet, loaded or both (comma-separated)")
    parser.add_argument("--dump", type=Path, help="write every copy's latency report document here (JSON)")
    options = parser.parse_args()
    sys.path.insert(0, str(PROJECT))
    from leaderboard.demo.baselines import train_baselines
    from leaderboard.demo.synthetic import ADULT_SPEC, adult_dataset

    linear = {b.filename: b for b in train_baselines(adult_dataset()[0], ADULT_SPEC)}
    copies = {"skops": linear["logistic_regression.skops"], "onnx": linear["logistic_regression.onnx"]}
    with tempfile.TemporaryDirectory(prefix="holdout-noise-") as folder:
        var_dir = Path(folder)
        env = prepare("embedded", var_dir)
        manage(env, "seed_demo", "--benchmarks", "adult")
        manage(env, "shell", "-c", "from django.contrib.auth.models import User; User.objects.create_user('bench', is_staff=True)")
        token = manage(env, "drf_create_token", "bench").split()[2]
        port = free_port()
        processes = start_service(env, port, var_dir)
        rounds = {}
        try:
            started = time.perf_counter()
            wait_for(port, token, baseline_ids(env))
            print(f"baselines evaluated in {time.perf_counter() - started:.0f} s")
            for label in options.rounds.split(","):
                load = None
                if label == "loaded":
                    load = subprocess.Popen([PYTHON, "-c", "while True: pass"], start_new_session=True)
                started = time.perf_counter()
                try:
                    rounds[label] = round_of_copies(port, token, copies, options.copies, label)
                finally:
                    if load is not None:
                        load.kill()
                        load.wait()
                print(f"round {label}: {2 * options.copies} copies evaluated in {time.perf_counter() - started:.0f} s")
            spread_table(rounds)
            format_agreement(rounds)
            report_errors(rounds)
            p99_variation(rounds)
            tie_table(env, port, rounds)
            if options.dump:
                dump_latency_reports(env, rounds, options.dump)
        finally:
            stop(processes)


if __name__ == "__main__":
    main()
