"""The adaptive leaderboard at 1,000, 10,000 and 100,000 submissions, side by side.

Creates one benchmark per size with that many succeeded submissions (realistic metrics for every
objective and stored paired resamples) in PostgreSQL, then prints, for each size in a column:
  - building the board's shared columns (leaderboard/column_store.py) the first time;
  - GET /api/v1/benchmarks/{slug}/leaderboard/ through Django (version check, ranking, a page of
    50 serialised) for the default weights, a preset, a preset with constraints, each method, a
    far page and the Pareto set: the first request of a fresh web process ("after a restart": a
    new Python process that loads the shared columns, and ranks with nothing memoised) and the
    median of --runs requests in a warm process, with the fastest-slowest;
  - the resident memory of those processes (the largest of the fresh ones; the warm one after all
    its requests);
  - rank_board alone (utility, dynascore, winrate) on the first, middle and last page, with the
    board's memo warm, and the first ranking of a weighted set (memo cold);
  - at sizes up to 10,000, a naive Python baseline that tests every pair (200 rows) and the
    all-pairs paired test (numpy, n^2 * B, extrapolated from 100 rows), the floors rank_board
    is measured against.
Times are milliseconds: the median and the fastest-slowest of the runs.

    .venv/bin/python bench/leaderboard.py                       # 1,000, 10,000 and 100,000
    .venv/bin/python bench/leaderboard.py --sizes 1000000 --runs 3
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
DATABASE = "holdout_bench_leaderboard"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

REQUESTS = {
    "default weights": "",
    "balanced preset": "?preset=balanced",
    "product-manager preset + constraints": "?preset=product-manager&constraints=latency_p99_ms%3C%3D10",
    "balanced preset, dynascore": "?preset=balanced&method=dynascore",
    "balanced preset, winrate": "?preset=balanced&method=winrate",
    "balanced preset, page 100": "?preset=balanced&page=100",
    "balanced preset, Pareto set only": "?preset=balanced&pareto=1",
}


def create_database() -> None:
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DATABASE], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DATABASE], check=True)


def timed_ms(function, runs: int) -> tuple[float, float, float]:
    """Median, fastest and slowest of `runs` runs after a warm-up, in milliseconds."""
    function()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times), max(times)


def once_ms(function) -> float:
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000


def realistic_metrics(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Metrics that trade off as on a real board: better models are bigger, slower and dearer."""
    skill = rng.beta(5, 2, n)
    size = np.exp(rng.normal(12 + 3 * skill, 1.0, n))
    latency = np.exp(rng.normal(-1 + 2.5 * skill, 0.6, n))
    accuracy = 0.76 + 0.12 * skill + rng.normal(0, 0.005, n)
    return {
        "accuracy": accuracy,
        "balanced_accuracy": accuracy - 0.08 + rng.normal(0, 0.01, n),
        "f1_macro": accuracy - 0.06 + rng.normal(0, 0.01, n),
        "roc_auc": 0.5 + 0.43 * skill + rng.normal(0, 0.005, n),
        "log_loss": 0.55 - 0.28 * skill + rng.normal(0, 0.01, n),
        "demographic_parity_difference": np.abs(0.05 + 0.15 * skill + rng.normal(0, 0.03, n)),
        "equalized_odds_difference": np.abs(0.05 + 0.2 * skill + rng.normal(0, 0.05, n)),
        "worst_group_accuracy": accuracy - 0.03 + rng.normal(0, 0.01, n),
        "accuracy_gap": np.abs(0.05 + 0.05 * skill + rng.normal(0, 0.01, n)),
        "shap_features_90": np.round(3 + 8 * skill + rng.normal(0, 1, n)).clip(1, 13),
        "sensitive_attribution_share": np.abs(rng.normal(0.05, 0.02, n)),
        "latency_p50_ms": latency,
        "latency_p90_ms": latency * 1.2,
        "latency_p95_ms": latency * 1.4,
        "latency_p99_ms": latency * 2.0,
        "throughput_rows_per_s": 1e6 / (latency * 40),
        "size_bytes": size,
        "n_parameters": size / 20,
        "cost_usd_per_million": latency * 1e-4,
    }


SAMPLED = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "roc_auc",
    "log_loss",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "worst_group_accuracy",
    "accuracy_gap",
)


def populate(n: int, slug: str):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from leaderboard.demo.seeding import benchmark_from_spec
    from leaderboard.demo.synthetic import ADULT_SPEC, adult_dataset
    from leaderboard.models import Submission

    owner, _ = get_user_model().objects.get_or_create(username="bench")
    train, test = adult_dataset()
    benchmark = benchmark_from_spec({**ADULT_SPEC, "slug": slug, "name": slug}, train.head(2000), test.head(2000))
    rng = np.random.default_rng(7)
    metrics = realistic_metrics(rng, n)
    resamples = benchmark.bootstrap_resamples
    rows = []
    # Paired resamples as a real benchmark gives them: every submission is scored on the same
    # resampled test rows, so most of a resample's deviation is shared (a hard resample is hard for
    # everyone) and only a small part is the submission's own.
    shared = rng.normal(0, 0.004, (len(SAMPLED), resamples))
    finished = timezone.now()
    for index in range(n):
        if len(rows) == 10_000:
            Submission.objects.bulk_create(rows, batch_size=1000)
            rows = []
        point = {key: float(values[index]) for key, values in metrics.items()}
        noise = shared + rng.normal(0, 0.0015, (len(SAMPLED), resamples))
        matrix = (np.array([[point[key]] for key in SAMPLED]) + noise).astype(np.float32)
        rows.append(
            Submission(
                benchmark=benchmark,
                owner=owner,
                name=f"model-{index:05d}",
                is_baseline=index < 5,
                artifact=f"artifacts/bench/{index}.onnx",
                artifact_sha256="0" * 64,
                artifact_bytes=int(point["size_bytes"]),
                artifact_format="onnx",
                status=Submission.Status.SUCCEEDED,
                stage="done",
                progress=1.0,
                metrics=point,
                resamples=matrix.tobytes(),
                resample_keys=list(SAMPLED),
                finished_at=finished - timedelta(seconds=n - index),
            )
        )
    Submission.objects.bulk_create(rows, batch_size=1000)
    from django.db import connection

    # As autovacuum does soon after a table grows by a fifth: without it the visibility map is
    # empty, and the index cannot answer the board's version question alone.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE leaderboard_submission")
    return benchmark


def resident_mb() -> tuple[float, float]:
    """This process's resident memory now and at its peak, in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM"))


def web_process(slug: str, runs: int, suffixes: list[str]) -> dict:
    """A new web process serving `suffixes` in turn, each `runs` + 1 times: see `serve`."""
    output = subprocess.run(
        [sys.executable, __file__, "--serve", slug, str(runs), *suffixes], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def serve(slug: str, runs: int, suffixes: list[str]) -> None:
    """Prints, as JSON: resident memory before the first request (Django, the API and numpy loaded), each
    request's first time and the median, fastest and slowest of `runs` more, and the memory after."""
    import django

    django.setup()
    from django.test import Client
    from django.urls import resolve

    resolve(f"/api/v1/benchmarks/{slug}/leaderboard/")  # imports the views, as a started server has
    floor, _ = resident_mb()
    client = Client()
    results = []
    for suffix in suffixes:
        url = f"/api/v1/benchmarks/{slug}/leaderboard/{suffix}"
        started = time.perf_counter()
        response = client.get(url)
        first = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.content[:500]
        results.append({"first": first, "warm": timed_ms(lambda url=url: client.get(url), runs) if runs else None})
    rss, peak = resident_mb()
    print(json.dumps({"floor": floor, "rss": rss, "peak": peak, "results": results}))


class Table:
    """Rows of figures with one column per board size."""

    def __init__(self, sizes):
        self.sizes, self.rows = sizes, {}

    def add(self, section: str, label: str, size: int, text: str) -> None:
        self.rows.setdefault(section, {}).setdefault(label, {})[size] = text

    def print(self) -> None:
        width = 26
        for section, rows in self.rows.items():
            print(f"\n{section:<52}" + "".join(f"{f'n = {size:,}':>{width}}" for size in self.sizes))
            for label, cells in rows.items():
                print(f"  {label:<50}" + "".join(f"{cells.get(size, '-'):>{width}}" for size in self.sizes))


def cell(times) -> str:
    median, fastest, slowest = times
    return f"{median:.0f} ({fastest:.0f}-{slowest:.0f})" if median >= 10 else f"{median:.1f} ({fastest:.1f}-{slowest:.1f})"


def measure(size: int, slug: str, runs: int, table: Table, baseline) -> None:
    from django.test import Client
    from django.utils import timezone

    from leaderboard.board_columns import _kept, board_columns
    from leaderboard.boards import benchmark_objectives, board_query_parse, objective_bounds, objective_specs
    from leaderboard.models import Benchmark, Submission
    from leaderboard.ranking import RankingMemo, rank_board

    benchmark = Benchmark.objects.get(slug=slug)
    objectives = benchmark_objectives(benchmark)
    keys = [o.key for o in objectives]
    started = time.perf_counter()
    columns = board_columns(benchmark, keys)
    table.add("shared columns", "first build (seal the blocks), ms", size, f"{(time.perf_counter() - started) * 1000:.0f}")

    api = "full API request, page of 50 (ms)"
    memory = "resident memory of a web process (MB)"
    largest = {"floor": 0.0, "rss": 0.0}
    for label, suffix in REQUESTS.items():
        served = web_process(slug, runs, [suffix])
        largest = {name: max(largest[name], served[name]) for name in largest}
        result = served["results"][0]
        table.add(api, f"{label}: first after a restart", size, f"{result['first']:.0f}")
        table.add(api, f"{label}: median warm", size, cell(result["warm"]))
    table.add(memory, "started, before its first request (the floor)", size, f"{largest['floor']:.0f}")
    table.add(memory, "after one kind of request, the largest", size, f"{largest['rss']:.0f}")
    every = web_process(slug, 1, list(REQUESTS.values()))
    table.add(memory, "after every kind of request above", size, f"{every['rss']:.0f} (peak {every['peak']:.0f})")

    client = Client()
    url = f"/api/v1/benchmarks/{slug}/leaderboard/?preset=balanced&method=winrate"
    assert client.get(url).status_code == 200
    latest = Submission.objects.filter(benchmark=benchmark).latest("created_at")
    latest.pk, latest.name, latest.created_at, latest.finished_at = None, "new", timezone.now(), timezone.now()
    latest.save()
    table.add(api, "winrate, first request after a new success", size, f"{once_ms(lambda: client.get(url)):.0f}")

    _kept.clear()
    columns = board_columns(benchmark, keys)
    values = np.array(columns.values)
    bounds = objective_bounds(benchmark, objectives, values[columns.baseline])
    specs = objective_specs(objectives, bounds)
    query = board_query_parse({"preset": "balanced"}, benchmark)
    weights = np.array([query.weights.get(o.key, 0.0) for o in objectives])
    resamples = [columns.resamples(benchmark, o.key) if w else None for o, w in zip(objectives, weights)]
    n = len(values)
    alone = "rank_board alone, balanced preset (ms)"
    pages = {"page 1": (0, 50), "middle page": (n // 2, n // 2 + 50), "last page": (n - 50, n)}
    for method in ("utility", "dynascore", "winrate"):
        def rank(memo, window, method=method):
            return rank_board(values, specs, weights, method=method, primary=benchmark.primary_metric,
                              resamples=resamples, window=window, memo=memo)

        cold = [once_ms(lambda: rank(RankingMemo(), (0, 50))) for _ in range(max(1, min(runs, 3)))]
        table.add(alone, f"{method}, page 1, first ranking (memo cold)", size, cell((statistics.median(cold), min(cold), max(cold))))
        memo = RankingMemo()
        for label, window in pages.items():
            table.add(alone, f"{method}, {label} (memo warm)", size, cell(timed_ms(lambda w=window: rank(memo, w), runs)))
        table.add(alone, f"{method}: memo held (MB)", size, f"{memo.nbytes / 2**20:.0f}")

    if size > 10_000:
        return
    floors = "floors, the same ranking done naively (ms)"
    few = np.arange(min(n, 200))
    few_resamples = np.stack(
        [r[few] if r is not None else np.repeat(values[few, c, None], benchmark.bootstrap_resamples, axis=1)
         for c, r in enumerate(resamples)],
        axis=1,
    )
    naive = timed_ms(lambda: baseline.rank_board_naive(values[few], specs, weights, primary=benchmark.primary_metric,
                                                       resamples=few_resamples), 1)
    fast = timed_ms(lambda: rank_board(values[few], specs, weights, primary=benchmark.primary_metric,
                                       resamples=few_resamples), runs)
    table.add(floors, "naive Python, every pair, 200 rows", size, cell(naive))
    table.add(floors, "rank_board, the same 200 rows, whole board", size, cell(fast))
    used = np.flatnonzero(weights > 0)
    samples = np.zeros((n, benchmark.bootstrap_resamples))
    for column in used:
        sampled = resamples[column] if resamples[column] is not None else values[:, [column]]
        worst, best = specs[column].worst, specs[column].best
        samples += np.clip((sampled - worst) / (best - worst), 0, 1) * weights[column] / weights[used].sum()

    def all_pairs_of_100_rows():
        for row in range(100):
            np.count_nonzero(samples <= samples[row], axis=1)
            np.count_nonzero(samples >= samples[row], axis=1)

    table.add(floors, "all-pairs paired test, numpy (n^2 * B, from 100 rows)", size,
              cell(tuple(t * n / 100 for t in timed_ms(all_pairs_of_100_rows, 1))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="board sizes, comma-separated")
    parser.add_argument("--submissions", type=int, help="one size only (the same as --sizes N)")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--serve", nargs="+", metavar="SLUG RUNS QUERY", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        return serve(options.serve[0], int(options.serve[1]), options.serve[2:])
    sizes = [options.submissions] if options.submissions else [int(size) for size in options.sizes.split(",")]
    create_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    spec = importlib.util.spec_from_file_location("ranking_baseline", PROJECT / "bench" / "ranking_baseline.py")
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    table = Table(sizes)
    for size in sizes:
        started = time.perf_counter()
        populate(size, f"adult-{size}")
        print(f"created {size:,} submissions in {time.perf_counter() - started:.0f} s", flush=True)
        measure(size, f"adult-{size}", options.runs, table, baseline)
    print("\nresamples per objective: 200; balanced preset weighs accuracy, demographic_parity_difference, "
          "latency_p99_ms, cost_usd_per_million")
    table.print()


if __name__ == "__main__":
    main()
