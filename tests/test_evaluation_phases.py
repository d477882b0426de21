"""The two evaluation phases, run in this process on the real sandbox, without a broker."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from evaluators import registry
from leaderboard.models import Report, Submission
from leaderboard.services import submission_create, submission_latency_start, submissions_sweep
from tests.conftest import baseline_named
from workers.evaluation import submission_evaluate, submission_measure_latency

ALL_EVALUATORS = {"performance", "fairness", "interpretability", "size", "decay", "latency", "cost"}


def submitted(benchmark, baselines, user, fragment="Logistic regression"):
    model = baseline_named(baselines, fragment)
    submission, _ = submission_create(
        benchmark=benchmark, owner=user, name=model.name, artifact=model.data, artifact_filename=model.filename,
        metadata={"training_cutoff": "2023-12-31"},
    )
    return submission


def evaluate_both_phases(submission) -> Submission:
    submission_evaluate(str(submission.pk))
    assert Submission.objects.get(pk=submission.pk).stage == Submission.LATENCY_QUEUED
    submission_measure_latency(str(submission.pk))
    return Submission.objects.get(pk=submission.pk)


def test_every_evaluator_reports_on_a_benchmark_where_all_apply(lending_benchmark, lending_baselines, user):
    assert set(lending_benchmark.evaluators) == ALL_EVALUATORS
    done = evaluate_both_phases(submitted(lending_benchmark, lending_baselines, user))
    assert done.status == "succeeded", done.error
    reports = {report.evaluator: report for report in done.reports.all()}
    assert set(reports) == ALL_EVALUATORS
    assert {name: report.error for name, report in reports.items() if report.error} == {}
    for key in ("roc_auc", "demographic_parity_difference", "shap_features_90", "latency_p99_ms",
                "size_bytes", "n_parameters", "cost_usd_per_million", "decay_per_30d"):
        assert key in done.metrics, key
    assert done.metrics["size_bytes"] == done.artifact_bytes

    # The sampled objectives are kept on the benchmark's shared resamples, for paired ties.
    assert {"accuracy", "roc_auc", "demographic_parity_difference"} <= set(done.resample_keys)
    matrix = np.frombuffer(done.resamples, dtype=np.float32).reshape(len(done.resample_keys), -1)
    assert matrix.shape[1] == lending_benchmark.bootstrap_resamples
    performance = reports["performance"].document["resample_values"]["accuracy"]
    assert matrix[done.resample_keys.index("accuracy")] == pytest.approx(performance, rel=1e-6)


def test_an_evaluator_that_raises_leaves_the_others_intact(
    lending_benchmark, lending_baselines, user, monkeypatch, client
):
    real_get = registry.evaluator_get

    class Broken:
        name, probes, queue = "fairness", (), "evaluate"

        def applies(self, data):
            return True

        def probe_params(self, data):
            return {}

        def evaluate(self, data):
            raise RuntimeError("the fairness evaluator broke")

    monkeypatch.setattr(
        "workers.evaluation.evaluator_get", lambda name: Broken() if name == "fairness" else real_get(name)
    )
    done = evaluate_both_phases(submitted(lending_benchmark, lending_baselines, user))
    assert done.status == "succeeded"
    fairness = Report.objects.get(submission=done, evaluator="fairness")
    assert fairness.error == "the fairness evaluator broke" and fairness.metrics == {}
    assert "demographic_parity_difference" not in done.metrics
    assert "accuracy" in done.metrics and "decay_per_30d" in done.metrics
    page = client.get(done.get_absolute_url()).content.decode()
    assert "not measured: the fairness evaluator broke" in page
    api = client.get(f"/api/v1/submissions/{done.pk}/").json()
    assert api["report_errors"] == {"fairness": "the fairness evaluator broke"}
    assert "fairness" not in api["reports"]


def test_a_model_that_fails_to_predict_fails_the_submission_in_the_predicting_stage(
    lending_benchmark, adult_baselines, user
):
    # An Adult model knows none of the lending benchmark's columns.
    done = Submission.objects.get(pk=submitted(lending_benchmark, adult_baselines, user).pk)
    submission_evaluate(str(done.pk))
    done.refresh_from_db()
    assert done.status == "failed" and done.stage == "predicting" and done.fault == "model"
    assert "Running the model on the test set" in done.error


@pytest.fixture
def latency_queued(lending_benchmark, lending_baselines, user):
    submission = submitted(lending_benchmark, lending_baselines, user)
    submission_evaluate(str(submission.pk))
    return Submission.objects.get(pk=submission.pk)


def test_the_latency_phase_is_claimed_once(latency_queued):
    first = submission_latency_start(latency_queued.pk)
    assert first.stage == "latency" and first.latency_attempts == 1
    assert submission_latency_start(latency_queued.pk) is None


def test_a_lost_latency_worker_is_swept_back_to_the_latency_queue_alone(latency_queued):
    submission_latency_start(latency_queued.pk)
    Submission.objects.filter(pk=latency_queued.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    assert submissions_sweep() == {"requeued": 1, "failed": 0}
    swept = Submission.objects.get(pk=latency_queued.pk)
    assert swept.status == "running" and swept.stage == Submission.LATENCY_QUEUED
    assert swept.attempts == 1, "the evaluation phase is not run again"
    assert swept.reports.filter(evaluator="fairness").exists()


def test_an_evaluate_message_redelivered_during_the_latency_phase_is_ignored(latency_queued):
    from leaderboard.services import submission_start

    Submission.objects.filter(pk=latency_queued.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    assert submission_start(latency_queued.pk) is None
