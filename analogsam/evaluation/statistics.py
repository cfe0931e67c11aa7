"""Statistics over repeats: the mean metric value (accuracy, perplexity, ...) of each (run, faults,
preset, metric, t) cell with its sample standard deviation and Student-t 95% confidence interval (independent programmings are i.i.d.
draws, so the interval of their mean is the textbook t interval)."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np

from analogsam.evaluation.columns import with_metric
from analogsam.statistics import confidence_interval, sample_std

SUMMARY_COLUMNS = ["run", "optimizer", "faults", "preset", "preset_hash", "metric", "higher_is_better", "t_seconds",
                   "n", "mean", "std", "ci95_low", "ci95_high", "digital_value", "digital_accuracy"]


def summarize(rows: Iterable[dict]) -> list[dict]:
    """One row per (run, faults, preset, preset_hash, metric, t): n, mean, sample std and 95% CI of the
    metric's value over repeats, and the digital value. Faulted and clean rows of a run are separate
    cells (rows without a ``faults`` value, e.g. from a results.csv written before the column existed,
    are clean); rows without a ``metric`` measured accuracy (:func:`~.store.with_metric`)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in map(with_metric, rows):
        groups[(r["run"], r.get("faults") or "", r["preset"], r["preset_hash"], r["metric"],
                float(r["t_seconds"]))].append(r)
    out = []
    for (run, faults, preset, digest, metric, t), members in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][4], kv[0][5])):
        values = np.array([m["value"] for m in members], dtype=float)
        low, high = confidence_interval(values)
        first = members[0]
        out.append({"run": run, "optimizer": first.get("optimizer"), "faults": faults, "preset": preset,
                    "preset_hash": digest, "metric": metric, "higher_is_better": first.get("higher_is_better", True),
                    "t_seconds": t, "n": len(values), "mean": float(values.mean()), "std": sample_std(values),
                    "ci95_low": low, "ci95_high": high, "digital_value": first.get("digital_value"),
                    "digital_accuracy": first.get("digital_value") if metric == "accuracy" else None})
    return out
