"""The adaptive leaderboard at 10,000 submissions: the ranking function alone and the full API request.

Creates a benchmark with --submissions succeeded submissions (realistic metrics for every objective
and stored paired resamples) in PostgreSQL, then times, each over --runs runs:
  - rank_board alone (utility, dynascore, winrate) on the first, middle and last page, beside the
    all-pairs paired test (numpy, n^2 * B, extrapolated from 100 rows) and a naive Python baseline
    that tests every pair (on the first 200 submissions, against rank_board on the same rows);
  - how many distinct ranks the whole board has (rank = 1 + the submissions significantly better;
    boards above 20,000 count distinct ranks within those three pages, as ranking every row exactly
    grows with n^2);
  - GET /api/v1/benchmarks/{slug}/leaderboard/ through Django (database read, ranking,
    serialisation of the first page of 50), for the default weights, a preset with constraints,
    and each method.
Times are the median and the fastest-slowest of the runs. The API keeps a
board's columns in memory between requests (leaderboard/board_columns.py), so the first request a
process serves for a board ("cold") is printed beside the median.

    .venv/bin/python bench/leaderboard.py [--submissions 10000] [--runs 15]
    for n in 1000 10000 100000; do .venv/bin/python bench/leaderboard.py --submissions $n --runs 5; done
"""

import argparse
import importlib.util
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


def timing(times) -> str:
    median, fastest, slowest = times
    return f"{median:>10.1f} {f'{fastest:.1f}-{slowest:.1f}':>16}"


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


def populate(n: int):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from leaderboard.demo.seeding import benchmark_from_spec
    from leaderboard.demo.synthetic import ADULT_SPEC, adult_dataset
    from leaderboard.models import Submission

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench")
    train, test = adult_dataset()
    benchmark = benchmark_from_spec(ADULT_SPEC, train.head(2000), test.head(2000))
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
    return benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    create_database()
    import django

    django.setup()
    from django.test import Client
    from django.utils import timezone

    from leaderboard.board_columns import _kept, board_columns
    from leaderboard.boards import benchmark_objectives, board_query_parse, objective_bounds
    from leaderboard.models import Submission
    from leaderboard.ranking import ObjectiveSpec, rank_board

    spec = importlib.util.spec_from_file_location("ranking_baseline", PROJECT / "bench" / "ranking_baseline.py")
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)

    started = time.perf_counter()
    benchmark = populate(options.submissions)
    print(f"created {options.submissions} submissions in {time.perf_counter() - started:.1f} s")

    objectives = benchmark_objectives(benchmark)
    columns = board_columns(benchmark, [o.key for o in objectives])
    values = np.array(columns.values)
    bounds = objective_bounds(benchmark, objectives, values[columns.baseline])
    specs = [
        ObjectiveSpec(
            o.key,
            o.higher_is_better,
            bounds[o.key][0],
            bounds[o.key][1],
            0.0 if o.higher_is_better or bounds[o.key][0] is None else bounds[o.key][0],
        )
        for o in objectives
    ]
    query = board_query_parse({"preset": "balanced"}, benchmark)
    weights = np.array([query.weights.get(o.key, 0.0) for o in objectives])
    resamples = [columns.resamples(benchmark, o.key) if w else None for o, w in zip(objectives, weights)]
    print(f"weighted objectives (balanced preset): {[o.key for o, w in zip(objectives, weights) if w]}")
    print(f"resamples per objective: {benchmark.bootstrap_resamples}")

    def rank(method, **extra):
        return rank_board(values, specs, weights, method=method, primary=benchmark.primary_metric, **extra)

    n = len(values)
    pages = {"page 1": (0, 50), "middle page": (n // 2, n // 2 + 50), "last page": (n - 50, n)}
    print(f"\n{'ranking function alone (n=' + str(n) + ')':<58} {'median ms':>10} {'fastest-slowest':>16}")
    for method in ("utility", "dynascore", "winrate"):
        print(
            f"  rank_board, {method + ', point scores':<44} {timing(timed_ms(lambda method=method: rank(method), options.runs))}"
        )
        for label, window in pages.items():
            times = timed_ms(lambda m=method, w=window: rank(m, resamples=resamples, window=w), options.runs)
            print(f"  rank_board, {method + ', ' + label + ' with ranks':<44} {timing(times)}")

    # The test rank_board bounds, done for every pair: count, for each of 100 rows, the resamples on
    # which every other row's utility score is at or below its own.
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

    median, fastest, slowest = (t * n / 100 for t in timed_ms(all_pairs_of_100_rows, 1))
    print(f"  all-pairs paired test, numpy (n^2 * B, from 100 rows)      {timing((median, fastest, slowest))}")
    few = np.arange(min(n, 200))
    few_resamples = np.stack(
        [
            r[few] if r is not None else np.repeat(values[few, c, None], benchmark.bootstrap_resamples, axis=1)
            for c, r in enumerate(resamples)
        ],
        axis=1,
    )
    naive = timed_ms(
        lambda: baseline.rank_board_naive(
            values[few], specs, weights, primary=benchmark.primary_metric, resamples=few_resamples
        ),
        1,
    )
    fast = timed_ms(
        lambda: rank_board(values[few], specs, weights, primary=benchmark.primary_metric, resamples=few_resamples),
        options.runs,
    )
    print(f"  naive Python, every pair (utility + Pareto, {len(few)} rows)      {timing(naive)}")
    print(f"  rank_board on the same {len(few)} rows, whole board                {timing(fast)}")

    label = "whole board" if n <= 20_000 else "within the first, middle and last page"
    started = time.perf_counter()
    if n <= 20_000:
        whole = rank("utility", resamples=resamples)
        groups = [whole.ranks[whole.order]]
        tied = int(whole.tied.sum())
    else:
        boards = [rank("utility", resamples=resamples, window=window) for window in pages.values()]
        groups = [board.ranks[board.order[slice(*window)]] for board, window in zip(boards, pages.values())]
        tied = sum(int(board.tied.sum()) for board in boards)
    seconds = time.perf_counter() - started
    distinct = " + ".join(str(len(set(group.tolist()))) for group in groups)
    largest = max(int(np.unique(group, return_counts=True)[1].max()) for group in groups)
    print(
        f"\nranks (utility, balanced preset, {label}): {distinct} distinct ranks over "
        f"{sum(len(group) for group in groups)} submissions, {tied} marked tied, largest group sharing a rank "
        f"{largest}; ranked in {seconds:.1f} s"
    )

    client = Client()
    url = f"/api/v1/benchmarks/{benchmark.slug}/leaderboard/"
    requests = {
        "default weights": "",
        "balanced preset": "?preset=balanced",
        "product-manager preset + constraints": "?preset=product-manager&constraints=latency_p99_ms%3C%3D10",
        "balanced preset, dynascore": "?preset=balanced&method=dynascore",
        "balanced preset, winrate": "?preset=balanced&method=winrate",
        "balanced preset, page 100": "?preset=balanced&page=100",
        "balanced preset, Pareto set only": "?preset=balanced&pareto=1",
    }
    print(f"\n{'full API request, page of 50':<46} {'cold ms':>10} {'median ms':>10} {'fastest-slowest':>16}")
    for label, suffix in requests.items():
        _kept.clear()  # cold: this process has not read the board yet
        started = time.perf_counter()
        response = client.get(url + suffix)
        cold = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.content[:500]
        times = timed_ms(lambda suffix=suffix: client.get(url + suffix), options.runs)
        print(f"  {label:<44} {cold:>10.1f} {timing(times)}")

    # A new success: the next request appends it instead of reading the board again.
    latest = Submission.objects.filter(benchmark=benchmark).latest("created_at")
    latest.pk, latest.name, latest.created_at, latest.finished_at = None, "new", timezone.now(), timezone.now()
    latest.save()
    started = time.perf_counter()
    assert client.get(url + "?preset=balanced&method=winrate").status_code == 200
    print(f"  {'winrate, first request after a new success':<44} {(time.perf_counter() - started) * 1000:>10.1f}")


if __name__ == "__main__":
    main()
