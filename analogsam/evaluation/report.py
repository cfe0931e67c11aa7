"""Human-readable output of a sweep: text tables, metric-vs-time plots and a markdown report.

Everything here reads the tidy rows (``results.csv``) or their summary (``summary.csv``); nothing
is measured here. Every table and plot shows one metric (:mod:`analogsam.scoring`) and says which
(its label and unit, and whether higher or lower is better; plain accuracy, the default, is
labelled as before); the "best" marking follows the metric's direction. A summary that holds
several metrics gets a table and a plot per metric. A run measured with memory faults is labelled ``run [faults]``, apart from its
clean rows. Tables have a column for every time measured on any preset, and show "—" where a
(run, preset, time) cell was not measured (e.g. a time a preset's noise model does not define).

Where a run is a seed group with several training seeds (:func:`analogsam.training.train_seeds`),
the summary is over seeds (:func:`~analogsam.evaluation.statistics.summarize_seeds`): each cell
shows the mean over seeds of each network's mean over programmings ± the half-width of its 95%
interval over seeds, beside the within-network programming spread (``σp``); the "best" mark is
the best seed-level mean, a report adds a table of the drop from the digital value with its
interval over seeds, and the plots draw one thin line per training seed under the mean and its
band over seeds. Rows of single runs keep exactly the output they always had.

A knob sweep's variants (``pcm[io.adc_bits=4]``, ...) keep their own sections, and the report adds,
before them, the metric against each varied knob (:mod:`.knobs`); the text tables print the knob
tables instead of one table per variant.

Plots are drawn on a :class:`matplotlib.figure.Figure` with its own Agg canvas, so importing or
using this module leaves matplotlib's global state (backend, pyplot figures) alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

from analogsam.errors import InvalidParameterError
from analogsam.evaluation.cells import (
    NOT_MEASURED,
    digital_of,
    mean_std_text,
    metric_info,
    metric_name,
    metrics_of,
    over_seeds,
    row_label,
    seed_cell_text,
)
from analogsam.evaluation.columns import columns_for
from analogsam.evaluation.coverage import LeftOut, describe_left_out
from analogsam.evaluation.knobs import base_presets, knob_tables, write_knob_section
from analogsam.evaluation.statistics import SEED_SUMMARY_COLUMNS, SUMMARY_COLUMNS, per_seed, summarize, summarize_seeds
from analogsam.evaluation.store import RESULT_COLUMNS, run_label, write_rows
from analogsam.evaluation.times import format_time
from analogsam.reporting import markdown_lines, new_figure, p_text, pp_text, save_figure
from analogsam.scoring import Metric

#: Panels side by side in the all-presets figure before it wraps into another row.
_PANELS_PER_ROW = 4


def summary_of(rows: list[dict]) -> list[dict]:
    """The summary reports show: over training seeds (:func:`summarize_seeds`) when a cell of ``rows``
    has several seeds, else over programmings (:func:`summarize`), as reports always were."""
    seeds = summarize_seeds(rows)
    return seeds if any(r["n_seeds"] > 1 for r in seeds) else summarize(rows)


def _presets(summary: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["preset"] for r in summary))


def _measured(summary: list[dict], preset: str, metric: str) -> bool:
    return any(r["preset"] == preset and metric_name(r) == metric for r in summary)


def _grid(summary: list[dict], preset: str, metric: str | None = None) -> tuple[list[str], list[float], dict]:
    """(run labels, times, {(label, t): summary row}) of one preset and metric: labels in first-seen
    order, and every time of the summary, so that the times this preset lacks show as not measured."""
    metric = metric or metric_info(summary).name
    cells = {(row_label(r), r["t_seconds"]): r for r in summary if r["preset"] == preset and metric_name(r) == metric}
    labels = list(dict.fromkeys(label for label, _ in cells))
    times = sorted({r["t_seconds"] for r in summary})
    return labels, times, cells


def _axis_label(metric: Metric) -> str:
    """``accuracy %`` for plain accuracy (as it always read), else the label with its direction."""
    return "accuracy %" if metric.name == "accuracy" else metric.description


def _best(metric: Metric, values) -> float:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan
    return max(values) if metric.higher_is_better else min(values)


def text_table(summary: list[dict], preset: str, metric: str | None = None) -> str:
    """The metric (mean ± std; accuracies in %) per run and time for one preset, as aligned text;
    ``metric`` picks one of the summary's metrics (default: its first)."""
    info = metric_info(summary, metric)
    labels, times, cells = _grid(summary, preset, info.name)
    header = ["run", "digital"] + [format_time(t) for t in times]
    lines = [header]
    for label in labels:
        lines.append(
            [label, info.format(digital_of(cells, label))] + [mean_std_text(cells.get((label, t)), info) for t in times]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    repeats = sorted({c["n"] for c in cells.values()})
    counted = str(repeats[0]) if len(repeats) == 1 else f"{repeats[0]}-{repeats[-1]}"
    out = [f"preset {preset} ({_axis_label(info)}, mean ± std over {counted} repeats)"]
    if over_seeds(summary):
        seeds = sorted({c["n_seeds"] for c in cells.values()})
        counted = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        out = [
            f"preset {preset} ({_axis_label(info)}, mean ± 95% CI over {counted} training seeds of each "
            "seed's mean over programmings; σp = std over programmings within a network)"
        ]
    for i, line in enumerate(lines):
        out.append("  ".join(cell.rjust(w) if j else cell.ljust(w) for j, (cell, w) in enumerate(zip(line, widths))))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(summary: list[dict], preset: str, metric: str | None = None, *, quantity: str = "mean") -> str:
    """Run x time table of one preset and metric; the best mean in each time column (the highest,
    or the lowest for a lower-is-better metric such as perplexity) is in bold. For a summary over
    training seeds the mean is the seed-level one and a ``seeds`` column counts them;
    ``quantity="drop"`` tabulates its drop from the digital value instead (mean ± 95% CI over seeds;
    positive is a loss, so the smallest drop is in bold)."""
    info = metric_info(summary, metric)
    labels, times, cells = _grid(summary, preset, info.name)
    seeds = over_seeds(summary)
    if quantity == "drop" and not seeds:
        raise InvalidParameterError(
            "markdown_table(quantity='drop') needs a summary over training seeds (summarize_seeds)"
        )
    # (a drop is better the smaller it is, whichever way the metric points)
    ranking = dataclasses.replace(info, higher_is_better=False) if quantity == "drop" else info
    best = {
        t: _best(
            ranking,
            [cells[(r, t)][quantity] for r in labels if (r, t) in cells and cells[(r, t)][quantity] is not None],
        )
        for t in times
    }
    extra = ["seeds"] if seeds else []
    header = ["run", "optimizer", *extra, "digital", *(format_time(t) for t in times)]
    table = []
    for label in labels:
        first = next(c for (name, _), c in cells.items() if name == label)
        row = [label, str(first.get("optimizer") or NOT_MEASURED)]
        if seeds:
            row.append(str(max(c["n_seeds"] for (name, _), c in cells.items() if name == label)))
        row.append(info.format(digital_of(cells, label)))
        for t in times:
            cell = cells.get((label, t))
            if cell is None:
                text = NOT_MEASURED
            elif quantity == "drop":
                text = NOT_MEASURED if cell["drop"] is None else seed_cell_text(cell, info, "drop")
            else:
                text = mean_std_text(cell, info)
            row.append(f"**{text}**" if cell is not None and cell[quantity] == best[t] and len(labels) > 1 else text)
        table.append(row)
    return "\n".join(markdown_lines(header, table))


def _seed_lines(rows: Sequence[dict], preset: str, metric: str) -> dict[str, dict]:
    """{run label: {train seed: (times, per-seed means)}} of one preset and metric."""
    lines: dict[str, dict] = {}
    for (run, faults, name, _, cell_metric, t), seeds in sorted(per_seed(rows).items(), key=lambda kv: kv[0][5]):
        if name != preset or cell_metric != metric:
            continue
        for seed, (values, _, _) in seeds.items():
            ts, means = lines.setdefault(run_label(run, faults), {}).setdefault(seed, ([], []))
            ts.append(t)
            means.append(sum(values) / len(values))
    return lines


def _draw_preset(
    ax, summary: list[dict], preset: str, metric: str | None = None, rows: Sequence[dict] | None = None
) -> None:
    """One preset's panel: per run, the mean over repeats with its shaded 95% CI, and the run's digital
    value as a dashed line in the same colour (the loss to the hardware at a glance). For a summary
    over training seeds the band is the CI over seeds, and with the tidy ``rows`` each seed's own
    mean over programmings is a thin line under it (the spread between trained networks)."""
    from matplotlib.lines import Line2D

    info = metric_info(summary, metric)
    labels, times, cells = _grid(summary, preset, info.name)
    scale = 100 if info.percent else 1

    def bound(cell, key):  # a single repeat has no interval: draw none
        return scale * (cell["mean"] if math.isnan(cell[key]) else cell[key])

    seed_lines = _seed_lines(rows, preset, info.name) if rows is not None and over_seeds(summary) else {}
    for label in labels:
        ts = [t for t in times if (label, t) in cells]
        mean = [scale * cells[(label, t)]["mean"] for t in ts]
        (line,) = ax.plot(ts, mean, marker="o", label=label)
        for seed_ts, seed_means in seed_lines.get(label, {}).values():
            ax.plot(seed_ts, [scale * m for m in seed_means], linewidth=0.7, alpha=0.5, color=line.get_color())
        ax.fill_between(
            ts,
            [bound(cells[(label, t)], "ci95_low") for t in ts],
            [bound(cells[(label, t)], "ci95_high") for t in ts],
            color=line.get_color(),
            alpha=0.2,
        )
        digital = digital_of(cells, label)
        if digital is not None:
            ax.axhline(scale * digital, linestyle="--", linewidth=1, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlim(times[0] / 2, times[-1] * 2)  # every panel spans every time, measured here or not
    ax.set_xticks(times)
    ax.set_xticklabels([format_time(t) for t in times])
    ax.set_xlabel("time after programming")
    ax.set_ylabel("test accuracy (%)" if info.name == "accuracy" else f"test {info.description}")
    ax.set_title(preset)
    ax.grid(True, alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], linestyle="--", linewidth=1, color="0.4"))
    names.append("digital (dashed)")
    if seed_lines:
        handles.append(Line2D([], [], linewidth=0.7, alpha=0.5, color="0.4"))
        names.append("one training seed (thin); band: 95% CI over seeds")
    ax.legend(handles, names, fontsize="small")


def accuracy_figure(
    summary: list[dict], preset: str | None = None, metric: str | None = None, rows: Sequence[dict] | None = None
):
    """A :class:`~matplotlib.figure.Figure` of ``metric`` (default: the summary's first) over time,
    with one panel for ``preset``, or one per preset side by side; ``rows`` (the tidy rows of a
    summary over seeds) adds one thin line per training seed."""
    presets = [preset] if preset else _presets(summary)
    columns = min(len(presets), _PANELS_PER_ROW)  # (a knob sweep's many variants wrap into rows)
    lines = math.ceil(len(presets) / columns)
    fig = new_figure(5.5 * columns, 4 * lines)
    axes = fig.subplots(lines, columns, squeeze=False).ravel()
    for ax, name in zip(axes, presets):
        _draw_preset(ax, summary, name, metric, rows)
    for ax in axes[len(presets) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_time(
    summary: list[dict],
    path: str | os.PathLike,
    preset: str | None = None,
    metric: str | None = None,
    rows: Sequence[dict] | None = None,
) -> Path:
    """Write :func:`accuracy_figure` as a PNG to ``path``."""
    return save_figure(accuracy_figure(summary, preset, metric, rows), path)


def _plot_name(metric: str, preset: str | None = None) -> str:
    """``accuracy_vs_time[_preset].png`` (the names reports always had), ``<metric>_vs_time...`` else."""
    return f"{metric}_vs_time{'_' + preset if preset else ''}.png"


def write_report(
    rows: list[dict], out: str | os.PathLike, title: str = "analogsam study", left_out: Sequence[LeftOut] = ()
) -> dict[str, Path]:
    """Write results.csv, summary.csv, plots and report.md into ``out``; ``left_out`` (the cells a
    sweep did not measure, :func:`analogsam.evaluation.coverage.times_per_preset`) is said in the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    write_rows(out / "results.csv", rows, columns_for(RESULT_COLUMNS, rows))
    written["results"] = out / "results.csv"
    summary = summary_of(rows)
    seeds = over_seeds(summary)
    write_rows(out / "summary.csv", summary, columns_for(SEED_SUMMARY_COLUMNS if seeds else SUMMARY_COLUMNS, summary))
    written["summary"] = out / "summary.csv"
    metrics = [metric_info(summary, m) for m in metrics_of(summary)] or [metric_info(summary)]
    for i, metric in enumerate(metrics):
        key = "plot" if i == 0 else f"plot_{metric.name}"
        written[key] = plot_accuracy_vs_time(summary, out / _plot_name(metric.name), metric=metric.name, rows=rows)
    sections = [f"# {title}", ""]
    for metric in metrics:
        what = "Accuracy" if metric.name == "accuracy" else metric.description[0].upper() + metric.description[1:]
        best = "best" if metric.name == "accuracy" else ("highest" if metric.higher_is_better else "lowest")
        if seeds:
            sections += [
                f"{what} on simulated analog hardware (aihwkit 1.1.0) over training seeds: each cell is "
                "the mean over training seeds of each trained network's mean over its programmings "
                "± the half-width of the 95% Student-t confidence interval over seeds (n = seeds), and "
                "σp, the standard deviation over programmings within one network; a run with one seed "
                f"has no interval over seeds. The {best} seed-level mean per time is in bold; "
                f"{NOT_MEASURED} marks a cell that was not measured. summary.csv holds every number.",
                "",
            ]
            continue
        sections += [
            f"{what} on simulated analog hardware (aihwkit 1.1.0), mean ± std over repeats; "
            f"each repeat is an independent programming; the {best} mean per time is in bold; "
            f"{NOT_MEASURED} marks a cell that was not measured. "
            "95% confidence intervals are in summary.csv.",
            "",
        ]
    if left_out:
        sections += [f"Note: {describe_left_out(left_out)}.", ""]
    knob_lines, knob_plots = write_knob_section(summary, out)
    sections += knob_lines
    written.update(knob_plots)
    for name in _presets(summary):
        digests = sorted({r["preset_hash"] for r in summary if r["preset"] == name})
        sections += [f"## Preset `{name}` (values hash {', '.join(digests)})", ""]
        for metric in [m for m in metrics if _measured(summary, name, m.name)]:
            plot = plot_accuracy_vs_time(
                summary, out / _plot_name(metric.name, name), preset=name, metric=metric.name, rows=rows
            )
            shown = metric.name.replace("_", " ")
            if len(metrics) > 1:
                sections += [f"### {metric.description}", ""]
            sections += [markdown_table(summary, name, metric.name), ""]
            if seeds:
                sections += [
                    f"Drop from the digital {shown} (how much worse than digital, per network: positive is "
                    "a loss; then the mean ± 95% CI over seeds; the smallest drop per time in bold):",
                    "",
                    markdown_table(summary, name, metric.name, quantity="drop"),
                    "",
                ]
            sections += [f"![{shown} vs time on {name}]({plot.name})", ""]
    sections += ["## All presets", ""]
    sections += [f"![{m.name.replace('_', ' ')} vs time]({_plot_name(m.name)})" for m in metrics] + [""]
    (out / "report.md").write_text("\n".join(sections))
    written["report"] = out / "report.md"
    return written


def summary_tables(summary: list[dict]) -> str:
    """Text tables of every preset and metric in ``summary``; the variants of a knob sweep
    (``pcm[io.adc_bits=4]``, ...) as one table per varied knob instead of one per variant."""
    swept = set(base_presets(summary))
    plain = [
        text_table(summary, p, m)
        for p in _presets(summary)
        if p.split("[", 1)[0] not in swept or "[" not in p
        for m in metrics_of(summary)
        if _measured(summary, p, m)
    ]
    return "\n\n".join(plain + ([knob_tables(summary)] if swept else []))


# -- a comparison over training seeds: spread, tests against a reference, drops --------------------------


def _accuracy_cells(summary: list[dict], preset: str) -> tuple[list[str], list[float], dict]:
    """(runs, times, {(run, t): summary row}) of the accuracy cells of ``preset``."""
    cells = {(r["run"], r["t_seconds"]): r for r in summary if r["preset"] == preset and r["metric"] == "accuracy"}
    runs = list(dict.fromkeys(r for r, _ in cells))
    return runs, sorted({t for _, t in cells}), cells


def seed_spread_table(summary: list[dict], preset: str, order: Sequence[str]) -> str:
    """Markdown, pp: σp (std over programmings within one network, pooled over seeds) and the std of
    the seed means, per run (in ``order``) and time of a summary over seeds."""
    runs, times, cells = _accuracy_cells(summary, preset)
    table = []
    for run in [r for r in order if r in runs]:
        row = [run]
        for t in times:
            c = cells.get((run, t))
            row.append(NOT_MEASURED if c is None else f"{100 * c['programming_std']:.2f} / {100 * c['seed_std']:.2f}")
        table.append(row)
    return "\n".join(markdown_lines(["method", *(f"{format_time(t)} σp / σseeds" for t in times)], table))


def seed_test_table(tests: list[dict], preset: str, order: Sequence[str]) -> str:
    """Markdown: per run (in ``order``) and time, the difference to the reference in pp and Welch's p
    over seeds (:func:`~analogsam.evaluation.statistics.seed_level_test` rows), on accuracy and on drop."""
    cells = {
        (r["run"], r["t_seconds"], r["quantity"]): r
        for r in tests
        if r["preset"] == preset and r["metric"] == "accuracy"
    }
    times = sorted({k[1] for k in cells})
    header = ["method", *(f"{format_time(t)} {what} Δ (p)" for t in times for what in ("accuracy", "drop"))]
    table = []
    for run in [r for r in order if any(k[0] == r for k in cells)]:
        row = [run]
        for t in times:
            for quantity in ("value", "drop"):
                c = cells.get((run, t, quantity))
                row.append(NOT_MEASURED if c is None else f"{pp_text(c['difference'])} ({p_text(c['p_value'])})")
        table.append(row)
    return "\n".join(markdown_lines(header, table))


def plot_drops(summary: list[dict], preset: str, path: str | os.PathLike, order: Sequence[str]) -> Path:
    """Grouped bars: each run's drop from its digital accuracy (pp, positive: a loss) per time, ± the
    95% CI over seeds, runs in ``order``."""
    runs, times, cells = _accuracy_cells(summary, preset)
    runs = [r for r in order if r in runs]
    fig = new_figure(max(6.0, 1.0 * len(runs) + 2), 4)
    ax = fig.subplots()
    width = 0.8 / max(1, len(times))
    for j, t in enumerate(times):
        xs, heights, errors = [], [], [[], []]
        for i, run in enumerate(runs):
            c = cells.get((run, t))
            if c is None or c["drop"] is None:
                continue
            xs.append(i + (j - (len(times) - 1) / 2) * width)
            heights.append(100 * c["drop"])
            low, high = c["drop_ci95_low"], c["drop_ci95_high"]
            known = low is not None and not math.isnan(low)
            errors[0].append(100 * (c["drop"] - low) if known else 0.0)
            errors[1].append(100 * (high - c["drop"]) if known else 0.0)
        ax.bar(xs, heights, width, yerr=errors, capsize=2, label=format_time(t))
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(runs, rotation=30, ha="right")
    ax.set_ylabel("digital − analog accuracy (pp)")
    ax.set_title(f"{preset}: drop from digital, mean ± 95% CI over training seeds")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(title="time", fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)
