"""Server-drawn charts (leaderboard/charts.py) on real report documents from the demo.

The documents in tests/data/chart_documents/ are the stored `Report.document`s of the demo's
baselines, trimmed to the fields the charts read. None of these tests needs the database.
"""

import copy
import itertools
import json
import math
import random
import re
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.template.loader import render_to_string
from django.utils.html import escape

from leaderboard import charts
from leaderboard.charts import Chart

DOCUMENTS = Path(__file__).parent / "data" / "chart_documents"
SVG = "{http://www.w3.org/2000/svg}"


def document(name: str) -> dict:
    return json.loads((DOCUMENTS / f"{name}.json").read_text())


def svg_root(chart: Chart) -> ET.Element:
    return ET.fromstring(chart.svg)


def svg_texts(chart: Chart) -> list[str]:
    return ["".join(element.itertext()) for element in svg_root(chart).iter(f"{SVG}text")]


def svg_ids(chart: Chart) -> list[str]:
    return [element.get("id") for element in svg_root(chart).iter() if element.get("id")]


def close(cell, value) -> bool:
    """A table cell (four significant digits) stands for the document's number."""
    return float(cell) == pytest.approx(value, rel=5e-4, abs=1e-12)


def board_points(x_key: str, y_key: str) -> list[dict]:
    return [
        {
            "label": entry["name"],
            "x": entry["metrics"].get(x_key),
            "y": entry["metrics"].get(y_key),
            "pareto": entry["pareto"],
            "rank": entry["rank"],
            "baseline": entry["is_baseline"],
        }
        for entry in document("adult_board")["entries"]
    ]


def brute_force_front(xs, ys, x_higher: bool, y_higher: bool) -> list[bool]:
    def at_least(a, b, higher):
        return a >= b if higher else a <= b

    def better(a, b, higher):
        return a > b if higher else a < b

    return [
        not any(
            at_least(xs[j], xs[i], x_higher)
            and at_least(ys[j], ys[i], y_higher)
            and (better(xs[j], xs[i], x_higher) or better(ys[j], ys[i], y_higher))
            for j in range(len(xs))
        )
        for i in range(len(xs))
    ]


@pytest.fixture(scope="module")
def every_chart() -> list[Chart]:
    decay = document("lending_decay")
    return [
        charts.group_metric_chart(document("adult_fairness"), "sex & race", "accuracy"),
        charts.group_metric_chart(document("lending_fairness"), "gender", "selection_rate"),
        charts.attribution_chart(document("adult_interpretability")),
        charts.latency_chart(document("adult_latency")),
        charts.decay_chart(decay),
        charts.decay_overlay_chart([("one", decay), ("two", decay)]),
        charts.pareto_chart(board_points("latency_p99_ms", "accuracy"), "latency_p99_ms", "accuracy"),
    ]


# --- what every chart is, as inlined SVG ------------------------------------------------------


def test_every_chart_is_inlineable_accessible_svg(every_chart):
    for chart in every_chart:
        assert chart.svg.startswith("<svg"), chart.title
        assert "<?xml" not in chart.svg and "<!DOCTYPE" not in chart.svg
        root = svg_root(chart)
        assert root.tag == f"{SVG}svg"
        assert root.get("role") == "img"
        assert root.get("aria-label") == chart.title
        assert root.find(f"{SVG}title").text == chart.title
        # Scales with the page: a relative width over the kept viewBox, no fixed height.
        assert root.get("width") == "100%" and root.get("height") is None
        assert root.get("viewBox").split()[2] == "720"
        # Text stays text (svg.fonttype none): no glyph outlines.
        assert root.find(f".//{SVG}text") is not None
        assert "DejaVuSans-" not in chart.svg
        assert all(len(row) == len(chart.columns) for row in chart.rows), chart.title


def test_no_two_charts_on_a_page_share_an_id(every_chart):
    seen: dict[str, str] = {}
    for chart in every_chart:
        ids = svg_ids(chart)
        assert len(ids) == len(set(ids)), f"{chart.title} repeats an id"
        for found in ids:
            assert found not in seen, f"{found} is in both {seen.get(found)!r} and {chart.title!r}"
            seen[found] = chart.title
        # Every reference points inside its own chart.
        references = re.findall(r'(?:url\(#|href="#)([^")]+)', chart.svg)
        assert references and set(references) <= set(ids)


def test_the_same_chart_of_two_documents_has_different_ids():
    first = charts.latency_chart(document("adult_latency"))
    second = charts.latency_chart(document("lending_latency"))
    assert not set(svg_ids(first)) & set(svg_ids(second))


def test_matplotlibs_page_wide_style_is_scoped_to_its_chart(every_chart):
    for chart in every_chart:
        root_id = svg_root(chart).get("id")
        styles = re.findall(r"<style[^>]*>(.*?)</style>", chart.svg, re.S)
        assert styles and all(style.lstrip().startswith(f"#{root_id} ") for style in styles)


def test_output_is_deterministic():
    fairness = document("adult_fairness")
    first = charts.group_metric_chart(fairness, "race", "accuracy")
    again = charts.group_metric_chart(copy.deepcopy(fairness), "race", "accuracy")
    assert first == again
    assert "dc:date" not in first.svg and "Matplotlib v" not in first.svg


def test_charts_drawn_in_parallel_threads_equal_those_drawn_one_by_one():
    documents = [document("adult_latency"), document("lending_latency")] * 4
    alone = [charts.latency_chart(d).svg for d in documents]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda d: charts.latency_chart(d).svg, documents))
    assert together == alone


def test_palette_is_okabe_ito():
    assert charts.OKABE_ITO == {
        "black": "#000000",
        "orange": "#E69F00",
        "sky_blue": "#56B4E9",
        "bluish_green": "#009E73",
        "yellow": "#F0E442",
        "blue": "#0072B2",
        "vermillion": "#D55E00",
        "reddish_purple": "#CC79A7",
    }
    assert set(charts.SERIES_COLOURS) <= set(charts.OKABE_ITO.values())


# --- fairness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "grouping", "metric"),
    [
        ("adult_fairness", "sex", "accuracy"),
        ("adult_fairness", "race", "selection_rate"),
        ("adult_fairness", "sex & race", "true_positive_rate"),
        ("lending_fairness", "gender & age_band", "accuracy"),
    ],
)
def test_group_chart_draws_and_tabulates_every_group(name, grouping, metric):
    fairness = document(name)
    found = next(g for g in fairness["groupings"] if g["name"] == grouping)
    chart = charts.group_metric_chart(fairness, grouping, metric)
    texts = svg_texts(chart)
    assert len(chart.rows) == len(found["groups"])
    for row, group in zip(chart.rows, found["groups"]):
        measured = group["metrics"][metric]
        assert row[0] == group["label"] and row[1] == group["count"]
        assert close(row[2], measured["value"])
        assert close(row[3], measured["interval"][0]) and close(row[4], measured["interval"][1])
        assert close(row[5], measured["vs_reference"]["difference"]["value"])
        assert any(text.startswith(group["label"]) for text in texts), group["label"]
        assert any(text.strip() == row[2] for text in texts), f"no value label {row[2]}"
    reference = found["reference"]["group"]
    assert [row[0] for row in chart.rows if "reference" in row[6]] == [reference]
    assert f"{reference} (reference)" in texts
    assert charts._fmt(fairness["overall"][metric]["value"]) in chart.caption


def test_small_groups_are_marked_in_the_chart_the_table_and_the_caption():
    fairness = document("adult_fairness")
    race = next(g for g in fairness["groupings"] if g["name"] == "race")
    race["groups"][3]["small"] = True  # "Other", 135 rows, as a benchmark with min_group_size 200 would flag it
    chart = charts.group_metric_chart(fairness, "race", "accuracy")
    assert "Other (small)" in svg_texts(chart)
    assert [row[0] for row in chart.rows if "small group" in row[6]] == ["Other"]
    assert "1 small group (Other): fewer than 30 test rows" in chart.caption
    assert "small group" in svg_texts(chart)  # the legend explains the hatching


def test_an_undefined_group_value_is_said_not_drawn():
    fairness = document("adult_fairness")
    sex = next(g for g in fairness["groupings"] if g["name"] == "sex")
    sex["groups"][0]["metrics"]["accuracy"].update(value=None, interval=None)
    chart = charts.group_metric_chart(fairness, "sex", "accuracy")
    assert chart.rows[0][2:5] == ["—", "—", "—"] and "undefined" in chart.rows[0][6]
    assert "No accuracy is defined for Female" in chart.caption


def test_group_chart_rejects_what_the_document_lacks():
    fairness = document("adult_fairness")
    with pytest.raises(ValueError, match=r"no grouping 'age'.*'sex', 'race', 'sex & race'"):
        charts.group_metric_chart(fairness, "age", "accuracy")
    with pytest.raises(ValueError, match=r"carry no 'roc_auc'.*accuracy"):
        charts.group_metric_chart(fairness, "sex", "roc_auc")
    with pytest.raises(ValueError, match="no grouping"):
        charts.group_metric_chart({}, "sex", "accuracy")


# --- interpretability -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adult_interpretability", "lending_interpretability"])
def test_attribution_chart_sorts_columns_and_marks_sensitive_ones(name):
    interpretability = document(name)
    chart = charts.attribution_chart(interpretability)
    expected = sorted(interpretability["mean_abs_shap"], key=lambda entry: -entry["mean_abs_shap"])
    assert [row[1] for row in chart.rows] == [entry["column"] for entry in expected]
    for row, entry in zip(chart.rows, expected):
        assert close(row[2], entry["mean_abs_shap"])
    values = [float(row[2]) for row in chart.rows]
    assert values == sorted(values, reverse=True)
    sensitive = set(interpretability["sensitive_features"])
    assert {row[1] for row in chart.rows if row[4] == "yes"} == sensitive
    texts = svg_texts(chart)
    for column in sensitive:
        assert f"{column} (sensitive)" in texts
    output = interpretability["output"]
    assert output["kind"].replace("_", " ") in chart.caption and str(output["class"]) in chart.caption


def test_attribution_chart_without_attributions_raises():
    with pytest.raises(ValueError, match="no mean_abs_shap"):
        charts.attribution_chart({"mean_abs_shap": [], "sensitive_features": ["sex"]})


# --- latency ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adult_latency", "lending_latency"])
def test_latency_chart_marks_the_documents_percentiles(name):
    latency = document(name)
    chart = charts.latency_chart(latency)
    texts = svg_texts(chart)
    for percentile in ("p50", "p90", "p99"):
        value = latency["percentiles_ms"][percentile]
        label = next(text for text in texts if text.startswith(f"{percentile} "))
        assert close(re.search(r"[\d.]+(?= ms)", label)[0], value)
        assert f"{percentile} {charts._fmt(value)} ms" in chart.caption
        # The table names the bin each percentile falls in, with its value.
        marked = [row for row in chart.rows if f"{percentile} = " in row[3]]
        assert len(marked) == 1
        assert float(marked[0][0]) <= value * (1 + 5e-4) and value <= float(marked[0][1]) * (1 + 5e-4)
    histogram = latency["histogram"]
    assert [row[2] for row in chart.rows] == histogram["counts"]
    for row, low, high in zip(chart.rows, histogram["edges_ms"], histogram["edges_ms"][1:]):
        assert close(row[0], low) and close(row[1], high)


def test_latency_chart_of_an_empty_histogram_raises():
    latency = document("adult_latency")
    latency["histogram"] = {"spacing": "log", "unit": "ms", "edges_ms": [], "counts": []}
    with pytest.raises(ValueError, match="empty histogram"):
        charts.latency_chart(latency)
    latency["histogram"] = {"edges_ms": [1.0, 2.0], "counts": [0]}
    with pytest.raises(ValueError, match="empty histogram"):
        charts.latency_chart(latency)


def test_a_missing_percentile_is_said_in_the_caption():
    latency = document("adult_latency")
    del latency["percentiles_ms"]["p99"]
    chart = charts.latency_chart(latency)
    assert "not marked: p99" in chart.caption
    assert not any(text.startswith("p99") for text in svg_texts(chart))


def test_throughput_table_equals_the_document_and_names_the_best_batch_size():
    latency = document("adult_latency")
    columns, rows = charts.throughput_table(latency)
    assert columns[0] == "Batch size" and columns[-1] == "Best"
    for row, batch in zip(rows, latency["throughput"], strict=True):
        assert row[:3] == [batch["batch_size"], batch["calls"], batch["rows"]]
        assert close(row[3], batch["rows_per_s"])
        assert close(row[4], batch["wall_seconds_per_row"] * 1000)
    assert [row[0] for row in rows if row[-1] == "best"] == [latency["best_batch_size"]]
    with pytest.raises(ValueError, match="no throughput"):
        charts.throughput_table({"throughput": []})


# --- decay ------------------------------------------------------------------------------------


def test_decay_chart_tabulates_every_window_and_states_the_trend():
    decay = document("lending_decay")
    chart = charts.decay_chart(decay)
    assert [row[0] for row in chart.rows] == [window["label"] for window in decay["windows"]]
    for row, window in zip(chart.rows, decay["windows"]):
        assert row[3] == window["rows"]
        assert close(row[4], window["value"])
        assert close(row[5], window["interval"][0]) and close(row[6], window["interval"][1])
    assert charts._fmt(decay["trend"]["decay_per_30d"]) in chart.caption
    assert "fitted trend" in svg_texts(chart)
    # The sample submission declares no training cutoff, and the caption passes on why.
    assert decay["training_cutoff"]["note"] in chart.caption
    assert not any("training cutoff" in text for text in svg_texts(chart))


def test_decay_trend_line_is_the_least_squares_fit():
    decay = document("lending_decay")
    drawn = [w for w in charts._windows(decay) if w.value is not None]
    (x0, x1), (y0, y1), _ = charts._trend_line(decay, drawn, higher=True)
    xs = [w.x for w in drawn]
    ys = [w.value for w in drawn]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    assert (y1 - y0) / (x1 - x0) == pytest.approx(slope, rel=1e-9)
    assert y0 == pytest.approx(mean_y + slope * (x0 - mean_x), rel=1e-9)


def test_decay_chart_marks_the_training_cutoff_and_windows_left_out():
    decay = document("lending_decay")
    decay["training_cutoff"] = {"date": "2024-06-30", "note": "Windows starting before the training cutoff: ..."}
    decay["windows"][-1].update(in_fit=False, excluded_because="fewer than 100 rows")
    decay["windows"][-2].update(value=None, interval=None)
    chart = charts.decay_chart(decay)
    assert "training cutoff 2024-06-30" in svg_texts(chart)
    assert "training cutoff, 2024-06-30" in chart.caption
    assert "2025-12 (fewer than 100 rows)" in chart.caption
    assert "No value, not drawn: 2025-11" in chart.caption
    assert chart.rows[-1][7] == "no: fewer than 100 rows"


def test_decay_chart_without_windows_raises():
    with pytest.raises(ValueError, match="no time windows"):
        charts.decay_chart({"primary_metric": "roc_auc", "windows": []})
    decay = document("lending_decay")
    for window in decay["windows"]:
        window["value"] = None
    with pytest.raises(ValueError, match="no window"):
        charts.decay_chart(decay)


def test_decay_overlay_has_a_curve_and_a_column_per_submission():
    decay = document("lending_decay")
    later = copy.deepcopy(decay)
    for window in later["windows"]:
        window["value"] -= 0.05
    chart = charts.decay_overlay_chart([("Gradient boosting", decay), ("Logistic regression", later)])
    assert chart.columns == ["Window", "Gradient boosting", "Logistic regression"]
    texts = svg_texts(chart)
    assert "Gradient boosting" in texts and "Logistic regression" in texts  # the legend
    for row, first, second in zip(chart.rows, decay["windows"], later["windows"], strict=True):
        assert row[0] == first["label"]
        assert close(row[1], first["value"]) and close(row[2], second["value"])
    with pytest.raises(ValueError, match="different metrics"):
        charts.decay_overlay_chart([("a", decay), ("b", {**later, "primary_metric": "accuracy"})])
    with pytest.raises(ValueError, match="no decay series"):
        charts.decay_overlay_chart([])


# --- Pareto -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("x_higher", "y_higher"), list(itertools.product([True, False], repeat=2)))
def test_pareto_front_equals_brute_force(x_higher, y_higher):
    generator = random.Random(7)
    for size in (0, 1, 2, 5, 40, 200):
        # Few distinct values, so ties and duplicate points are common.
        xs = [generator.randint(0, 12) for _ in range(size)]
        ys = [generator.randint(0, 12) for _ in range(size)]
        found = charts.pareto_front(xs, ys, x_higher_is_better=x_higher, y_higher_is_better=y_higher)
        assert found == brute_force_front(xs, ys, x_higher, y_higher)
        floats = [generator.random() for _ in range(size)], [generator.random() for _ in range(size)]
        found = charts.pareto_front(*floats, x_higher_is_better=x_higher, y_higher_is_better=y_higher)
        assert found == brute_force_front(*floats, x_higher, y_higher)


def test_pareto_chart_frontier_is_that_of_the_two_axes_not_the_pareto_flag():
    points = board_points("latency_p99_ms", "accuracy")
    for point in points:
        point["pareto"] = False  # the weighted objectives' frontier must not matter
    chart = charts.pareto_chart(points, "latency_p99_ms", "accuracy")
    on_front = {row[1] for row in chart.rows if row[4] == "yes"}
    # Lower latency and higher accuracy: the majority class is fastest, the ONNX logistic
    # regression nearly as fast and more accurate, gradient boosting the most accurate.
    assert on_front == {"Majority class", "Logistic regression (ONNX)", "Gradient boosting"}
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    expected = brute_force_front(xs, ys, x_higher=False, y_higher=True)
    assert on_front == {p["label"] for p, flag in zip(points, expected) if flag}


def test_pareto_chart_labels_axes_with_objectives_and_directions():
    chart = charts.pareto_chart(board_points("latency_p99_ms", "accuracy"), "latency_p99_ms", "accuracy")
    texts = svg_texts(chart)
    # matplotlib writes each line of a two-line label as a <text> of its own.
    assert {"Latency p99 (ms)", "▼ lower is better", "Accuracy", "▲ higher is better"} <= set(texts)
    assert chart.columns[2:4] == ["Latency p99 (ms)", "Accuracy"]
    for row, entry in zip(chart.rows, sorted(document("adult_board")["entries"], key=lambda e: (e["rank"], e["name"]))):
        assert close(row[2], entry["metrics"]["latency_p99_ms"]) and close(row[3], entry["metrics"]["accuracy"])


def test_pareto_chart_skips_and_counts_missing_values():
    points = board_points("size_bytes", "accuracy")
    points[1]["x"] = None
    points[2]["y"] = math.nan
    chart = charts.pareto_chart(points, "size_bytes", "accuracy")
    assert "2 submissions without both values not drawn" in chart.caption
    assert sum(row[4] == "not drawn: no value" for row in chart.rows) == 2
    assert "3 submissions by" in chart.caption


def test_pareto_chart_goes_logarithmic_only_beyond_three_decades():
    # Sizes run from 1,221 to 1,558,206 bytes: more than three decades.
    wide = charts.pareto_chart(board_points("size_bytes", "accuracy"), "size_bytes", "accuracy")
    assert "horizontal axis is logarithmic" in wide.caption
    narrow = charts.pareto_chart(board_points("latency_p99_ms", "accuracy"), "latency_p99_ms", "accuracy")
    assert "logarithmic" not in narrow.caption


def test_pareto_chart_of_thousands_labels_only_the_top_ranks():
    generator = random.Random(3)
    points = [
        {
            "label": f"model {i}",
            "x": generator.lognormvariate(0, 1),
            "y": generator.random(),
            "pareto": False,
            "rank": i + 1,
            "baseline": i % 50 == 0,
        }
        for i in range(3000)
    ]
    chart = charts.pareto_chart(points, "latency_p50_ms", "roc_auc")
    labels = [text for text in svg_texts(chart) if text.startswith("#")]
    assert labels == [f"#{rank} model {rank - 1}" for rank in range(1, 11)]
    assert len(chart.rows) == 3000
    assert "Labelled: the top 10 by rank" in chart.caption
    expected = brute_force_front([p["x"] for p in points], [p["y"] for p in points], False, True)
    assert sum(row[4] == "yes" for row in chart.rows) == sum(expected)


def test_pareto_chart_rejects_nothing_to_draw_and_unknown_objectives():
    with pytest.raises(ValueError, match="no submissions"):
        charts.pareto_chart([], "accuracy", "latency_p99_ms")
    with pytest.raises(ValueError, match="no submission has both"):
        charts.pareto_chart([{"label": "a", "x": None, "y": 1.0, "rank": 1}], "accuracy", "latency_p99_ms")
    with pytest.raises(ValueError, match="unknown objective 'speed'"):
        charts.pareto_chart(board_points("accuracy", "accuracy"), "speed", "accuracy")


# --- template ---------------------------------------------------------------------------------


def test_chart_template_renders_figure_caption_and_table():
    chart = charts.group_metric_chart(document("adult_fairness"), "sex & race", "accuracy")
    html = render_to_string("_chart.html", {"chart": chart})
    assert html.count('<figure class="chart">') == 1
    assert chart.svg in html  # inlined as is, not escaped
    assert f"<figcaption><strong>{escape(chart.title)}.</strong> {escape(chart.caption)}</figcaption>" in html
    assert "<details><summary>Table</summary>" in " ".join(html.split()).replace("> <", "><")
    assert '<div class="table-wrap"><table>' in html
    assert html.count("<tr>") == 1 + len(chart.rows)
    # Cells are escaped: group labels carry "&".
    assert "<td>sex=Female &amp; race=Black</td>" in html
    for column in chart.columns:
        assert f'<th scope="col">{escape(column)}</th>' in html
