"""Human-readable output of a sweep: text tables, accuracy-vs-time plots and a markdown report.

Everything here reads the tidy rows (``results.csv``) or their summary (``summary.csv``); nothing
is measured here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: reports are written on headless machines
import matplotlib.pyplot as plt  # noqa: E402

from analogsam.evaluation import format_time  # noqa: E402
from analogsam.evaluation.store import RESULT_COLUMNS, SUMMARY_COLUMNS, summarize, write_rows  # noqa: E402


def _grid(summary: list[dict], preset: str) -> tuple[list[str], list[float], dict]:
    """(runs, times, {(run, t): summary row}) of one preset, runs in first-seen order."""
    cells = {(r["run"], r["t_seconds"]): r for r in summary if r["preset"] == preset}
    runs = list(dict.fromkeys(r["run"] for r in summary if r["preset"] == preset))
    times = sorted({t for _, t in cells})
    return runs, times, cells


def _presets(summary: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["preset"] for r in summary))


def text_table(summary: list[dict], preset: str) -> str:
    """Accuracy (mean ± std, %) per run and time for one preset, as aligned text."""
    runs, times, cells = _grid(summary, preset)
    header = ["run", "digital"] + [format_time(t) for t in times]
    lines = [header]
    for run in runs:
        first = cells[(run, times[0])]
        row = [run, f"{100 * first['digital_accuracy']:.2f}" if first.get("digital_accuracy") is not None else "-"]
        for t in times:
            c = cells.get((run, t))
            row.append(f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f}" if c else "-")
        lines.append(row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [f"preset {preset} (accuracy %, mean ± std over {cells[(runs[0], times[0])]['n']} repeats)"]
    for i, line in enumerate(lines):
        out.append("  ".join(cell.rjust(w) if j else cell.ljust(w) for j, (cell, w) in enumerate(zip(line, widths))))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(summary: list[dict], preset: str) -> str:
    """Run x time table of one preset; the best mean in each time column is in bold."""
    runs, times, cells = _grid(summary, preset)
    best = {t: max((cells[(r, t)]["mean"] for r in runs if (r, t) in cells), default=math.nan) for t in times}
    head = "| run | optimizer | digital | " + " | ".join(format_time(t) for t in times) + " |"
    lines = [head, "|" + "---|" * (3 + len(times))]
    for run in runs:
        first = cells[(run, times[0])]
        digital = f"{100 * first['digital_accuracy']:.2f}" if first.get("digital_accuracy") is not None else "-"
        row = [run, str(first.get("optimizer") or "-"), digital]
        for t in times:
            c = cells.get((run, t))
            if c is None:
                row.append("-")
                continue
            text = f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f}"
            row.append(f"**{text}**" if c["mean"] == best[t] and len(runs) > 1 else text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _plot_preset(ax, summary: list[dict], preset: str) -> None:
    runs, times, cells = _grid(summary, preset)
    def bound(cell, key):  # a single repeat has no interval: draw none
        return 100 * (cell["mean"] if math.isnan(cell[key]) else cell[key])

    for run in runs:
        ts = [t for t in times if (run, t) in cells]
        mean = [100 * cells[(run, t)]["mean"] for t in ts]
        low = [bound(cells[(run, t)], "ci95_low") for t in ts]
        high = [bound(cells[(run, t)], "ci95_high") for t in ts]
        line, = ax.plot(ts, mean, marker="o", label=run)
        ax.fill_between(ts, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xticks(times)
    ax.set_xticklabels([format_time(t) for t in times])
    ax.set_xlabel("time after programming")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(preset)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


def plot_accuracy_vs_time(summary: list[dict], path: str | os.PathLike, preset: str | None = None) -> Path:
    """One line per run (mean, shaded 95% CI) for ``preset``, or one panel per preset side by side."""
    presets = [preset] if preset else _presets(summary)
    fig, axes = plt.subplots(1, len(presets), figsize=(5.5 * len(presets), 4), squeeze=False)
    for ax, name in zip(axes[0], presets):
        _plot_preset(ax, summary, name)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_report(rows: list[dict], out: str | os.PathLike, title: str = "analogsam study") -> dict[str, Path]:
    """Write results.csv, summary.csv, plots and report.md into ``out``."""
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
                "each repeat is an independent programming; the best mean per time is in bold. "
                "95% confidence intervals are in summary.csv.", ""]
    presets = _presets(summary)
    for name in presets:
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

