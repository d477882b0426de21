"""How long the pages take to render on the demo data, through Django's test client.

Run it after `make run` has seeded the demo and its worker has evaluated the baselines (the
demo's database and files are read from HOLDOUT_VAR_DIR, default var/):

    .venv/bin/python bench/pages.py [--runs 15]

For each page: the first render in this process (charts not yet drawn and cached: the chart cache
is cleared first) and the median of --runs renders after it. Target: under 300 ms.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def timed(client, url: str, headers=None) -> float:
    started = time.perf_counter()
    response = client.get(url, headers=headers or {})
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache
    from django.test import Client

    from leaderboard.models import Benchmark, Submission

    settings.ALLOWED_HOSTS = ["*"]
    benchmarks = list(Benchmark.objects.all())
    succeeded = Submission.objects.filter(status=Submission.Status.SUCCEEDED)
    if not benchmarks or not succeeded.exists():
        raise SystemExit("No evaluated demo here: run `make run` first and wait for the baselines.")
    pages = {"home": "/"}
    for benchmark in benchmarks:
        pages[f"benchmark {benchmark.slug}"] = f"/benchmarks/{benchmark.slug}/"
        pages[f"benchmark {benchmark.slug}, balanced preset"] = f"/benchmarks/{benchmark.slug}/?preset=balanced"
        best = succeeded.filter(benchmark=benchmark).order_by("-created_at").first()
        if best is not None:
            pages[f"submission ({benchmark.slug}: {best.name})"] = f"/submissions/{best.pk}/"
            if benchmark.sensitive_columns:
                pages[f"fairness report ({benchmark.slug}: {best.name})"] = f"/submissions/{best.pk}/fairness/"
    client = Client()
    cache.clear()
    print(f"{'page':<58} {'first ms':>9} {'median ms':>10}")
    for label, url in pages.items():
        first = timed(client, url)
        median = statistics.median(timed(client, url) for _ in range(options.runs))
        print(f"  {label:<56} {first:>9.1f} {median:>10.1f}")
    slug = benchmarks[0].slug
    swap = statistics.median(
        timed(client, f"/benchmarks/{slug}/?w_accuracy=2&w_latency_p99_ms=1", {"HX-Request": "true"})
        for _ in range(options.runs)
    )
    print(f"  {'slider move (htmx partial), ' + slug:<56} {'':>9} {swap:>10.1f}")


if __name__ == "__main__":
    main()
