"""The test set's resolution (issue 13, item 4): the pure figures against hand-computed numbers, then
the baselines' figure, the API's fields, the compare view's rows to separate and the creation output."""

import io
import math

import numpy as np
import pytest

from leaderboard import resolution as r
from tests.conftest import baseline_named, succeeded_submission
from tests.test_guarded import guarded_benchmark  # noqa: F401 (a fixture)

Z = 1.959963984540054  # the 97.5% quantile of the standard normal
Z80 = 0.8416212335729143  # its 80% quantile


# --- Pure functions --------------------------------------------------------------------------


def test_the_resolvable_and_detectable_differences_are_196_and_280_standard_errors():
    assert r.resolvable_difference(0.01) == pytest.approx(0.01959964, rel=1e-6)
    assert r.detectable_difference(0.01) == pytest.approx(0.02801585, rel=1e-6)
    assert r.scaled_standard_error(0.02, 600, 2000) == pytest.approx(0.02 * math.sqrt(0.3))


def test_the_worst_case_for_accuracy_is_one_over_root_n():
    # 2000 rows: 1 / sqrt(2000) = 0.0223607; x 1.96 = 0.043826, the "≈0.044" of the issue.
    assert r.share_difference_standard_error(2000) == pytest.approx(0.0223607, rel=1e-5)
    assert r.share_difference_standard_error(2000, 0.1) == pytest.approx(0.00707107, rel=1e-5)
    figure = r.resolution_before_baselines("accuracy", test_rows=2000, public_rows=600)
    assert figure.source == "worst case" and figure.pairs == 0
    assert figure.whole.resolvable == pytest.approx(0.043826, rel=1e-4)
    assert figure.public.rows == 600 and figure.public.resolvable == pytest.approx(0.080015, rel=1e-4)
    assert not figure.whole.scaled and not figure.public.scaled


def test_a_metric_without_a_formula_is_measured_once_baselines_are_evaluated():
    figure = r.current_resolution("roc_auc", [], test_rows=2000)
    assert figure.source == "unmeasured" and figure.whole is None and figure.public is None
    assert "measured once baselines are evaluated" in r.resolution_sentence(figure)


def test_the_typical_pair_is_the_median_paired_standard_error():
    a = np.zeros(4)
    b = np.array([1.0, -1.0, 1.0, -1.0])  # b - a: sd sqrt(4/3)
    c = 3 * b  # c - a: 3 sqrt(4/3); c - b: 2 sqrt(4/3)
    unit = math.sqrt(4 / 3)
    typical = r.typical_pair_standard_error([a, b, c])
    assert typical.pairs == 3 and typical.standard_error == pytest.approx(2 * unit)
    # A copy of a agrees with it on every resample: that pair is left out, the other two count.
    with_copy = r.typical_pair_standard_error([a, b, c, a.copy()])
    assert with_copy.pairs == 5 and with_copy.standard_error == pytest.approx(2 * unit)
    assert r.typical_pair_standard_error([a]) == r.TypicalPair(None, 0)


def test_the_public_part_is_direct_and_the_whole_set_scaled_on_a_guarded_benchmark():
    a, b = np.zeros(4), np.array([1.0, -1.0, 1.0, -1.0]) / 100
    guarded = r.resolution_from_baselines("accuracy", [a, b], test_rows=2000, public_rows=600)
    error = math.sqrt(4 / 3) / 100
    assert guarded.public.standard_error == pytest.approx(error) and not guarded.public.scaled
    assert guarded.whole.standard_error == pytest.approx(error * math.sqrt(600 / 2000)) and guarded.whole.scaled
    open_ = r.resolution_from_baselines("accuracy", [a, b], test_rows=2000)
    assert open_.whole.standard_error == pytest.approx(error) and open_.public is None
    assert r.resolution_from_baselines("accuracy", [a], test_rows=2000) is None


def test_rows_to_separate_follow_n_times_the_squared_ratio():
    # d = 0.003, s = 0.005 on 2000 rows: n' = 2000 (1.96 x 0.005 / 0.003)² = 21341.4, so 19342 more.
    separation = r.rows_to_separate(0.003, 0.005, 2000)
    assert separation.rows_needed == pytest.approx(2000 * (Z * 0.005 / 0.003) ** 2)
    assert separation.rows_needed == pytest.approx(21341.44, abs=0.01)
    assert separation.more_rows == 19342 and not separation.significant
    assert separation.rows_needed_80 == pytest.approx(2000 * ((Z + Z80) * 0.005 / 0.003) ** 2)
    assert "About 19342 more test rows would separate them" in r.separation_sentence(separation, "accuracy")

    separated = r.rows_to_separate(-0.02, 0.005, 2000)  # the sign does not matter
    assert separated.significant and separated.more_rows == 0
    assert r.separation_sentence(separated, "accuracy").startswith("Already separated")

    same = r.rows_to_separate(0.0, 0.005, 2000)
    assert same.rows_needed == math.inf and same.more_rows is None
    assert "they measured the same" in r.separation_sentence(same, "accuracy")
    # Exactly at the line: no row more is needed.
    assert r.rows_to_separate(Z * 0.005, 0.005, 2000).more_rows == 0
    with pytest.raises(ValueError):
        r.rows_to_separate(math.nan, 0.005, 2000)


# --- On the database -------------------------------------------------------------------------


def shared_noise_resamples(benchmark, values, spread, seed=3):
    """Per value, B resamples around it sharing one draw of the rows' luck, as real ones do."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 0.01, benchmark.bootstrap_resamples)
    return [value + shared + rng.normal(0, spread, shared.size) for value in values]


def baselines_with(benchmark, user, model, values, spread=0.004):
    samples = shared_noise_resamples(benchmark, values, spread)
    for index, (value, sample) in enumerate(zip(values, samples)):
        succeeded_submission(
            benchmark, user, model, f"baseline-{index}", {"accuracy": value}, baseline=True,
            resamples={"accuracy": sample},
        )
    # As stored: float32.
    return [sample.astype(np.float32).astype(float) for sample in samples]


def direct_median_se(samples):
    errors = [np.std(x - y, ddof=1) for i, x in enumerate(samples) for y in samples[i + 1:]]
    return float(np.median(errors)), len(errors)


def test_the_baselines_figure_is_the_median_paired_se_of_their_resamples(adult_benchmark, adult_baselines, user):
    model = baseline_named(adult_baselines, "onnx:")
    assert r.benchmark_resolution(adult_benchmark).source == "worst case"
    samples = baselines_with(adult_benchmark, user, model, [0.80, 0.82, 0.85])
    # A submission that is not a baseline does not count.
    succeeded_submission(adult_benchmark, user, model, "entry", {"accuracy": 0.9},
                         resamples={"accuracy": shared_noise_resamples(adult_benchmark, [0.9], 0.05, seed=9)[0]})
    expected, pairs = direct_median_se(samples)
    figure = r.benchmark_resolution(adult_benchmark)
    assert (figure.source, figure.pairs) == ("baselines", pairs) and pairs == 3
    assert figure.whole.rows == 2000 and figure.public is None
    assert figure.whole.standard_error == pytest.approx(expected, rel=1e-9)
    assert figure.whole.resolvable == pytest.approx(Z * expected, rel=1e-9)


def test_the_api_resource_carries_the_resolution_on_an_open_benchmark(
    adult_benchmark, adult_baselines, user, api_client
):
    url = f"/api/v1/benchmarks/{adult_benchmark.slug}/"
    before = api_client.get(url).json()["resolution"]
    assert before["source"] == "worst case" and before["public"] is None
    assert before["whole"]["resolvable_difference"] == pytest.approx(Z / math.sqrt(2000))
    assert "The baselines' figure replaces this once they are evaluated." in before["summary"]

    samples = baselines_with(adult_benchmark, user, baseline_named(adult_baselines, "onnx:"), [0.80, 0.83])
    expected, _ = direct_median_se(samples)
    body = api_client.get(url).json()["resolution"]
    assert body["metric"] == "accuracy" and body["source"] == "baselines" and body["baseline_pairs"] == 1
    assert body["whole"]["rows"] == 2000 and not body["whole"]["scaled"] and body["public"] is None
    assert body["whole"]["standard_error"] == pytest.approx(expected, rel=1e-9)
    assert body["whole"]["detectable_difference"] == pytest.approx((Z + Z80) * expected, rel=1e-9)
    assert "median over 1 pair of baselines" in body["summary"]


def test_the_api_resource_carries_the_resolution_on_a_guarded_benchmark(
    guarded_benchmark, adult_baselines, user, api_client
):
    benchmark, _, positions = guarded_benchmark
    url = f"/api/v1/benchmarks/{benchmark.slug}/"
    before = api_client.get(url).json()["resolution"]
    assert before["public"]["rows"] == 600
    assert before["public"]["resolvable_difference"] == pytest.approx(Z / math.sqrt(600))

    samples = baselines_with(benchmark, user, baseline_named(adult_baselines, "onnx:"), [0.80, 0.82, 0.84])
    expected, pairs = direct_median_se(samples)
    body = api_client.get(url).json()["resolution"]
    assert body["source"] == "baselines" and body["baseline_pairs"] == pairs == 3
    # Baselines are evaluated on the 600 public rows: that figure is direct, the whole set's scaled from it.
    assert body["public"] == {
        "rows": 600,
        "standard_error": pytest.approx(expected, rel=1e-9),
        "resolvable_difference": pytest.approx(Z * expected, rel=1e-9),
        "detectable_difference": pytest.approx((Z + Z80) * expected, rel=1e-9),
        "scaled": False,
    }
    assert body["whole"]["rows"] == 2000 and body["whole"]["scaled"]
    assert body["whole"]["standard_error"] == pytest.approx(expected * math.sqrt(600 / 2000), rel=1e-9)
    assert "600 public rows" in body["summary"]


@pytest.mark.parametrize("guarded", [False, True])
def test_the_compare_view_says_how_many_more_rows_would_separate_them(
    request, adult_benchmark, adult_baselines, user, api_client, guarded
):
    benchmark = request.getfixturevalue("guarded_benchmark")[0] if guarded else adult_benchmark
    model = baseline_named(adult_baselines, "onnx:")
    first, second = shared_noise_resamples(benchmark, [0.802, 0.800], 0.003)
    a = succeeded_submission(benchmark, user, model, "a", {"accuracy": 0.802}, resamples={"accuracy": first})
    b = succeeded_submission(benchmark, user, model, "b", {"accuracy": 0.800}, resamples={"accuracy": second})

    if guarded:
        withheld = api_client.get(f"/api/v1/submissions/{a.pk}/compare/{b.pk}/").json()["separation"]
        assert withheld["difference"] is None and withheld["more_rows"] is None
        assert withheld["summary"].startswith("Withheld while this guarded benchmark is open")
        from django.utils import timezone

        type(benchmark).objects.filter(pk=benchmark.pk).update(closed_at=timezone.now())  # then it is shown
    body = api_client.get(f"/api/v1/submissions/{a.pk}/compare/{b.pk}/").json()["separation"]
    rows = 600 if guarded else 2000
    error = float(np.std(first.astype(np.float32).astype(float) - second.astype(np.float32).astype(float), ddof=1))
    needed = rows * (Z * error / 0.002) ** 2
    assert body["metric"] == "accuracy" and body["rows"] == rows
    assert body["difference"] == pytest.approx(0.002)
    assert body["standard_error"] == pytest.approx(error, rel=1e-9)
    assert body["significant"] is False and needed > rows
    assert body["rows_needed"] == pytest.approx(needed, rel=1e-6)
    assert body["more_rows"] == math.ceil(needed - rows)
    assert f"About {body['more_rows']} more" in body["summary"]

    same = api_client.get(f"/api/v1/submissions/{a.pk}/compare/{a.pk}/").json()["separation"]
    assert same["difference"] == 0 and same["more_rows"] is None and same["rows_needed"] is None
    assert "they measured the same" in same["summary"]


def test_the_compare_view_without_resamples_says_the_noise_is_unknown(
    adult_benchmark, adult_baselines, user, api_client
):
    model = baseline_named(adult_baselines, "onnx:")
    a = succeeded_submission(adult_benchmark, user, model, "a", {"accuracy": 0.81})
    b = succeeded_submission(adult_benchmark, user, model, "b", {"accuracy": 0.80})
    body = api_client.get(f"/api/v1/submissions/{a.pk}/compare/{b.pk}/").json()["separation"]
    assert body["difference"] == pytest.approx(0.01) and body["standard_error"] is None and body["more_rows"] is None
    assert "noise of their difference is unknown" in body["summary"]


def test_the_benchmark_page_shows_the_resolution_with_its_baseline_pairs(
    adult_benchmark, adult_baselines, user, client
):
    baselines_with(adult_benchmark, user, baseline_named(adult_baselines, "onnx:"), [0.80, 0.82, 0.85])
    page = client.get(f"/benchmarks/{adult_benchmark.slug}/").content.decode()
    assert 'id="resolution"' in page and "median over 3 pairs of baselines" in page
    assert "cannot be told from chance at 95%" in page


@pytest.mark.parametrize("policy", ["open", "guarded"])
def test_create_benchmark_prints_the_resolution(db, tmp_path, adult_frames, policy):
    from django.core.management import call_command

    train, test = adult_frames
    train.to_parquet(tmp_path / "train.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    out = io.StringIO()
    call_command(
        "create_benchmark", "adult-resolution", "--name", "Adult", "--task", "binary", "--target", "income",
        "--train", str(tmp_path / "train.parquet"), "--test", str(tmp_path / "test.parquet"),
        "--positive-label", ">50K", "--holdout-policy", policy, stdout=out,
    )
    text = out.getvalue()
    assert "Resolution: on the 2000 test rows a difference in accuracy below ≈0.044 cannot be told from chance" in text
    assert "worst case: two models that disagree on every row" in text
    assert "The baselines' figure replaces this once they are evaluated." in text
    assert ("guarded: on the 600 public rows submitters are scored on ≈0.08" in text) == (policy == "guarded")
