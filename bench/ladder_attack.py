"""The boosting attack on a leaderboard, against an open board and against the Ladder (issue 13).

Blum & Hardt (ICML 2015, section "boosting attack"): on a public set of n rows with labels the
attacker does not know, submit k random label vectors, keep those the board says beat chance, and
submit their majority vote. On an open board (exact public scores) the vote's public accuracy
climbs well above 0.5 while its accuracy on fresh private rows stays 0.5: the board has been
overfitted without learning anything. Through the Ladder the attacker only sees the released
value move or not, so it can keep only the few submissions that moved it, and the vote's public
score stays near chance.

The rules: open (the exact public accuracy), the parameter-free Ladder (margin one standard error
of the paired per-row differences) and the fixed-step Ladder with leaderboard.ladder.default_step
(its theorem's bound is printed beside it). Labels are fair coin flips; the private rows are
fresh draws of the same size, which the vote cannot know (its private accuracy is ~0.5 whatever
it does).

    .venv/bin/python bench/ladder_attack.py            # n in {1000, 4000}, k in {100, 1000}, 5 seeds
    .venv/bin/python bench/ladder_attack.py --quick    # n 1000, k 100, 3 seeds
"""

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leaderboard.ladder import (  # noqa: E402 - after the path
    LadderState,
    default_step,
    ladder_error_bound,
    ladder_release,
    paired_standard_error,
)

RULES = ("open", "parameter-free", "fixed")


class Board:
    """One submitter's view of a public board under one release rule."""

    def __init__(self, labels: np.ndarray, rule: str, k: int):
        self.labels, self.rule = labels, rule
        self.state, self.best_rows = LadderState(), None
        self.step = default_step(labels.size, k) if rule == "fixed" else None

    def submit(self, predictions: np.ndarray, key: str) -> tuple[float, bool]:
        """(released accuracy, whether the release moved)."""
        correct = (predictions == self.labels).astype(float)
        accuracy = float(correct.mean())
        if self.rule == "open":
            return accuracy, True
        error = None
        if self.rule == "parameter-free" and self.best_rows is not None:
            error = paired_standard_error(correct, self.best_rows)
        release = ladder_release(
            self.state,
            accuracy,
            higher_is_better=True,
            key=key,
            variant=self.rule,
            step=self.step,
            standard_error=error,
            resolution=1 / self.labels.size,
        )
        if release.improved:
            self.best_rows = correct
        self.state = release.state
        return release.released, release.improved


def boosting_attack(rule: str, n: int, k: int, rng: np.random.Generator) -> dict:
    """Run the attack once; the vote's released and exact public accuracy and its private one."""
    public, private = rng.integers(0, 2, n), rng.integers(0, 2, n)
    board = Board(public, rule, k)
    kept = []
    for index in range(k):
        guess = rng.integers(0, 2, n)
        released, moved = board.submit(guess, str(index))
        # Open: keep what beats chance. Ladder: a move is the only news, so keep what moved it.
        if (rule == "open" and released > 0.5) or (rule != "open" and moved):
            kept.append(guess)
    vote = (np.mean(kept, axis=0) > 0.5).astype(int) if kept else rng.integers(0, 2, n)
    released, _ = board.submit(vote, "vote")
    return {
        "released": released,
        "public": float((vote == public).mean()),
        "private": float((vote == private).mean()),
        "kept": len(kept),
        "steps": board.state.steps,
        "step": board.step,
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.4f} [{min(values):.4f}-{max(values):.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="n 1000, k 100, 3 seeds")
    options = parser.parse_args()
    sizes, counts, seeds = ([1000], [100], 3) if options.quick else ([1000, 4000], [100, 1000], options.seeds)
    print(f"boosting attack, {seeds} seeds each; accuracy median [min-max]; chance is 0.5")
    header = (
        f"{'rule':<15} {'n':>5} {'k':>5}  {'released public':<24} {'vote public (exact)':<24} "
        f"{'vote private':<24} {'kept':>5} {'gap':>7}  bound (fixed step, 95%)"
    )
    print(header)
    print("-" * len(header))
    for n in sizes:
        for k in counts:
            for rule in RULES:
                runs = [boosting_attack(rule, n, k, np.random.default_rng(seed)) for seed in range(seeds)]
                gap = statistics.median(r["public"] - r["private"] for r in runs)
                bound = ""
                if rule == "fixed":
                    step = runs[0]["step"]
                    bound = f"<= {ladder_error_bound(n, k + 1, step):.3f} (step {step:.3f})"
                print(
                    f"{rule:<15} {n:>5} {k:>5}  {spread([r['released'] for r in runs]):<24} "
                    f"{spread([r['public'] for r in runs]):<24} {spread([r['private'] for r in runs]):<24} "
                    f"{statistics.median(r['kept'] for r in runs):>5.0f} {gap:>+7.4f}  {bound}"
                )


if __name__ == "__main__":
    main()
