"""The estimators every part of analogsam reports with: the mean of i.i.d. Monte-Carlo draws
(programmings, weight-noise draws, random directions), its spread and its uncertainty.

Independent draws give the textbook estimates: the sample standard deviation with Bessel's
correction, the standard error std/√n and the Student-t interval of the mean. Two samples (e.g.
the per-training-seed means of two methods) are compared with Welch's t-test. The interval and the
test are scipy's (``stats.t.interval``, ``stats.ttest_ind(equal_var=False)``); what this module adds
is the convention for samples too small to have a spread (NaN, no warning).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats


def sample_std(values: Sequence[float]) -> float:
    """Standard deviation with Bessel's correction; 0 for a single value (tables show no spread)."""
    values = np.asarray(values, dtype=float)
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean (``scipy.stats.t.interval`` around the mean, scaled by its
    standard error); a single value has no spread to estimate, so its bounds are NaN."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    mean, sem = float(values.mean()), float(stats.sem(values))
    if sem == 0:  # identical values: an interval of width 0 (scipy's scale must be > 0: it would give NaN)
        return mean, mean
    low, high = stats.t.interval(level, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def mean_std_stderr(samples: Sequence[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation (ddof=1) and standard error of the mean; NaN spread when n < 2."""
    arr = np.asarray(samples, dtype=float)
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, float("nan"), float("nan")
    std = float(arr.std(ddof=1))
    return mean, std, std / math.sqrt(arr.size)


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's unequal-variance t-test of mean(a) - mean(b) (Welch 1947, Biometrika 34:28):
    (t, Welch-Satterthwaite degrees of freedom, two-sided p-value), by
    ``scipy.stats.ttest_ind(a, b, equal_var=False)``.

    Each sample needs two values or more; when both have no spread the test is undefined and every
    number is NaN (identical constants are no evidence either way), where scipy would warn or divide
    by zero.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2 or np.var(a, ddof=1) + np.var(b, ddof=1) == 0:
        return math.nan, math.nan, math.nan
    with warnings.catch_warnings():
        # scipy warns where the values are nearly identical; the numbers are the formula's all the same
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=False)
    return float(result.statistic), float(result.df), float(result.pvalue)
