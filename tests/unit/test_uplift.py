"""The statistics of `outreach report`: Wilson and Newcombe intervals against their published
worked values, the p-value against the chi-squared statistic of the 2x2 table, and the verdict."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.uplift import (
    MIN_GROUP,
    Group,
    compare,
    difference_p_value,
    newcombe_interval,
    wilson_interval,
)


# R. G. Newcombe, "Two-sided confidence intervals for the single proportion: comparison of seven
# methods", Statistics in Medicine 17 (1998) 857-872, Table I, method 3 (Wilson score).
@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (29, 29, 0.8830, 1.0),
    ],
)
def test_the_wilson_interval_gives_newcombes_published_values(
    successes: int, trials: int, low: float, high: float
) -> None:
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=5e-5)


# R. G. Newcombe, "Interval estimation for the difference between independent proportions:
# comparison of eleven methods", Statistics in Medicine 17 (1998) 873-890, Table II, method 10.
@pytest.mark.parametrize(
    ("a", "m", "b", "n", "low", "high"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0),
        (10, 10, 0, 10, 0.6075, 1.0),
    ],
)
def test_the_difference_interval_gives_newcombes_published_values(
    a: int, m: int, b: int, n: int, low: float, high: float
) -> None:
    assert newcombe_interval(a, m, b, n) == pytest.approx((low, high), abs=5e-5)


counts = st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@given(counts, counts)
def test_the_difference_interval_holds_the_observed_difference_and_stays_within_minus_one_and_one(
    first: tuple[int, int], second: tuple[int, int]
) -> None:
    low, high = newcombe_interval(*first, *second)
    difference = first[0] / first[1] - second[0] / second[1]
    assert -1.0 <= low <= difference + 1e-12 and difference - 1e-12 <= high <= 1.0


@given(counts, counts)
def test_swapping_the_groups_mirrors_the_interval(first: tuple[int, int], second: tuple[int, int]) -> None:
    low, high = newcombe_interval(*first, *second)
    assert newcombe_interval(*second, *first) == pytest.approx((-high, -low), abs=1e-12)


@pytest.mark.parametrize(
    ("a", "m", "b", "n"), [(56, 70, 48, 80), (9, 10, 3, 10), (20, 179, 20, 41), (3, 500, 1, 50)]
)
def test_the_p_value_is_the_n_minus_1_chi_squared_test_of_the_two_by_two_table(
    a: int, m: int, b: int, n: int
) -> None:
    """Computed from the textbook statistic N(ad - bc)^2 / (row and column totals), times (N-1)/N."""
    c, d = m - a, n - b
    total = m + n
    chi2 = total * (a * d - c * b) ** 2 / (m * n * (a + b) * (c + d))
    expected = math.erfc(math.sqrt(chi2 * (total - 1) / total / 2))
    assert difference_p_value(a, m, b, n) == pytest.approx(expected, rel=1e-9)


def test_equal_rates_have_a_p_value_of_one_and_an_interval_around_zero() -> None:
    assert difference_p_value(30, 100, 30, 100) == pytest.approx(1.0)
    assert difference_p_value(0, 100, 0, 100) == 1.0
    low, high = newcombe_interval(30, 100, 30, 100)
    assert low < 0 < high and low == pytest.approx(-high)


def test_a_comparison_says_whether_the_groups_are_large_enough_to_tell() -> None:
    small = compare(Group(179, 90), Group(41, 20))
    assert small.enough is False and small.ci95 is not None and small.ci95[0] < 0 < small.ci95[1]
    large = compare(Group(MIN_GROUP * 9, MIN_GROUP * 9 // 2), Group(MIN_GROUP, MIN_GROUP // 2))
    assert large.enough is True and large.difference == pytest.approx(0.0)


def test_an_empty_group_gives_no_uplift_rather_than_a_number() -> None:
    result = compare(Group(120, 30), Group(0, 0))
    assert (result.difference, result.ci95, result.p_value, result.enough) == (None, None, None, False)
    assert Group(0, 0).as_json() == {"count": 0, "goal_met": 0, "rate": None}


def test_a_group_cannot_meet_more_goals_than_it_has_members() -> None:
    with pytest.raises(ValueError, match="cannot have 5 goals met"):
        Group(4, 5)
