"""Sharpness of a quantized network around its quantized weights: the loss rise in SAQ's ball.

S = L(Q(w) + ε*, θ + ε*_θ) − L(Q(w), θ), ε* = ρ·g/‖g‖ with g the gradient over the quantized
weights and the other parameters SAQ perturbs (:class:`analogsam.optim.saq.SAQ`'s choice, its
defaults): the first-order worst case in an L2 ball of radius ρ (Foret et al., ICLR 2021, eq. 2 and
its "m-sharpness" measurement; Liu et al., arXiv 2111.12273, eq. 6), taken where the faults act, on
Q(w) rather than on the latent weights. Measured in eval mode (BatchNorm running statistics) on one
batch of the given samples; the model is left exactly as it was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from analogsam.scoring import model_output
from analogsam.validation import check_real


def quantized_sharpness(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, rho: float = 0.1) -> dict:
    """``{"loss", "loss_perturbed", "sharpness"}`` (cross-entropy, mean over the samples) of ``model``
    at its quantized weights and at the SAQ perturbation of radius ``rho`` (see the module docstring)."""
    from analogsam.optim.saq import SAQ  # the optimizer layer sits above this one; its rule is the measure

    rho = check_real("rho", rho, 0.0, low_open=True)
    was_training = model.training
    model.eval()
    kept_grads = {p: p.grad for p in model.parameters()}
    probe = SAQ(model, torch.optim.SGD, rho=rho, lr=0.0)
    try:
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = F.cross_entropy(model_output(model(inputs)), targets)
            loss.backward()
        probe.first_step(zero_grad=True)
        with torch.no_grad():
            perturbed = F.cross_entropy(model_output(model(inputs)), targets)
    finally:
        probe.restore()
        for layer in probe.layers:
            layer.keep_quantized_grad = False
            layer.quantized_weight = None
        for p, g in kept_grads.items():
            p.grad = g
        model.train(was_training)
    return {"loss": float(loss), "loss_perturbed": float(perturbed), "sharpness": float(perturbed - loss)}
