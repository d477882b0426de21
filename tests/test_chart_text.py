"""Text a user controls never reaches matplotlib as markup, and a chart that fails to draw never
takes its page down (issue 12).

Submission names are drawn in the benchmark page's scatter and decay overlay; matplotlib reads a
`$` as the start of mathtext, so before this a name like `$\\foo$` made the page answer 500.
"""

import json
from pathlib import Path

import pytest

from tests.conftest import baseline_named, succeeded_submission

DOCUMENTS = Path(__file__).parent / "data" / "chart_documents"
HOSTILE_NAMES = [
    "$\\foo$",
    "$$",
    "first line\nsecond line",  # a name of only "\n" is refused as empty
    # The longest name a submission may have (120 characters; a 200-character one is refused at
    # upload): Latin, Hebrew and Arabic (right to left), emoji, a combining mark.
    ("naïve-מודל-نموذج-🤖🔥-" * 10)[:120],
]


def document(name: str) -> dict:
    return json.loads((DOCUMENTS / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def lending_fairness(lending_frames) -> dict:
    """A whole fairness document (the stored chart documents are trimmed to what charts read, and
    the reviewers' report reads more): the evaluator's, on a rule predicting repayment from income."""
    import numpy as np

    from evaluators.base import EvaluationInput
    from evaluators.fairness import DEFAULT_OPTIONS, FairnessEvaluator
    from evaluators.sandbox import Predictions
    from leaderboard.demo.synthetic import LENDING_SPEC

    test = lending_frames[1]
    labels = (test["income"] > test["income"].median()).astype(int).to_numpy()
    data = EvaluationInput(
        task="binary",
        y_true=test[LENDING_SPEC["target"]].to_numpy(),
        predictions=Predictions(labels=labels, probabilities=None, classes=None, predict_seconds=0.01),
        features=test[LENDING_SPEC["feature_columns"]],
        sensitive=test[LENDING_SPEC["sensitive_columns"]],
        times=None,
        classes=[0, 1],
        positive_label=1,
        primary_metric="accuracy",
        primary_higher_is_better=True,
        resamples=20,
        seed=5,
        metadata={},
        options=dict(DEFAULT_OPTIONS),
        artifact_bytes=1000,
        artifact_format="onnx",
    )
    return json.loads(json.dumps(FairnessEvaluator().evaluate(data).document))


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=["mathtext", "empty-math", "newline", "long-unicode"])
def test_a_hostile_submission_name_leaves_every_page_answering(
    client, lending_benchmark, lending_baselines, lending_fairness, user, name
):
    model = baseline_named(lending_baselines, "onnx:")
    documents = {
        "decay": document("lending_decay"),
        "fairness": lending_fairness,
        "latency": document("lending_latency"),
    }
    hostile = succeeded_submission(
        lending_benchmark, user, model, name, {"roc_auc": 0.75, "latency_p99_ms": 1.0}, documents=documents
    )
    other = succeeded_submission(
        lending_benchmark, user, model, "plain", {"roc_auc": 0.74, "latency_p99_ms": 2.0}, documents=documents
    )
    for path in (
        f"/benchmarks/{lending_benchmark.slug}/",
        f"/submissions/{hostile.pk}/",
        f"/submissions/{hostile.pk}/fairness/",
        f"/fairness/compare/?a={hostile.pk}&b={other.pk}",
    ):
        response = client.get(path)
        assert response.status_code == 200, (path, response.content[:2000])
    page = client.get(f"/benchmarks/{lending_benchmark.slug}/").content.decode()
    assert 'id="decay-overlay"' in page
    assert "could not be drawn" not in page


def svg_texts(chart) -> list[str]:
    import xml.etree.ElementTree as ET

    texts = ET.fromstring(chart.svg).iter("{http://www.w3.org/2000/svg}text")
    return ["".join(element.itertext()) for element in texts]


@pytest.mark.parametrize("name", ["$\\foo$", "$$", "$x$ costs $5"])
def test_a_dollar_in_a_label_is_drawn_literally_not_as_mathtext(name):
    from leaderboard import charts

    scatter = charts.pareto_chart([{"label": name, "x": 0.8, "y": 1.0, "rank": 1}], "accuracy", "latency_p99_ms")
    assert f"#1 {name}" in svg_texts(scatter)
    overlay = charts.decay_overlay_chart([(name, document("lending_decay")), ("plain", document("lending_decay"))])
    assert name in svg_texts(overlay)
    assert charts.NOT_DRAWN not in overlay.svg + scatter.svg


def test_a_chart_that_fails_to_draw_is_a_logged_placeholder(monkeypatch, caplog):
    from leaderboard import charts

    def broken(*arguments, **keywords):
        raise RuntimeError("a bug in drawing")

    monkeypatch.setattr(charts, "_draw_overlay", broken)
    with caplog.at_level("ERROR", logger="leaderboard.charts"):
        chart = charts.decay_overlay_chart([("a", document("lending_decay"))])
    assert chart.caption.startswith("This chart could not be drawn.")
    assert "This chart could not be drawn." in svg_texts(chart)
    assert chart.svg.startswith("<svg") and 'role="img"' in chart.svg
    assert "a bug in drawing" in caplog.text and "decay_overlay_chart" in caplog.text


def test_a_placeholder_is_not_kept_in_the_cache_so_the_next_request_draws_again(monkeypatch):
    import datetime
    from types import SimpleNamespace

    from django.core.cache import cache

    from leaderboard import charts
    from leaderboard.selectors import report_chart

    cache.clear()
    report = SimpleNamespace(pk=1, created_at=datetime.datetime(2026, 1, 1), document=document("lending_decay"))
    real = charts._draw_overlay
    monkeypatch.setattr(charts, "_draw_overlay", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("once")))
    first = report_chart(report, "overlay", lambda doc: charts.decay_overlay_chart([("a", doc)]))
    assert first.drawn is False
    monkeypatch.setattr(charts, "_draw_overlay", real)
    second = report_chart(report, "overlay", lambda doc: charts.decay_overlay_chart([("a", doc)]))
    assert second.drawn is True and "could not be drawn" not in second.caption


def test_missing_data_is_still_said_not_replaced_by_a_placeholder():
    from leaderboard import charts

    with pytest.raises(charts.MissingData, match="no decay series to overlay"):
        charts.decay_overlay_chart([])
    with pytest.raises(ValueError, match="no submission has both"):
        charts.pareto_chart([{"label": "a", "x": None, "y": 1.0}], "accuracy", "latency_p99_ms")


def test_a_benchmark_page_whose_charts_fail_still_answers(
    monkeypatch, client, lending_benchmark, lending_baselines, user
):
    from leaderboard import charts

    def broken(*arguments, **keywords):
        raise RuntimeError("a bug in drawing")

    monkeypatch.setattr(charts, "_draw_overlay", broken)
    monkeypatch.setattr(charts, "_draw_pareto", broken)
    model = baseline_named(lending_baselines, "onnx:")
    for name, auc in (("one", 0.74), ("two", 0.76)):
        succeeded_submission(
            lending_benchmark, user, model, name, {"roc_auc": auc, "latency_p99_ms": 1.0},
            documents={"decay": document("lending_decay")},
        )
    response = client.get(f"/benchmarks/{lending_benchmark.slug}/")
    assert response.status_code == 200
    assert response.content.decode().count(charts.NOT_DRAWN) >= 2
