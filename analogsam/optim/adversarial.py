"""Adversarial parameter regularisation (Büchel, Faber, Muir, ICLR 2022, arXiv 2106.05009).

    L = CE(f(x, Θ̃), y) + β · KL(softmax f(x, Θ) ‖ softmax f(x, Θ*))
    Θ̃  = Θ + stopgrad(ζ_fwd · |Θ| ⊙ N(0, 1))                           (optional forward noise)
    Θ*₀ = Θ + ζ_init · |Θ| ⊙ N(0, 1);  Θ*ₜ₊₁ = Π(Θ*ₜ + α ⊙ sign ∇_Θ* KL);  α = ζ_attack · |Θ| / N

Θ* is found by N steps of projected sign-gradient ascent on the KL term; the projection Π keeps it inside
the relative mismatch box Θ ± ζ_attack · |Θ| (the paper's PGA attack). We keep Θ* as Θ + |Θ| ⊙ c
with a coefficient tensor c clipped to [−ζ_attack, ζ_attack], which makes both the projection and the gradient through
the attack exact and cheap: dΘ*/dΘ = 1 + sign(Θ) ⊙ c, the diagonal Jacobian of the authors' PyTorch
version (sign has zero derivative, so it is the whole Jacobian).

``attack_gradient``:

- ``"through"`` (paper): the KL gradient reaches Θ both through f(x, Θ) and through Θ*(Θ);
- ``"constant"``: Θ* is a constant: the KL gradient reaches Θ only through f(x, Θ), and the final Θ*
  forward runs without a graph (saves one backward per step).

Attacked parameters: every parameter outside normalisation layers, weights and biases, as in rockpool's
``pga_attack`` (which attacks the whole parameter tree); BatchNorm/LayerNorm/GroupNorm parameters are
excluded, as the paper does. Zero parameters stay zero (the box is relative).

Paper defaults (the defaults here): β = 0.25, ζ_attack = 0.1, N = 10 steps, ζ_init = 0.001, ζ_fwd = 0
(forward noise off). The ResNet-32 follow-up used N = 3. Cost per step: 1 + N + 1 forward/backward
passes (``through``), one backward fewer with ``constant``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from analogsam.scoring import model_output
from analogsam.validation import check_int

from ._common import frozen_batchnorm_stats, kl_div_logits, non_norm_parameters
from .base import TrainingMethod
from .hyperparameters import METHODS

ATTACK_GRADIENTS = METHODS["adversarial"]["attack_gradient"].choices


@dataclass
class AttackResult:
    """Θ* = Θ + |Θ| ⊙ coefficients[name]; ``kl`` holds KL(f(Θ) ‖ f(Θ*ₜ)) at the iterates t = 0..N−1."""

    coefficients: dict[str, torch.Tensor]
    kl_tensors: list[torch.Tensor] = field(default_factory=list)  # kept on device: no sync per step

    @property
    def kl(self) -> list[float]:
        return [float(k) for k in self.kl_tensors]

    def theta_star(self, params: dict[str, torch.Tensor], *, differentiable: bool = False) -> dict[str, torch.Tensor]:
        """Θ* as tensors; with ``differentiable`` the graph to Θ is kept (dΘ*/dΘ = 1 + sign(Θ) ⊙ c)."""
        out = {}
        for name, p in params.items():
            base = p if differentiable else p.detach()
            out[name] = torch.addcmul(base, base.abs(), self.coefficients[name])
        return out


def parameter_attack(
    model: nn.Module,
    inputs: torch.Tensor,
    reference_logits: torch.Tensor,
    params: dict[str, torch.Tensor],
    *,
    zeta_attack: float = 0.1,
    steps: int = 10,
    zeta_init: float = 0.001,
    generator: torch.Generator | None = None,
    output_fn=None,
) -> AttackResult:
    """Projected gradient ascent (Büchel et al. 2022; rockpool ``pga_attack``) on
    KL(softmax(reference) ‖ softmax f(x, Θ*)) over the named ``params`` of ``model``, within Θ ± ζ_attack · |Θ|.

    The model's own parameters are never written: Θ* enters through ``torch.func.functional_call``.
    BatchNorm layers in train mode use batch statistics without updating their running statistics.
    ``output_fn`` picks the prediction from the model's output (:func:`analogsam.scoring.model_output`);
    a sequence model's (B, T, V) logits get the KL over the class dimension, averaged over tokens.
    """
    steps = check_int("steps", steps, low=0)
    reference = reference_logits.detach()
    names = list(params)
    theta = [params[n].detach() for n in names]
    magnitude = torch._foreach_abs(theta)
    coeffs = []
    for p in theta:
        noise = (
            torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype)
            if generator is not None
            else torch.randn_like(p)
        )
        coeffs.append(noise.mul_(zeta_init).clamp_(-zeta_attack, zeta_attack))
    result = AttackResult(dict(zip(names, coeffs)))
    step_size = zeta_attack / steps if steps else 0.0
    # foreach ops: one kernel call per step for all tensors, which matters for small models.
    with torch.enable_grad(), frozen_batchnorm_stats(model):
        for _ in range(steps):
            star = [t.requires_grad_() for t in torch._foreach_addcmul(theta, magnitude, coeffs)]
            star_logits = model_output(functional_call(model, dict(zip(names, star)), (inputs,)), output_fn)
            kl = kl_div_logits(reference, star_logits)
            grads = torch.autograd.grad(kl, star, allow_unused=True, materialize_grads=True)
            result.kl_tensors.append(kl.detach())
            with torch.no_grad():
                torch._foreach_add_(coeffs, torch._foreach_sign(grads), alpha=step_size)
                torch._foreach_clamp_min_(coeffs, -zeta_attack)
                torch._foreach_clamp_max_(coeffs, zeta_attack)
    return result


class AdversarialMethod(TrainingMethod):
    """``adversarial``: task loss + β · KL to the outputs at the worst-case parameters in Θ ± ζ·|Θ|.

    Data-parallel training: each replica attacks with its own batch (the attack's passes run on the
    unwrapped model and average nothing); the gradient of the full loss is averaged over the replicas."""

    def __init__(self, name, model, **kwargs):
        super().__init__(name, model, **kwargs)
        self.attacked = dict(non_norm_parameters(model))

    def _step(self, inputs, targets, indices):
        h = self.hparams
        self.optimizer.zero_grad(set_to_none=True)
        # The clean pass, the only one that updates BatchNorm statistics; it needs a graph unless its only
        # use is logging (forward noise on, KL term off).
        with torch.set_grad_enabled(h["beta"] > 0 or h["zeta_forward"] == 0):
            logits = self._forward(inputs)
        clean_loss = self._task_loss(logits, targets)
        task_loss = clean_loss
        if h["zeta_forward"] > 0:
            noisy = {
                n: p + (p.detach().abs() * torch.randn_like(p)).mul_(h["zeta_forward"])
                for n, p in self.attacked.items()
            }
            with frozen_batchnorm_stats(self.model):
                task_loss = self._task_loss(self._forward(inputs, noisy), targets)
        loss = task_loss
        if h["beta"] > 0:
            self._check_loss(clean_loss)
            attack = parameter_attack(
                self.model,
                inputs,
                logits,
                self.attacked,
                zeta_attack=h["zeta_attack"],
                steps=h["attack_steps"],
                zeta_init=h["zeta_init"],
                output_fn=self.output_fn,
            )
            through = h["attack_gradient"] == "through"
            with frozen_batchnorm_stats(self.model), torch.set_grad_enabled(through):
                star_logits = self._forward(inputs, attack.theta_star(self.attacked, differentiable=through))
            loss = task_loss + h["beta"] * kl_div_logits(logits, star_logits)
        self._backward_and_step(loss)
        return clean_loss, logits
