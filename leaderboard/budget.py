"""A submitter's holdout budget on a guarded benchmark (issue 13): how much they have learned of it.

Every release of new information about the hidden rows counts once: a Ladder step (the released
primary metric or default-board utility moved) and a submission's coarse reports (released when
it succeeds). A submission that releases the same best again costs nothing on the Ladders but
its reports still count. A benchmark's `holdout_budget` caps the total per submitter; a
submission still being evaluated counts as one report, so a burst of uploads cannot overrun it.
"""

from dataclasses import dataclass

from django.db.models import Sum

from leaderboard.errors import HoldoutBudgetSpent
from leaderboard.models import LadderEntry, Submission


@dataclass(frozen=True)
class HoldoutBudget:
    ladder_steps: dict  # target ("primary", "utility") -> steps
    reports: int  # succeeded submissions whose reports were released
    pending: int  # submissions queued or running: each will release its reports
    cap: int | None  # None: no cap

    @property
    def used(self) -> int:
        return sum(self.ladder_steps.values()) + self.reports

    @property
    def left(self) -> int | None:
        return None if self.cap is None else max(0, self.cap - self.used - self.pending)

    @property
    def exhausted(self) -> bool:
        return self.cap is not None and self.used + self.pending >= self.cap

    def as_document(self) -> dict:
        return {
            "used": self.used,
            "ladder_steps": self.ladder_steps,
            "reports": self.reports,
            "pending": self.pending,
            "cap": self.cap,
            "left": self.left,
        }


def holdout_budget(benchmark, owner) -> HoldoutBudget | None:
    """The owner's budget on a guarded benchmark; None on an open one, or for nobody signed in."""
    if not benchmark.is_guarded or owner is None or not owner.is_authenticated:
        return None
    steps = dict(
        LadderEntry.objects.filter(benchmark=benchmark, owner=owner)
        .values("target")
        .annotate(steps=Sum("steps"))
        .values_list("target", "steps")
    )
    mine = Submission.objects.filter(benchmark=benchmark, owner=owner, is_baseline=False)
    return HoldoutBudget(
        ladder_steps={"primary": steps.get("primary", 0), "utility": steps.get("utility", 0)},
        reports=mine.filter(status=Submission.Status.SUCCEEDED).count(),
        pending=mine.filter(status__in=[Submission.Status.QUEUED, Submission.Status.RUNNING]).count(),
        cap=benchmark.holdout_budget or None,
    )


def holdout_budget_enforce(benchmark, owner) -> None:
    budget = holdout_budget(benchmark, owner)
    if budget is not None and budget.exhausted:
        raise HoldoutBudgetSpent(
            f"You have had {budget.used} releases of information about '{benchmark.slug}''s hidden test rows "
            f"({budget.ladder_steps['primary']} + {budget.ladder_steps['utility']} Ladder steps and {budget.reports} "
            f"reports{f', {budget.pending} more on the way' if budget.pending else ''}); its owner caps each "
            f"submitter at {budget.cap}. No further submission is accepted from you on this benchmark: pick your "
            "final submissions among those you have."
        )
