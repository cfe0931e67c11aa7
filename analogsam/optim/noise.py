"""Weight-noise baselines: noise injection (hardware-aware training) and random weight perturbation."""

from __future__ import annotations

import contextlib

import torch

from analogsam.robustness.perturbations import gaussian_weight_noise

from ._common import frozen_batchnorm_stats, weight_parameters
from .base import TrainingMethod


@torch.no_grad()
def injection_noise(w: torch.Tensor, additive: float, multiplicative: float) -> torch.Tensor:
    """Gaussian weight noise: σ_add · max|w| · N(0, 1) + σ_mul · |w| ⊙ N(0, 1), drawn as one Gaussian with
    the summed variance (the two are independent), from torch's global generator of ``w``'s device
    (:func:`analogsam.robustness.perturbations.gaussian_weight_noise`)."""
    return gaussian_weight_noise(w, additive=additive, relative=multiplicative)


@torch.no_grad()
def filter_wise_noise(p: torch.Tensor, gamma: float) -> torch.Tensor:
    """RWP's ε: for each filter (output row/channel) f, ε_f ~ N(0, (γ ‖W_f‖₂)²); a 1-d tensor is one filter."""
    if p.dim() > 1:
        std = torch.linalg.vector_norm(p.flatten(1), dim=1).mul_(gamma).view(-1, *([1] * (p.dim() - 1)))
    else:
        std = torch.linalg.vector_norm(p) * gamma
    return torch.randn_like(p).mul_(std)


class NoiseInjectionMethod(TrainingMethod):
    """``noise``: forward and backward at noisy weights, update of the clean ones (hardware-aware training,
    Rasch et al., Nature Communications 14:5282, 2023, arXiv 2302.08469, sec. "Hardware-aware training").

    Each step draws w̃ = w + σ_add · max|w| · N(0, 1) + σ_mul · |w| ⊙ N(0, 1) for every crossbar weight
    (:func:`analogsam.models.roles.crossbar_weights`; the max is over that tensor; biases stay clean, as
    aihwkit keeps them digital), computes loss and gradient at w̃, restores w and lets the base optimizer
    step with that gradient (the straight-through rule of aihwkit's weight modifiers).

    Defaults (unverified as paper values): ``noise_additive`` 0.0175, the ``forward.w_noise`` of aihwkit's
    ``StandardHWATrainingPreset`` (relative to the remapped w_max = 1); ``noise_multiplicative`` 0.0
    (Büchel et al. 2022 used multiplicative forward noise 0.3 as a baseline).

    The loss and logits returned are those of the noisy forward, the only forward this method makes (an
    extra clean forward would cost a third of a step).
    """

    def __init__(self, name, model, **kwargs):
        super().__init__(name, model, **kwargs)
        self.weights = [p for _, p in weight_parameters(model)]
        self._clean = [torch.empty_like(w) for w in self.weights]

    def _step(self, inputs, targets, indices):
        h = self.hparams
        self.optimizer.zero_grad(set_to_none=True)
        if h["noise_additive"] == 0 and h["noise_multiplicative"] == 0:
            logits = self._forward(inputs)
            loss = self._task_loss(logits, targets)
            self._backward_and_step(loss)
            return loss, logits
        with torch.no_grad():
            for w, clean in zip(self.weights, self._clean):
                clean.copy_(w)
                w.add_(injection_noise(w, h["noise_additive"], h["noise_multiplicative"]))
        try:
            logits = self._forward(inputs)
            loss = self._task_loss(logits, targets)
            self._check_loss(loss)
            loss.backward()
        finally:
            with torch.no_grad():
                for w, clean in zip(self.weights, self._clean):
                    w.copy_(clean)
        self._check_grads()
        self.optimizer.step()
        return loss, logits


class RWPMethod(TrainingMethod):
    """``rwp``: random weight perturbation (Li et al., arXiv 2211.11489, the mixed loss
    with filter-wise Gaussian perturbation).

        L = α · L(w + ε) + (1 − α) · L(w),     ε_f ~ N(0, (γ ‖W_f‖₂)²) per filter f

    Two forward/backward passes per step; the perturbed pass runs with BatchNorm running statistics
    frozen. Every trainable parameter is perturbed (1-d tensors such as biases and BatchNorm γ/β as one
    filter), as in the authors' code. Paper defaults: α = 0.5, γ = 0.01.
    """

    def __init__(self, name, model, **kwargs):
        super().__init__(name, model, **kwargs)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._clean = [torch.empty_like(p) for p in self.params]

    def _step(self, inputs, targets, indices):
        h = self.hparams
        alpha = h["rwp_alpha"]
        self.optimizer.zero_grad(set_to_none=True)
        # Data-parallel: the clean pass's gradient waits on the replica and is averaged together with the
        # perturbed pass's (one all-reduce of their sum); without a perturbed pass it is averaged now.
        with self._local_gradients() if alpha > 0 else contextlib.nullcontext():
            logits = self._forward(inputs)
            loss = self._task_loss(logits, targets)
            self._check_loss(loss)
            (loss * (1.0 - alpha)).backward()
        if alpha > 0:
            with torch.no_grad():
                for p, clean in zip(self.params, self._clean):
                    clean.copy_(p)
                    p.add_(filter_wise_noise(p, h["rwp_gamma"]))
            try:
                with frozen_batchnorm_stats(self.model):
                    loss_perturbed = self._task_loss(self._forward(inputs), targets)
                self._check_loss(loss_perturbed, "loss at w + ε")
                (loss_perturbed * alpha).backward()
            finally:
                with torch.no_grad():
                    for p, clean in zip(self.params, self._clean):
                        p.copy_(clean)
        self._check_grads()
        self.optimizer.step()
        return loss, logits
