"""A rule's measured effect: the goal rate of the customers assigned to its message against its
holdout's, with a 95% confidence interval and a p-value. Pure arithmetic, no I/O.

The two groups are independent samples (the holdout is drawn by a hash of rule and customer,
outreach.policy.in_holdout), so the effect is a difference of two independent proportions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

# The two-sided 95% normal quantile, 1.959963984540054.
Z95 = NormalDist().inv_cdf(0.975)

# Below this many customers in either group `enough` is false. At 100, the 95% Wilson interval
# of one group's own rate is still ±9.6 points wide at a 50% rate (0.404 to 0.596; ±13.5 at 50
# customers), wider than the few points of effect an outreach message usually has; and the usual
# sample-size formula, n = (z.975 + z.80)^2 (p1 q1 + p2 q2) / d^2, asks for about 385 a group to
# detect a 10-point change from 50% four times in five. So 100 is the floor below which the
# numbers are not worth reading, not a promise of an answer: the interval says how much is known.
MIN_GROUP = 100


@dataclass(frozen=True)
class Group:
    """How many customers a group holds and how many of them met the rule's goal."""

    count: int
    goal_met: int

    def __post_init__(self) -> None:
        if self.count < 0 or not 0 <= self.goal_met <= self.count:
            raise ValueError(f"a group of {self.count} cannot have {self.goal_met} goals met")

    @property
    def rate(self) -> float | None:
        return self.goal_met / self.count if self.count else None

    def as_json(self) -> dict[str, Any]:
        rate = self.rate
        return {
            "count": self.count,
            "goal_met": self.goal_met,
            "rate": None if rate is None else round(rate, 4),
        }


@dataclass(frozen=True)
class Uplift:
    """Contacted minus holdout goal rate, its 95% interval and p-value; None where a group is empty."""

    contacted: Group
    holdout: Group
    difference: float | None
    ci95: tuple[float, float] | None
    p_value: float | None
    enough: bool


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (Wilson 1927; method 3 of Newcombe 1998)."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes in {trials} trials is not a proportion")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    # Clamp the rounding of p = 0 or 1, where the exact bound is 0 or 1.
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    successes1: int, trials1: int, successes2: int, trials2: int, z: float = Z95
) -> tuple[float, float]:
    """The confidence interval of p1 - p2 for two independent proportions.

    Newcombe's hybrid score interval, method 10 of R. G. Newcombe, "Interval estimation for the
    difference between independent proportions: comparison of eleven methods", Statistics in
    Medicine 17 (1998) 873-890: each proportion's Wilson interval (l, u), combined as
        p1 - p2 - sqrt((p1 - l1)^2 + (u2 - p2)^2)  to  p1 - p2 + sqrt((u1 - p1)^2 + (p2 - l2)^2).
    Its coverage stays close to 95% at small counts and rates near 0 or 1, where the textbook
    (Wald) interval is too narrow or degenerate; it never leaves [-1, 1].
    """
    l1, u1 = wilson_interval(successes1, trials1, z)
    l2, u2 = wilson_interval(successes2, trials2, z)
    p1, p2 = successes1 / trials1, successes2 / trials2
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


def difference_p_value(successes1: int, trials1: int, successes2: int, trials2: int) -> float:
    """The two-sided p-value of "the two proportions are equal": the 'N-1' chi-squared test.

    Pearson's chi-squared test of the 2x2 table (the score test of the difference, the same
    family as the Wilson intervals above) with Egon Pearson's (N-1)/N factor, which I. Campbell,
    "Chi-squared and Fisher-Irwin tests of two-by-two tables with small sample recommendations",
    Statistics in Medicine 26 (2007) 3661-3675, found to keep its size best over the range of
    table sizes, where Yates's correction is needlessly conservative. With one degree of freedom
    the statistic is z^2, so the p-value is erfc(|z| / sqrt 2). Campbell recommends Fisher's
    exact test when an expected count is below 1; such groups are far below MIN_GROUP.
    """
    if trials1 <= 0 or trials2 <= 0:
        raise ValueError("both groups need at least one member")
    total = trials1 + trials2
    pooled = (successes1 + successes2) / total
    variance = pooled * (1 - pooled) * (1 / trials1 + 1 / trials2)
    if variance == 0:
        return 1.0  # every customer met the goal, or none did: no difference to test
    z = (successes1 / trials1 - successes2 / trials2) / math.sqrt(variance)
    z *= math.sqrt((total - 1) / total)
    return math.erfc(abs(z) / math.sqrt(2))


def compare(contacted: Group, holdout: Group) -> Uplift:
    """The uplift of CONTACTED over HOLDOUT; `enough` once both hold MIN_GROUP customers."""
    enough = contacted.count >= MIN_GROUP and holdout.count >= MIN_GROUP
    if contacted.count == 0 or holdout.count == 0:
        return Uplift(contacted, holdout, None, None, None, False)
    args = (contacted.goal_met, contacted.count, holdout.goal_met, holdout.count)
    difference = contacted.goal_met / contacted.count - holdout.goal_met / holdout.count
    return Uplift(contacted, holdout, difference, newcombe_interval(*args), difference_p_value(*args), enough)
