from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from leaderboard.errors import Rejected
from leaderboard.resolution import benchmark_resolution, resolution_sentence
from leaderboard.services import benchmark_create
from leaderboard.tables import column_names_parse


class Command(BaseCommand):
    help = "Create a benchmark from a public training split and a hidden test split (CSV or Parquet)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--task", required=True, help="binary, multiclass or regression")
        parser.add_argument("--target", required=True, help="the target column")
        parser.add_argument("--train", required=True, type=Path, help="training split file")
        parser.add_argument("--test", required=True, type=Path, help="hidden test split file")
        parser.add_argument("--features", default="", help="comma-separated; default: every other column")
        parser.add_argument("--sensitive", default="", help="comma-separated sensitive columns")
        parser.add_argument("--time-column", default="")
        parser.add_argument("--positive-label", default=None)
        parser.add_argument("--primary-metric", default="")
        parser.add_argument("--description", default="")
        parser.add_argument("--time-limit", type=int, default=None, help="seconds per evaluation")
        parser.add_argument(
            "--holdout-policy",
            default="open",
            choices=["open", "guarded"],
            help="open: every score released; guarded: a public part shown through the Ladder, a private part kept",
        )
        parser.add_argument("--public-fraction", type=float, default=None, help="guarded: share of test rows shown (0.3)")

    def handle(self, *args, **options):
        files = {}
        for key in ("train", "test"):
            path = options[key]
            if not path.is_file():
                raise CommandError(f"--{key} {path}: no such file.")
            files[key] = path
        try:
            benchmark = benchmark_create(
                slug=options["slug"],
                name=options["name"],
                task=options["task"],
                target_column=options["target"],
                train_data=files["train"].read_bytes(),
                train_filename=files["train"].name,
                test_data=files["test"].read_bytes(),
                test_filename=files["test"].name,
                feature_columns=column_names_parse(options["features"]),
                sensitive_columns=column_names_parse(options["sensitive"]),
                time_column=options["time_column"],
                positive_label=options["positive_label"],
                primary_metric=options["primary_metric"],
                description=options["description"],
                time_limit_seconds=options["time_limit"],
                holdout_policy=options["holdout_policy"],
                public_fraction=options["public_fraction"],
            )
        except Rejected as rejection:
            raise CommandError(rejection.message) from None
        self.stdout.write(
            f"Created benchmark '{benchmark.slug}': {benchmark.train_rows} training rows, "
            f"{benchmark.test_rows} test rows, {len(benchmark.feature_columns)} features."
        )
        if benchmark.is_guarded:
            public = len(benchmark.public_positions)
            self.stdout.write(
                f"Guarded: {public} public test rows ({public / benchmark.test_rows:.0%}) shown through the "
                f"{benchmark.ladder_variant} Ladder; {benchmark.test_rows - public} private rows kept for the final standings."
            )
        self.stdout.write(resolution_sentence(benchmark_resolution(benchmark)))
        for warning in benchmark.creation_warnings:
            self.stdout.write(self.style.WARNING(f"Warning: {warning}"))
