"""Does flatness predict robustness? The rank correlation across runs.

- :func:`robustness_correlation`: across runs, Spearman's rank correlation between each sharpness
  metric and an accuracy drop (under analog drift at a chosen preset and time, or under weight
  noise or faults): the claim "flatter minima are more robust" predicts a positive ρ.
- :func:`exact_spearman_p`: the exact permutation p-value of Spearman's ρ for the handful of runs a
  study has, where scipy's t-approximation is far too optimistic.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from analogsam.robustness.sharpness import METRICS

__all__ = ["robustness_correlation", "spearman", "exact_spearman_p", "paired", "available_metrics"]


def _lookup(record: Mapping, key: str, nested: Sequence[str]) -> float | None:
    """``record[key]``, else ``record[n][key]`` for the nested sections; a dict's ``"value"``."""
    value = record.get(key)
    for section in nested:
        if value is None and isinstance(record.get(section), Mapping):
            value = record[section].get(key)
    if isinstance(value, Mapping):
        value = value.get("value")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return None
    return float(value)


def paired(records, metric: str, drop: str) -> tuple[list[float], list[float], list[str]]:
    """(metric values, drop values, run labels) of the records that hold both, finite."""
    xs, ys, labels = [], [], []
    for i, record in enumerate(records):
        x = _lookup(record, metric, ("metrics", "sharpness"))
        y = _lookup(record, drop, ("drops",))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
            labels.append(str(record.get("run", i)))
    return xs, ys, labels


def available_metrics(records) -> list[str]:
    """The known sharpness metrics that some record holds a value for, in :data:`METRICS` order."""
    return [m for m in METRICS if any(_lookup(r, m, ("metrics", "sharpness")) is not None for r in records)]


def spearman(xs, ys) -> tuple[float, float]:
    """Spearman's ρ and scipy's t-approximation p; both nan for n < 3 or a constant column."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan"), float("nan")
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.spearmanr(xs, ys)
    return float(result.statistic), float(result.pvalue)


def exact_spearman_p(xs, ys) -> float:
    """Two-sided permutation p-value of Spearman's ρ, exact by enumeration (nan for n < 3 or n > 8).

    With a handful of runs scipy's t-approximation is far too optimistic (it gives p = 0 for ρ = 1);
    the exact test says what n runs can show at all, e.g. at n = 4 the smallest p is 2/24 ≈ 0.083.
    It is ``scipy.stats.permutation_test`` over all n! orderings of the ranks of ``ys``
    (``permutation_type="pairings"``, ``n_resamples=inf``) of |ρ|: the share of orderings whose |ρ|
    is at least the observed one.
    """
    from scipy import stats

    n = len(xs)
    if n < 3 or n > 8 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan")
    rx = stats.rankdata(xs)
    rx = rx - rx.mean()

    def abs_rho(ranks, axis=-1):  # vectorized over the orderings scipy passes at once
        r = ranks - ranks.mean(axis=axis, keepdims=True)
        return np.abs((r * rx).sum(axis=axis) / np.sqrt((rx @ rx) * (r * r).sum(axis=axis)))

    result = stats.permutation_test(
        (stats.rankdata(ys),),
        abs_rho,
        permutation_type="pairings",
        alternative="greater",
        n_resamples=np.inf,
        vectorized=True,
    )
    return float(result.pvalue)


def robustness_correlation(
    records: Iterable[Mapping],
    *,
    metrics: Sequence[str] | None = None,
    drop: str | Sequence[str] = "accuracy_drop",
) -> list[dict]:
    """Spearman rank correlation between each sharpness metric and each accuracy drop, across runs.

    ``records`` holds one mapping per run (model): the metric values and the drop(s), either flat
    (``{"run": "sam", "hessian_trace": 12.3, "accuracy_drop": 0.04}``) or an
    :func:`analogsam.robustness.analyze_model` result with the drop added (metrics found under
    ``"metrics"``, noise and fault drops under ``"drops"``). The drop is typically clean accuracy
    minus accuracy at a chosen device preset and time. Runs missing a value (or with a non-finite
    one) are left out of that pair. ``metrics`` defaults to every known metric present in any record.

    Returns one row per (metric, drop): ``{"metric", "drop", "n", "spearman_rho", "p_value"}``.
    ρ > 0 means sharper models lost more accuracy. ρ and p are nan for fewer than 3 runs or a
    constant column; with a handful of runs p (scipy's t-approximation) is only indicative
    (:func:`exact_spearman_p` gives the exact one).
    """
    records = list(records)
    drops = [drop] if isinstance(drop, str) else list(drop)
    metrics = available_metrics(records) if metrics is None else list(metrics)
    rows = []
    for metric in metrics:
        for d in drops:
            xs, ys, _ = paired(records, metric, d)
            rho, p = spearman(xs, ys)
            rows.append({"metric": metric, "drop": d, "n": len(xs), "spearman_rho": rho, "p_value": p})
    return rows
