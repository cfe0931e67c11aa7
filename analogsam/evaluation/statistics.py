"""Statistics over repeats: the mean accuracy of each (run, faults, preset, t) cell with its sample
standard deviation and Student-t 95% confidence interval (independent programmings are i.i.d.
draws, so the interval of their mean is the textbook t interval)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

import numpy as np
from scipy import stats

SUMMARY_COLUMNS = ["run", "optimizer", "faults", "preset", "preset_hash", "t_seconds", "n", "mean", "std",
                   "ci95_low", "ci95_high", "digital_accuracy"]


def sample_std(values: np.ndarray) -> float:
    """Standard deviation with Bessel's correction; 0 for a single value (no spread to estimate)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def confidence_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean; a single value has no spread to estimate, so its bounds are NaN."""
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n)
    return mean - half, mean + half


def summarize(rows: Iterable[dict]) -> list[dict]:
    """One row per (run, faults, preset, preset_hash, t): n, mean, sample std and 95% CI of accuracy
    over repeats. Faulted and clean rows of a run are separate cells (rows without a ``faults``
    value, e.g. from a results.csv written before the column existed, are clean)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["run"], r.get("faults") or "", r["preset"], r["preset_hash"], float(r["t_seconds"]))].append(r)
    out = []
    for (run, faults, preset, digest, t), members in sorted(groups.items(),
                                                            key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][4])):
        acc = np.array([m["accuracy"] for m in members], dtype=float)
        low, high = confidence_interval(acc)
        out.append({"run": run, "optimizer": members[0].get("optimizer"), "faults": faults, "preset": preset,
                    "preset_hash": digest, "t_seconds": t, "n": len(acc), "mean": float(acc.mean()),
                    "std": sample_std(acc), "ci95_low": low, "ci95_high": high,
                    "digital_accuracy": members[0].get("digital_accuracy")})
    return out
