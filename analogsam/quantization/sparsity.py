"""Activation sparsity: induce it with an L1 penalty on post-activation values or a thresholded ReLU,
and measure it.

Kurtz et al., "Inducing and exploiting activation sparsity for fast inference on deep neural
networks" (ICML 2020) add λ·‖a‖₁ of the post-ReLU activations a to the loss; the memory-fault study
(Malhotra & Gupta, arXiv 2406.10528) compares such activation-sparse quantized networks with
standard ones. Here the penalty is Kurtz et al.'s λ·Σ_l ‖a_l‖₁ per sample, averaged over the batch,
over the outputs a_l of the model's ReLU modules (``nn.ReLU``, ``nn.ReLU6``): one λ for every layer
(Kurtz et al. also tune it per layer), so its useful size depends on the network's activation count. Kurtz et al.'s other tool, the
forced-activation-threshold ReLU (FATReLU: a = x where x > θ, else 0), is :class:`ThresholdReLU`
(:func:`apply_activation_threshold` swaps it in for every ``nn.ReLU``): it changes the forward only,
so it composes with every optimizer (the L1 penalty under a two-pass method collapsed quantized
LeNet-5 trained from scratch; from a trained full-precision start it does not, see :mod:`.liq`). Applied from scratch it is no help on LeNet-5 / Fashion-MNIST
(measured, w4a4, SGD, 2 epochs): θ = 0.1 gave 61 % accuracy and *less* sparsity (52 % against 54 %),
θ = 0.3 left whole layers off at initialisation; Kurtz et al. use it on trained networks. Sparsity is the fraction of exactly-zero activations, per ReLU module and
over all of them, on the data given (the test set, in eval mode).
"""

from __future__ import annotations

import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.scoring import model_output
from analogsam.validation import check_real

__all__ = [
    "ThresholdReLU",
    "apply_activation_threshold",
    "ACTIVATIONS",
    "has_activation_modules",
    "activation_modules",
    "ActivationL1",
    "activation_sparsity",
]

#: The activation modules whose outputs are penalised and measured (they output exact zeros).
ACTIVATIONS = (nn.ReLU, nn.ReLU6)


class ThresholdReLU(nn.ReLU):
    """FATReLU (Kurtz et al., ICML 2020): x where x > θ, else 0; the gradient is 1 above θ, 0 below."""

    threshold: float = 0.0

    def forward(self, x):
        return torch.where(x > self.threshold, x, torch.zeros_like(x))

    def extra_repr(self) -> str:
        return f"threshold={self.threshold:g}"


def apply_activation_threshold(model: nn.Module, threshold: float) -> nn.Module:
    """Make every ``nn.ReLU`` of ``model`` a :class:`ThresholdReLU` with ``threshold`` θ, in place."""
    threshold = check_real("activation_threshold", threshold, 0.0)
    found = [m for m in model.modules() if type(m) in (nn.ReLU, ThresholdReLU)]  # (a start's FATReLUs re-set)
    if not found:
        raise InvalidParameterError(
            f"activation_threshold: {type(model).__name__} has no nn.ReLU module to threshold (F.relu calls "
            "cannot be replaced); use a model with ReLU modules (mlp, lenet5, vgg8) or leave it at 0"
        )
    for module in found:
        module.__class__ = ThresholdReLU
        module.threshold = float(threshold)
    return model


def has_activation_modules(model: nn.Module) -> bool:
    """Whether ``model`` has activation modules (``ACTIVATIONS``), the layers whose outputs are measured."""
    return any(isinstance(m, ACTIVATIONS) for m in model.modules())


def activation_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ReLU modules of ``model`` by name; an error when it has none (a functional ``F.relu`` is
    invisible to hooks)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, ACTIVATIONS)]
    if not found:
        raise InvalidParameterError(
            f"activation sparsity: {type(model).__name__} has no nn.ReLU/nn.ReLU6 module to penalise or measure "
            "(F.relu calls cannot be hooked); use a model with ReLU modules (mlp, lenet5, vgg) or leave "
            "activation_l1 at 0"
        )
    return found


class ActivationL1:
    """λ·Σ_l ‖a_l‖₁ (per sample, mean over the batch) of the ReLU outputs of the latest training forward of ``model``.

    Forward hooks keep the outputs of every forward run with gradients in train mode; :meth:`wrap`
    turns a task loss ``loss_fn(prediction, targets)`` into ``loss_fn(...) + penalty`` of the forward
    that produced the prediction (every method computes a loss right after its forward, so a
    two-pass method penalises each pass's own activations)."""

    def __init__(self, model: nn.Module, strength: float):
        self.strength = float(strength)
        self._latest: dict[str, torch.Tensor] = {}
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in activation_modules(model)]

    def _hook(self, name):
        def keep(module, inputs, output):
            if module.training and torch.is_grad_enabled():
                self._latest[name] = output

        return keep

    def penalty(self) -> torch.Tensor:
        if not self._latest:
            raise RuntimeError("ActivationL1.penalty(): no training forward since the last penalty")
        total = sum(a.abs().sum() / len(a) for a in self._latest.values())
        self._latest = {}
        return self.strength * total

    def wrap(self, loss_fn):
        """``loss_fn`` plus the penalty; the result's ``task_loss`` attribute is ``loss_fn`` alone, for
        a sharpness-aware ascent that measures the task loss only (:class:`analogsam.optim.saq.SAQMethod`)."""

        def penalised(prediction, targets):
            return loss_fn(prediction, targets) + self.penalty()

        penalised.task_loss = loss_fn
        return penalised

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@torch.no_grad()
def activation_sparsity(model: nn.Module, batches, device: str | torch.device = "cpu") -> dict:
    """Fraction of zero ReLU outputs of ``model`` (eval mode) over ``(inputs, targets)`` batches:
    ``{"overall": f, "layers": {name: f}}``, overall counting every activation element alike."""
    zeros, counts = {}, {}

    def counter(name):
        def count(module, inputs, output):
            zeros[name] = zeros.get(name, 0) + int((output == 0).sum())
            counts[name] = counts.get(name, 0) + output.numel()

        return count

    was_training = model.training
    model.eval()
    handles = [m.register_forward_hook(counter(n)) for n, m in activation_modules(model)]
    try:
        for batch in batches:
            model_output(model(batch[0].to(device)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    layers = {n: zeros[n] / counts[n] for n in counts}
    overall = sum(zeros.values()) / max(sum(counts.values()), 1)
    return {"overall": overall, "layers": layers}
