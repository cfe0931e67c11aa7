"""The Student-t interval, Welch's test and the exact permutation p of Spearman's ρ are scipy's now
(issue 26); they give the numbers the hand-written versions gave.

The expected values were computed by the hand-written implementations (analogsam 2026-12-06, before
the change: t.ppf half-widths, the Welch-Satterthwaite formula, enumeration with itertools) on these
very cases, and are kept here as they printed. Deterministic: no false-failure rate.
"""

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from analogsam.robustness.correlation import exact_spearman_p
from analogsam.statistics import confidence_interval, welch_t_test

A = [0.8812, 0.8790, 0.8855]
B = [0.8702, 0.8671, 0.8740, 0.8695]
C = [1.0, 2.0, 4.0, 8.0, 16.0]
D = [3.0, 3.1]


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (A, B, (4.905613663405549, 4.029056002457186, 0.007864533153497673)),
        (C, D, (1.1546520531264166, 4.002686815904108, 0.3124777277755477)),
        (B, C, (-1.9539992155584653, 4.00000219892463, 0.12239413241684403)),
    ],
)
def test_welch_equals_the_hand_written_test(a, b, expected):
    assert welch_t_test(a, b) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "values, level, expected",
    [
        (A, 0.95, (0.8736873039707793, 0.8901126960292205)),
        (C, 0.9, (0.3850972355883542, 12.014902764411646)),
        (D, 0.95, (2.4146897631912645, 3.685310236808735)),
        ([0.5, 0.5, 0.5], 0.95, (0.5, 0.5)),  # no spread: an interval of width 0, as it always was
    ],
)
def test_the_interval_equals_the_hand_written_one(values, level, expected):
    assert confidence_interval(values, level) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "xs, ys, expected",
    [
        ([0.1, 0.4, 0.2, 0.9, 0.5], [1.0, 3.0, 2.0, 5.0, 4.5], 0.016666666666666666),  # 2 of 5! orderings
        ([1, 2, 2, 3, 4, 5], [2.0, 1.0, 3.0, 3.0, 6.0, 5.0], 0.06111111111111111),  # ties on both sides
        ([0.3, 0.1, 0.2, 0.4], [0.02, 0.05, 0.01, 0.03], 0.9166666666666666),
        (list(range(8)), [3, 1, 4, 1, 5, 9, 2, 6], 0.20892857142857144),  # n = 8: all 40320 orderings
    ],
)
def test_the_permutation_p_equals_the_enumeration(xs, ys, expected):
    assert exact_spearman_p(xs, ys) == pytest.approx(expected, rel=1e-12)


def test_what_scipy_leaves_undefined_or_warns_about_reads_as_before_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all(math.isnan(v) for v in welch_t_test([1.0, 1.0], [1.0, 1.0]))  # no spread at all
        assert all(math.isnan(v) for v in welch_t_test([1.0], [2.0, 3.0]))  # one value
        assert all(math.isnan(v) for v in confidence_interval([0.5]))
        assert math.isnan(exact_spearman_p([1, 2], [2, 1]))  # n < 3
        assert math.isnan(exact_spearman_p(list(range(9)), list(range(9))))  # n > 8: not enumerated
        assert confidence_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
        t, _, p = welch_t_test([0.5, 0.5, 0.5], [0.5, 0.5, 0.50000001])  # nearly identical: scipy would warn
        assert t == pytest.approx(-1.0, abs=1e-6) and p == pytest.approx(0.42265, abs=1e-4)


def test_welch_is_scipys_on_random_samples():
    """Beyond the kept cases: scipy's own function gives the same three numbers."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(0, 1, rng.integers(2, 9)), rng.normal(0.5, 2, rng.integers(2, 9))
        ref = stats.ttest_ind(a, b, equal_var=False)
        assert welch_t_test(a, b) == (float(ref.statistic), float(ref.df), float(ref.pvalue))
