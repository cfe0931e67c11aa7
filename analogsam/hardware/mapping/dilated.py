"""Dilated 1-D convolutions: the kernel on one tile, the inputs gathered with the dilation.

A ``Conv1d`` with ``dilation = d > 1`` (TCNs, WaveNet-style and keyword-spotting networks) reads
its ``k`` taps ``d`` samples apart: each output is still one matrix-vector product of the
``C_out x (C_in * k)`` kernel matrix with a gathered patch of ``C_in * k`` inputs, so the tile holds
the same weights as for an undilated convolution; only the gathering of the patch differs.
aihwkit 1.1's ``AnalogConv1d`` refuses any dilation ("Only dilation = 1 is supported"), while its
``AnalogConv2d`` gathers patches with any dilation (``torch.nn.functional.unfold``) and the fast
engine replays it. :class:`DilatedConv1d` therefore holds the kernel as a ``Conv2d`` of height 1,
``(C_out, C_in, 1, k)`` with dilation ``(1, d)``, and runs the signal as an image of height 1:
the same tile (``C_in * k`` rows, ``C_out`` columns), the same patches, the same sums, on both
backends. (``Conv3d`` with a dilation stays refused by name: aihwkit's AnalogConv3d refuses it and
the fast engine does not replay 3-D convolutions.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from analogsam.hardware.mapping.base import Rewrite
from analogsam.hardware.mapping.padding import check_padding_mode, explicit_padding


class DilatedConv1d(nn.Module):
    """A ``Conv1d`` (groups 1) as ``conv``, a ``Conv2d`` of kernel ``(1, k)`` and dilation ``(1, d)``
    over the signal seen as an image of height 1."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        (padding,) = explicit_padding(conv)
        self.conv = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            (1, conv.kernel_size[0]),
            stride=(1, conv.stride[0]),
            padding=(0, padding),
            dilation=(1, conv.dilation[0]),
            bias=conv.bias is not None,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight.unsqueeze(2))
            self.conv.weight.requires_grad_(conv.weight.requires_grad)
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)
                self.conv.bias.requires_grad_(conv.bias.requires_grad)
        self.train(conv.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x.unsqueeze(-2)).squeeze(-2)  # (N, C, L) -> (N, C, 1, L) -> (N, C_out, L_out)

    def extra_repr(self) -> str:
        c = self.conv
        return f"{c.in_channels}, {c.out_channels}, kernel_size={c.kernel_size[1]}, dilation={c.dilation[1]}"


def is_dilated_conv1d(module: nn.Module) -> bool:
    # exact type, as aihwkit's conversion map (a subclass may have its own forward)
    return type(module) is nn.Conv1d and module.groups == 1 and tuple(module.dilation) != (1,)


def _rewrite(conv: nn.Conv1d) -> DilatedConv1d:
    check_padding_mode(conv)
    return DilatedConv1d(conv)


DILATED_CONV1D = Rewrite(
    name="dilated-conv1d",
    applies=is_dilated_conv1d,
    rewrite=_rewrite,
    description="dilated Conv1d: the kernel on one analog tile as for an undilated convolution (a Conv2d of "
    "height 1), the inputs gathered with the dilation",
)
