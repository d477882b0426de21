from django.core.management.base import BaseCommand, CommandError

from leaderboard.closing import benchmark_close, closed_at_words
from leaderboard.errors import Rejected
from leaderboard.models import Benchmark


class Command(BaseCommand):
    help = (
        "Close a guarded benchmark: refuse new submissions and measure every counted submission (each submitter's "
        "final ones, else their Ladder's released best) on the private rows, for the private board."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")

    def handle(self, *args, slug, **options):
        benchmark = Benchmark.objects.filter(slug=slug).first()
        if benchmark is None:
            raise CommandError(f"no benchmark '{slug}'; the benchmarks are: {', '.join(_slugs()) or 'none'}.")
        try:
            # Whoever runs the command has the server's keys: staff by definition.
            benchmark, scores = benchmark_close(benchmark, by=None)
        except Rejected as rejection:
            raise CommandError(rejection.message) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Closed '{benchmark.slug}' at {closed_at_words(benchmark)}; {len(scores)} submissions are queued for "
                f"the private rows (a Celery worker on the 'evaluate' queue measures them). The private board: "
                f"/api/v1/benchmarks/{benchmark.slug}/leaderboard/private/ and the benchmark's page."
            )
        )


def _slugs() -> list[str]:
    return list(Benchmark.objects.values_list("slug", flat=True))
