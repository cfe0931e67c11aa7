"""The per-model probe: every sharpness metric and every robustness curve of one model, in one call.

:func:`analyze_model` runs the metrics of :mod:`analogsam.robustness.sharpness` and the curves of
:mod:`analogsam.robustness.perturbations` on one model and returns one JSON-serialisable dict, the
unit that :func:`analogsam.studies.flatness.analyze_runs` records per run folder and
:func:`analogsam.robustness.correlation.robustness_correlation` correlates across runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.robustness import perturbations as faults
from analogsam.robustness import sharpness
from analogsam.robustness._autograd import preserved
from analogsam.robustness._batches import batch_weights, model_device, resolve_loss, sample_count, take_batches
from analogsam.scoring import resolve_metric, score
from analogsam.storage import jsonable

__all__ = ["CURVES", "METRICS", "analyze_model"]

#: The metric names, in the order :func:`analyze_model` reports them.
METRICS = sharpness.METRICS
#: The robustness curves :func:`analyze_model` can draw.
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
    asam_scope: str = "weights",
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
    metric=None,
    output_fn=None,
) -> dict:
    """All sharpness metrics and robustness curves of one model on the first ``num_batches`` batches.

    The model is restored exactly afterwards and evaluated in eval mode. Sharpness metrics perturb
    ``sharpness_parameters`` (all trainable parameters by default, the papers' convention); noise
    and fault curves perturb ``fault_parameters`` (the Linear/Conv weights that sit on analog tiles).
    Defaults: SAM ρ 0.05 and ASAM ρ 0.5, η 0.01 (the papers' training values) and ASAM's scope
    ``asam_scope`` ``"weights"`` (see :mod:`analogsam.models.roles`), Büchel et al.'s η
    for relative noise, a few percent of the layer range for additive noise.

    ``metric`` (default top-1 accuracy; e.g. ``"perplexity"`` for a language model, see
    :func:`analogsam.scoring.resolve_metric`) is what the curves, the drops and the clean record
    measure, and its task loss is the loss the sharpness metrics probe (unless ``loss_fn`` is given);
    ``output_fn`` picks the prediction from the model's output (:func:`analogsam.scoring.model_output`).
    A drop is how much worse the perturbed mean is than the clean value, positive either way.

    Returns a JSON-serialisable dict::

        {"metrics": {name: value},            # flat, ready for robustness_correlation
         "sharpness": {name: SharpnessResult.to_dict()},
         "curves": {name: RobustnessCurve.to_dict()},
         "drops": {"<curve>_drop@<level>": clean accuracy − mean accuracy},
         "clean": {"loss", "accuracy" (the metric's name), "num_batches", "n_samples"},
         "settings": {...}}

    ``metrics`` picks from :data:`METRICS`, ``curves`` from :data:`CURVES`; the Hessian metrics
    cost a double backward per product and are the slow ones.
    """
    metrics = check_subset("metrics", metrics, METRICS)
    curves = check_subset("curves", curves, CURVES)
    resolved = resolve_metric(metric)
    common = {"loss_fn": loss_fn, "num_batches": num_batches, "metric": resolved, "output_fn": output_fn}
    sharp_common = {**common, "parameters": sharpness_parameters, "seed": seed}
    metric_calls = {
        "worst_case_sharpness": lambda: sharpness.worst_case_sharpness(
            model, batches, rho, ascent_steps, **sharp_common
        ),
        "adaptive_sharpness": lambda: sharpness.adaptive_sharpness(
            model, batches, asam_rho, ascent_steps, eta=asam_eta, scope=asam_scope, **sharp_common
        ),
        "average_sharpness": lambda: sharpness.average_sharpness(
            model, batches, sigma, sharpness_draws, **sharp_common
        ),
        "hessian_top_eigenvalue": lambda: sharpness.hessian_top_eigenvalue(
            model, batches, hessian_iters, hessian_tol, **sharp_common
        ),
        "hessian_trace": lambda: sharpness.hessian_trace(model, batches, trace_draws, **sharp_common),
    }
    curve_common = {**common, "parameters": fault_parameters, "seed": seed}
    curve_calls = {
        "weight_noise_relative": lambda: faults.weight_noise_curve(
            model, batches, relative_etas, draws=noise_draws, mode="relative", **curve_common
        ),
        "weight_noise_additive": lambda: faults.weight_noise_curve(
            model, batches, additive_etas, draws=noise_draws, mode="additive", **curve_common
        ),
        "stuck_at": lambda: faults.fault_curve(
            model, batches, stuck_at_rates, "stuck-at", draws=fault_draws, **curve_common
        ),
        "bit_flip": lambda: faults.fault_curve(
            model, batches, bit_flip_rates, "bit-flip", draws=fault_draws, bits=bits, **curve_common
        ),
    }
    results = {name: metric_calls[name]() for name in metrics}
    curve_results = {name: curve_calls[name]() for name in curves}

    with preserved(model):
        data = take_batches(batches, num_batches, model_device(model))
        clean_value, clean_loss = score(
            model,
            data,
            metric=resolved,
            output_fn=output_fn,
            loss_fn=resolve_loss(loss_fn, resolved),
            weights=batch_weights(data),
        )
    drops = {}
    for name, curve in curve_results.items():
        for row in curve.summary:
            level = row[curve.level_name]
            if level > 0:
                drops[f"{name}_drop@{level:g}"] = (
                    clean_value - row["mean"] if resolved.higher_is_better else row["mean"] - clean_value
                )
    return jsonable(
        {
            "metrics": {name: r.value for name, r in results.items()},
            "sharpness": {name: r.to_dict() for name, r in results.items()},
            "curves": {name: c.to_dict() for name, c in curve_results.items()},
            "drops": drops,
            "clean": {
                "loss": clean_loss,
                resolved.name: clean_value,
                "num_batches": len(data),
                "n_samples": sample_count(data),
            },
            "settings": {
                "metric": resolved.name,
                "num_batches": num_batches,
                "seed": seed,
                "metrics": list(metrics),
                "curves": list(curves),
                "rho": rho,
                "ascent_steps": ascent_steps,
                "asam_rho": asam_rho,
                "asam_eta": asam_eta,
                "asam_scope": asam_scope,
                "sigma": sigma,
                "sharpness_draws": sharpness_draws,
                "hessian_iters": hessian_iters,
                "hessian_tol": hessian_tol,
                "trace_draws": trace_draws,
                "sharpness_parameters": sharpness_parameters,
                "relative_etas": list(relative_etas),
                "additive_etas": list(additive_etas),
                "noise_draws": noise_draws,
                "stuck_at_rates": list(stuck_at_rates),
                "bit_flip_rates": list(bit_flip_rates),
                "bits": bits,
                "fault_draws": fault_draws,
                "fault_parameters": fault_parameters,
            },
        }
    )


def check_subset(name, values, allowed) -> tuple:
    """``values`` (one name or several) as a tuple, each one of ``allowed``."""
    values = (values,) if isinstance(values, str) else tuple(values)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise InvalidParameterError(f"{name} has unknown entries {unknown}; choose from {', '.join(allowed)}")
    return values
