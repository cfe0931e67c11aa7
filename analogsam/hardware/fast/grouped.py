"""A grouped (depthwise) convolution's tiles in one compiled pass (:mod:`.grouped_kernels`).

:class:`~analogsam.hardware.mapping.grouped.GroupedConv` puts each group of a grouped convolution on
its own tiles, one ungrouped convolution per group; the engine's copy of it holds one
:class:`.layers.FastConv2d` per group and runs them one after the other. For a depthwise layer each
of these is a tile of a few inputs, and per-call costs dominate. :class:`FastGroupedConv` runs the
whole layer through :func:`.grouped_kernels.grouped_conv` instead when that computes exactly what
the tile-by-tile path computes:

- every group is one tile (no split along rows or columns), read through the strided patches
  (no analog bias), with the same IO settings, and those settings are the ones the fused DAC and
  ADC kernels of :class:`.tile.Tile` cover, without input noise, asymmetries, IR drop or
  output-referred weight noise, and without an input range;
- no patch saturates the ADC so that bound management would rerun it (if one does, the layer runs
  tile by tile).

The tiles of such a layer compute their products as a chain of fused multiply-adds over the patch
elements in their order, in the kernel and, when the layer runs tile by tile, in
:class:`.products.Weights` (``chain=True``) instead of the BLAS, whose summation order depends on the
CPU it picks its kernels for. The kernel generates each tile's output noise at the addresses the
tile-by-tile path gives it (:mod:`~analogsam.hardware.fast.noise`: the tile, the layer call, the image's index and the
output's). So the two paths give the same numbers bit for bit on every machine
(``tests/test_fast_grouped.py``). Any other case runs the tile-by-tile path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from analogsam.hardware.fast import noise as rng
from analogsam.hardware.fast.context import ForwardContext
from analogsam.hardware.fast.layers import FastConv2d
from analogsam.hardware.fast.patches import conv_out_hw
from analogsam.hardware.fast.tile import Tile
from analogsam.hardware.mapping.grouped import GroupedConv

__all__ = ["FastGroupedConv", "fused_grouped"]


def _kernels():
    from analogsam.hardware.fast import grouped_kernels

    return grouped_kernels


def _single_tile(conv) -> Tile | None:
    """The one tile of a :class:`.layers.FastConv2d` that reads strided patches, or None."""
    if not isinstance(conv, FastConv2d):
        return None
    ex = conv.exec
    if not ex.strided or ex.bias is not None or len(ex.rows) != 1 or len(ex.rows[0][2]) != 1:
        return None
    return ex.rows[0][2][0]


def _fusable_spec(tile: Tile) -> bool:
    spec = tile.spec
    return (
        tile.fused_dac
        and tile.fused_adc
        and not tile.analog_bias
        and spec.inp_noise == 0
        and spec.inp_asymmetry == 0
        and spec.out_asymmetry == 0
        and spec.ir_drop == 0
        and spec.w_noise == 0
    )


class FastGroupedConv(nn.Module):
    """The engine's copy of a :class:`GroupedConv` (``grouped``, its groups already
    :class:`.layers.FastConv2d`), run in one kernel pass where that is exact (see the module
    docstring), else group by group as ``grouped`` does."""

    def __init__(self, context: ForwardContext, grouped: nn.Module):
        super().__init__()
        self.context = context
        self.grouped = grouped
        convs = list(grouped.convs)
        tiles = [_single_tile(c) for c in convs]
        same = all(t is not None for t in tiles) and len({(c.exec.geometry, c.one_d) for c in convs}) == 1
        self.tiles = (
            tiles if same and all(_fusable_spec(t) for t in tiles) and len({t.spec for t in tiles}) == 1 else None
        )
        if self.tiles is not None:
            for t in self.tiles:  # the kernel's products, also tile by tile (module docstring)
                t.chain_products = True
            self.geometry = convs[0].exec.geometry
            self.one_d = convs[0].one_d
            self.out_per_group = tiles[0].out_size
        self._weights_of = None
        self._stacked = None

    def forward(self, x: Tensor) -> Tensor:
        spatial = 1 if self.tiles is not None and self.one_d else 2
        # A batched stacked pass (many states, evaluate(repeats_per_pass=P)) runs the groups tile by
        # tile, each block with its own state's weights and noise; the kernel holds one state.
        stack = self.context.stack
        if stack is not None and not stack.batched:
            stack.first_outputs(self, x, False, list)  # an analog layer of this state's run
        batched = stack is not None and stack.batched
        if batched or self.tiles is None or x.dim() != spatial + 2 or not self._ready():
            return self.grouped(x)
        out = self._fused(x.unsqueeze(-2) if self.one_d else x)
        if out is None:
            return self.grouped(x)
        return out.squeeze(-2) if self.one_d else out

    def _ready(self) -> bool:
        """Whether the tiles' current state (after the last sync) suits the kernel (a CPU one: on a
        GPU the groups run tile by tile in torch operations)."""
        return self.context.device.type == "cpu" and all(
            t.post is not None and t.input_range is None for t in self.tiles
        )

    def _state(self):
        """The tiles' weights (groups, n, K) and periphery (groups, n) x 4, stacked once per sync."""
        current = [(t.weights, t.post) for t in self.tiles]
        if self._weights_of is None or any(
            a is not c[0] or b is not c[1] for (a, b), c in zip(self._weights_of, current)
        ):
            w = np.ascontiguousarray(np.stack([t.weights.w.numpy() for t in self.tiles]))
            post = tuple(np.ascontiguousarray(np.stack([t.post[i] for t in self.tiles])) for i in range(4))
            self._stacked = (w, post)
            self._weights_of = current
        return self._stacked

    def _fused(self, x: Tensor) -> Tensor | None:
        """(b, C, h, w) -> (b, groups * n, oh, ow) through the kernel, or None where the
        tile-by-tile path must run (no layer call counted then)."""
        tile = self.tiles[0]
        spec = tile.spec
        (kh, kw), (dh, dw), (ph, pw), (sh, sw) = self.geometry
        groups, n = len(self.tiles), self.out_per_group
        b, _, h, w = x.shape
        oh, ow = conv_out_hw(h, w, self.geometry)
        length = oh * ow
        weights, (post, alpha, osc, bias) = self._state()
        source = self.context.noise
        execs = [conv.exec for conv in self.grouped.convs]  # each group's layer call, as tile by tile
        if spec.out_noise > 0:
            keys = np.array(
                [source.stream(t.index, source.peek(ex), 0).site(rng.OUTPUT_NOISE) for t, ex in zip(self.tiles, execs)],
                dtype=np.uint64,
            )
        else:
            keys = np.empty(0, np.uint64)
        img = x.to(torch.float32).contiguous()
        out = torch.empty(b, groups * n, length, dtype=torch.float32)
        thres, res, bound = tile.dac_scalars
        sigma, ores, obound, test_negative, out_scale = tile.adc_scalars
        saturated = _kernels().grouped_conv(
            img.numpy(),
            groups,
            kh,
            kw,
            dh,
            dw,
            ph,
            pw,
            sh,
            sw,
            spec.nm == "max",
            thres,
            res,
            bound,
            weights,
            rng.table(),
            keys,
            source.samples,
            sigma,
            ores,
            obound,
            test_negative,
            out_scale,
            post,
            alpha,
            osc,
            bias,
            out.numpy(),
        )
        if saturated and len(tile.reductions) > 1:
            return None  # bound management reruns patches: the tile-by-tile path
        for ex in execs:
            source.call(ex)
        return out.view(b, groups * n, oh, ow)


def fused_grouped(context: ForwardContext, module: nn.Module) -> nn.Module:
    """``module`` (a shadow copy made by the engine), as a :class:`FastGroupedConv` if it is a
    :class:`GroupedConv`, else as it is."""
    return FastGroupedConv(context, module) if isinstance(module, GroupedConv) else module
