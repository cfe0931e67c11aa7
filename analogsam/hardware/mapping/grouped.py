"""Grouped and depthwise convolutions: one ungrouped convolution, on its own tiles, per group.

A convolution with ``groups = g`` splits its ``C_in`` input channels into ``g`` consecutive groups
of ``C_in / g`` and gives each its own ``C_out / g`` output channels (a depthwise convolution:
``g = C_in``). Its weight tensor ``(C_out, C_in / g, *kernel)`` is ``g`` independent matrices of
``C_out / g`` rows and ``(C_in / g) * prod(kernel)`` columns. aihwkit 1.1 refuses such a layer
("Only one group is supported"); a block-diagonal tile holding all groups would compute the same
function but program ``g`` times as many cells, most of them zeros that still read noise and
drift, which is not what an accelerator does. :class:`GroupedConv` instead holds one ungrouped
``Conv1d/2d/3d`` per group, with that group's weights and bias: aihwkit then gives every group its
own tiles (split along rows and columns by the preset's tile size, as any convolution), and the
digital periphery splits the input channels and concatenates the outputs, which moves data but
computes nothing.

The rewritten layer equals the original (to float rounding: each output sums the same products)
for any stride, padding, dilation and bias; a dilated 1-D group is a
:class:`~analogsam.hardware.mapping.dilated.DilatedConv1d` (aihwkit's AnalogConv1d has no dilation).
Padding modes other than zeros are refused by name since aihwkit's analog convolutions pad with zeros.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from analogsam.errors import ConversionError
from analogsam.hardware.mapping.base import Rewrite
from analogsam.hardware.mapping.dilated import DilatedConv1d, is_dilated_conv1d
from analogsam.hardware.mapping.padding import check_padding_mode, describe_conv, explicit_padding

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class GroupedConv(nn.Module):
    """A grouped ``Conv1d/2d/3d`` as one ungrouped convolution per group (``convs[i]`` sees input
    channels ``i * C_in/g ... (i + 1) * C_in/g - 1`` and gives output channels
    ``i * C_out/g ... (i + 1) * C_out/g - 1``), outputs concatenated along the channels."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d | nn.Conv3d):
        super().__init__()
        groups = conv.groups
        self.groups = groups
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.spatial_dims = len(conv.kernel_size)
        self.in_per_group = conv.in_channels // groups
        out_per_group = conv.out_channels // groups
        padding = explicit_padding(conv)
        with torch.no_grad():
            convs = []
            biases = conv.bias.split(out_per_group) if conv.bias is not None else [None] * groups
            for w, b in zip(conv.weight.split(out_per_group), biases):
                child = type(conv)(
                    self.in_per_group,
                    out_per_group,
                    conv.kernel_size,
                    stride=conv.stride,
                    padding=padding,
                    dilation=conv.dilation,
                    groups=1,
                    bias=b is not None,
                    padding_mode="zeros",
                    device=conv.weight.device,
                    dtype=conv.weight.dtype,
                )
                child.weight.copy_(w)
                child.weight.requires_grad_(conv.weight.requires_grad)
                if b is not None:
                    child.bias.copy_(b)
                    child.bias.requires_grad_(conv.bias.requires_grad)
                convs.append(DilatedConv1d(child) if is_dilated_conv1d(child) else child)
        self.convs = nn.ModuleList(convs)
        self.train(conv.training)

    def forward(self, x: Tensor) -> Tensor:
        channel_dim = x.dim() - self.spatial_dims - 1  # 0 for an unbatched input
        parts = torch.split(x, self.in_per_group, dim=channel_dim)
        return torch.cat([conv(part) for conv, part in zip(self.convs, parts)], dim=channel_dim)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, groups={self.groups}"


def _is_grouped_conv(module: nn.Module) -> bool:
    # exact types, as aihwkit's conversion map (a subclass may have its own forward)
    return type(module) in _CONVS and module.groups > 1


def _rewrite(conv) -> GroupedConv:
    check_padding_mode(conv)
    if isinstance(conv, nn.Conv3d) and tuple(conv.dilation) != (1, 1, 1):
        raise ConversionError(
            f"{describe_conv(conv)}: dilation={tuple(conv.dilation)} cannot go onto analog tiles (aihwkit's "
            "AnalogConv3d supports dilation 1 only); use dilation=1"
        )
    return GroupedConv(conv)


GROUPED_CONV = Rewrite(
    name="grouped-conv",
    applies=_is_grouped_conv,
    rewrite=_rewrite,
    description="grouped convolution: each group's weights on its own analog tiles; splitting the input "
    "channels and concatenating the outputs digital",
)
