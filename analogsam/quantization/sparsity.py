"""Activation sparsity: induce it with an L1 penalty on post-activation values, and measure it.

Kurtz et al., "Inducing and exploiting activation sparsity for fast inference on deep neural
networks" (ICML 2020) add λ·‖a‖₁ of the post-ReLU activations a to the loss; the memory-fault study
(Malhotra & Gupta, arXiv 2406.10528) compares such activation-sparse quantized networks with
standard ones. Here the penalty is Kurtz et al.'s λ·Σ_l ‖a_l‖₁ per sample, averaged over the batch,
over the outputs a_l of the model's ReLU modules (``nn.ReLU``, ``nn.ReLU6``): one λ for every layer
(Kurtz et al. also tune it per layer), so its useful size depends on the network's activation count. Sparsity is the fraction of exactly-zero activations, per ReLU module and
over all of them, on the data given (the test set, in eval mode).
"""

from __future__ import annotations

import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.scoring import model_output

__all__ = ["ACTIVATIONS", "has_activation_modules", "activation_modules", "ActivationL1", "activation_sparsity"]

#: The activation modules whose outputs are penalised and measured (they output exact zeros).
ACTIVATIONS = (nn.ReLU, nn.ReLU6)


def has_activation_modules(model: nn.Module) -> bool:
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
