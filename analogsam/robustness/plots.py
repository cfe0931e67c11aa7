"""Plots of the robustness probes, drawn with :mod:`analogsam.reporting` (matplotlib's ``Figure`` on
its own Agg canvas: no pyplot, no global backend switch). Each function writes one PNG and returns
its path.

- :func:`plot_sharpness_scatter`, :func:`plot_sharpness_scatters`: a sharpness metric against an
  accuracy drop across runs, Spearman's ρ in the title;
- :func:`plot_robustness_curves`, :func:`plot_robustness_panel`: accuracy against the weight-noise
  level or fault rate, one line per run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from analogsam.reporting import new_figure, save_figure
from analogsam.robustness.correlation import available_metrics, paired, spearman
from analogsam.storage import safe_name

__all__ = ["plot_sharpness_scatter", "plot_sharpness_scatters", "plot_robustness_curves", "plot_robustness_panel"]


def plot_sharpness_scatter(
    records, metric: str, path, *, drop: str = "accuracy_drop", log_x: bool | None = None
) -> Path:
    """Scatter of ``metric`` (x) against ``drop`` (y), one labelled point per run, Spearman ρ in
    the title; written as a PNG to ``path``. ``log_x`` defaults to True when all x > 0 and they
    span more than a factor of 100."""
    records = list(records)
    xs, ys, labels = paired(records, metric, drop)
    rho, p = spearman(xs, ys)
    fig = new_figure(layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(xs, ys)
    for x, y, label in zip(xs, ys, labels):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if log_x is None:
        log_x = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 100
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(metric.replace("_", " "))
    ax.set_ylabel(drop.replace("_", " "))
    ax.set_title(f"Spearman ρ = {rho:.2f} (p = {p:.2g}, n = {len(xs)})", fontsize=10)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_sharpness_scatters(
    records, out_dir, *, metrics: Sequence[str] | None = None, drop: str = "accuracy_drop"
) -> list[Path]:
    """One scatter PNG per metric, ``out_dir/sharpness_<metric>_vs_<drop>.png``; returns the paths."""
    records = list(records)
    metrics = available_metrics(records) if metrics is None else list(metrics)
    return [
        plot_sharpness_scatter(
            records, m, Path(out_dir) / f"sharpness_{safe_name(m)}_vs_{safe_name(drop)}.png", drop=drop
        )
        for m in metrics
    ]


def _draw_curves(ax, curves: Mapping[str, object], title: str | None) -> None:
    level_name, kind, metric = "level", "", "accuracy"
    for label, curve in curves.items():
        curve = curve.to_dict() if hasattr(curve, "to_dict") else curve
        level_name, kind = curve["level_name"], curve["kind"]
        metric = curve.get("metric", "accuracy")  # curves recorded before the field measured accuracy
        levels = np.array([row[level_name] for row in curve["summary"]])
        mean = np.array([row["mean"] for row in curve["summary"]])
        std = np.nan_to_num(np.array([row["std"] for row in curve["summary"]], dtype=float))
        ax.errorbar(levels, mean, yerr=std, marker="o", capsize=3, label=str(label))
    ax.set_xlabel(level_name)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title or kind, fontsize=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)


def plot_robustness_curves(curves: Mapping[str, object], path, *, title: str | None = None) -> Path:
    """Mean accuracy (or the curves' metric) ± std against the level (η or fault rate) for several runs'
    curves of one kind.

    ``curves`` maps a run label to a :class:`analogsam.robustness.perturbations.RobustnessCurve` or its ``to_dict()``.
    """
    fig = new_figure(layout="constrained")
    _draw_curves(fig.add_subplot(), curves, title)
    return save_figure(fig, path)


def plot_robustness_panel(
    curves_by_kind: Mapping[str, Mapping[str, object]], path, *, title: str | None = None
) -> Path:
    """All robustness curves in one PNG: one axes per curve kind (``{kind: {run label: curve}}``),
    two columns, each run one line with ± std error bars."""
    kinds = [k for k, v in curves_by_kind.items() if v]
    cols = min(2, max(1, len(kinds)))
    rows = max(1, math.ceil(len(kinds) / cols))
    fig = new_figure(5.0 * cols, 4.0 * rows, layout="constrained")
    for i, kind in enumerate(kinds):
        _draw_curves(fig.add_subplot(rows, cols, i + 1), curves_by_kind[kind], kind.replace("_", " "))
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
