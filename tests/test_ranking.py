import numpy as np
import pytest

from leaderboard.ranking import rank_submissions

UP, DOWN = True, False


def test_it_ranks_by_the_weighted_objective_best_first():
    values = np.array([[0.80, 0.5], [0.90, 0.4], [0.85, 0.3]])
    ranking = rank_submissions(values, higher_is_better=np.array([UP, DOWN]), weights=np.array([1.0, 0.0]))
    assert ranking.order.tolist() == [1, 2, 0]
    assert ranking.ranks.tolist() == [3, 1, 2]
    assert ranking.scores.tolist() == [0.80, 0.90, 0.85]


def test_it_ranks_a_lower_is_better_objective_ascending():
    values = np.array([[3.0], [1.0], [2.0]])
    ranking = rank_submissions(values, higher_is_better=np.array([DOWN]), weights=np.array([1.0]))
    assert ranking.order.tolist() == [1, 2, 0]
    assert ranking.scores.tolist() == [-3.0, -1.0, -2.0]


def test_exact_ties_share_a_rank_and_the_next_rank_is_skipped():
    values = np.array([[0.9], [0.8], [0.9], [0.7]])
    ranking = rank_submissions(values, higher_is_better=np.array([UP]), weights=np.array([1.0]))
    assert ranking.order.tolist() == [0, 2, 1, 3]
    assert ranking.ranks.tolist() == [1, 3, 1, 4]
    assert ranking.tied.tolist() == [True, False, True, False]


def test_a_row_missing_a_weighted_objective_is_listed_last_unranked():
    values = np.array([[np.nan, 0.1], [0.7, 0.2], [0.8, np.nan]])
    ranking = rank_submissions(values, higher_is_better=np.array([UP, UP]), weights=np.array([1.0, 0.0]))
    assert ranking.order.tolist() == [2, 1, 0]
    assert ranking.ranks.tolist() == [0, 2, 1]
    assert np.isnan(ranking.scores[0])


def test_weights_combine_direction_signed_values():
    values = np.array([[0.9, 2.0], [0.8, 1.0]])
    ranking = rank_submissions(values, higher_is_better=np.array([UP, DOWN]), weights=np.array([1.0, 1.0]))
    assert ranking.scores == pytest.approx([(0.9 - 2.0) / 2, (0.8 - 1.0) / 2])
    assert ranking.order.tolist() == [1, 0]


@pytest.mark.parametrize("weights", [[0.0, 0.0], [-1.0, 2.0]])
def test_it_refuses_weights_that_rank_nothing_or_are_negative(weights):
    with pytest.raises(ValueError):
        rank_submissions(np.ones((2, 2)), higher_is_better=np.array([UP, UP]), weights=np.array(weights))


def test_an_empty_board_ranks_nothing():
    ranking = rank_submissions(np.empty((0, 1)), higher_is_better=np.array([UP]), weights=np.array([1.0]))
    assert ranking.order.tolist() == []
