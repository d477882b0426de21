"""A byte-identical model submitted twice: evaluated twice on real workers, ranked the same."""

import numpy as np

from leaderboard.boards import board_get, board_query_parse, submission_standing
from leaderboard.models import Submission
from tests.conftest import baseline_named
from tests.test_evaluation import submit_over_http, wait_until_finished

# Measured again on every submission: the machine decides part of them.
MEASURED = ("latency_", "throughput_rows_per_s", "cost_usd_per_million")


def test_a_byte_identical_resubmission_gets_equal_deterministic_objectives_and_ties(
    live_server, celery_worker, user, adult_benchmark, adult_baselines
):
    model = baseline_named(adult_baselines, "onnx:")
    first, second = (
        wait_until_finished(submit_over_http(live_server, user, adult_benchmark, model.filename, model.data, name)["url"])
        for name in ("first", "second")
    )
    assert first["status"] == second["status"] == "succeeded", (first["error"], second["error"])
    measured = {key for key in first["metrics"] if key.startswith(MEASURED)}
    assert {"latency_p99_ms", "throughput_rows_per_s", "cost_usd_per_million"} <= measured
    deterministic = {key: value for key, value in first["metrics"].items() if key not in measured}
    assert deterministic == {key: second["metrics"][key] for key in deterministic}
    assert {key: first["intervals"][key] for key in deterministic if key in first["intervals"]} == {
        key: second["intervals"][key] for key in deterministic if key in second["intervals"]
    }
    for body in (first, second):
        stored = Submission.objects.get(pk=body["id"])
        assert measured <= set(stored.resample_keys)  # the latency phase's resamples sit beside the others
        assert body["intervals"]["latency_p99_ms"][0] <= body["metrics"]["latency_p99_ms"] <= body["intervals"]["latency_p99_ms"][1]

    # Weighted on latency alone, the one objective where they differ, they still tie.
    for weights in ("latency_p99_ms:1", "latency_p50_ms:1,throughput_rows_per_s:1", f"{adult_benchmark.primary_metric}:1"):
        board = board_get(adult_benchmark, board_query_parse({"weights": weights, "method": "winrate"}, adult_benchmark))
        ranks = {str(entry.submission["id"]): (entry.rank, entry.tied) for entry in board.entries}
        assert ranks[first["id"]] == ranks[second["id"]] == (1, True), (weights, ranks)
    standings = [submission_standing(Submission.objects.get(pk=body["id"])) for body in (first, second)]
    assert standings[0].rank == standings[1].rank and standings[0].tied and standings[1].tied
    assert np.isfinite(standings[0].score)
