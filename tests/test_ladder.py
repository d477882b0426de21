"""The Ladder's release rule on sequences worked out by hand, and the attack it is there to stop."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from leaderboard.ladder import (
    LadderState,
    default_step,
    ladder_error_bound,
    ladder_release,
    paired_standard_error,
    round_to_step,
)


def run(values, **options):
    state, releases = LadderState(), []
    for index, value in enumerate(values):
        release = ladder_release(state, value, key=str(index), **options)
        releases.append(release)
        state = release.state
    return releases


def test_the_fixed_step_ladder_releases_a_rounded_value_only_when_it_climbs_a_step():
    first, small, climb = run([0.8437, 0.8490, 0.8512], higher_is_better=True, variant="fixed", step=0.01)
    assert (first.released, first.improved, first.threshold) == (0.84, True, None)
    # 0.8490 - 0.84 = 0.009 is under the step: the released 0.84 is shown again.
    assert (small.released, small.improved, small.state.steps) == (0.84, False, 1)
    assert "no significant improvement" in small.reason and "0.84" in small.reason
    # 0.8512 - 0.84 = 0.0112 > 0.01, released rounded to 0.85.
    assert (climb.released, climb.improved, climb.state.steps, climb.state.submissions) == (0.85, True, 2, 3)
    assert climb.state.best_key == "2"


def test_the_fixed_step_ladder_on_a_loss_climbs_downwards():
    first, small, climb = run([0.512, 0.47, 0.43], higher_is_better=False, variant="fixed", step=0.05)
    assert first.released == 0.5  # 0.512 / 0.05 = 10.24 -> 10 steps
    assert (small.released, small.improved) == (0.5, False)  # better by 0.03, under the step
    assert (climb.released, climb.improved) == (0.45, True)  # better by 0.07; 0.43 / 0.05 = 8.6 -> 9 steps


def test_the_parameter_free_ladder_needs_one_standard_error_of_improvement():
    first, inside, beyond = run([0.70, 0.71, 0.75], higher_is_better=True, standard_error=0.02)
    assert first.released == 0.70 and first.state.steps == 1
    assert (inside.released, inside.improved, inside.threshold) == (0.70, False, 0.02)
    assert "one standard error (0.02)" in inside.reason
    assert (beyond.released, beyond.improved, beyond.state.best_key) == (0.75, True, "2")
    assert "improved by 0.05" in beyond.reason


def test_the_parameter_free_ladder_rounds_to_its_resolution():
    (release,) = run([0.70123], higher_is_better=True, resolution=0.001)
    assert release.released == 0.701


def test_the_standard_error_of_paired_rows_and_of_paired_resamples():
    # Differences 1, 0, 0, 1: mean 0.5, sample variance 1/3, standard error sqrt(1/3) / 2.
    assert paired_standard_error([1, 0, 1, 1], [0, 0, 1, 0]) == pytest.approx(math.sqrt(1 / 3) / 2)
    # Differences 0.01, 0.02, 0.03: a bootstrap's spread is the standard error itself.
    assert paired_standard_error([0.80, 0.82, 0.84], [0.79, 0.80, 0.81], kind="resamples") == pytest.approx(0.01)
    # A NaN pair is left out: differences 0.01 and 0.03, standard deviation 0.02 / sqrt(2).
    nan = float("nan")
    assert paired_standard_error([0.80, nan, 0.84], [0.79, 0.80, 0.81], kind="resamples") == pytest.approx(
        0.02 / math.sqrt(2)
    )


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: paired_standard_error([1.0], [0.0]), "at least 2 paired values"),
        (lambda: paired_standard_error([1.0, 2.0], [0.0]), "1-D arrays of one length"),
        (lambda: paired_standard_error([1.0, 2.0], [0.0, 1.0], kind="rank"), "'rows' or 'resamples'"),
        (lambda: round_to_step(0.5, 0), "positive number"),
        (lambda: run([float("nan")], higher_is_better=True), "finite number"),
        (lambda: run([0.5], higher_is_better=True, variant="fixed"), "needs its step"),
        (lambda: run([0.5], higher_is_better=True, variant="climb"), "one of parameter-free, fixed"),
        (lambda: run([0.5, 0.6], higher_is_better=True), "needs a standard error"),
    ],
)
def test_bad_calls_say_what_is_wrong(call, words):
    with pytest.raises(ValueError, match=words):
        call()


def test_the_bound_shrinks_with_rows_and_the_default_step_minimises_it():
    step = default_step(4000, 1000)
    assert 0.03 < step < 0.15, "of the order (log(kn) / n)^(1/3) = 0.17"
    bound = ladder_error_bound(4000, 1000, step)
    assert bound <= ladder_error_bound(4000, 1000, step * 2) and bound <= ladder_error_bound(4000, 1000, step / 2)
    assert ladder_error_bound(40000, 1000, default_step(40000, 1000)) < bound


def _attack_module():
    path = Path(__file__).resolve().parent.parent / "bench" / "ladder_attack.py"
    spec = importlib.util.spec_from_file_location("ladder_attack", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ladder_stops_the_boosting_attack_that_overfits_an_open_board():
    """1000 random submissions on 1000 public rows: seeded; the open board's vote scored 0.71-0.73
    publicly over these seeds and the Ladder's released score at most 0.551, far from the lines drawn."""
    attack = _attack_module().boosting_attack
    for seed in range(3):
        open_board = attack("open", 1000, 1000, np.random.default_rng(seed))
        ladder = attack("parameter-free", 1000, 1000, np.random.default_rng(seed))
        assert open_board["public"] > 0.65 and abs(open_board["private"] - 0.5) < 0.06, "the attack works"
        assert ladder["released"] < 0.6 and ladder["steps"] <= 6, "the Ladder releases little to climb on"
