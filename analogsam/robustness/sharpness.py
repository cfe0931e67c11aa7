"""Sharpness (flatness) metrics of a trained network's loss at its weights.

Five instruments, all measured on a stated number of batches in eval mode (BatchNorm uses its
running statistics and is never updated, dropout is off), and all leaving the model exactly as they
found it:

- :func:`worst_case_sharpness`: SAM's sharpness max_{‖ε‖₂≤ρ} L(w+ε) − L(w) (Foret et al., ICLR 2021,
  arXiv 2010.01412), by projected gradient ascent whose first step is SAM's ε = ρ·g/‖g‖₂.
- :func:`adaptive_sharpness`: ASAM's scale-invariant version, the same maximum over
  ‖T⁻¹ε‖₂ ≤ ρ with T = |w| + η on the crossbar weights and T = 1 elsewhere (Kwon et al.,
  ICML 2021, arXiv 2102.11600), the T the ASAM optimizer uses (:mod:`analogsam.models.roles`).
- :func:`average_sharpness`: E[L(w + |w|·σ·N(0, 1))] − L(w), the expected loss increase under the
  relative weight noise of Büchel et al.'s test protocol (ICLR 2022, arXiv 2106.05009).
- :func:`hessian_top_eigenvalue`: power iteration with Hessian-vector products, the flatness measure
  Xu et al. report for sharpness-aware-trained physical networks (arXiv 2411.12352).
- :func:`hessian_trace`: Hutchinson's estimator tr(H) = E[vᵀHv], v Rademacher.

Each returns a :class:`SharpnessResult`: the value, its standard error where the estimator is
Monte-Carlo (and ``None`` where it is not), the settings used and diagnostics.

All uncertainties here are conditional on the batches: they say how far the estimate may be from
the same quantity computed exactly on those batches, not how it would vary with other data.

The loss is ``loss_fn(prediction, labels)``, averaged per sample over the batches, where the
prediction is taken from the model's output by :func:`analogsam.scoring.model_output` (or
``output_fn``): by default the task loss of ``metric`` (cross-entropy, per token for a sequence
model; mean squared error for a regression metric such as ``"mse"``). Any scalar-valued ``loss_fn`` works, which makes closed-form checks easy: a module
whose ``forward`` returns ½wᵀAw with ``loss_fn=lambda out, _: out`` has Hessian A.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, TypedDict

import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.models.roles import adaptive_scales, check_scope, select_parameters
from analogsam.robustness import _autograd as G
from analogsam.robustness._batches import (
    batch_weights,
    model_device,
    output_loss,
    resolve_loss,
    sample_count,
    take_batches,
)
from analogsam.robustness._random import make_generator, rademacher, seed_settings, standard_normal
from analogsam.robustness.perturbations import gaussian_weight_noise
from analogsam.statistics import mean_std_stderr
from analogsam.validation import check_int, check_real

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "ProbeOptions",
    "SharpnessResult",
    "worst_case_sharpness",
    "adaptive_sharpness",
    "average_sharpness",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "METRICS",
]

#: The metric names, in the order :func:`analogsam.robustness.analyze_model` reports them.
METRICS = (
    "worst_case_sharpness",
    "adaptive_sharpness",
    "average_sharpness",
    "hessian_top_eigenvalue",
    "hessian_trace",
)


@dataclass(frozen=True)
class SharpnessResult:
    """One sharpness estimate.

    ``stderr`` is the Monte-Carlo standard error of ``value`` (over noise draws or probe vectors),
    ``None`` for the deterministic estimators (worst-case, adaptive, top eigenvalue), whose
    accuracy is described by ``diagnostics`` instead. ``settings`` holds every knob, the number of
    batches and samples and the parameter count, so a number can be reproduced.
    """

    metric: str
    value: float
    stderr: float | None
    settings: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class _Problem:
    """The loss on fixed batches as a function of a chosen set of parameters, and the probe's randomness."""

    def __init__(self, model, batches, *, loss_fn, num_batches, parameters, seed, generator, output_fn, metric):
        self.model = model
        self.batches = take_batches(batches, num_batches, model_device(model))
        self.weights = batch_weights(self.batches)
        self.loss_fn = output_loss(resolve_loss(loss_fn, metric), output_fn)
        self.params = [p for _, p in select_parameters(model, parameters)]
        self.generator = make_generator(seed, generator)
        self.settings = {
            "num_batches": len(self.batches),
            "n_samples": sample_count(self.batches),
            "parameters": parameters,
            "n_parameters": sum(p.numel() for p in self.params),
            **seed_settings(seed, generator),
        }

    def loss(self) -> float:
        return G.mean_loss(self.model, self.batches, self.weights, self.loss_fn)

    def loss_and_grads(self):
        return G.loss_and_grads(self.model, self.batches, self.weights, self.loss_fn, self.params)

    def hvp(self, vector):
        return G.hessian_vector_product(self.model, self.batches, self.weights, self.loss_fn, self.params, vector)


class ProbeOptions(TypedDict, total=False):
    """The keyword options every metric here takes, besides its own.

    - ``loss_fn``: ``loss_fn(prediction, labels)``, a scalar per-batch mean; by default the task loss
      of ``metric`` (cross-entropy).
    - ``output_fn``: picks the prediction from the model's output (:func:`analogsam.scoring.model_output`).
    - ``metric``: the metric whose task loss is the default loss (:func:`analogsam.scoring.task_loss`):
      a regression metric (``"mse"``, ``"r2"``) makes it mean squared error.
    - ``num_batches``: use the first ``num_batches`` batches (all when None, the default).
    - ``parameters``: ``"all"`` trainable parameters (the default, the papers' convention) or
      ``"weights"``, the crossbar weights only (:func:`analogsam.models.roles.crossbar_weights`).
    - ``seed``: seeds a fresh generator (default 0); None draws from torch's global generator.
    - ``generator``: a ``torch.Generator`` to draw from instead (then no seed is recorded).
    """

    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    output_fn: Callable | None
    metric: object
    num_batches: int | None
    parameters: str
    seed: int | None
    generator: torch.Generator | None


_PROBE_DEFAULTS = {
    "loss_fn": None,
    "output_fn": None,
    "metric": None,
    "num_batches": None,
    "parameters": "all",
    "seed": 0,
    "generator": None,
}


@contextlib.contextmanager
def _measuring(model, batches, probe: dict):
    """The :class:`_Problem` of one probe (``probe``: its :class:`ProbeOptions`), with ``model`` in eval mode
    and restored exactly afterwards."""
    unknown = sorted(set(probe) - set(_PROBE_DEFAULTS))
    if unknown:
        raise InvalidParameterError(
            f"unknown sharpness option(s) {', '.join(unknown)}; the common ones are {', '.join(_PROBE_DEFAULTS)}"
        )
    options = {**_PROBE_DEFAULTS, **probe}
    with G.preserved(model):
        yield _Problem(model, batches, **options)


# --- worst-case sharpness (SAM, ASAM) ----------------------------------------------------------


def _projected_ascent(problem: _Problem, scales, rho, steps, step_size) -> tuple[float, float, dict]:
    """max_{‖δ‖₂≤ρ} L(w + T⊙δ) by normalized gradient steps in δ, projected onto the ρ-ball.

    The gradient in δ is T⊙∇L. From δ₀ = 0 the first iterate is ρ·T⊙g/‖T⊙g‖, i.e. ε = T⊙δ is SAM's
    (T = 1) or ASAM's (T = |w|+η) perturbation. Returns (L(w), the largest L(w + T⊙δ_k) met, info).
    """
    params, generator = problem.params, problem.generator
    delta = [torch.zeros_like(p) for p in params]
    base, best, best_norm, history, random_start, stationary = None, None, 0.0, [], False, False
    for k in range(steps + 1):
        eps = [t * d for t, d in zip(scales, delta)]
        with G.shifted(params, eps):
            if k == steps:
                loss, grads = problem.loss(), None
            else:
                loss, grads = problem.loss_and_grads()
        if k == 0:
            base = best = loss
        else:
            history.append(loss)
            if loss > best:
                best, best_norm = loss, G.norm(eps)
        if grads is None:
            break
        ascent = [t * g for t, g in zip(scales, grads)]
        g_norm = G.norm(ascent)
        if g_norm == 0.0 or not math.isfinite(g_norm):
            if k > 0:
                stationary = True  # a stationary point of the ascent: nothing left to climb
                break
            # Zero gradient at w (e.g. the exact minimum of a quadratic): SAM's ε is undefined, so
            # start from a random direction instead.
            random_start = True
            ascent = [standard_normal(p, generator) for p in params]
            g_norm = G.norm(ascent)
        delta = [d + step_size * a / g_norm for d, a in zip(delta, ascent)]
        d_norm = G.norm(delta)
        if d_norm > rho:
            delta = [d * (rho / d_norm) for d in delta]
    info = {
        "loss": base,
        "perturbed_loss": best,
        "perturbation_norm": best_norm,
        "steps_run": len(history),
        "random_start": random_start,
        "stopped_at_stationary_point": stationary,
        "loss_history": history,
    }
    return base, best, info


def _ascent_settings(rho, steps, step_size):
    rho = check_real("rho", rho, 0.0, low_open=True)
    steps = check_int("steps", steps, low=1)
    step_size = rho if step_size is None else check_real("step_size", step_size, 0.0, low_open=True)
    return rho, steps, step_size


def worst_case_sharpness(
    model: nn.Module,
    batches,
    rho: float = 0.05,
    steps: int = 10,
    *,
    step_size: float | None = None,
    **probe: Unpack[ProbeOptions],
) -> SharpnessResult:
    """SAM's sharpness max_{‖ε‖₂≤ρ} L(w+ε) − L(w) (Foret et al., ICLR 2021, arXiv 2010.01412).

    Estimated by ``steps`` steps of projected normalized gradient ascent on ε: ε ← Π_ρ(ε + α·g/‖g‖₂)
    with g = ∇L(w+ε), α = ``step_size`` (default ρ) and Π_ρ the projection onto the ρ-ball. The
    first step from ε = 0 is exactly SAM's ε = ρ·∇L(w)/‖∇L(w)‖₂, so ``steps=1`` gives the
    one-step sharpness SAM minimises. One norm over all perturbed parameters, as in SAM.

    The value is the largest loss increase found on the way: a lower bound on the true maximum on
    these batches (gradient ascent may stop at a local maximum), never negative. No standard error:
    the estimate is deterministic given the batches; ``diagnostics["loss_history"]`` shows whether
    the ascent had levelled off. ``seed``/``generator`` matter only when ∇L(w) is exactly zero,
    where the ascent starts from a random direction.

    Args:
        model: any module; restored exactly afterwards, evaluated in eval mode.
        batches: re-iterable of ``(inputs, labels)``; the first ``num_batches`` are used (all when None).
        rho: radius of the ℓ₂ ball, > 0 (SAM's typical 0.05 for CIFAR-10).
        steps: gradient-ascent steps, >= 1.
        probe: the :class:`ProbeOptions` (``loss_fn``, ``num_batches``, ``parameters``: ``"all"``
            trainable parameters, SAM's convention, or the crossbar ``"weights"``; ``seed``, ``generator``).
    """
    rho, steps, step_size = _ascent_settings(rho, steps, step_size)
    with _measuring(model, batches, probe) as problem:
        scales = [torch.ones_like(p) for p in problem.params]
        base, best, info = _projected_ascent(problem, scales, rho, steps, step_size)
    settings = {"rho": rho, "steps": steps, "step_size": step_size, **problem.settings}
    return SharpnessResult("worst_case_sharpness", best - base, None, settings, info)


def adaptive_sharpness(
    model: nn.Module,
    batches,
    rho: float = 0.5,
    steps: int = 10,
    *,
    eta: float = 0.01,
    scope: str = "weights",
    step_size: float | None = None,
    **probe: Unpack[ProbeOptions],
) -> SharpnessResult:
    """ASAM's adaptive sharpness max_{‖T⁻¹ε‖₂≤ρ} L(w+ε) − L(w) (Kwon et al., ICML 2021, arXiv 2102.11600).

    ``scope="weights"``: T = |w| + η elementwise for the crossbar weights and T = 1 for the others
    (biases, BatchNorm γ and β); ``scope="all"``: T = |w| + η for every perturbed tensor. Either way
    exactly the T of the ASAM optimizer with the same ``scope``
    (:func:`analogsam.models.roles.adaptive_scales`; the authors' code also scales BatchNorm's γ,
    see :mod:`analogsam.models.roles` for why analogsam does not). With ε = T⊙δ it is the worst-case sharpness in δ over ‖δ‖₂ ≤ ρ, estimated by
    the same projected normalized gradient ascent (gradient in δ: T⊙∇L); the first step is ASAM's
    ε = ρ·T²⊙g/‖T⊙g‖₂. With η = 0 the value is invariant to rescaling a layer by c and the next by
    1/c (ReLU networks without biases compute the same function): the point of ASAM.

    Defaults follow ASAM: ρ = 0.5, η = 0.01. The value is a lower bound on the maximum on these
    batches, with no standard error (deterministic given the batches); see ``diagnostics``.
    """
    rho, steps, step_size = _ascent_settings(rho, steps, step_size)
    eta = check_real("eta", eta, 0.0)
    scope = check_scope(scope)
    with _measuring(model, batches, probe) as problem:
        scales = adaptive_scales(model, problem.params, eta, scope)
        base, best, info = _projected_ascent(problem, scales, rho, steps, step_size)
    settings = {"rho": rho, "eta": eta, "scope": scope, "steps": steps, "step_size": step_size, **problem.settings}
    return SharpnessResult("adaptive_sharpness", best - base, None, settings, info)


# --- average-case sharpness --------------------------------------------------------------------


def average_sharpness(
    model: nn.Module,
    batches,
    sigma: float = 0.1,
    draws: int = 20,
    *,
    relative: bool = True,
    **probe: Unpack[ProbeOptions],
) -> SharpnessResult:
    """Average-case sharpness E[L(w + ε)] − L(w) under random Gaussian weight noise.

    ε = |w|·σ·N(0, 1) elementwise when ``relative`` (the magnitude-proportional mismatch model of
    Büchel, Faber & Muir, ICLR 2022, arXiv 2106.05009, whose test noise is this with σ = η), else
    ε = σ·N(0, 1). The expectation is a Monte-Carlo mean over ``draws`` noise draws; ``stderr`` is
    its standard error, std(L(w+ε_d) − L(w))/√draws, i.e. the noise-sampling error on these batches.
    """
    sigma = check_real("sigma", sigma, 0.0)
    draws = check_int("draws", draws, low=1)
    scale = {"relative" if relative else "absolute": sigma}
    with _measuring(model, batches, probe) as problem:
        base = problem.loss()
        increases = []
        for _ in range(draws):
            eps = [gaussian_weight_noise(p, **scale, generator=problem.generator) for p in problem.params]
            with G.shifted(problem.params, eps):
                increases.append(problem.loss() - base)
    mean, std, stderr = mean_std_stderr(increases)
    settings = {"sigma": sigma, "draws": draws, "relative": bool(relative), **problem.settings}
    diagnostics = {"loss": base, "std": std, "max_increase": max(increases), "min_increase": min(increases)}
    return SharpnessResult("average_sharpness", mean, stderr, settings, diagnostics)


# --- Hessian -----------------------------------------------------------------------------------


def hessian_top_eigenvalue(
    model: nn.Module,
    batches,
    max_iters: int = 20,
    tol: float = 1e-3,
    **probe: Unpack[ProbeOptions],
) -> SharpnessResult:
    """The top Hessian eigenvalue of the loss, by power iteration with Hessian-vector products.

    The flatness measure reported by Xu et al. (arXiv 2411.12352) for sharpness-aware training. From
    a random Gaussian start v, repeat v ← Hv/‖Hv‖ (Hv by double backward) until the Rayleigh quotient
    λ = vᵀHv changes by less than ``tol`` relatively, or ``max_iters`` products. Power iteration finds
    the eigenvalue of largest magnitude: at a minimum (H ⪰ 0) that is the top one; a negative value
    means a negative-curvature direction dominates.

    No standard error: the estimate is deterministic given the start vector. Its convergence is in
    ``diagnostics``: ``relative_change`` of λ over the last iteration, ``residual`` ‖Hv − λv‖/|λ|
    (an eigenpair has residual 0, and |λ − λ_true| ≤ residual·|λ| for symmetric H), ``converged``
    and ``iterations``. Convergence is slow when the top two eigenvalues are close.
    """
    max_iters = check_int("max_iters", max_iters, low=1)
    tol = check_real("tol", tol, 0.0, low_open=True)
    with _measuring(model, batches, probe) as problem:
        v = [standard_normal(p, problem.generator) for p in problem.params]
        v_norm = G.norm(v)
        v = [x / v_norm for x in v]
        lam, prev, change, residual, converged, history = 0.0, None, float("nan"), float("nan"), False, []
        for it in range(1, max_iters + 1):  # noqa: B007 (reported after the loop)
            hv = problem.hvp(v)
            lam = G.dot(v, hv)
            history.append(lam)
            hv_norm = G.norm(hv)
            residual = (G.norm([h - lam * x for h, x in zip(hv, v)]) / abs(lam)) if lam != 0 else float("inf")
            if hv_norm == 0.0:  # v lies in the null space: H v = 0
                lam, change, converged = 0.0, 0.0, True
                break
            v = [h / hv_norm for h in hv]
            if prev is not None:
                change = abs(lam - prev) / max(abs(lam), 1e-30)
                if change < tol:
                    converged = True
                    break
            prev = lam
    settings = {"max_iters": max_iters, "tol": tol, **problem.settings}
    diagnostics = {
        "iterations": it,
        "converged": converged,
        "relative_change": change,
        "residual": residual,
        "history": history,
    }
    return SharpnessResult("hessian_top_eigenvalue", lam, None, settings, diagnostics)


def hessian_trace(
    model: nn.Module,
    batches,
    draws: int = 20,
    **probe: Unpack[ProbeOptions],
) -> SharpnessResult:
    """The Hessian trace by Hutchinson's estimator: tr(H) ≈ mean_d v_dᵀ H v_d, v_d Rademacher (±1).

    Unbiased; ``stderr`` is the standard error of the mean over the ``draws`` probe vectors (the
    Monte-Carlo error on these batches; nan with one draw). For Rademacher probes the per-draw
    variance is 2·Σ_{i≠j} H_ij², so the estimate is exact for a diagonal Hessian.
    """
    draws = check_int("draws", draws, low=1)
    with _measuring(model, batches, probe) as problem:
        samples = []
        for _ in range(draws):
            v = [rademacher(p, problem.generator) for p in problem.params]
            samples.append(G.dot(v, problem.hvp(v)))
    mean, std, stderr = mean_std_stderr(samples)
    settings = {"draws": draws, **problem.settings}
    return SharpnessResult("hessian_trace", mean, stderr, settings, {"std": std})
