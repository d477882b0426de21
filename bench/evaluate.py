"""Holdout's evaluation against a plain script calling the same library functions.

Evaluates the gradient-boosting baseline of the generated lending benchmark (a test set of
--rows rows, with sensitive columns and a time column, so every evaluator runs) twice per round:
once through Holdout (benchmark and submission in a database, artifact and test set in storage,
the two Celery task bodies called in this process) and once as a plain script that calls
run_in_sandbox and each evaluator directly on the same frames. Prints each stage's seconds side by
side and the ratio of the totals (target: Holdout within 1.15x of the plain script).

    .venv/bin/python bench/evaluate.py [--rows 60000] [--rounds 3]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("HOLDOUT_VAR_DIR", tempfile.mkdtemp(prefix="holdout-bench-evaluate-"))
os.environ.pop("DATABASE_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from evaluators.base import EvaluationInput  # noqa: E402
from evaluators.registry import evaluator_get, evaluator_options  # noqa: E402
from evaluators.sandbox import Limits, run_in_sandbox  # noqa: E402
from leaderboard.demo.baselines import train_baselines  # noqa: E402
from leaderboard.demo.synthetic import LENDING_SPEC, lending_dataset  # noqa: E402
from leaderboard.objectives import EVALUATORS, OBJECTIVES  # noqa: E402
from leaderboard.services import benchmark_create, submission_create  # noqa: E402
from leaderboard.tables import table_to_parquet  # noqa: E402
from workers.evaluation import submission_evaluate, submission_measure_latency  # noqa: E402

# What is not an evaluator's own work: starting the model process, loading and predicting, and
# (for Holdout) reading the test set from storage and writing the reports.
OVERHEAD = "model process, I/O and orchestration"
PHASES = {"evaluate": [name for name in EVALUATORS if name not in ("latency", "cost")], "latency": ["latency", "cost"]}


def plain(test, model_path: Path) -> dict[str, float]:
    """The same work without Holdout: one sandbox run per phase, then each evaluator."""
    times = {}
    started_total = time.perf_counter()
    spec = LENDING_SPEC
    base = EvaluationInput(
        task="binary", y_true=test[spec["target"]].to_numpy(), predictions=None,
        features=test[spec["feature_columns"]], sensitive=test[spec["sensitive_columns"]],
        times=test[spec["time_column"]], classes=[0, 1], positive_label=1,
        primary_metric=spec["primary_metric"], primary_higher_is_better=OBJECTIVES[spec["primary_metric"]].higher_is_better,
        resamples=settings.HOLDOUT_BOOTSTRAP_RESAMPLES, seed=20261125, metadata={"training_cutoff": "2023-12-31"},
        options={}, artifact_bytes=model_path.stat().st_size, artifact_format="skops",
    )
    limits = Limits(settings.HOLDOUT_MODEL_MEMORY_BYTES, settings.HOLDOUT_MODEL_CPU_SECONDS, 480.0)
    previous = {}
    for phase, names in PHASES.items():
        evaluators = [evaluator_get(name) for name in names]
        with_options = {e.name: replace(base, options=evaluator_options(e.name, None)) for e in evaluators}
        probes = {}
        for evaluator in evaluators:
            probes.update(evaluator.probe_params(with_options[evaluator.name]))
        started = time.perf_counter()
        run = run_in_sandbox(
            artifact_path=str(model_path), artifact_format="skops", features=base.features, task="binary",
            skops_trusted=settings.HOLDOUT_SKOPS_TRUSTED_TYPES, limits=limits,
            predict=phase == "evaluate", probes=probes,
        )
        sandbox_seconds = time.perf_counter() - started
        probe_seconds = sum(outcome.seconds for outcome in run.probes.values())
        times[OVERHEAD] = times.get(OVERHEAD, 0.0) + sandbox_seconds - probe_seconds
        predictions = run.predictions or base.predictions
        for evaluator in evaluators:
            data = replace(with_options[evaluator.name], predictions=predictions, probes=run.probes, previous=previous)
            started = time.perf_counter()
            result = evaluator.evaluate(data)
            own_probes = sum(run.probes[name].seconds for name in evaluator.probes if name in run.probes)
            times[evaluator.name] = time.perf_counter() - started + own_probes
            previous[evaluator.name] = {"metrics": result.metrics, "document": result.document}
        base = replace(base, predictions=predictions)
    times["total"] = time.perf_counter() - started_total
    return times


def through_holdout(benchmark, owner, model) -> dict[str, float]:
    submission, _ = submission_create(
        benchmark=benchmark, owner=owner, name=model.name, artifact=model.data, artifact_filename=model.filename,
        metadata={"training_cutoff": "2023-12-31"},
    )
    started = time.perf_counter()
    submission_evaluate(str(submission.pk))
    submission_measure_latency(str(submission.pk))
    total = time.perf_counter() - started
    submission.refresh_from_db()
    if submission.status != "succeeded":
        raise SystemExit(f"the evaluation failed: {submission.error}")
    reports = {report.evaluator: report for report in submission.reports.all()}
    errors = {name: report.error for name, report in reports.items() if report.error}
    if errors:
        raise SystemExit(f"evaluators failed: {errors}")
    times = {name: report.seconds for name, report in reports.items()}
    times[OVERHEAD] = total - sum(times.values())
    times["total"] = total
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60_000, help="test rows (at least 50,000 for the target)")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()

    call_command("migrate", verbosity=0)
    train, test = lending_dataset(n_train=20_000, n_test=options.rows)
    model = next(b for b in train_baselines(train, LENDING_SPEC) if b.name == "Gradient boosting")
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create_user("bench")
    benchmark = benchmark_create(
        slug="lending-bench", name="Lending", task="binary", target_column=LENDING_SPEC["target"],
        feature_columns=LENDING_SPEC["feature_columns"], sensitive_columns=LENDING_SPEC["sensitive_columns"],
        time_column=LENDING_SPEC["time_column"], positive_label=1, primary_metric=LENDING_SPEC["primary_metric"],
        train_data=table_to_parquet(train), train_filename="train.parquet",
        test_data=table_to_parquet(test), test_filename="test.parquet",
    )
    test = test.reset_index(drop=True)
    with tempfile.TemporaryDirectory() as folder:
        model_path = Path(folder) / "model.skops"
        model_path.write_bytes(model.data)
        runs = {"holdout": [], "plain": []}
        for _ in range(options.rounds):
            runs["plain"].append(plain(test, model_path))
            runs["holdout"].append(through_holdout(benchmark, owner, model))

    print(f"{model.name} on {options.rows} test rows, {settings.HOLDOUT_BOOTSTRAP_RESAMPLES} resamples, "
          f"medians of {options.rounds} rounds (seconds)")
    print(f"{'stage':<40} {'holdout':>9} {'plain':>9} {'ratio':>7}")
    stages = list(dict.fromkeys([*runs["plain"][0], *runs["holdout"][0]]))
    stages.remove("total")
    for stage in [*stages, "total"]:
        holdout = statistics.median(r.get(stage, float("nan")) for r in runs["holdout"])
        plain_seconds = statistics.median(r.get(stage, float("nan")) for r in runs["plain"])
        ratio = holdout / plain_seconds if plain_seconds == plain_seconds and plain_seconds > 0 else float("nan")
        print(f"{stage:<40} {holdout:>9.2f} {plain_seconds:>9.2f} {ratio:>7.2f}")
    ratios = [h["total"] / p["total"] for h, p in zip(runs["holdout"], runs["plain"])]
    print(f"total ratio per round: {', '.join(f'{r:.3f}' for r in ratios)}; target <= 1.15")


if __name__ == "__main__":
    main()
