"""Linear layers in disguise: transformers' ``Conv1D`` (GPT-2, GPT-J style projections) as ``nn.Linear``.

HuggingFace's ``transformers.pytorch_utils.Conv1D`` is a fully connected layer, ``y = x W + b``,
whose weight is stored transposed, ``(in_features, out_features)``, with the output width in its
``nf`` attribute (GPT-2's ``c_attn``, ``c_proj`` and ``c_fc``). It computes exactly what an
``nn.Linear`` with weight ``W.T`` computes, so it goes onto tiles as one: the rewrite hands aihwkit
(and therefore the fast engine) a plain ``nn.Linear``, and both backends map it like any other.

It is recognised by its class name and its structure (``nf``, a 2-D ``weight`` of
``(in, nf)``, an optional ``bias`` of ``nf``, no children), without importing transformers, and
the rewrite checks on a probe input that the layer really computes ``x W + b`` before replacing it:
a user's own class that happens to share the name is refused by name instead of being remapped.
"""

from __future__ import annotations

import torch
from torch import nn

from analogsam.errors import ConversionError
from analogsam.hardware.mapping.base import Rewrite


def _is_transposed_linear(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    own = {name for name, _ in module.named_parameters(recurse=False)}
    return (
        type(module).__name__ == "Conv1D"
        and not isinstance(module, nn.Conv1d)
        and isinstance(getattr(module, "nf", None), int)
        and isinstance(weight, nn.Parameter)
        and weight.dim() == 2
        and weight.shape[1] == module.nf
        and (bias is None or (isinstance(bias, nn.Parameter) and tuple(bias.shape) == (module.nf,)))
        and own <= {"weight", "bias"}
        and not module._modules
    )


def as_linear(module: nn.Module) -> nn.Linear:
    """The ``nn.Linear`` (weight ``W.T``, the same bias) computing what ``module`` (``y = x W + b``) does."""
    weight, bias = module.weight, module.bias
    linear = nn.Linear(
        weight.shape[0], weight.shape[1], bias=bias is not None, device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        linear.weight.requires_grad_(weight.requires_grad)
        if bias is not None:
            linear.bias.copy_(bias)
            linear.bias.requires_grad_(bias.requires_grad)
        # The name and the structure say Conv1D; the arithmetic must say so too.
        probe = torch.randn(3, weight.shape[0], generator=torch.Generator().manual_seed(0)).to(weight)
        expected, got = module(probe), linear(probe)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    if expected.shape != got.shape or not torch.allclose(expected, got, rtol=1e-4, atol=1e-5 * (1.0 + scale)):
        raise ConversionError(
            "has the structure of transformers' Conv1D (nf, weight of (in, nf)) but does not compute "
            "x @ weight + bias; replace it with nn.Linear, or pass allow_digital= its name to keep it digital"
        )
    linear.train(module.training)
    return linear


TRANSPOSED_LINEAR = Rewrite(
    name="transposed-linear",
    applies=_is_transposed_linear,
    rewrite=as_linear,
    description="a Linear layer with its weight stored transposed (transformers' Conv1D): on analog tiles "
    "exactly as nn.Linear",
)
