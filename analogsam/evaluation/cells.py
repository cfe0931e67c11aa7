"""How a summary cell reads in a report: its run label, its metric, its mean ± spread.

Shared by the sweep's report (:mod:`.report`) and the knob tables (:mod:`.knobs`), which both turn
summary rows (:mod:`analogsam.evaluation.statistics`) into text; here, below both, so that neither imports the other.
"""

from __future__ import annotations

import dataclasses
import math

from analogsam.errors import InvalidParameterError
from analogsam.evaluation.store import run_label
from analogsam.reporting import NOT_AVAILABLE
from analogsam.scoring import Metric, resolve_metric

#: What a table shows for a cell that was not measured.
NOT_MEASURED = "—"


def over_seeds(summary: list[dict]) -> bool:
    """Whether ``summary`` is over training seeds (:func:`~.statistics.summarize_seeds`)."""
    return any("n_seeds" in r for r in summary)


def half_width(cell: dict, low: str = "ci95_low", high: str = "ci95_high") -> float:
    """Half the width of a cell's interval (NaN where it has none)."""
    lo, hi = cell.get(low), cell.get(high)
    return math.nan if lo is None or hi is None else (hi - lo) / 2


def row_label(row: dict) -> str:
    """``run``, or ``run [faults]`` for rows measured with memory faults."""
    return run_label(row["run"], row.get("faults") or "")


def metric_name(row: dict) -> str:
    """The metric a summary row measured."""
    return row.get("metric") or "accuracy"  # a summary from before the metric column: accuracy


def metrics_of(summary: list[dict]) -> list[str]:
    """The metric names in ``summary``, in first-seen order."""
    return list(dict.fromkeys(metric_name(r) for r in summary))


def metric_info(summary: list[dict], name: str | None = None) -> Metric:
    """The :class:`~analogsam.scoring.Metric` of ``name`` (default: the summary's first metric): a
    built-in one by its name, else (a user's metric) one that reads its direction from the rows."""
    name = name or (metrics_of(summary) or ["accuracy"])[0]
    rows = [r for r in summary if metric_name(r) == name]
    higher = next((r["higher_is_better"] for r in rows if r.get("higher_is_better") is not None), True)
    try:
        metric = resolve_metric(name)
    except InvalidParameterError:
        metric = Metric(name, bool(higher), lambda p, t: (0.0, 0), label=name)
    return dataclasses.replace(metric, higher_is_better=bool(higher))


def digital_of(cells: dict, label: str) -> float | None:
    """The run's digital value of the metric (the same in every cell of the run)."""
    for (name, _), cell in cells.items():
        if name == label:
            value = cell.get("digital_value")
            return cell.get("digital_accuracy") if value is None else value
    return None


def mean_std_text(cell: dict | None, metric: Metric) -> str:
    """``mean ± std`` over programmings, or the seed-level text of a summary over seeds."""
    if cell is None:
        return NOT_MEASURED
    if "n_seeds" in cell:
        return seed_cell_text(cell, metric)
    return f"{metric.format(cell['mean'])} ± {metric.format(cell['std'])}"


def spread_text(metric: Metric, value: float) -> str:
    """A spread in the metric's format (n/a where there is none)."""
    return NOT_AVAILABLE if value is None or math.isnan(value) else metric.format(value)


def seed_cell_text(cell: dict, metric: Metric, key: str = "mean") -> str:
    """``mean ± CI half-width over seeds (σp programming std)``; one seed has no interval over seeds."""
    low, high = ("ci95_low", "ci95_high") if key == "mean" else ("drop_ci95_low", "drop_ci95_high")
    half = half_width(cell, low, high)
    interval = "(1 seed, no CI)" if cell["n_seeds"] < 2 else f"± {spread_text(metric, half)}"
    text = f"{metric.format(cell[key])} {interval}"
    return f"{text} (σp {spread_text(metric, cell['programming_std'])})" if key == "mean" else text
