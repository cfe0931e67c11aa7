"""Does flatness predict robustness? Per-model analysis and the cross-run rank correlation.

- :func:`analyze_model`: every sharpness metric (``analogsam.robustness.sharpness``) and every robustness curve
  (``analogsam.robustness.perturbations``) of one model, as one JSON-serialisable dict.
- :func:`robustness_correlation`: across runs, Spearman's rank correlation between each sharpness
  metric and an accuracy drop (under analog drift at a chosen preset and time, or under weight
  noise or faults): the claim "flatter minima are more robust" predicts a positive ρ.
- :func:`plot_sharpness_scatter`, :func:`plot_sharpness_scatters`, :func:`plot_robustness_curves`:
  PNG plots, drawn on matplotlib's Agg canvas without touching pyplot's global state.
- :func:`analyze_runs`: the ``analogsam analyze`` study over trained run folders: per run the
  metrics, curves and analog accuracy drop at a preset and time, across runs a table, the rank
  correlations, scatters and a markdown report; resumable run by run.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from analogsam.robustness import _common as C
from analogsam.robustness import perturbations as faults, sharpness

__all__ = [
    "CURVES",
    "METRICS",
    "analyze_model",
    "analyze_runs",
    "robustness_correlation",
    "plot_sharpness_scatter",
    "plot_sharpness_scatters",
    "plot_robustness_curves",
    "plot_robustness_panel",
]

METRICS = sharpness.METRICS
CURVES = ("weight_noise_relative", "weight_noise_additive", "stuck_at", "bit_flip")


def analyze_model(
    model: nn.Module,
    batches,
    *,
    num_batches: int | None = None,
    loss_fn=None,
    seed: int = 0,
    metrics: Sequence[str] = METRICS,
    curves: Sequence[str] = CURVES,
    rho: float = 0.05,
    ascent_steps: int = 10,
    asam_rho: float = 0.5,
    asam_eta: float = 0.01,
    sigma: float = 0.1,
    sharpness_draws: int = 20,
    hessian_iters: int = 20,
    hessian_tol: float = 1e-3,
    trace_draws: int = 20,
    sharpness_parameters: str = "all",
    relative_etas: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7),
    additive_etas: Sequence[float] = (0.0, 0.02, 0.05, 0.1, 0.2),
    noise_draws: int = 10,
    stuck_at_rates: Sequence[float] = (0.0, 0.001, 0.01, 0.05),
    bit_flip_rates: Sequence[float] = (0.0, 1e-4, 1e-3, 1e-2),
    bits: int = 8,
    fault_draws: int = 5,
    fault_parameters: str = "weights",
) -> dict:
    """All sharpness metrics and robustness curves of one model on the first ``num_batches`` batches.

    The model is restored exactly afterwards and evaluated in eval mode. Sharpness metrics perturb
    ``sharpness_parameters`` (all trainable parameters by default, the papers' convention); noise
    and fault curves perturb ``fault_parameters`` (the Linear/Conv weights that sit on analog tiles).
    Defaults: SAM ρ 0.05 and ASAM ρ 0.5, η 0.01 (the papers' training values), Büchel et al.'s η
    for relative noise, a few percent of the layer range for additive noise.

    Returns a JSON-serialisable dict::

        {"metrics": {name: value},            # flat, ready for robustness_correlation
         "sharpness": {name: SharpnessResult.to_dict()},
         "curves": {name: RobustnessCurve.to_dict()},
         "drops": {"<curve>_drop@<level>": clean accuracy − mean accuracy},
         "clean": {"loss", "accuracy", "num_batches", "n_samples"},
         "settings": {...}}

    ``metrics`` picks from :data:`METRICS`, ``curves`` from :data:`CURVES`; the Hessian metrics
    cost a double backward per product and are the slow ones.
    """
    metrics = _check_subset("metrics", metrics, METRICS)
    curves = _check_subset("curves", curves, CURVES)
    common = {"loss_fn": loss_fn, "num_batches": num_batches}
    sharp_common = {**common, "parameters": sharpness_parameters, "seed": seed}
    metric_calls = {
        "worst_case_sharpness": lambda: sharpness.worst_case_sharpness(
            model, batches, rho, ascent_steps, **sharp_common),
        "adaptive_sharpness": lambda: sharpness.adaptive_sharpness(
            model, batches, asam_rho, ascent_steps, eta=asam_eta, **sharp_common),
        "average_sharpness": lambda: sharpness.average_sharpness(
            model, batches, sigma, sharpness_draws, **sharp_common),
        "hessian_top_eigenvalue": lambda: sharpness.hessian_top_eigenvalue(
            model, batches, hessian_iters, hessian_tol, **sharp_common),
        "hessian_trace": lambda: sharpness.hessian_trace(model, batches, trace_draws, **sharp_common),
    }
    curve_common = {**common, "parameters": fault_parameters, "seed": seed}
    curve_calls = {
        "weight_noise_relative": lambda: faults.weight_noise_curve(
            model, batches, relative_etas, draws=noise_draws, mode="relative", **curve_common),
        "weight_noise_additive": lambda: faults.weight_noise_curve(
            model, batches, additive_etas, draws=noise_draws, mode="additive", **curve_common),
        "stuck_at": lambda: faults.fault_curve(
            model, batches, stuck_at_rates, "stuck-at", draws=fault_draws, **curve_common),
        "bit_flip": lambda: faults.fault_curve(
            model, batches, bit_flip_rates, "bit-flip", draws=fault_draws, bits=bits, **curve_common),
    }
    results = {name: metric_calls[name]() for name in metrics}
    curve_results = {name: curve_calls[name]() for name in curves}

    with C.preserved(model):
        data = C.take_batches(batches, num_batches, C.model_device(model))
        clean_loss, clean_acc = C.loss_and_accuracy(model, data, C.batch_weights(data), C.resolve_loss(loss_fn))
    drops = {}
    for name, curve in curve_results.items():
        for row in curve.summary:
            level = row[curve.level_name]
            if level > 0:
                drops[f"{name}_drop@{level:g}"] = clean_acc - row["mean"]
    return _jsonable({
        "metrics": {name: r.value for name, r in results.items()},
        "sharpness": {name: r.to_dict() for name, r in results.items()},
        "curves": {name: c.to_dict() for name, c in curve_results.items()},
        "drops": drops,
        "clean": {"loss": clean_loss, "accuracy": clean_acc, "num_batches": len(data),
                  "n_samples": sum(C.batch_size(y) for _, y in data)},
        "settings": {
            "num_batches": num_batches, "seed": seed, "metrics": list(metrics), "curves": list(curves),
            "rho": rho, "ascent_steps": ascent_steps, "asam_rho": asam_rho, "asam_eta": asam_eta,
            "sigma": sigma, "sharpness_draws": sharpness_draws, "hessian_iters": hessian_iters,
            "hessian_tol": hessian_tol, "trace_draws": trace_draws,
            "sharpness_parameters": sharpness_parameters, "relative_etas": list(relative_etas),
            "additive_etas": list(additive_etas), "noise_draws": noise_draws,
            "stuck_at_rates": list(stuck_at_rates), "bit_flip_rates": list(bit_flip_rates),
            "bits": bits, "fault_draws": fault_draws, "fault_parameters": fault_parameters,
        },
    })


def _check_subset(name, values, allowed) -> tuple:
    values = (values,) if isinstance(values, str) else tuple(values)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{name} has unknown entries {unknown}; choose from {', '.join(allowed)}")
    return values


def _jsonable(obj):
    """Plain Python types only (floats, ints, str, lists, dicts); nan stays a float."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, str)) or obj is None:
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    return str(obj)


# --- across runs -------------------------------------------------------------------------------


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


def _paired(records, metric, drop):
    xs, ys, labels = [], [], []
    for i, record in enumerate(records):
        x = _lookup(record, metric, ("metrics", "sharpness"))
        y = _lookup(record, drop, ("drops",))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
            labels.append(str(record.get("run", i)))
    return xs, ys, labels


def _available_metrics(records) -> list[str]:
    found = [m for m in METRICS if any(_lookup(r, m, ("metrics", "sharpness")) is not None for r in records)]
    return found


def _spearman(xs, ys) -> tuple[float, float]:
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan"), float("nan")
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.spearmanr(xs, ys)
    return float(result.statistic), float(result.pvalue)


def robustness_correlation(
    records: Iterable[Mapping],
    *,
    metrics: Sequence[str] | None = None,
    drop: str | Sequence[str] = "accuracy_drop",
) -> list[dict]:
    """Spearman rank correlation between each sharpness metric and each accuracy drop, across runs.

    ``records`` holds one mapping per run (model): the metric values and the drop(s), either flat
    (``{"run": "sam", "hessian_trace": 12.3, "accuracy_drop": 0.04}``) or an
    :func:`analyze_model` result with the drop added (metrics found under ``"metrics"``, noise and
    fault drops under ``"drops"``). The drop is typically clean accuracy minus accuracy at a chosen
    device preset and time. Runs missing a value (or with a non-finite one) are left out of that
    pair. ``metrics`` defaults to every known metric present in any record.

    Returns one row per (metric, drop): ``{"metric", "drop", "n", "spearman_rho", "p_value"}``.
    ρ > 0 means sharper models lost more accuracy. ρ and p are nan for fewer than 3 runs or a
    constant column; with a handful of runs p (scipy's t-approximation) is only indicative.
    """
    records = list(records)
    drops = [drop] if isinstance(drop, str) else list(drop)
    metrics = _available_metrics(records) if metrics is None else list(metrics)
    rows = []
    for metric in metrics:
        for d in drops:
            xs, ys, _ = _paired(records, metric, d)
            rho, p = _spearman(xs, ys)
            rows.append({"metric": metric, "drop": d, "n": len(xs), "spearman_rho": rho, "p_value": p})
    return rows


# --- plots -------------------------------------------------------------------------------------


def _figure(figsize=(5.0, 4.0)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_sharpness_scatter(records, metric: str, path, *, drop: str = "accuracy_drop",
                           log_x: bool | None = None) -> Path:
    """Scatter of ``metric`` (x) against ``drop`` (y), one labelled point per run, Spearman ρ in
    the title; written as a PNG to ``path``. ``log_x`` defaults to True when all x > 0 and they
    span more than a factor of 100."""
    records = list(records)
    xs, ys, labels = _paired(records, metric, drop)
    rho, p = _spearman(xs, ys)
    fig = _figure()
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
    return _save(fig, path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def plot_sharpness_scatters(records, out_dir, *, metrics: Sequence[str] | None = None,
                            drop: str = "accuracy_drop") -> list[Path]:
    """One scatter PNG per metric, ``out_dir/sharpness_<metric>_vs_<drop>.png``; returns the paths."""
    records = list(records)
    metrics = _available_metrics(records) if metrics is None else list(metrics)
    return [plot_sharpness_scatter(records, m, Path(out_dir) / f"sharpness_{_slug(m)}_vs_{_slug(drop)}.png",
                                   drop=drop) for m in metrics]


def _draw_curves(ax, curves: Mapping[str, object], title: str | None) -> None:
    level_name, kind = "level", ""
    for label, curve in curves.items():
        curve = curve.to_dict() if hasattr(curve, "to_dict") else curve
        level_name, kind = curve["level_name"], curve["kind"]
        levels = np.array([row[level_name] for row in curve["summary"]])
        mean = np.array([row["mean"] for row in curve["summary"]])
        std = np.nan_to_num(np.array([row["std"] for row in curve["summary"]], dtype=float))
        ax.errorbar(levels, mean, yerr=std, marker="o", capsize=3, label=str(label))
    ax.set_xlabel(level_name)
    ax.set_ylabel("accuracy")
    ax.set_title(title or kind, fontsize=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)


def plot_robustness_curves(curves: Mapping[str, object], path, *, title: str | None = None) -> Path:
    """Mean accuracy ± std against the level (η or fault rate) for several runs' curves of one kind.

    ``curves`` maps a run label to a :class:`analogsam.robustness.perturbations.RobustnessCurve` or its ``to_dict()``.
    """
    fig = _figure()
    _draw_curves(fig.add_subplot(), curves, title)
    return _save(fig, path)


def plot_robustness_panel(curves_by_kind: Mapping[str, Mapping[str, object]], path, *,
                          title: str | None = None) -> Path:
    """All robustness curves in one PNG: one axes per curve kind (``{kind: {run label: curve}}``),
    two columns, each run one line with ± std error bars."""
    kinds = [k for k, v in curves_by_kind.items() if v]
    cols = min(2, max(1, len(kinds)))
    rows = max(1, math.ceil(len(kinds) / cols))
    fig = _figure(figsize=(5.0 * cols, 4.0 * rows))
    for i, kind in enumerate(kinds):
        _draw_curves(fig.add_subplot(rows, cols, i + 1), curves_by_kind[kind], kind.replace("_", " "))
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


# --- run folders: the `analogsam analyze` study ------------------------------------------------

#: ``analyze_model`` settings of ``quick=True``: fewer ascent steps, draws and levels (minutes → seconds).
QUICK_SETTINGS = {
    "ascent_steps": 3, "sharpness_draws": 5, "hessian_iters": 8, "trace_draws": 5,
    "relative_etas": (0.0, 0.1, 0.3, 0.5), "additive_etas": (0.0, 0.05, 0.1), "noise_draws": 3,
    "stuck_at_rates": (0.0, 0.01, 0.05), "bit_flip_rates": (0.0, 1e-3, 1e-2), "fault_draws": 2,
}
RUN_RECORD = "analysis.json"
TABLE_FILE = "table.csv"
CORRELATION_FILE = "correlation.csv"
REPORT_FILE = "report.md"
_TEST_BATCH = 2000


def _file_digest(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _settings_hash(settings: Mapping) -> str:
    import hashlib
    import json

    text = json.dumps(_jsonable(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_json(path: Path, data) -> None:
    import json
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2, allow_nan=True) + "\n")
    os.replace(tmp, path)  # a killed run never leaves a half-written record behind


def _read_json(path: Path):
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _exact_spearman_p(xs, ys) -> float:
    """Two-sided permutation p-value of Spearman's ρ, exact by enumeration (nan for n < 3 or n > 8).

    With a handful of runs scipy's t-approximation is far too optimistic (it gives p = 0 for ρ = 1);
    the exact test says what n runs can show at all, e.g. at n = 4 the smallest p is 2/24 ≈ 0.083.
    """
    import itertools

    from scipy import stats

    n = len(xs)
    if n < 3 or n > 8 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan")
    rx, ry = stats.rankdata(xs), stats.rankdata(ys)
    rx = rx - rx.mean()

    def rho(ranks):
        r = np.asarray(ranks) - np.mean(ranks)
        return float(rx @ r / math.sqrt((rx @ rx) * (r @ r)))

    observed = abs(rho(ry))
    hits = total = 0
    for perm in itertools.permutations(ry):
        total += 1
        hits += abs(rho(perm)) >= observed - 1e-12
    return hits / total


def _dataset_cache_key(config: Mapping, data_root) -> str:
    import json

    return json.dumps([config.get("dataset"), config.get("data_options", {}), str(data_root)], sort_keys=True)


def _curve_rows(record: Mapping) -> list[dict]:
    rows = []
    for name, curve in record.get("curves", {}).items():
        for row in curve["summary"]:
            rows.append({"run": record["run"], "curve": name, "kind": curve["kind"],
                         "level_name": curve["level_name"], "level": row[curve["level_name"]],
                         **{k: row[k] for k in ("n", "mean", "std", "min", "max", "mean_drop")},
                         "clean_accuracy": curve["clean_accuracy"]})
    return rows


def _write_run_files(record: Mapping, folder: Path, analog_rows: list[dict]) -> dict:
    """Per-run CSVs and PNGs beside ``analysis.json``; returns their paths."""
    from analogsam.evaluation.store import RESULT_COLUMNS, write_rows

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    sharp = [{"metric": m, "value": r["value"], "stderr": r["stderr"],
              "num_batches": r["settings"].get("num_batches"), "n_samples": r["settings"].get("n_samples")}
             for m, r in record.get("sharpness", {}).items()]
    if sharp:
        paths["sharpness"] = folder / "sharpness.csv"
        write_rows(paths["sharpness"], sharp, ["metric", "value", "stderr", "num_batches", "n_samples"])
    curve_rows = _curve_rows(record)
    if curve_rows:
        paths["curves"] = folder / "curves.csv"
        write_rows(paths["curves"], curve_rows, list(curve_rows[0]))
    if analog_rows:
        paths["analog"] = folder / "analog_results.csv"
        write_rows(paths["analog"], analog_rows, RESULT_COLUMNS)
    if record.get("curves"):
        paths["robustness_plot"] = plot_robustness_panel(
            {name: {record["run"]: curve} for name, curve in record["curves"].items()},
            folder / "robustness.png", title=f"{record['run']}: accuracy under weight noise and faults")
    return paths


def _analyze_one(run, train_batches, test_batches, preset, t, *, repeats, seed, backend, metrics, curves,
                 options, progress, label) -> tuple[dict, list[dict]]:
    """Sharpness on training batches, curves on test batches, analog accuracy at (preset, t)."""
    import time

    from tqdm.auto import tqdm

    from analogsam.evaluation import evaluate, format_time
    from analogsam.evaluation.store import summarize

    steps = [("metric", m) for m in metrics] + [("curve", c) for c in curves] + [("analog", preset.name)]
    bar = tqdm(steps, desc=label, disable=not progress, leave=False, unit="step")
    merged = {"metrics": {}, "sharpness": {}, "curves": {}, "drops": {}, "timings": {}}
    analog_rows = []
    for kind, name in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        if kind == "metric":
            part = analyze_model(run.model, train_batches, metrics=[name], curves=[], seed=seed, **options)
            merged["metrics"].update(part["metrics"])
            merged["sharpness"].update(part["sharpness"])
            merged["sharpness_data"] = part["clean"]
            merged["analysis_settings"] = _without(part["settings"], "metrics", "curves")
        elif kind == "curve":
            part = analyze_model(run.model, test_batches, metrics=[], curves=[name], seed=seed, **options)
            merged["curves"].update(part["curves"])
            merged["drops"].update(part["drops"])
            merged["clean"] = part["clean"]
            merged["analysis_settings"] = _without(part["settings"], "metrics", "curves")
        else:
            analog_rows = evaluate(run, test_batches, preset, times=[t], repeats=repeats, seed=seed,
                                   backend=backend, progress=False)
            cell = summarize(analog_rows)[0]
            merged["analog"] = {
                "preset": preset.name, "preset_hash": preset.hash, "t_seconds": t, "time": format_time(t),
                "repeats": cell["n"], "digital_accuracy": cell["digital_accuracy"], "mean": cell["mean"],
                "std": cell["std"], "ci95_low": cell["ci95_low"], "ci95_high": cell["ci95_high"],
                "backend": analog_rows[0]["backend"]}
            merged["digital_accuracy"] = cell["digital_accuracy"]
            merged["analog_accuracy"] = cell["mean"]
            merged["accuracy_drop"] = cell["digital_accuracy"] - cell["mean"]
        merged["timings"][name] = time.perf_counter() - start
    bar.close()
    return merged, analog_rows


def _without(mapping: Mapping, *keys) -> dict:
    return {k: v for k, v in mapping.items() if k not in keys}


def _table_rows(records: Sequence[Mapping], metrics: Sequence[str]) -> list[dict]:
    rows = []
    for r in records:
        row = {"run": r["run"], "optimizer": r.get("optimizer"), "model": r.get("model"),
               "dataset": r.get("dataset"), "preset": r["analog"]["preset"], "t_seconds": r["analog"]["t_seconds"],
               "repeats": r["analog"]["repeats"], "digital_accuracy": r["digital_accuracy"],
               "analog_accuracy": r["analog_accuracy"], "analog_std": r["analog"]["std"],
               "accuracy_drop": r["accuracy_drop"]}
        for m in metrics:
            sharp = r.get("sharpness", {}).get(m, {})
            row[m] = sharp.get("value")
            row[f"{m}_stderr"] = sharp.get("stderr")
        row.update(r.get("drops", {}))
        rows.append(row)
    return rows


def _fmt(value, spec=".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def _metric_cell(record: Mapping, metric: str) -> str:
    """``value`` or ``value ± stderr`` for the Monte-Carlo estimators."""
    sharp = record.get("sharpness", {}).get(metric, {})
    stderr = sharp.get("stderr")
    text = _fmt(sharp.get("value"))
    if sharp.get("diagnostics", {}).get("converged") is False:
        text += "†"
    return text if stderr is None else f"{text} ± {_fmt(stderr, '.2g')}"


def _markdown_report(records, correlations, settings, paths, out: Path) -> str:
    metrics = [m for m in METRICS if any(m in r.get("metrics", {}) for r in records)]
    a = records[0]["analog"] if records else {}
    lines = [
        "# Does flatness predict robustness?", "",
        f"{len(records)} runs. Accuracy drop = digital test accuracy − analog test accuracy on preset "
        f"**{a.get('preset')}** at **t = {a.get('time')}** after programming (mean of {settings['repeats']} "
        f"programmings, seed {settings['seed']}, backend {a.get('backend')}). Sharpness on "
        f"{settings['num_batches']} training batches of {settings['batch_size']} samples; noise and fault "
        "curves on the test samples. ρ > 0: sharper runs lost more accuracy; ± is the Monte-Carlo standard "
        "error of average sharpness and Hessian trace.", "",
        "## Sharpness and accuracy drop per run", "",
        "| run | optimizer | digital acc | analog acc (± std) | drop | " + " | ".join(metrics) + " |",
        "|---|---|---|---|---|" + "---|" * len(metrics),
    ]
    for r in records:
        values = " | ".join(_metric_cell(r, m) for m in metrics)
        lines.append(f"| {r['run']} | {r.get('optimizer')} | {r['digital_accuracy']:.2%} | "
                     f"{r['analog_accuracy']:.2%} ± {_fmt(r['analog']['std'] * 100, '.2f')} pp | "
                     f"{r['accuracy_drop'] * 100:.2f} pp | {values} |")
    if any(r.get("sharpness", {}).get(m, {}).get("diagnostics", {}).get("converged") is False
           for r in records for m in metrics):
        lines += ["", "† power iteration stopped at its iteration limit before the eigenvalue settled to the "
                  "tolerance: a lower bound (see `diagnostics` in the run's analysis.json); raise `hessian_iters`."]
    lines += ["", "## Spearman rank correlation with the analog accuracy drop", "",
              "| metric | n | Spearman ρ | p (t-approx.) | p (exact permutation) |", "|---|---|---|---|---|"]
    for c in correlations:
        if c["drop"] == "accuracy_drop":
            lines.append(f"| {c['metric']} | {c['n']} | {_fmt(c['spearman_rho'], '.2f')} | "
                         f"{_fmt(c['p_value'], '.3g')} | {_fmt(c['p_exact'], '.3g')} |")
    others = sorted({c["drop"] for c in correlations} - {"accuracy_drop"})
    if others:
        lines += ["", "## Spearman ρ with the weight-noise and fault accuracy drops (test set)", "",
                  "| metric | " + " | ".join(others) + " |", "|---|" + "---|" * len(others)]
        by = {(c["metric"], c["drop"]): c["spearman_rho"] for c in correlations}
        for m in metrics:
            lines.append(f"| {m} | " + " | ".join(_fmt(by.get((m, d)), ".2f") for d in others) + " |")
    n = len(records)
    lines += ["", f"With n = {n} runs the exact two-sided p cannot go below "
              f"{2 / math.factorial(n) if 2 < n <= 8 else float('nan'):.3g}; read ρ as a description of these "
              "runs, not as a test.", "", "## Plots", ""]
    for key, path in paths.items():
        if str(path).endswith(".png"):
            lines.append(f"- [{key}]({Path(path).relative_to(out).as_posix()})")
    return "\n".join(lines) + "\n"


def analyze_runs(
    run_dirs: Sequence,
    out,
    *,
    preset="pcm",
    t: float | str = "1d",
    repeats: int = 5,
    seed: int = 0,
    num_batches: int = 4,
    batch_size: int = 256,
    test_samples: int | None = None,
    overrides: Mapping | None = None,
    backend: str = "auto",
    data_root=None,
    metrics: Sequence[str] = METRICS,
    curves: Sequence[str] = CURVES,
    quick: bool = False,
    progress: bool = True,
    **analysis_options,
) -> dict:
    """Sharpness, robustness curves and analog accuracy drop of each run folder, and their correlation.

    Per run (folder ``out/<run name>/``): every sharpness metric on ``num_batches`` seeded random
    training batches of ``batch_size`` samples (the loss landscape the optimizer shaped), the
    weight-noise and fault curves on the test split (its first ``test_samples`` samples if given),
    and the analog accuracy at ``preset`` and time ``t`` over ``repeats`` programmings measured by
    :func:`analogsam.evaluation.evaluate` on the same test samples. Written as ``analysis.json``
    (everything), ``sharpness.csv``, ``curves.csv``, ``analog_results.csv`` and ``robustness.png``.
    ``analysis.json`` is written as soon as a run is done and records a hash of every setting and of
    the checkpoint, so rerunning after a crash, or with more runs, skips runs already analysed with
    the same settings.

    Across runs (folder ``out``): ``table.csv`` (one row per run: accuracies, drop, metrics with
    their standard errors, noise/fault drops), ``correlation.csv`` (Spearman ρ of each metric with
    the analog drop and with each noise/fault drop; t-approximation and exact permutation p),
    ``report.md``, one scatter ``sharpness_<metric>_vs_accuracy_drop.png`` per metric and
    ``robustness.png`` overlaying all runs' curves.

    ``analysis_options`` go to :func:`analyze_model` (``rho``, ``hessian_iters``, ``relative_etas``,
    ...); ``quick=True`` starts from :data:`QUICK_SETTINGS`. Returns ``{"records", "table",
    "correlations", "paths", "analysed", "skipped"}``.
    """
    from tqdm.auto import tqdm

    from analogsam.hardware.conversion import resolve_preset
    from analogsam.data import load_dataset
    from analogsam.evaluation import parse_times
    from analogsam.evaluation.store import write_rows
    from analogsam.training import CHECKPOINT, load_run

    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise ValueError("analyze_runs needs at least one run folder")
    metrics = _check_subset("metrics", metrics, METRICS)
    curves = _check_subset("curves", curves, CURVES)
    times = parse_times([t] if isinstance(t, (int, float)) else t)
    if len(times) != 1:
        raise ValueError(f"analyze_runs measures the drop at one time, got {len(times)}: {t!r}")
    t = times[0]
    repeats = C.check_int("repeats", repeats, low=1)
    num_batches = C.check_int("num_batches", num_batches, low=1)
    batch_size = C.check_int("batch_size", batch_size, low=1)
    if test_samples is not None:
        test_samples = C.check_int("test_samples", test_samples, low=1)
    preset = resolve_preset(preset, dict(overrides) if overrides else None)
    preset.check_times([t])
    options = {**(QUICK_SETTINGS if quick else {}), **analysis_options}
    allowed = set(inspect.signature(analyze_model).parameters) - {
        "model", "batches", "metrics", "curves", "seed", "num_batches"}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown analysis options {sorted(unknown)}; see analogsam.studies.flatness.analyze_model")
    for d in run_dirs:
        if not (d / CHECKPOINT).exists():
            raise FileNotFoundError(f"no {CHECKPOINT} in {d}: pass run folders written by `analogsam train`")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"preset": preset.name, "preset_hash": preset.hash, "t_seconds": t, "repeats": repeats,
                "seed": seed, "num_batches": num_batches, "batch_size": batch_size, "test_samples": test_samples,
                "backend": backend, "metrics": list(metrics), "curves": list(curves), "options": options}

    runs = [load_run(d) for d in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"two runs share a name ({', '.join(names)}): rename a run folder so results stay apart")

    datasets: dict[str, object] = {}
    records, paths, analysed, skipped = [], {}, [], []
    outer = tqdm(list(zip(run_dirs, runs)), desc="analyze", disable=not progress, unit="run")
    for run_dir, run in outer:
        folder = out / _slug(run.name)
        run_settings = {**settings, "checkpoint": _file_digest(run_dir / CHECKPOINT)}
        digest = _settings_hash(run_settings)
        old = _read_json(folder / RUN_RECORD)
        if old is not None and old.get("settings_hash") == digest:
            records.append(old)
            skipped.append(run.name)
            if progress:
                tqdm.write(f"[{run.name}] already analysed with these settings: {folder / RUN_RECORD}")
            continue
        key = _dataset_cache_key(run.config, data_root)
        if key not in datasets:
            options_ = dict(run.config.get("data_options", {}))
            if data_root is not None:
                options_["root"] = data_root
            if "dataset" not in run.config:
                raise ValueError(f"run {run.name!r} does not record its dataset")
            datasets[key] = load_dataset(run.config["dataset"], **options_)
        data = datasets[key]
        train_batches = list(data.train.batches(batch_size, shuffle=True, seed=seed))[:num_batches]
        # Large test batches: a forward pass costs less per sample, and the accuracies do not depend on it.
        test = list(data.test.batches(_TEST_BATCH))
        if test_samples is not None:
            x = torch.cat([b[0] for b in test])[:test_samples]
            y = torch.cat([b[1] for b in test])[:test_samples]
            test = [(x[i:i + _TEST_BATCH], y[i:i + _TEST_BATCH]) for i in range(0, len(y), _TEST_BATCH)]
        merged, analog_rows = _analyze_one(
            run, train_batches, test, preset, t, repeats=repeats, seed=seed, backend=backend, metrics=metrics,
            curves=curves, options=options, progress=progress, label=run.name)
        record = {"run": run.name, "optimizer": run.optimizer, "model": run.config.get("model"),
                  "dataset": run.config.get("dataset"), "run_dir": str(run_dir),
                  "settings": run_settings, "settings_hash": digest, **merged}
        record = _jsonable(record)
        _write_run_files(record, folder, analog_rows)
        _write_json(folder / RUN_RECORD, record)  # last: its presence means the run is complete
        records.append(record)
        analysed.append(run.name)
        if progress:
            tqdm.write(f"[{run.name}] digital {record['digital_accuracy']:.2%}, {preset.name} at "
                       f"{record['analog']['time']} {record['analog_accuracy']:.2%} "
                       f"(drop {record['accuracy_drop'] * 100:.2f} pp), "
                       f"{sum(record['timings'].values()):.0f} s -> {folder}")
    outer.close()
    for r in records:
        paths[f"run_{r['run']}"] = out / _slug(r["run"]) / RUN_RECORD

    # Across runs.
    table = _table_rows(records, metrics)
    paths["table"] = out / TABLE_FILE
    write_rows(paths["table"], table, list(dict.fromkeys(k for row in table for k in row)))
    drops = ["accuracy_drop"] + sorted({d for r in records for d in r.get("drops", {})})
    correlations = robustness_correlation(records, metrics=list(metrics), drop=drops)
    for c in correlations:
        xs, ys, _ = _paired(records, c["metric"], c["drop"])
        c["p_exact"] = _exact_spearman_p(xs, ys)
    paths["correlation"] = out / CORRELATION_FILE
    write_rows(paths["correlation"], correlations, ["metric", "drop", "n", "spearman_rho", "p_value", "p_exact"])
    for m, p in zip(metrics, plot_sharpness_scatters(records, out, metrics=list(metrics), drop="accuracy_drop")):
        paths[f"scatter_{m}"] = p
    by_kind = {name: {r["run"]: r["curves"][name] for r in records if name in r.get("curves", {})}
               for name in curves}
    if any(by_kind.values()):
        paths["robustness"] = plot_robustness_panel(by_kind, out / "robustness.png",
                                                    title="accuracy under weight noise and faults (test set)")
    paths["report"] = out / REPORT_FILE
    paths["report"].write_text(_markdown_report(records, correlations, settings, paths, out))
    return {"records": records, "table": table, "correlations": correlations, "paths": paths,
            "analysed": analysed, "skipped": skipped}
