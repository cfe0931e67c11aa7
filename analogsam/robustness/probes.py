"""The per-model probe: every sharpness metric and every robustness curve of one model, in one call.

:func:`analyze_model` runs the metrics of :mod:`analogsam.robustness.sharpness` and the curves of
:mod:`analogsam.robustness.perturbations` on one model and returns one JSON-serialisable dict, the
unit that :func:`analogsam.studies.flatness.analyze_runs` records per run folder and
:func:`analogsam.robustness.correlation.robustness_correlation` correlates across runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.models.roles import ADAPTIVE_SCOPES, PARAMETER_SETS
from analogsam.robustness import perturbations as faults
from analogsam.robustness import sharpness as sharpness_metrics
from analogsam.robustness._autograd import preserved
from analogsam.robustness._batches import batch_weights, model_device, resolve_loss, sample_count, take_batches
from analogsam.scoring import resolve_metric, score
from analogsam.storage import jsonable
from analogsam.validation import Interval, Many, Options, OrNone, Settings, Subset, declare, setting

__all__ = ["CURVES", "METRICS", "CurveSettings", "SharpnessSettings", "analyze_model", "probe_settings"]

#: The metric names, in the order :func:`analyze_model` reports them.
METRICS = sharpness_metrics.METRICS
#: The robustness curves :func:`analyze_model` can draw.
CURVES = ("weight_noise_relative", "weight_noise_additive", "stuck_at", "bit_flip")


@dataclass(frozen=True)
class SharpnessSettings(Settings):
    """How :func:`analyze_model` measures the sharpness metrics of :mod:`analogsam.robustness.sharpness`.

    Defaults: SAM ρ 0.05 and ASAM ρ 0.5, η 0.01 (the papers' training values) and ASAM's scope
    ``"weights"`` (see :mod:`analogsam.models.roles`); ``sharpness_parameters`` are the tensors
    perturbed (all trainable parameters by default, the papers' convention).
    """

    rho: float = setting(0.05, Interval(float, 0.0, low_open=True), "worst-case radius ρ (SAM)")
    ascent_steps: int = setting(10, Interval(int, 1), "gradient-ascent steps of the worst-case metrics")
    asam_rho: float = setting(0.5, Interval(float, 0.0, low_open=True), "adaptive radius ρ (ASAM)")
    asam_eta: float = setting(0.01, Interval(float, 0.0), "ASAM's offset η in T_w = |w| + η")
    asam_scope: str = setting("weights", Options(ADAPTIVE_SCOPES), "tensors ASAM's T scales")
    sigma: float = setting(0.1, Interval(float, 0.0), "std of average sharpness' Gaussian perturbation")
    sharpness_draws: int = setting(20, Interval(int, 1), "draws of average sharpness")
    hessian_iters: int = setting(20, Interval(int, 1), "power iterations of the top Hessian eigenvalue")
    hessian_tol: float = setting(1e-3, Interval(float, 0.0, low_open=True), "relative tolerance of the power iteration")
    trace_draws: int = setting(20, Interval(int, 1), "Hutchinson draws of the Hessian trace")
    sharpness_parameters: str = setting("all", Options(PARAMETER_SETS), "tensors the metrics perturb")


@dataclass(frozen=True)
class CurveSettings(Settings):
    """How :func:`analogsam.robustness.analyze_model` draws the robustness curves of
    :mod:`analogsam.robustness.perturbations`: Büchel et al.'s η for relative noise, a few percent of
    the layer range for additive noise; ``fault_parameters`` are the tensors perturbed (the
    Linear/Conv weights that sit on analog tiles)."""

    relative_etas: tuple = setting(
        (0.0, 0.1, 0.2, 0.3, 0.5, 0.7), Many(Interval(float, 0.0)), "relative weight-noise levels η (× |w|)"
    )
    additive_etas: tuple = setting(
        (0.0, 0.02, 0.05, 0.1, 0.2), Many(Interval(float, 0.0)), "additive weight-noise levels (× layer max |w|)"
    )
    noise_draws: int = setting(10, Interval(int, 1), "noise draws per level")
    stuck_at_rates: tuple = setting((0.0, 0.001, 0.01, 0.05), Many(Interval(float, 0.0, 1.0)), "stuck-at rates")
    bit_flip_rates: tuple = setting((0.0, 1e-4, 1e-3, 1e-2), Many(Interval(float, 0.0, 1.0)), "bit-flip rates")
    bits: int = setting(8, Interval(int, 2, 16), "bits of the weight codes the bit flips hit")
    fault_draws: int = setting(5, Interval(int, 1), "fault draws per rate")
    fault_parameters: str = setting("weights", Options(PARAMETER_SETS), "tensors the noise and faults perturb")


def probe_settings(options: Mapping) -> tuple[SharpnessSettings, CurveSettings]:
    """The two settings objects from flat options (``{"rho": 0.1, "noise_draws": 3}``), as
    :func:`analogsam.studies.flatness.analyze_runs` and the command line take them; an unknown name
    is an error naming it."""
    unknown = set(options) - set(SharpnessSettings.constraints()) - set(CurveSettings.constraints())
    if unknown:
        raise InvalidParameterError(
            f"unknown analysis options {sorted(unknown)}; the options are the fields of "
            "analogsam.robustness.SharpnessSettings and CurveSettings"
        )
    return SharpnessSettings(**SharpnessSettings.pick(options)), CurveSettings(**CurveSettings.pick(options))


@declare(
    {
        "num_batches": OrNone(Interval(int, 1), "every batch"),
        "seed": Interval(int, 0),
        "metrics": Subset(METRICS),
        "curves": Subset(CURVES),
    }
)
def analyze_model(
    model: nn.Module,
    batches,
    *,
    num_batches: int | None = None,
    loss_fn=None,
    seed: int = 0,
    metrics: Sequence[str] = METRICS,
    curves: Sequence[str] = CURVES,
    sharpness: SharpnessSettings | None = None,
    robustness: CurveSettings | None = None,
    metric=None,
    output_fn=None,
) -> dict:
    """All sharpness metrics and robustness curves of one model on the first ``num_batches`` batches.

    The model is restored exactly afterwards and evaluated in eval mode. ``sharpness``
    (:class:`SharpnessSettings`) says how the metrics are measured, ``robustness``
    (:class:`CurveSettings`) how the noise and fault curves are drawn; ``None``: their defaults.

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
         "settings": {...}}                   # flat: every field of both settings objects

    ``metrics`` picks from :data:`METRICS`, ``curves`` from :data:`CURVES`; the Hessian metrics
    cost a double backward per product and are the slow ones.
    """
    sharp = SharpnessSettings.given("sharpness", sharpness)
    noise = CurveSettings.given("robustness", robustness)
    resolved = resolve_metric(metric)
    common = {"loss_fn": loss_fn, "num_batches": num_batches, "metric": resolved, "output_fn": output_fn}
    sharp_common = {**common, "parameters": sharp.sharpness_parameters, "seed": seed}
    metric_calls = {
        "worst_case_sharpness": lambda: sharpness_metrics.worst_case_sharpness(
            model, batches, sharp.rho, sharp.ascent_steps, **sharp_common
        ),
        "adaptive_sharpness": lambda: sharpness_metrics.adaptive_sharpness(
            model,
            batches,
            sharp.asam_rho,
            sharp.ascent_steps,
            eta=sharp.asam_eta,
            scope=sharp.asam_scope,
            **sharp_common,
        ),
        "average_sharpness": lambda: sharpness_metrics.average_sharpness(
            model, batches, sharp.sigma, sharp.sharpness_draws, **sharp_common
        ),
        "hessian_top_eigenvalue": lambda: sharpness_metrics.hessian_top_eigenvalue(
            model, batches, sharp.hessian_iters, sharp.hessian_tol, **sharp_common
        ),
        "hessian_trace": lambda: sharpness_metrics.hessian_trace(model, batches, sharp.trace_draws, **sharp_common),
    }
    curve_common = {**common, "parameters": noise.fault_parameters, "seed": seed}
    curve_calls = {
        "weight_noise_relative": lambda: faults.weight_noise_curve(
            model, batches, noise.relative_etas, draws=noise.noise_draws, mode="relative", **curve_common
        ),
        "weight_noise_additive": lambda: faults.weight_noise_curve(
            model, batches, noise.additive_etas, draws=noise.noise_draws, mode="additive", **curve_common
        ),
        "stuck_at": lambda: faults.fault_curve(
            model, batches, noise.stuck_at_rates, "stuck-at", draws=noise.fault_draws, **curve_common
        ),
        "bit_flip": lambda: faults.fault_curve(
            model, batches, noise.bit_flip_rates, "bit-flip", draws=noise.fault_draws, bits=noise.bits, **curve_common
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
                **sharp.as_dict(),
                **noise.as_dict(),
            },
        }
    )
