"""Seed the demo: two benchmarks and honest baselines submitted through the same service as the API."""

import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from leaderboard.demo.baselines import train_baselines
from leaderboard.demo.synthetic import ADULT_SPEC, LENDING_SPEC, adult_dataset, lending_dataset
from leaderboard.models import Benchmark
from leaderboard.demo.seeding import benchmark_from_spec
from leaderboard.services import submission_create

BASELINE_OWNER = "holdout-baselines"


class Command(BaseCommand):
    help = "Create the demo benchmarks and submit the baseline models (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--quick", action="store_true", help="smaller baselines and data, for tests")
        parser.add_argument("--admin-password", default="demo", help="password of the 'demo' staff user")
        parser.add_argument(
            "--benchmarks", default="adult,lending", help="which demo benchmarks to seed, comma-separated"
        )

    def handle(self, *args, quick: bool = False, admin_password: str = "demo", benchmarks: str = "adult,lending", **options):
        users = get_user_model()
        if not users.objects.filter(username="demo").exists():
            users.objects.create_superuser("demo", "demo@example.com", admin_password)
            self.stdout.write(f"Created staff user 'demo' with password '{admin_password}'.")
        owner, _ = users.objects.get_or_create(username=BASELINE_OWNER)

        demos = [
            (ADULT_SPEC, adult_dataset),
            (LENDING_SPEC, lambda: lending_dataset(**({"n_train": 4000, "n_test": 4800} if quick else {}))),
        ]
        wanted = {slug.strip() for slug in benchmarks.split(",")}
        for spec, dataset in demos:
            slug = spec["slug"]
            if slug not in wanted:
                continue
            if Benchmark.objects.filter(slug=slug).exists():
                self.stdout.write(f"Benchmark '{slug}' exists; leaving it as it is.")
                continue
            train, test = dataset()
            benchmark = benchmark_from_spec(spec, train, test)
            started = time.perf_counter()
            baselines = train_baselines(train, spec, quick=quick)
            self.stdout.write(
                f"Created '{slug}'; trained {len(baselines)} baselines in {time.perf_counter() - started:.1f} s."
            )
            for baseline in baselines:
                submission_create(
                    benchmark=benchmark,
                    owner=owner,
                    name=baseline.name,
                    description=baseline.description,
                    artifact=baseline.data,
                    artifact_filename=baseline.filename,
                    metadata={"baseline": True},
                    is_baseline=True,
                )
                self.stdout.write(f"  submitted {baseline.name} ({len(baseline.data) / 1e6:.2f} MB)")
