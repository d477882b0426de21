"""The resolution of a test set: the smallest difference in the primary metric it can tell from chance (issue 13).

Every submission of a benchmark is measured on the same seeded bootstrap resamples of the test
rows, so for two submissions the spread of (resample b of one - resample b of the other) is the
standard error s of their paired difference (`paired_standard_error(kind="resamples")`, as the
Ladder uses it). From s:

- **Resolvable difference** = z(0.975) x s ≈ 1.96 s: the difference that would *just* be
  significant at 95% (two-sided). A true difference of exactly this size is declared significant
  only about half the time.
- **Detectable difference** = (z(0.975) + z(0.80)) x s ≈ 2.80 s: the true difference found
  significant 80% of the time (80% power). Both are reported, labelled; the first is "the
  resolution".

Three figures are built on these (the pure functions below; the database-facing ones are at the
end, and import Django lazily so this module stays importable without it):

1. **A typical pair, from the baselines** (`typical_pair_standard_error`): the median, over every
   pair of the benchmark's evaluated baselines, of the paired standard error of the primary
   metric on their shared resamples, with the number of pairs used. Pairs with a zero standard
   error (models that agree on every resample: copies) are left out, since they are no pair whose
   difference anyone needs resolved. The median, not the mean, so one odd baseline (a constant
   model, far from the rest) does not set the figure.
2. **Before any baseline is evaluated** (`share_difference_standard_error`): accuracy is a mean of
   a per-row 0/1 score, so the difference of two models' accuracies is the mean of per-row
   differences in {-1, 0, 1}, whose variance is q - d² for a disagreement rate q and a difference
   d; the paired standard error is therefore at most sqrt(1/n), reached by two models that
   disagree on every row with d = 0. That worst case is what is shown (with the note that models
   disagreeing on a share q of rows resolve sqrt(q) of it); the baselines' figure replaces it once
   they are evaluated. Other primary metrics (ROC AUC, log loss, balanced accuracy, RMSE, ...) have
   no bound that does not depend on the models, so they say "measured once baselines are evaluated".
3. **Rows to separate two submissions** (`rows_to_separate`): with an observed paired difference
   d and its standard error s on n rows, s shrinks as sqrt(n / n') on n' rows like them, so the
   difference becomes just significant when z s sqrt(n / n') = |d|, i.e.
   n' = n (z s / |d|)²; "more rows" is max(0, n' - n). It assumes d stays what it is, so at n' the
   pair separates only about half the time; n'_80 = n ((z + z(0.80)) s / |d|)² is the 80%-power
   count. With d = 0 no number of rows separates them: they measured the same.

The public part of a guarded benchmark. Submissions (baselines too) are evaluated on its public
rows only, so their resamples are of the public part: its figure is computed directly from them,
and the whole test set's is scaled from it, s_whole = s_public x sqrt(n_public / n_whole) (a
standard error of a mean shrinks as 1/sqrt(n); for ROC AUC and the like this holds
asymptotically). On an open benchmark the whole set's figure is direct and there is no public part.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.stats import norm

from leaderboard.ladder import paired_standard_error

CONFIDENCE = 0.95
POWER = 0.80
Z_SIGNIFICANT = float(norm.ppf(1 - (1 - CONFIDENCE) / 2))  # 1.959964...
Z_POWER = float(norm.ppf(POWER))  # 0.841621...

# Primary metrics that are the mean of a per-row 0/1 score: their paired standard error has a
# model-free bound before anything is evaluated. Balanced accuracy and F1 weight rows by class and are not.
SHARE_METRICS = frozenset({"accuracy"})
# Shown beside the worst case: what a typical disagreement rate gives (the bound scales as sqrt(q)).
EXAMPLE_DISAGREEMENT = 0.1

SOURCE_BASELINES = "baselines"
SOURCE_WORST_CASE = "worst case"
SOURCE_UNMEASURED = "unmeasured"


# --- The figures -----------------------------------------------------------------------------


def resolvable_difference(standard_error: float) -> float:
    """The difference that would just be significant at 95%: 1.96 standard errors (50% power)."""
    return Z_SIGNIFICANT * standard_error


def detectable_difference(standard_error: float, power: float = POWER) -> float:
    """The true difference found significant at 95% with the given power: (1.96 + z(power)) standard errors."""
    return (Z_SIGNIFICANT + float(norm.ppf(power))) * standard_error


def scaled_standard_error(standard_error: float, rows: int, to_rows: int) -> float:
    """A standard error measured on `rows` rows, on `to_rows` rows like them: it scales as 1/sqrt(n)."""
    if rows < 1 or to_rows < 1:
        raise ValueError(f"rows must be positive, not {rows} and {to_rows}.")
    return standard_error * math.sqrt(rows / to_rows)


def share_difference_standard_error(rows: int, disagreement: float = 1.0) -> float:
    """The paired standard error of two accuracies on `rows` rows when the models disagree on a
    share `disagreement` of them (and their accuracies are about equal): sqrt(q / n). q = 1, the
    default, is the worst case: no pair of models has a larger one."""
    if rows < 1 or not 0 <= disagreement <= 1:
        raise ValueError(f"needs rows >= 1 and 0 <= disagreement <= 1, not {rows} and {disagreement}.")
    return math.sqrt(disagreement / rows)


@dataclass(frozen=True)
class TypicalPair:
    standard_error: float | None  # the median paired standard error; None without a usable pair
    pairs: int  # the pairs it is the median of


def typical_pair_standard_error(samples: Sequence[np.ndarray]) -> TypicalPair:
    """The median over every pair of the paired standard error of their resamples (one 1-D array
    per model, on the same resamples); pairs with fewer than two common finite resamples, or that
    agree on every one (standard error 0: copies of one model), are left out."""
    errors = []
    for first, second in combinations(samples, 2):
        try:
            error = paired_standard_error(first, second, kind="resamples")
        except ValueError:  # too few resamples where both are defined
            continue
        if error > 0 and math.isfinite(error):
            errors.append(error)
    if not errors:
        return TypicalPair(None, 0)
    return TypicalPair(float(np.median(errors)), len(errors))


# --- A test set's resolution -------------------------------------------------------------------


@dataclass(frozen=True)
class PartResolution:
    """The resolution on one set of rows: the whole test set, or a guarded benchmark's public part."""

    rows: int
    standard_error: float
    resolvable: float  # 1.96 x standard error: just significant at 95%
    detectable: float  # 2.80 x standard error: significant at 95% with 80% power
    scaled: bool  # scaled from the other part's rows (s x sqrt(n_measured / n)) rather than measured on these


@dataclass(frozen=True)
class Resolution:
    metric: str
    source: str  # SOURCE_BASELINES, SOURCE_WORST_CASE or SOURCE_UNMEASURED
    pairs: int  # baseline pairs behind the figure (0 unless source is baselines)
    whole: PartResolution | None  # all test rows; None when unmeasured
    public: PartResolution | None  # the public part of a guarded benchmark; None when open or unmeasured


def _part(standard_error: float, rows: int, *, scaled: bool) -> PartResolution:
    return PartResolution(
        rows, standard_error, resolvable_difference(standard_error), detectable_difference(standard_error), scaled
    )


def resolution_from_baselines(
    metric: str, samples: Sequence[np.ndarray], *, test_rows: int, public_rows: int | None = None
) -> Resolution | None:
    """From the baselines' resamples of the metric: on a guarded benchmark (public_rows given) they
    were drawn on the public part, so its figure is direct and the whole set's scaled; on an open
    one the whole set's is direct. None without a usable pair of baselines."""
    typical = typical_pair_standard_error(samples)
    if typical.standard_error is None:
        return None
    if public_rows:
        public = _part(typical.standard_error, public_rows, scaled=False)
        whole_error = scaled_standard_error(typical.standard_error, public_rows, test_rows)
        return Resolution(metric, SOURCE_BASELINES, typical.pairs, _part(whole_error, test_rows, scaled=True), public)
    whole = _part(typical.standard_error, test_rows, scaled=False)
    return Resolution(metric, SOURCE_BASELINES, typical.pairs, whole, None)


def resolution_before_baselines(metric: str, *, test_rows: int, public_rows: int | None = None) -> Resolution:
    """The model-free figure where one exists (accuracy: the worst case sqrt(1/n)), else unmeasured."""
    if metric not in SHARE_METRICS:
        return Resolution(metric, SOURCE_UNMEASURED, 0, None, None)
    whole = _part(share_difference_standard_error(test_rows), test_rows, scaled=False)
    public = _part(share_difference_standard_error(public_rows), public_rows, scaled=False) if public_rows else None
    return Resolution(metric, SOURCE_WORST_CASE, 0, whole, public)


def current_resolution(
    metric: str, samples: Sequence[np.ndarray], *, test_rows: int, public_rows: int | None = None
) -> Resolution:
    """The baselines' figure when at least one pair of them is usable, else the one before baselines."""
    return resolution_from_baselines(
        metric, samples, test_rows=test_rows, public_rows=public_rows
    ) or resolution_before_baselines(metric, test_rows=test_rows, public_rows=public_rows)


def resolution_sentence(resolution: Resolution) -> str:
    """The resolution in plain words, for the creation output, the page and the API's summary."""
    metric = resolution.metric
    if resolution.source == SOURCE_UNMEASURED:
        return (
            f"Resolution: the smallest difference in {metric} this test set can tell from chance is measured once "
            f"baselines are evaluated (from their paired resamples); {metric} has no model-free formula for it."
        )
    whole, public = resolution.whole, resolution.public
    where = f"the {whole.rows} test rows" + (" (scaled from the public part)" if whole.scaled else "")
    text = (
        f"Resolution: on {where} a difference in {metric} below ≈{_shown(whole.resolvable)} "
        "cannot be told from chance at 95%"
    )
    if resolution.source == SOURCE_WORST_CASE:
        typical = resolvable_difference(share_difference_standard_error(whole.rows, EXAMPLE_DISAGREEMENT))
        text += (
            f" (worst case: two models that disagree on every row; models that disagree on a share q of the rows "
            f"resolve √q of it, ≈{_shown(typical)} at q = {EXAMPLE_DISAGREEMENT:g})"
        )
    else:
        pairs = "pair" if resolution.pairs == 1 else "pairs"
        text += (
            f" for a typical pair of models (the median over {resolution.pairs} {pairs} of baselines); one of "
            f"≈{_shown(whole.detectable)} is found with 80% power"
        )
    if public is not None:
        text += f"; guarded: on the {public.rows} public rows submitters are scored on ≈{_shown(public.resolvable)}"
    text += "."
    if resolution.source == SOURCE_WORST_CASE:
        text += " The baselines' figure replaces this once they are evaluated."
    return text


# --- Two submissions: how many more rows would separate them ---------------------------------------


@dataclass(frozen=True)
class Separation:
    difference: float  # observed, in the metric's direction
    standard_error: float  # of the paired difference, on `rows` rows
    rows: int  # the rows the difference was measured on
    significant: bool  # |d| > 1.96 s (the normal test the row counts below rest on)
    rows_needed: float  # n (1.96 s / |d|)²: where |d| is just significant; inf when d == 0
    more_rows: int | None  # max(0, rows_needed - rows), rounded up; None when d == 0 (or beyond any count)
    rows_needed_80: float  # n ((1.96 + 0.84) s / |d|)²: 80% power, if d is the true difference
    more_rows_80: int | None


def rows_to_separate(difference: float, standard_error: float, rows: int) -> Separation:
    """The rows at which an observed paired difference would be just significant at 95%, if it
    stayed what it is while its standard error shrank as 1/sqrt(n); see the module's docstring."""
    if rows < 1 or not math.isfinite(difference) or not standard_error >= 0 or not math.isfinite(standard_error):
        raise ValueError(
            f"needs rows >= 1, a finite difference and a standard error >= 0 ({rows}, {difference}, {standard_error})."
        )
    size = abs(difference)
    needed = _rows_at(rows, Z_SIGNIFICANT * standard_error, size)
    needed_80 = _rows_at(rows, (Z_SIGNIFICANT + Z_POWER) * standard_error, size)
    significant = size > Z_SIGNIFICANT * standard_error
    return Separation(
        difference, standard_error, rows, significant, needed, _more(needed, rows), needed_80, _more(needed_80, rows)
    )


def _rows_at(rows: int, margin: float, size: float) -> float:
    if size == 0:
        return math.inf
    try:
        return rows * (margin / size) ** 2
    except OverflowError:
        return math.inf


def _more(needed: float, rows: int) -> int | None:
    if not math.isfinite(needed):
        return None
    # The tolerance keeps a pair exactly at the line from needing "1 more row" through rounding.
    return max(0, math.ceil(needed - rows - 1e-9))


def separation_sentence(separation: Separation, metric: str, rows_name: str = "test rows") -> str:
    """What more test rows would do for this pair, in plain words; `rows_name` says which rows were
    measured ("public test rows" on a guarded benchmark)."""
    if separation.difference == 0:
        return f"No number of test rows would separate them: they measured the same {metric}."
    if separation.significant:
        return (
            f"Already separated: the difference in {metric} ({_shown(separation.difference)}) is more than 1.96 "
            f"standard errors ({_shown(separation.standard_error)}) on {separation.rows} {rows_name}."
        )
    if separation.more_rows is None:
        return f"The difference in {metric} is too small for any number of test rows to separate them."
    return (
        f"About {separation.more_rows} more {rows_name} would separate them "
        f"({math.ceil(separation.rows_needed)} in all, "
        f"if the difference in {metric} stayed {_shown(separation.difference)}; about "
        f"{_count(separation.more_rows_80)} more to separate it 80% of the time)."
    )


def _count(value: int | None) -> str:
    return "an unbounded number" if value is None else str(value)


def _shown(value: float) -> str:
    """Two significant digits, never in exponent form: a resolution is an order of magnitude to read."""
    return np.format_float_positional(value, precision=2, unique=False, fractional=False, trim="-")


# --- On the database (Django imported here only) ----------------------------------------------


def measured_rows(benchmark) -> int:
    """The rows a submission's metrics and resamples are computed on: the public part when guarded."""
    return len(benchmark.public_positions) if benchmark.is_guarded else benchmark.test_rows


def baseline_samples(benchmark) -> list[np.ndarray]:
    """The succeeded baselines' resamples of the primary metric (those that kept them)."""
    from leaderboard.comparisons import submission_resamples
    from leaderboard.models import Submission

    baselines = benchmark.submissions.filter(is_baseline=True, status=Submission.Status.SUCCEEDED).only(
        "resamples", "resample_keys", "benchmark"
    )
    found = (submission_resamples(baseline).get(benchmark.primary_metric) for baseline in baselines)
    return [sample.astype(float) for sample in found if sample is not None]


def benchmark_resolution(benchmark) -> Resolution:
    """The benchmark's resolution: from its baselines once a pair of them is evaluated, else before them."""
    public = len(benchmark.public_positions) if benchmark.is_guarded else None
    samples = baseline_samples(benchmark) if benchmark.pk else []
    return current_resolution(benchmark.primary_metric, samples, test_rows=benchmark.test_rows, public_rows=public)


def resolution_document(resolution: Resolution) -> dict:
    """The API's `resolution` of a benchmark (api/serializers.py ResolutionSerializer documents it)."""

    def part(figure: PartResolution | None) -> dict | None:
        if figure is None:
            return None
        return {
            "rows": figure.rows,
            "standard_error": figure.standard_error,
            "resolvable_difference": figure.resolvable,
            "detectable_difference": figure.detectable,
            "scaled": figure.scaled,
        }

    return {
        "metric": resolution.metric,
        "source": resolution.source,
        "baseline_pairs": resolution.pairs,
        "confidence": CONFIDENCE,
        "power": POWER,
        "whole": part(resolution.whole),
        "public": part(resolution.public),
        "summary": resolution_sentence(resolution),
    }


def separation_figures(submission, reference) -> dict:
    """The compare view's figures on the primary metric, for the API and the web page alike: the
    one place they are computed (and so where a guarded benchmark would coarsen them).

    The difference is the submission's minus the reference's in the metric's direction (positive:
    the submission is better), its standard error the spread of their paired resamples."""
    from leaderboard.comparisons import submission_resamples

    benchmark = submission.benchmark
    key = benchmark.primary_metric
    rows = measured_rows(benchmark)
    figures = {
        "metric": key,
        "rows": rows,
        "difference": None,
        "standard_error": None,
        "resolvable_difference": None,
        "significant": None,
        "rows_needed": None,
        "more_rows": None,
        "rows_needed_80_power": None,
        "more_rows_80_power": None,
        "summary": "",
    }
    from leaderboard.withholding import withholding_in_force

    if withholding_in_force(benchmark):
        # Rows to separate are the exact difference over its standard error, which would undo the Ladder.
        return figures | {
            "summary": f"Withheld while this guarded benchmark is open: how far apart two submissions' exact public "
            f"{key} are is what the Ladder keeps back. It is shown once the owner closes the benchmark."
        }
    values = [side.metrics.get(key) for side in (submission, reference)]
    if any(not isinstance(value, (int, float)) or not math.isfinite(value) for value in values):
        return figures | {"summary": f"{key} was not measured on both submissions: nothing to separate."}
    sign = 1.0 if benchmark.primary_objective.higher_is_better else -1.0
    difference = sign * (float(values[0]) - float(values[1]))
    sampled = [submission_resamples(side).get(key) for side in (submission, reference)]
    figures["difference"] = difference
    if any(sample is None for sample in sampled):
        return figures | {
            "summary": f"Not both submissions kept resamples of {key}: the noise of their difference is unknown."
        }
    try:
        error = paired_standard_error(*sampled, kind="resamples")
    except ValueError:
        return figures | {"summary": f"Too few resamples where both have a value of {key}: the noise is unknown."}
    separation = rows_to_separate(difference, error, rows)
    return figures | {
        "standard_error": error,
        "resolvable_difference": resolvable_difference(error),
        "significant": separation.significant,
        "rows_needed": _finite(separation.rows_needed),
        "more_rows": separation.more_rows,
        "rows_needed_80_power": _finite(separation.rows_needed_80),
        "more_rows_80_power": separation.more_rows_80,
        "summary": separation_sentence(separation, key, "public test rows" if benchmark.is_guarded else "test rows"),
    }


def _finite(value: float) -> float | None:
    """JSON has no infinity: an unbounded row count is null (the summary says why)."""
    return value if math.isfinite(value) else None
