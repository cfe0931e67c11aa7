"""Convolutions with ``padding='same'`` or ``'valid'``: the same convolution with the padding as numbers.

torch accepts ``padding='same'`` / ``'valid'`` on ``Conv1d/2d/3d``; aihwkit's analog convolutions
copy the string and pass it on to ``unfold`` / ``pad``, which fail at the first forward, and the fast
engine reads the padding as numbers. Both strings stand for explicit zeros (``'valid'``: none;
``'same'``: ``dilation * (kernel - 1) / 2`` on each side, when that is whole), so the layer is
replaced by the same convolution with those numbers. ``'same'`` with an even
``dilation * (kernel - 1)`` pads one side more, which no analog convolution does: refused by name.
"""

from __future__ import annotations

import torch
from torch import nn

from analogsam.errors import ConversionError
from analogsam.hardware.mapping.base import Rewrite

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _has_named_padding(module: nn.Module) -> bool:
    # exact types, as aihwkit's conversion map; grouped convolutions have their own rewrite
    return type(module) in _CONVS and module.groups == 1 and isinstance(module.padding, str)


def describe_conv(conv: nn.Module) -> str:
    """How a refusal names a convolution: its type and settings (``grouped`` where it has groups)."""
    return f"{'grouped ' if conv.groups > 1 else ''}{type(conv).__name__}({conv.extra_repr()})"


def explicit_padding(conv) -> tuple[int, ...]:
    """The layer's padding as numbers per spatial dimension (``'valid'``: none; ``'same'``: the
    symmetric padding torch applies, which exists when every ``dilation * (kernel - 1)`` is even)."""
    if not isinstance(conv.padding, str):
        return tuple(conv.padding)
    if conv.padding == "valid":
        return (0,) * len(conv.kernel_size)
    totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
    if any(t % 2 for t in totals):
        raise ConversionError(
            f"{describe_conv(conv)}: padding='same' with an even kernel pads one side more, which aihwkit's "
            "analog convolutions cannot; use an odd kernel or explicit padding= numbers"
        )
    return tuple(t // 2 for t in totals)


def check_padding_mode(conv) -> None:
    """Refuse a convolution that pads other than with zeros, by name (aihwkit's convolutions cannot)."""
    if conv.padding_mode != "zeros":
        raise ConversionError(
            f"{describe_conv(conv)}: padding_mode={conv.padding_mode!r} cannot go onto analog tiles (aihwkit's "
            "convolutions pad with zeros only); use padding_mode='zeros', or pad digitally before the layer"
        )


def with_explicit_padding(conv):
    """A copy of ``conv`` whose padding is the numbers its ``'same'``/``'valid'`` stands for."""
    check_padding_mode(conv)
    padded = type(conv)(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=explicit_padding(conv),
        dilation=conv.dilation,
        bias=conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        padded.weight.copy_(conv.weight)
        padded.weight.requires_grad_(conv.weight.requires_grad)
        if conv.bias is not None:
            padded.bias.copy_(conv.bias)
            padded.bias.requires_grad_(conv.bias.requires_grad)
    padded.train(conv.training)
    return padded


NAMED_PADDING = Rewrite(
    name="named-padding",
    applies=_has_named_padding,
    rewrite=with_explicit_padding,
    description="padding='same'/'valid' written as the explicit zeros it stands for: analog tiles as any convolution",
)
