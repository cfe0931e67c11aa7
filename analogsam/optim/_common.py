"""Pieces every optimizer of the family shares: the non-finite error, BatchNorm freezing, parameter roles."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from analogsam.errors import AnalogsamError

# Normalisation layers stay digital on an analog accelerator: their parameters are neither mapped to
# conductances nor perturbed by the attack, the noise or the adaptive scaling.
NORM_LAYERS = (_NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


class NonFiniteError(AnalogsamError, FloatingPointError):
    """A loss or gradient was NaN or infinite; raised before any weight of that step is written.

    ``step`` is the 1-based number of the training step that failed.
    """

    def __init__(self, message: str, *, step: int | None = None):
        super().__init__(message)
        self.step = step


def non_finite(what: str, step: int, value: torch.Tensor | float | None = None, *,
               where: str = "") -> NonFiniteError:
    """The error for a non-finite ``what`` (e.g. "loss") at ``step``; the caller raises it."""
    shown = f" ({float(value)})" if value is not None else ""
    place = f" in {where}" if where else ""
    return NonFiniteError(f"step {step}: non-finite {what}{shown}{place}; no weight was changed by this step",
                          step=step)


def is_norm_layer(module: nn.Module) -> bool:
    return isinstance(module, NORM_LAYERS)


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Within the block, BatchNorm layers in train mode normalise with the batch statistics but do not
    update ``running_mean``/``running_var``/``num_batches_tracked``.

    SAM-style second passes run at perturbed weights; letting them update the running statistics would
    make the evaluation-mode network depend on the perturbation (Foret et al. 2021; davda54/sam's
    README). Setting ``track_running_stats`` off is what ``BatchNorm.forward`` checks, so this costs
    nothing.
    """
    frozen = [m for m in model.modules()
              if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    for m in frozen:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in frozen:
            m.track_running_stats = True


def _unique(params: Iterable[tuple[str, nn.Parameter]]) -> list[tuple[str, nn.Parameter]]:
    seen, out = set(), []
    for name, p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append((name, p))
    return out


def _module_params(model: nn.Module, *, weights_only: bool) -> list[tuple[str, nn.Parameter]]:
    found = []
    for mod_name, module in model.named_modules():
        if is_norm_layer(module):
            continue
        for p_name, p in module.named_parameters(recurse=False):
            if weights_only and not (p_name == "weight" and p.dim() > 1):
                continue
            found.append((f"{mod_name}.{p_name}" if mod_name else p_name, p))
    return _unique(found)


def weight_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the crossbar weights: the ``weight`` (dim > 1) of every layer that is not a
    normalisation layer. Biases and BatchNorm parameters are excluded (aihwkit keeps biases digital)."""
    return _module_params(model, weights_only=True)


def non_norm_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every trainable parameter outside normalisation layers (weights and biases)."""
    return _module_params(model, weights_only=False)


def adaptive_param_groups(model: nn.Module) -> list[dict]:
    """Two param groups for ASAM/SAMSON: the layer weights (``adaptive=True``, scaled by T_w) and
    everything else (biases, normalisation parameters: ``adaptive=False``, T = 1)."""
    weights = {id(p) for _, p in weight_parameters(model)}
    all_params = [p for _, p in _unique(model.named_parameters())]
    groups = [{"params": [p for p in all_params if id(p) in weights], "adaptive": True},
              {"params": [p for p in all_params if id(p) not in weights], "adaptive": False}]
    return [g for g in groups if g["params"]]


def global_grad_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """L2 norm over the gradients of all ``params`` (NaN/inf if any gradient is)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, 2.0)


def kl_div_logits(reference_logits: torch.Tensor, logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """KL(softmax(reference/τ) ‖ softmax(logits/τ)), summed over classes, averaged over the batch."""
    return F.kl_div(F.log_softmax(logits / tau, dim=-1), F.log_softmax(reference_logits / tau, dim=-1),
                    reduction="batchmean", log_target=True)
