"""Pieces every optimizer of the family shares: the non-finite error, BatchNorm freezing, gradient norms.

Which tensors are crossbar weights, normalisation parameters or neither is decided once, in
:mod:`analogsam.models.roles`; the optimizers use its :func:`~analogsam.models.roles.crossbar_weights` (as
``weight_parameters``), :func:`non_norm_parameters` and :func:`adaptive_param_groups`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from analogsam.errors import AnalogsamError
from analogsam.models.roles import (  # noqa: F401  (re-exported by analogsam.optim)
    adaptive_param_groups,
    non_norm_parameters,
)
from analogsam.models.roles import crossbar_weights as weight_parameters  # noqa: F401  (re-exported)


class NonFiniteError(AnalogsamError, FloatingPointError):
    """A loss or gradient was NaN or infinite; raised before any weight of that step is written.

    ``step`` is the 1-based number of the training step that failed.
    """

    def __init__(self, message: str, *, step: int | None = None):
        super().__init__(message)
        self.step = step


def non_finite(what: str, step: int, value: torch.Tensor | float | None = None, *, where: str = "") -> NonFiniteError:
    """The error for a non-finite ``what`` (e.g. "loss") at ``step``; the caller raises it."""
    shown = f" ({float(value)})" if value is not None else ""
    place = f" in {where}" if where else ""
    return NonFiniteError(
        f"step {step}: non-finite {what}{shown}{place}; no weight was changed by this step", step=step
    )


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Within the block, BatchNorm layers in train mode normalise with the batch statistics but do not
    update ``running_mean``/``running_var``/``num_batches_tracked``.

    SAM-style second passes run at perturbed weights; letting them update the running statistics would
    make the evaluation-mode network depend on the perturbation (Foret et al. 2021; davda54/sam's
    README). Setting ``track_running_stats`` off is what ``BatchNorm.forward`` checks, so this costs
    nothing.
    """
    frozen = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    for m in frozen:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in frozen:
            m.track_running_stats = True


def global_grad_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """L2 norm over the gradients of all ``params`` (NaN/inf if any gradient is)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, 2.0)


def kl_div_logits(reference_logits: torch.Tensor, logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """KL(softmax(reference/τ) ‖ softmax(logits/τ)), summed over classes (the last dimension),
    averaged over the batch, or over every token of a sequence model's (B, T, V) logits."""
    if logits.ndim > 2:  # one distribution per token: the tokens are the batch
        reference_logits, logits = reference_logits.reshape(-1, logits.shape[-1]), logits.reshape(-1, logits.shape[-1])
    return F.kl_div(
        F.log_softmax(logits / tau, dim=-1),
        F.log_softmax(reference_logits / tau, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
