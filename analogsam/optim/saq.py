"""SAQ: sharpness-aware quantization (Liu, Cai & Zhuang, arXiv 2111.12273; code ziplab/SAQ).

SAM's two passes with the perturbation taken in the space of the *quantized* weights:

    ε = ρ · g / ‖g‖₂,   g = (∇_{Q(w)} L, ∇_θ L)          (one L2 norm over everything perturbed)

    second pass at Q(w) + ε_Q and θ + ε_θ;  the base optimizer steps w and θ with that gradient.

ε_Q is added to Q(w) *after* quantization (``QuantizedLayer.saq_epsilon``): the latent weights w
do not move, so the perturbed weights sit off the quantization grid, and the second gradient reaches
w through the quantizer's straight-through estimator (paper, eq. 7-10; ziplab/SAQ ``utils/qsam.py``).
The other parameters θ are perturbed in place and restored bit-exactly, as in SAM.

Conventions, checked against ziplab/SAQ's ``QSAM`` (``utils/qsam.py``) and ``LIQ_wn_qsam.py``:

- which tensors are in g: the quantized weights Q(w) and the layers' biases always; normalisation
  parameters γ/β when ``norm_layers`` (reference ``include_bn=True``; it takes BatchNorm2d, we take
  every normalisation layer); the activation clips when ``activation_clips`` (reference
  ``include_aclip``: its class default is off, its training option on; we default on); the weight
  clips when ``weight_clips`` (reference ``include_wclip=False``, our default too: moving c_w moves
  the whole grid rather than the weights on it);
- a Linear/Conv layer left in full precision (first/last layers spared) has Q(w) = w, so its ε goes
  on w itself, as in SAM (the reference has no such layer: all its layers are quantized); any other
  trainable parameter is perturbed like a bias;
- ε = ρ·g/(‖g‖ + 1e-12), the reference's global norm and its 1e-12;
- BatchNorm running statistics: the reference updates them in both passes; here, as for every
  two-pass method of analogsam, the second pass leaves them alone (:func:`~analogsam.optim.frozen_batchnorm_stats`).
- defaults: ρ = 0.1 (the reference's w8a8 setting; its CIFAR-100 w4a4 runs use 0.4).

On a model without quantized layers Q is the identity and SAQ is SAM over the same tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.models.roles import is_norm_layer
from analogsam.quantization.liq import QuantizedLayer, quantized_layers
from analogsam.scoring import model_output
from analogsam.validation import check_real

from ._common import NonFiniteError, global_grad_norm
from .base import TrainingMethod, base_optimizer_class
from .hyperparameters import METHODS
from .two_pass import TwoPassOptimizer, two_pass_step

__all__ = ["SAQ", "SAQMethod", "quantized_sharpness"]

_SPEC = METHODS["saq"]


class SAQ(TwoPassOptimizer):
    """Sharpness-aware quantization around a base optimizer (davda54/sam's convention, plus the model).

    Args:
        model: the (quantized, :func:`analogsam.quantization.quantize_model`) network; SAQ needs its
            layers, not only its parameters, since ε of a quantized layer is added inside its forward.
        base_optimizer: a torch optimizer class (``torch.optim.SGD``, ``AdamW``, ...); it steps every
            trainable parameter of ``model``.
        rho: ρ, the radius of the perturbation (default 0.1).
        norm_layers, activation_clips, weight_clips: which of those parameters are perturbed (see the
            module docstring).
        **base_kwargs: the base optimizer's arguments (lr, momentum, ...).

    ``first_step()`` needs the gradients of a forward run with ``keep_quantized_grad`` on (set by
    this class at construction; :meth:`~.TwoPassOptimizer.step` with a closure does it all).
    """

    def __init__(
        self,
        model: nn.Module,
        base_optimizer,
        rho: float = _SPEC["rho"].default,
        *,
        norm_layers: bool = _SPEC["saq_norm_layers"].default,
        activation_clips: bool = _SPEC["saq_activation_clips"].default,
        weight_clips: bool = _SPEC["saq_weight_clips"].default,
        **base_kwargs,
    ):
        rho = _SPEC["rho"].check(rho, "SAQ")
        if not isinstance(model, nn.Module):
            raise InvalidParameterError(
                f"SAQ takes the model (it perturbs the quantized weights inside their layers), got {type(model).__name__}"
            )
        params = [p for p in model.parameters() if p.requires_grad]
        super().__init__(params, {"rho": rho})
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.model, self.rho = model, rho
        self.layers = [m for _, m in quantized_layers(model)]
        for layer in self.layers:
            layer.keep_quantized_grad = True
        self.in_place = self._in_place_parameters(norm_layers, activation_clips, weight_clips)
        self.step_count = 0
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _in_place_parameters(self, norm_layers, activation_clips, weight_clips) -> list[torch.Tensor]:
        """The parameters perturbed in place: all but the latent quantized weights and the excluded ones."""
        skip = set()
        for module in self.model.modules():
            if isinstance(module, QuantizedLayer):
                skip.add(id(module.weight))
                if not activation_clips:
                    skip.add(id(module.activation_clip))
                if not weight_clips:
                    skip.add(id(module.weight_clip))
            elif is_norm_layer(module) and not norm_layers:
                skip.update(id(p) for p in module.parameters(recurse=False))
        return [p for p in self.model.parameters() if p.requires_grad and id(p) not in skip]

    @torch.no_grad()
    def perturbation(self) -> tuple[dict[QuantizedLayer, torch.Tensor], dict[torch.Tensor, torch.Tensor]]:
        """(ε of each quantized layer's Q(w), ε of each in-place parameter) from the current gradients."""
        quantized = {}
        for layer in self.layers:
            q = layer.quantized_weight
            if q is None or q.grad is None:
                raise RuntimeError(
                    "SAQ.first_step() needs the gradient of Q(w): run forward and backward in train mode first"
                )
            quantized[layer] = q.grad
        others = {p: p.grad for p in self.in_place if p.grad is not None}
        grads = list(quantized.values()) + list(others.values())
        if not grads:
            raise RuntimeError("SAQ.first_step() needs gradients: call loss.backward() first")
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if not torch.isfinite(norm):
            raise NonFiniteError(
                f"step {self.step_count + 1}: non-finite gradient (first pass of SAQ); no weight was changed "
                "by this step",
                step=self.step_count + 1,
            )
        scale = self.rho / (norm + 1e-12)
        return {m: g * scale for m, g in quantized.items()}, {p: g * scale for p, g in others.items()}

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """Set ε on every Q(w) and move the other parameters to θ + ε (θ remembered)."""
        quantized, others = self.perturbation()
        for layer, eps in quantized.items():
            layer.saq_epsilon = eps
            layer.quantized_weight = None
        self._saved = [(p, p.detach().clone()) for p in others]
        for p, eps in others.items():
            p.add_(eps)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        """Take every ε away: Q(w) unperturbed, θ back bit-exactly (a no-op when restored already)."""
        for layer in self.layers:
            layer.saq_epsilon = None
            layer.quantized_weight = None  # (a graph tensor: kept, it would stop deepcopy and pin memory)
        for p, old in self._saved:
            p.copy_(old)
        self._saved = []

    @torch.no_grad()
    def second_step(self, zero_grad: bool = True) -> None:
        """Restore, then let the base optimizer step with the gradient taken at the perturbed point."""
        finite = bool(torch.isfinite(global_grad_norm(self.model.parameters())))
        self.restore()
        if not finite:
            raise NonFiniteError(
                f"step {self.step_count + 1}: non-finite gradient (second pass of SAQ, at Q(w) + ε); "
                "weights restored, no update made",
                step=self.step_count + 1,
            )
        self.base_optimizer.step()
        self.step_count += 1
        if zero_grad:
            self.zero_grad()

    def _has_gradient(self) -> bool:
        return any(p.grad is not None for p in self.model.parameters())


class SAQMethod(TrainingMethod):
    """``saq``: :class:`SAQ` in the training loop; the second pass with BatchNorm statistics frozen.

    With a penalised loss (``train(activation_l1=λ)``) the first pass, which sets ε, takes the task
    loss alone and the second pass the task loss plus the penalty: the perturbation measures the
    task loss's sharpness, and the penalty acts like weight decay, in the descent. (Measured on
    LeNet-5 / Fashion-MNIST w8a8 with λ = 1e-5: with the penalty in the ascent too, SAQ at ρ = 0.1 and
    at 0.05 drove 95-97 % of the activations to zero and the network to chance within one epoch.)"""

    def _make_optimizer(self, base, lr, momentum, weight_decay):
        cls, base_kwargs = base_optimizer_class(base)
        h = self.hparams
        self.saq = SAQ(
            self.model,
            cls,
            rho=h["rho"],
            norm_layers=h["saq_norm_layers"],
            activation_clips=h["saq_activation_clips"],
            weight_clips=h["saq_weight_clips"],
            **base_kwargs(lr, momentum, weight_decay),
        )
        return self.saq.base_optimizer

    def _step(self, inputs, targets, indices):
        # The ascent is on the task loss: a regularizer added to it (the L1 activation penalty's
        # ``task_loss``) acts in the descent only, as weight decay does inside the base optimizer.
        ascent_loss = getattr(self.loss_fn, "task_loss", self.loss_fn)
        return two_pass_step(self, self.saq, inputs, targets, ascent_loss, "loss at Q(w) + ε")


# -- the sharpness SAQ minimises, as a measurement ------------------------------------------------------


def quantized_sharpness(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, rho: float = 0.1) -> dict:
    """``{"loss", "loss_perturbed", "sharpness"}`` (cross-entropy, mean over the samples) of ``model``
    at its quantized weights and at the SAQ perturbation of radius ``rho``: the loss rise in SAQ's ball.

    S = L(Q(w) + ε*, θ + ε*_θ) − L(Q(w), θ), ε* = ρ·g/‖g‖ with g the gradient over the quantized
    weights and the other parameters SAQ perturbs (:class:`analogsam.optim.saq.SAQ`'s choice, its
    defaults): the first-order worst case in an L2 ball of radius ρ (Foret et al., ICLR 2021, eq. 2 and
    its "m-sharpness" measurement; Liu et al., arXiv 2111.12273, eq. 6), taken where the faults act, on
    Q(w) rather than on the latent weights. Measured in eval mode (BatchNorm running statistics) on one
    batch of the given samples; the model is left exactly as it was.
    """
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
    loss = loss.detach()  # (a graph tensor: float() of it warns)
    return {"loss": float(loss), "loss_perturbed": float(perturbed), "sharpness": float(perturbed - loss)}
