"""Human-readable output of a sweep: text tables, accuracy-vs-time plots and a markdown report.

Everything here reads the tidy rows (``results.csv``) or their summary (``summary.csv``); nothing
is measured here. A run measured with memory faults is labelled ``run [faults]``, apart from its
clean rows. Tables have a column for every time measured on any preset, and show "—" where a
(run, preset, time) cell was not measured (e.g. a time a preset's noise model does not define).

Plots are drawn on a :class:`matplotlib.figure.Figure` with its own Agg canvas, so importing or
using this module leaves matplotlib's global state (backend, pyplot figures) alone.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from analogsam.evaluation.coverage import LeftOut, describe_left_out
from analogsam.evaluation.statistics import SUMMARY_COLUMNS, summarize
from analogsam.evaluation.store import RESULT_COLUMNS, run_label, write_rows
from analogsam.evaluation.times import format_time

#: What a table shows for a cell that was not measured.
NOT_MEASURED = "—"


def row_label(row: dict) -> str:
    """``run``, or ``run [faults]`` for rows measured with memory faults."""
    return run_label(row["run"], row.get("faults") or "")


def _presets(summary: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["preset"] for r in summary))


def _grid(summary: list[dict], preset: str) -> tuple[list[str], list[float], dict]:
    """(run labels, times, {(label, t): summary row}) of one preset: labels in first-seen order, and
    every time of the summary, so that the times this preset lacks show as not measured."""
    cells = {(row_label(r), r["t_seconds"]): r for r in summary if r["preset"] == preset}
    labels = list(dict.fromkeys(label for label, _ in cells))
    times = sorted({r["t_seconds"] for r in summary})
    return labels, times, cells


def _digital(cells: dict, label: str) -> float | None:
    """The run's digital accuracy (the same in every cell of the run)."""
    return next((c["digital_accuracy"] for (name, _), c in cells.items() if name == label), None)


def _percent(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{100 * value:.2f}"


def _mean_std(cell: dict | None) -> str:
    return NOT_MEASURED if cell is None else f"{100 * cell['mean']:.2f} ± {100 * cell['std']:.2f}"


def text_table(summary: list[dict], preset: str) -> str:
    """Accuracy (mean ± std, %) per run and time for one preset, as aligned text."""
    labels, times, cells = _grid(summary, preset)
    header = ["run", "digital"] + [format_time(t) for t in times]
    lines = [header]
    for label in labels:
        lines.append([label, _percent(_digital(cells, label))] + [_mean_std(cells.get((label, t))) for t in times])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    repeats = sorted({c["n"] for c in cells.values()})
    counted = str(repeats[0]) if len(repeats) == 1 else f"{repeats[0]}-{repeats[-1]}"
    out = [f"preset {preset} (accuracy %, mean ± std over {counted} repeats)"]
    for i, line in enumerate(lines):
        out.append("  ".join(cell.rjust(w) if j else cell.ljust(w) for j, (cell, w) in enumerate(zip(line, widths))))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(summary: list[dict], preset: str) -> str:
    """Run x time table of one preset; the best mean in each time column is in bold."""
    labels, times, cells = _grid(summary, preset)
    best = {t: max((cells[(r, t)]["mean"] for r in labels if (r, t) in cells), default=math.nan) for t in times}
    head = "| run | optimizer | digital | " + " | ".join(format_time(t) for t in times) + " |"
    lines = [head, "|" + "---|" * (3 + len(times))]
    for label in labels:
        optimizer = next(c.get("optimizer") for (name, _), c in cells.items() if name == label)
        row = [label, str(optimizer or NOT_MEASURED), _percent(_digital(cells, label))]
        for t in times:
            cell = cells.get((label, t))
            text = _mean_std(cell)
            row.append(f"**{text}**" if cell is not None and cell["mean"] == best[t] and len(labels) > 1 else text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _draw_preset(ax, summary: list[dict], preset: str) -> None:
    """One preset's panel: per run, the mean over repeats with its shaded 95% CI, and the run's digital
    accuracy as a dashed line in the same colour (the loss to the hardware at a glance)."""
    from matplotlib.lines import Line2D

    labels, times, cells = _grid(summary, preset)

    def bound(cell, key):  # a single repeat has no interval: draw none
        return 100 * (cell["mean"] if math.isnan(cell[key]) else cell[key])

    for label in labels:
        ts = [t for t in times if (label, t) in cells]
        mean = [100 * cells[(label, t)]["mean"] for t in ts]
        line, = ax.plot(ts, mean, marker="o", label=label)
        ax.fill_between(ts, [bound(cells[(label, t)], "ci95_low") for t in ts],
                        [bound(cells[(label, t)], "ci95_high") for t in ts], color=line.get_color(), alpha=0.2)
        digital = _digital(cells, label)
        if digital is not None:
            ax.axhline(100 * digital, linestyle="--", linewidth=1, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlim(times[0] / 2, times[-1] * 2)  # every panel spans every time, measured here or not
    ax.set_xticks(times)
    ax.set_xticklabels([format_time(t) for t in times])
    ax.set_xlabel("time after programming")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(preset)
    ax.grid(True, alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], linestyle="--", linewidth=1, color="0.4"))
    names.append("digital (dashed)")
    ax.legend(handles, names, fontsize="small")


def accuracy_figure(summary: list[dict], preset: str | None = None):
    """A :class:`~matplotlib.figure.Figure` with one panel for ``preset``, or one per preset side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    presets = [preset] if preset else _presets(summary)
    fig = Figure(figsize=(5.5 * len(presets), 4))
    FigureCanvasAgg(fig)
    for ax, name in zip(fig.subplots(1, len(presets), squeeze=False)[0], presets):
        _draw_preset(ax, summary, name)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_time(summary: list[dict], path: str | os.PathLike, preset: str | None = None) -> Path:
    """Write :func:`accuracy_figure` as a PNG to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    accuracy_figure(summary, preset).savefig(path, dpi=120)
    return path


def write_report(rows: list[dict], out: str | os.PathLike, title: str = "analogsam study",
                 left_out: Sequence[LeftOut] = ()) -> dict[str, Path]:
    """Write results.csv, summary.csv, plots and report.md into ``out``; ``left_out`` (the cells a
    sweep did not measure, :func:`analogsam.evaluation.coverage.times_per_preset`) is said in the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    write_rows(out / "results.csv", rows, RESULT_COLUMNS)
    written["results"] = out / "results.csv"
    summary = summarize(rows)
    write_rows(out / "summary.csv", summary, SUMMARY_COLUMNS)
    written["summary"] = out / "summary.csv"
    written["plot"] = plot_accuracy_vs_time(summary, out / "accuracy_vs_time.png")
    sections = [f"# {title}", "",
                "Accuracy on simulated analog hardware (aihwkit 1.1.0), mean ± std over repeats; "
                "each repeat is an independent programming; the best mean per time is in bold; "
                f"{NOT_MEASURED} marks a cell that was not measured. "
                "95% confidence intervals are in summary.csv.", ""]
    if left_out:
        sections += [f"Note: {describe_left_out(left_out)}.", ""]
    for name in _presets(summary):
        plot = plot_accuracy_vs_time(summary, out / f"accuracy_vs_time_{name}.png", preset=name)
        digests = sorted({r["preset_hash"] for r in summary if r["preset"] == name})
        sections += [f"## Preset `{name}` (values hash {', '.join(digests)})", "", markdown_table(summary, name), "",
                     f"![accuracy vs time on {name}]({plot.name})", ""]
    sections += ["## All presets", "", "![accuracy vs time](accuracy_vs_time.png)", ""]
    (out / "report.md").write_text("\n".join(sections))
    written["report"] = out / "report.md"
    return written


def summary_tables(summary: list[dict]) -> str:
    """Text tables of every preset in ``summary``."""
    return "\n\n".join(text_table(summary, p) for p in _presets(summary))
