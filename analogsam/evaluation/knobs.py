"""The metric against a device knob: tables, line plots and heat maps of a knob sweep (``--vary``).

A sweep's variants (``pcm[io.adc_bits=4]``, ...) carry one column per varied knob in their rows and
summary (:mod:`.columns`). Here they are regrouped by the preset they vary: for each varied knob, a
table (one row per run, time and value of the other varied knobs; one column per value of the knob)
and a figure with one panel per time, the knob's values on the x axis and one line per run (per value
of the other knobs, in its own line style), its 95% CI shaded and the run's digital value as a dashed
line in the same colour, where the analog curve meets it the hardware costs nothing. Two varied knobs
also get a heat map per run and time (the mean over repeats, digital value in the panel title).

Like :mod:`.report`, this reads summaries only and draws on its own Agg canvas.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

from analogsam.evaluation.cells import NOT_MEASURED, digital_of, mean_std_text, metric_info, metrics_of, row_label
from analogsam.evaluation.columns import knob_columns
from analogsam.evaluation.times import format_time
from analogsam.hardware.presets.variants import format_knob_value
from analogsam.reporting import markdown_lines, new_figure, save_figure

__all__ = [
    "base_presets",
    "knob_figure",
    "knob_heatmap",
    "knob_markdown_table",
    "knob_text_table",
    "knob_tables",
    "varied_knobs",
    "write_knob_section",
]


def base_of(row: dict) -> str:
    """The preset a variant varies: ``pcm`` for ``pcm[io.adc_bits=4]``."""
    return row["preset"].split("[", 1)[0]


def _variant_rows(summary: list[dict], base: str | None = None) -> list[dict]:
    return [
        r
        for r in summary
        if any(r.get(k) is not None for k in knob_columns([r])) and (base is None or base_of(r) == base)
    ]


def base_presets(summary: list[dict]) -> list[str]:
    """The presets a summary varies knobs of, in first-seen order."""
    return list(dict.fromkeys(base_of(r) for r in _variant_rows(summary)))


def varied_knobs(summary: list[dict], base: str) -> list[str]:
    """The knobs varied on preset ``base``, in column order."""
    rows = _variant_rows(summary, base)
    return [k for k in knob_columns(rows) if any(r.get(k) is not None for r in rows)]


def _values(rows: list[dict], knob: str) -> list:
    values = {r[knob] for r in rows if r.get(knob) is not None}
    try:
        return sorted(values)
    except TypeError:  # (mixed types cannot happen for one knob; keep first-seen order anyway)
        return list(dict.fromkeys(r[knob] for r in rows if r.get(knob) is not None))


def _cells(summary: list[dict], base: str, metric: str) -> tuple[list[dict], list[str], list[float], list[str]]:
    """(the variant rows of ``base`` and ``metric``, run labels, times, knobs)."""
    rows = [r for r in _variant_rows(summary, base) if (r.get("metric") or "accuracy") == metric]
    labels = list(dict.fromkeys(row_label(r) for r in rows))
    times = sorted({r["t_seconds"] for r in rows})
    return rows, labels, times, varied_knobs(summary, base)


def _others(knobs: list[str], knob: str, rows: list[dict]) -> list[tuple]:
    """Every combination of the other varied knobs' values: ((key, value), ...) each."""
    others = [k for k in knobs if k != knob]
    return [tuple(zip(others, combo)) for combo in itertools.product(*(_values(rows, k) for k in others))]


def _find(rows: list[dict], label: str, t: float, fixed: dict) -> dict | None:
    for r in rows:
        if row_label(r) == label and r["t_seconds"] == t and all(r.get(k) == v for k, v in fixed.items()):
            return r
    return None


def _other_text(other: tuple) -> str:
    return ", ".join(f"{k}={format_knob_value(v)}" for k, v in other)


def _table(summary: list[dict], base: str, knob: str, metric: str | None) -> tuple[str, list[list[str]]]:
    info = metric_info(summary, metric)
    rows, labels, times, knobs = _cells(summary, base, info.name)
    values = _values(rows, knob)
    others = _others(knobs, knob, rows)
    header = ["run"] + (["other knobs"] if others != [()] else []) + ["t", "digital"]
    header += [f"{knob}={format_knob_value(v)}" for v in values]
    lines = [header]
    for label in labels:
        digital = info.format(digital_of({(row_label(r), r["t_seconds"]): r for r in rows}, label))
        for other in others:
            for t in times:
                line = [label] + ([_other_text(other)] if others != [()] else []) + [format_time(t), digital]
                for v in values:
                    line.append(mean_std_text(_find(rows, label, t, {**dict(other), knob: v}), info))
                lines.append(line)
    return info.name, lines


def knob_markdown_table(summary: list[dict], base: str, knob: str, metric: str | None = None) -> str:
    """Markdown: the metric (mean ± std over repeats; over training seeds where there are several) of
    every run on ``base`` at every time (and value of the other varied knobs), one column per value of
    ``knob``, beside the run's digital value."""
    _, lines = _table(summary, base, knob, metric)
    return "\n".join(markdown_lines(lines[0], lines[1:]))


def knob_text_table(summary: list[dict], base: str, knob: str, metric: str | None = None) -> str:
    """:func:`knob_markdown_table` as aligned text with a title line."""
    name, lines = _table(summary, base, knob, metric)
    info = metric_info(summary, name)
    unit = "accuracy %" if info.name == "accuracy" else info.description
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = [f"preset {base}: {unit} against {knob} (mean ± std over repeats; {NOT_MEASURED}: not measured)"]
    for i, line in enumerate(lines):
        out.append("  ".join(c.rjust(w) if j > 1 else c.ljust(w) for j, (c, w) in enumerate(zip(line, widths))))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def knob_tables(summary: list[dict]) -> str:
    """Text tables of every varied knob of every preset and metric of ``summary``."""
    return "\n\n".join(
        knob_text_table(summary, base, knob, metric)
        for base in base_presets(summary)
        for metric in metrics_of(_variant_rows(summary, base))
        for knob in varied_knobs(summary, base)
    )


def _positions(values: list) -> tuple[list[float], bool]:
    """x positions of a knob's values (the values themselves where numeric) and whether they are."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return ([float(v) for v in values] if numeric else list(range(len(values)))), numeric


def knob_figure(summary: list[dict], base: str, knob: str, metric: str | None = None):
    """A Figure of the metric against ``knob`` on ``base``: one panel per time, one line per run (and
    per value of the other varied knobs, dotted/dash-dotted...), its 95% CI shaded, and each run's
    digital value as a dashed horizontal line in its colour."""
    from matplotlib.lines import Line2D

    info = metric_info(summary, metric)
    rows, labels, times, knobs = _cells(summary, base, info.name)
    values = _values(rows, knob)
    xs, numeric = _positions(values)
    others = _others(knobs, knob, rows)
    scale = 100 if info.percent else 1
    styles = ["-", ":", "-.", (0, (5, 1, 1, 1, 1, 1))]  # (dashed is the digital line's)
    markers = ["o", "s", "^", "D", "v", "P"]
    fig = new_figure(4.2 * len(times), 3.8)
    axes = fig.subplots(1, len(times), squeeze=False, sharey=True)[0]
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for ax, t in zip(axes, times):
        for label in labels:
            for j, other in enumerate(others):
                cells = [_find(rows, label, t, {**dict(other), knob: v}) for v in values]
                pts = [(x, c) for x, c in zip(xs, cells) if c is not None]
                if not pts:
                    continue
                px = [x for x, _ in pts]
                mean = [scale * c["mean"] for _, c in pts]
                low = [scale * (c["mean"] if math.isnan(c["ci95_low"]) else c["ci95_low"]) for _, c in pts]
                high = [scale * (c["mean"] if math.isnan(c["ci95_high"]) else c["ci95_high"]) for _, c in pts]
                ax.plot(
                    px,
                    mean,
                    linestyle=styles[j % len(styles)] if len(others) > 1 else "-",
                    marker=markers[j % len(markers)],
                    color=colors[label],
                )
                ax.fill_between(px, low, high, color=colors[label], alpha=0.12)
            digital = digital_of({(row_label(r), r["t_seconds"]): r for r in rows}, label)
            if digital is not None:
                ax.axhline(scale * digital, linestyle=(0, (4, 3)), linewidth=1, color=colors[label], alpha=0.8)
        ax.set_xticks(xs)
        ax.set_xticklabels([format_knob_value(v) for v in values])
        if numeric and min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log")
            ax.set_xticks(xs)
            ax.set_xticklabels([format_knob_value(v) for v in values])
            ax.minorticks_off()
        ax.set_xlabel(knob)
        ax.set_title(f"{base}, t = {format_time(t)}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)" if info.name == "accuracy" else f"test {info.description}")
    handles = [Line2D([], [], color=colors[label], marker="o") for label in labels]
    names = list(labels)
    if len(others) > 1:
        for j, other in enumerate(others):
            handles.append(
                Line2D([], [], color="0.4", linestyle=styles[j % len(styles)], marker=markers[j % len(markers)])
            )
            names.append(_other_text(other))
    handles.append(Line2D([], [], linestyle=(0, (4, 3)), linewidth=1, color="0.4"))
    names.append("digital (dashed)")
    axes[-1].legend(handles, names, fontsize="small")
    fig.tight_layout()
    return fig


def knob_heatmap(summary: list[dict], base: str, knobs: tuple[str, str], metric: str | None = None):
    """A Figure of heat maps of the metric over two varied knobs of ``base``: one row of panels per run,
    one column per time, ``knobs[0]`` on x and ``knobs[1]`` on y, each cell's mean printed in it, one
    colour scale for all, and the run's digital value in each panel's title."""
    info = metric_info(summary, metric)
    rows, labels, times, _ = _cells(summary, base, info.name)
    kx, ky = knobs
    xv, yv = _values(rows, kx), _values(rows, ky)
    scale = 100 if info.percent else 1
    grids = {}
    for label in labels:
        for t in times:
            grid = []
            for y in yv:
                line = []
                for x in xv:
                    cell = _find(rows, label, t, {kx: x, ky: y})
                    line.append(math.nan if cell is None else scale * cell["mean"])
                grid.append(line)
            grids[(label, t)] = grid
    finite = [v for g in grids.values() for line in g for v in line if not math.isnan(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    cmap = "viridis" if info.higher_is_better else "viridis_r"
    width = 1.6 + max(2.6, 0.8 * len(xv)) * len(times)
    height = 0.6 + max(2.2, 0.55 * len(yv) + 1.0) * len(labels)
    fig = new_figure(width, height, layout="constrained")
    axes = fig.subplots(len(labels), len(times), squeeze=False)
    image = None
    for i, label in enumerate(labels):
        digital = digital_of({(row_label(r), r["t_seconds"]): r for r in rows}, label)
        shown = "" if digital is None else f" (digital {info.format(digital)})"
        for j, t in enumerate(times):
            ax = axes[i][j]
            grid = grids[(label, t)]
            image = ax.imshow(grid, cmap=cmap, vmin=low, vmax=high, origin="lower", aspect="auto")
            for yi, line in enumerate(grid):
                for xi, v in enumerate(line):
                    text = NOT_MEASURED if math.isnan(v) else (f"{v:.1f}" if info.percent else f"{v:.3g}")
                    dark = not math.isnan(v) and (v - low) < 0.5 * (high - low)
                    ax.text(xi, yi, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
            ax.set_xticks(range(len(xv)))
            ax.set_xticklabels([format_knob_value(v) for v in xv], fontsize=8)
            ax.set_yticks(range(len(yv)))
            ax.set_yticklabels([format_knob_value(v) for v in yv], fontsize=8)
            ax.set_title(f"{label}, t = {format_time(t)}{shown}", fontsize=8)
            if i == len(labels) - 1:
                ax.set_xlabel(kx, fontsize=8)
            if j == 0:
                ax.set_ylabel(ky, fontsize=8)
    if image is not None:
        unit = "test accuracy (%)" if info.name == "accuracy" else f"test {info.description}"
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, label=unit)
    return fig


def _file_part(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def write_knob_section(summary: list[dict], out: str | os.PathLike) -> tuple[list[str], dict[str, Path]]:
    """The report's markdown lines about the varied knobs (a table and a plot per knob, a heat map for
    two), and the plots written into ``out`` ({key: path}); nothing when no knob was varied."""
    out = Path(out)
    lines: list[str] = []
    written: dict[str, Path] = {}
    for base in base_presets(summary):
        knobs = varied_knobs(summary, base)
        for metric in metrics_of(_variant_rows(summary, base)):
            info = metric_info(summary, metric)
            shown = "accuracy" if metric == "accuracy" else info.description
            lines += [f"## `{base}`: {shown} against {', '.join(f'`{k}`' for k in knobs)}", ""]
            lines += [
                f"Each column is one value of the knob, every other value as in `{base}`; mean ± std over "
                "repeats (the same programming-noise draws for every value, so the columns differ by the "
                "knob alone); digital is the network without analog hardware. In the plots, one panel per "
                "time, one line per run, the shaded band its 95% CI and the dashed line its digital value.",
                "",
            ]
            for knob in knobs:
                fig = knob_figure(summary, base, knob, metric)
                path = out / f"{metric}_vs_{_file_part(knob)}_{_file_part(base)}.png"
                save_figure(fig, path)
                written[f"knob_plot_{base}_{knob}_{metric}"] = path
                lines += [f"### {knob}", "", knob_markdown_table(summary, base, knob, metric), ""]
                lines += [f"![{shown} vs {knob} on {base}]({path.name})", ""]
            if len(knobs) == 2:
                fig = knob_heatmap(summary, base, (knobs[0], knobs[1]), metric)
                path = out / f"{metric}_heatmap_{_file_part(base)}.png"
                save_figure(fig, path)
                written[f"knob_heatmap_{base}_{metric}"] = path
                lines += [f"### {knobs[0]} × {knobs[1]}", "", f"![{shown} over both knobs on {base}]({path.name})", ""]
    return lines, written
