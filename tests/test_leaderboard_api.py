"""The adaptive leaderboard over the API and the web page, on submissions with known metrics."""

import json

import numpy as np
import pytest

from leaderboard.models import Submission
from tests.conftest import baseline_named, succeeded_submission

RESAMPLES = 100


def add(benchmark, user, model, name, metrics, *, spread=0.0, baseline=False, seed=0):
    """A succeeded submission with these metrics and paired resamples `spread` wide around them."""
    keys = [key for key in ("accuracy", "roc_auc") if key in metrics]
    noise = (
        np.random.default_rng(seed).normal(0, spread, (len(keys), RESAMPLES))
        if spread
        else np.zeros((len(keys), RESAMPLES))
    )
    resamples = {key: metrics[key] + row for key, row in zip(keys, noise)}
    return succeeded_submission(benchmark, user, model, name, metrics, baseline=baseline, resamples=resamples)


@pytest.fixture
def board(adult_benchmark, adult_baselines, user):
    adult_benchmark.bootstrap_resamples = RESAMPLES
    adult_benchmark.save()
    model = baseline_named(adult_baselines, "onnx:")
    add(
        adult_benchmark,
        user,
        model,
        "majority",
        {"accuracy": 0.76, "roc_auc": 0.5, "latency_p99_ms": 0.01},
        baseline=True,
    )
    add(
        adult_benchmark,
        user,
        model,
        "accurate-slow",
        {"accuracy": 0.87, "roc_auc": 0.92, "latency_p99_ms": 9.0},
        baseline=True,
    )
    add(adult_benchmark, user, model, "fast", {"accuracy": 0.85, "roc_auc": 0.90, "latency_p99_ms": 0.05})
    return adult_benchmark


def leaderboard(client, benchmark, query=""):
    return client.get(f"/api/v1/benchmarks/{benchmark.slug}/leaderboard/{query}")


def names(body):
    return [entry["submission"]["name"] for entry in body["entries"]]


def test_the_default_weights_rank_by_the_primary_metric(client, board):
    body = leaderboard(client, board).json()
    assert names(body) == ["accurate-slow", "fast", "majority"]
    assert body["method"] == "utility" and body["weights"]["accuracy"] == 1.0
    assert [entry["rank"] for entry in body["entries"]] == [1, 2, 3]


def test_the_readers_weights_change_the_order(client, board):
    body = leaderboard(client, board, "?weights=accuracy:1,latency_p99_ms:1").json()
    assert names(body)[0] == "fast"
    assert body["weights"]["latency_p99_ms"] == 1.0 and body["weights"]["roc_auc"] == 0.0


def test_a_preset_applies_its_weights(client, board):
    body = leaderboard(client, board, "?preset=product-manager").json()
    assert body["preset"] == "product-manager"
    assert body["weights"]["accuracy"] == 2.0 and body["weights"]["latency_p99_ms"] == 1.0
    assert names(body)[0] == "fast"


def test_a_constraint_excludes_and_says_which_it_breaks(client, board):
    body = leaderboard(client, board, "?constraints=latency_p99_ms<=1").json()
    assert names(body) == ["fast", "majority"]
    assert body["excluded"][0]["submission"]["name"] == "accurate-slow"
    assert body["excluded"][0]["excluded_by"] == ["latency_p99_ms<=1 (is 9)"]


def test_the_pareto_frontier_is_flagged_on_the_weighted_objectives(client, board):
    body = leaderboard(client, board, "?weights=accuracy:1,latency_p99_ms:1").json()
    flags = {entry["submission"]["name"]: entry["pareto"] for entry in body["entries"]}
    assert flags == {"fast": True, "accurate-slow": True, "majority": True}
    body = leaderboard(client, board, "?weights=accuracy:1,roc_auc:1").json()
    flags = {entry["submission"]["name"]: entry["pareto"] for entry in body["entries"]}
    assert flags == {"accurate-slow": True, "fast": False, "majority": False}
    only = leaderboard(client, board, "?weights=accuracy:1,roc_auc:1&pareto=1").json()
    assert names(only) == ["accurate-slow"]


def test_every_method_ranks(client, board):
    for method in ("utility", "dynascore", "winrate"):
        body = leaderboard(client, board, f"?weights=accuracy:2,latency_p99_ms:1&method={method}").json()
        assert body["method"] == method and len(body["entries"]) == 3, method


def test_a_rank_counts_the_submissions_significantly_better(client, adult_benchmark, adult_baselines, user):
    adult_benchmark.bootstrap_resamples = RESAMPLES
    adult_benchmark.save()
    model = baseline_named(adult_baselines, "onnx:")
    add(adult_benchmark, user, model, "baseline", {"accuracy": 0.70}, baseline=True)
    add(adult_benchmark, user, model, "a", {"accuracy": 0.851}, spread=0.01, seed=1)
    add(adult_benchmark, user, model, "b", {"accuracy": 0.850}, spread=0.01, seed=2)
    body = leaderboard(client, adult_benchmark).json()
    top = body["entries"][:2]
    assert [entry["rank"] for entry in top] == [1, 1] and all(entry["tied"] for entry in top)
    assert [entry["rank_interval"] for entry in top] == [[1, 2], [1, 2]]
    assert body["entries"][2]["rank"] == 3 and not body["entries"][2]["tied"]
    assert body["entries"][2]["rank_interval"] == [3, 3]
    low, high = top[0]["score_interval"]
    assert low < top[0]["score"] < high


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("weights=speed:1", "weights", "unknown objective 'speed'"),
        ("weights=accuracy:-1", "weights", "non-negative"),
        ("weights=accuracy:much", "weights", "not a number"),
        ("weights=accuracy:0", "weights", "above zero"),
        ("weights=accuracy", "weights", "key:number"),
        ("method=borda", "method", "unknown method 'borda'"),
        ("preset=ceo", "preset", "unknown preset 'ceo'"),
        ("constraints=latency_p99_ms=<10", "constraints", "latency_p99_ms"),
        ("constraints=speed<=1", "constraints", "speed"),
        ("constraints=latency_p99_ms<=fast", "constraints", "fast"),
        ("method=dynascore&weights=latency_p99_ms:1", "weights", "give accuracy a weight above zero"),
        ("page=0", "page", "between 1"),
        ("page_size=99999", "page_size", "between 1"),
    ],
)
def test_a_bad_query_is_a_400_that_names_the_problem(client, board, query, field, message):
    response = leaderboard(client, board, f"?{query}")
    assert response.status_code == 400
    body = response.json()
    assert field in body and message in json.dumps(body), body


def test_the_web_page_ranks_with_the_same_function_and_keeps_the_state_in_the_url(client, board):
    page = client.get(f"/benchmarks/{board.slug}/?weights=accuracy:1,latency_p99_ms:1").content.decode()
    assert page.index("fast") < page.index("accurate-slow")
    htmx = client.get(
        f"/benchmarks/{board.slug}/?w_accuracy=1&w_latency_p99_ms=1&method=utility", headers={"HX-Request": "true"}
    )
    assert htmx["HX-Push-Url"] == (
        f"/benchmarks/{board.slug}/?weights=accuracy%3A1%2Clatency_p99_ms%3A1&method=utility&x=accuracy&y=latency_p99_ms"
    )
    assert "<html" not in htmx.content.decode(), "htmx gets the board alone"


def test_the_web_page_explains_a_bad_query_and_shows_the_default_board(client, board):
    page = client.get(f"/benchmarks/{board.slug}/?weights=speed:1")
    assert page.status_code == 200
    assert "unknown objective &#x27;speed&#x27;" in page.content.decode()
    assert "accurate-slow" in page.content.decode()


def test_a_preset_brings_its_floor_and_the_readers_constraints_replace_it(client, board):
    # The Adult demo floors the presets that weigh more than performance: the majority class is 76% right.
    assert board.presets["balanced"]["constraints"] == "accuracy>=0.8"
    board.presets["product-manager"]["constraints"] = "accuracy>=0.8"
    board.save()
    body = leaderboard(client, board, "?preset=product-manager").json()
    assert body["constraints"] == ["accuracy>=0.8"]
    assert [entry["submission"]["name"] for entry in body["excluded"]] == ["majority"]
    assert "majority" not in names(body)
    mine = leaderboard(client, board, "?preset=product-manager&constraints=").json()
    assert mine["constraints"] == [] and "majority" in names(mine)


def test_an_objective_without_bounds_is_explained(client, board):
    body = leaderboard(client, board, "?weights=accuracy:1,cost_usd_per_million:1").json()
    assert "no baseline measured cost_usd_per_million" in body["weights"][0]


def test_a_preset_with_an_unknown_objective_or_a_broken_floor_is_refused_with_the_reason(board):
    from django.core.exceptions import ValidationError

    board.presets["balanced"]["constraints"] = "accuracy>>0.8"
    board.presets["speedy"] = {"label": "Speedy", "weights": {"speed": 1}}
    with pytest.raises(ValidationError) as refused:
        board.full_clean()
    problems = " ".join(refused.value.message_dict["presets"])
    assert "preset 'balanced'" in problems and "'>>'" in problems
    assert "preset 'speedy' weighs speed" in problems


def test_the_board_follows_new_successes_and_deletions_between_requests(client, board, adult_baselines, user):
    model = baseline_named(adult_baselines, "onnx:")
    before = leaderboard(client, board, "?method=winrate").json()
    assert names(before) == ["accurate-slow", "fast", "majority"]
    add(board, user, model, "newcomer", {"accuracy": 0.90, "roc_auc": 0.95, "latency_p99_ms": 1.0}, spread=0.01, seed=3)
    after = leaderboard(client, board, "?method=winrate").json()
    assert names(after) == ["newcomer", "accurate-slow", "fast", "majority"]
    assert after["entries"][0]["score_interval"] is not None
    Submission.objects.filter(name="fast").delete()
    assert names(leaderboard(client, board, "?method=winrate").json()) == ["newcomer", "accurate-slow", "majority"]


def test_the_response_states_the_bounds_a_reader_recomputes_each_score_from(client, board):
    body = leaderboard(client, board, "?weights=accuracy:3,latency_p99_ms:1").json()
    bounds = body["bounds"]
    assert set(bounds) == {"accuracy", "latency_p99_ms"}  # the weighted objectives only
    # Worst: the worst baseline (majority for accuracy, accurate-slow for latency); best: the natural best.
    assert bounds["accuracy"] == {"worst": 0.76, "best": 1.0}
    assert bounds["latency_p99_ms"] == {"worst": 9.0, "best": 0.0}
    for entry in body["entries"]:
        utility = {
            key: min(max((entry["metrics"][key] - b["worst"]) / (b["best"] - b["worst"]), 0.0), 1.0)
            for key, b in bounds.items()
        }
        assert entry["score"] == pytest.approx(0.75 * utility["accuracy"] + 0.25 * utility["latency_p99_ms"])
    assert leaderboard(client, board, "?method=winrate").json()["bounds"] == {}
    page = client.get(f"/benchmarks/{board.slug}/?weights=accuracy:3,latency_p99_ms:1").content.decode()
    assert 'id="utility-bounds"' in page and "<code>latency_p99_ms</code> worst 9" in page
