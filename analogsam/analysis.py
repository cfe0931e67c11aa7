"""Does flatness predict robustness? Per-model analysis and the cross-run rank correlation.

- :func:`analyze_model`: every sharpness metric (``analogsam.sharpness``) and every robustness curve
  (``analogsam.faults``) of one model, as one JSON-serialisable dict.
- :func:`robustness_correlation`: across runs, Spearman's rank correlation between each sharpness
  metric and an accuracy drop (under analog drift at a chosen preset and time, or under weight
  noise or faults): the claim "flatter minima are more robust" predicts a positive ρ.
- :func:`plot_sharpness_scatter`, :func:`plot_sharpness_scatters`, :func:`plot_robustness_curves`:
  PNG plots, drawn on matplotlib's Agg canvas without touching pyplot's global state.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from torch import nn

from . import _analysis_common as C
from . import faults, sharpness

__all__ = [
    "CURVES",
    "METRICS",
    "analyze_model",
    "robustness_correlation",
    "plot_sharpness_scatter",
    "plot_sharpness_scatters",
    "plot_robustness_curves",
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


def plot_robustness_curves(curves: Mapping[str, object], path, *, title: str | None = None) -> Path:
    """Mean accuracy ± std against the level (η or fault rate) for several runs' curves of one kind.

    ``curves`` maps a run label to a :class:`analogsam.faults.RobustnessCurve` or its ``to_dict()``.
    """
    fig = _figure()
    ax = fig.add_subplot()
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
    return _save(fig, path)
