"""The replacements of aihwkit's analog layers in the engine's copy of the network.

Each runs the layer's tiles (:class:`.tile.Tile`) the way the aihwkit layer does in eval mode:
``AnalogLinear`` through its tile module (one ``InferenceTile`` or a ``TileModuleArray`` split
along inputs and outputs), ``AnalogConv2d`` through the same unfolding, ``AnalogConv2dMapped``
with the input channels split over tile rows and a digital bias, ``AnalogConv1d`` and
``AnalogConv1dMapped`` as these 2-D convolutions of height 1. Partial sums of tile rows are added
in digital, in aihwkit's order.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analogsam.hardware.fast.aihwkit_adapter import TileGrid, is_mapped, tile_grid
from analogsam.hardware.fast.context import ForwardContext
from analogsam.hardware.fast.noise import NoiseSource
from analogsam.hardware.fast.patches import conv_out_hw
from analogsam.hardware.fast.stacked import slots
from analogsam.hardware.fast.support import FastPathUnsupported
from analogsam.hardware.fast.tile import Tile, chunk_elements

#: ``add_tile(aihwkit_tile, name) -> Tile``: the engine's registration of one tile
AddTile = Callable[[object, str], Tile]


def _array_sum(row_outputs, dim: int) -> Tensor:
    """``TileModuleArray.forward``: each tile row's outputs concatenated along ``dim``, the rows'
    partial sums added in order."""
    result = None
    for outs in row_outputs:
        part = outs[0] if len(outs) == 1 else torch.cat(outs, dim)
        result = part if result is None else result.add_(part)
    return result


class FastLinear(nn.Module):
    """``AnalogLinear``: its tile module on the rows of the input."""

    #: No weight tensor, as on aihwkit's analog layers (their tiles hold the weights): code that
    #: checks ``isinstance(layer.weight, Tensor)`` before reading it (HuggingFace's T5) runs alike
    #: on both backends.
    weight = None

    def __init__(self, context: ForwardContext, add_tile: AddTile, layer, name: str):
        super().__init__()
        grid: TileGrid = tile_grid("linear", layer)
        self.context = context
        label = f"{name}.{grid.label}"
        if grid.array:
            self.in_sizes = grid.in_sizes
            self.grid = [
                [add_tile(t, f"{label}.{i}.{j}") for j, t in enumerate(row)] for i, row in enumerate(grid.grid)
            ]
        else:
            self.in_sizes = None
            self.grid = [[add_tile(grid.grid[0][0], label)]]
        self.array_bias = grid.bias
        self.name = name
        self.tiles = [t for row in self.grid for t in row]

    def forward(self, x: Tensor) -> Tensor:
        """(..., K) -> (..., N)."""
        stack = self.context.stack
        if stack is not None and stack.batched:
            return self._forward_stacked(x, stack)
        if stack is not None:  # state by state: the first layer's outputs, computed for every state
            out = stack.first_outputs(self, x, len(self.tiles) == 1, lambda: self._every_state(x, stack))
            if out is not None:
                return out
        return self._forward(x, self.context.noise)

    def _every_state(self, x: Tensor, stack) -> list[Tensor]:
        """The outputs of ``x`` under every stacked state, the inputs quantized once (one tile)."""
        outs = self._runs(x, stack.runs(self))
        stack.use(self.tiles, stack.current)  # the run's own state again
        return outs

    def _forward_stacked(self, x: Tensor, stack) -> Tensor:
        """The stacked forward (:mod:`.stacked`): block k of the stacked samples with state k."""
        dim = stack.batch_dim(x, self.name)
        blocks = x.chunk(stack.count, dim)
        if len(self.tiles) == 1 and dim == 0 and stack.is_shared(x):  # the inputs quantized once
            return torch.cat(self._every_state(blocks[0], stack), dim)
        return torch.cat([self._forward(block, stack.use(self.tiles, k)) for k, block in enumerate(blocks)], dim)

    def _forward(self, x: Tensor, source: NoiseSource) -> Tensor:
        """The layer's forward with the tiles' current state, its numbers from ``source``."""
        return self._runs(x, [(None, source, source.call(self))])[0]

    def _runs(self, x: Tensor, runs) -> list[Tensor]:
        """The layer's output for each run of ``runs`` (:func:`.stacked.slots`; several: one
        tile); row r of ``x`` is the run's global vector ``samples * rows per sample + r``."""
        rows = _rows_per_sample(x)
        if self.in_sizes is None or len(self.grid) * len(self.grid[0]) == 1:
            tile = self.grid[0][0]
            results = tile.forward_shared(x, slots(tile, runs, 0, rows))
        else:
            dim = x.dim() - 1
            results = [
                _array_sum(
                    (
                        [t.forward(xs, slots(t, runs, 0, rows)[0][1]) for t in row]
                        for xs, row in zip(torch.split(x, self.in_sizes, dim=dim), self.grid)
                    ),
                    dim,
                )
            ]
        if self.array_bias is not None:
            results = [result + self.array_bias.detach().to(result.device).view(-1) for result in results]
        return results


def _rows_per_sample(x: Tensor) -> int:
    """The input vectors of one sample of a linear layer's input (..., K) whose first dimension
    holds the samples (a sequence model's tokens: one vector each)."""
    return math.prod(x.shape[1:-1]) if x.dim() >= 2 else 1


class ConvExec:
    """A 2-D analog convolution computed image chunk by image chunk.

    ``rows``: ``[(c0, c1, [tiles])]``, the input-channel range of each tile row and its tiles
    (outputs concatenated); rows are summed in order, then ``bias`` (digital) is added. With
    ``strided`` patches the tiles read them from a strided view of the image (no unfold copy);
    otherwise (tiles split inside a kernel, or an analog bias column) the patches are unfolded
    like aihwkit does and split along the patch elements (``in_sizes``).
    """

    def __init__(self, context: ForwardContext, geometry, out_channels, rows, bias, in_sizes=None, name: str = ""):
        self.context = context
        self.geometry = geometry
        self.out_channels = out_channels
        self.rows = rows
        self.bias = bias
        self.in_sizes = in_sizes  # unfold path: patch-element split sizes of the tile rows
        self.strided = in_sizes is None
        self.tiles = [t for _, _, tiles in rows for t in tiles]
        self.name = name

    def _step(self, x: Tensor) -> int:
        """Images per processing chunk."""
        _, c, h, w = x.shape
        (kh, kw) = self.geometry[0]
        oh, ow = conv_out_hw(h, w, self.geometry)
        return max(1, chunk_elements(x.device) // max(c * kh * kw * oh * ow, 1))

    def __call__(self, x: Tensor) -> Tensor:
        stack = self.context.stack
        if stack is not None and stack.batched:
            return self._call_stacked(x, stack)
        if stack is not None:  # state by state: the first layer's outputs, computed for every state
            out = stack.first_outputs(self, x, x.dim() == 4 and self._one_tile(), lambda: self._every_state(x, stack))
            if out is not None:
                return out
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        n, _, h, w = x.shape
        oh, ow = conv_out_hw(h, w, self.geometry)
        step = self._step(x)
        out = torch.empty(n, self.out_channels, oh * ow, dtype=torch.float32, device=x.device)
        self._chunks(x, [out], step, self._one_run(self.context.noise))
        out = out.view(n, self.out_channels, oh, ow)
        return out[0] if unbatched else out

    def _call_stacked(self, x: Tensor, stack) -> Tensor:
        """The stacked forward (:mod:`.stacked`): the images of state k are rows k*n to (k+1)*n,
        each processed in the chunks of :meth:`__call__` on n images; a single strided tile whose
        input is the repeated network input quantizes each chunk once for all states."""
        if x.dim() != 4 or stack.batch_dim(x, self.name) != 0:
            raise FastPathUnsupported(
                f"stacked repeats: convolution {self.name} got an input of shape "
                f"{tuple(x.shape)}, not the stacked batch first; measure one repeat per "
                f"pass (repeats_per_pass=None)"
            )
        total, _, h, w = x.shape
        n = stack.per_state
        oh, ow = conv_out_hw(h, w, self.geometry)
        step = self._step(x)
        out = torch.empty(total, self.out_channels, oh * ow, dtype=torch.float32, device=x.device)
        if self._one_tile() and stack.is_shared(x):
            self._chunks(x[:n], [out[k * n : (k + 1) * n] for k in range(stack.count)], step, stack.runs(self))
        else:
            for k in range(stack.count):
                source = stack.use(self.tiles, k)
                self._chunks(x[k * n : (k + 1) * n], [out[k * n : (k + 1) * n]], step, self._one_run(source))
        return out.view(total, self.out_channels, oh, ow)

    def _one_run(self, source: NoiseSource) -> list:
        """The run of a one-state call (the state loaded in the tiles), counting the call."""
        return [(None, source, source.call(self))]

    def _chunks(self, x: Tensor, outs: list[Tensor], step: int, runs) -> None:
        """Images ``x`` into ``outs`` (n, C, L), one for each run of ``runs`` (:func:`.stacked.slots`;
        several: one strided tile, :meth:`_one_tile`), ``step`` images per chunk, each chunk
        quantized once for every run (the patch ``t`` of image ``i`` is the run's global vector
        ``(samples + i) * L + t``)."""
        length = outs[0].shape[2]
        for start in range(0, x.shape[0], step):
            stop = start + step
            if self._one_tile():  # in place
                tile = self.tiles[0]
                chunk_outs = [o[start:stop] for o in outs]
                tile.forward_patches_shared(x[start:stop], self.geometry, slots(tile, runs, start, length), chunk_outs)
                continue
            ((_, source, call),) = runs
            first = (source.samples + start) * length
            self._chunk(
                x[start:stop],
                outs[0][start:stop],
                lambda tile: source.stream(tile.index, call, first),  # noqa: B023 (called at once)
            )

    def _one_tile(self) -> bool:
        """Whether one tile reads the strided patches (what :meth:`.tile.Tile.forward_patches_shared` runs)."""
        return self.strided and len(self.tiles) == 1 and self.bias is None

    def _every_state(self, x: Tensor, stack) -> list[Tensor]:
        """The outputs of images ``x`` under every stacked state, each chunk quantized once."""
        n, _, h, w = x.shape
        oh, ow = conv_out_hw(h, w, self.geometry)
        outs = [
            torch.empty(n, self.out_channels, oh * ow, dtype=torch.float32, device=x.device) for _ in range(stack.count)
        ]
        self._chunks(x, outs, self._step(x), stack.runs(self))
        stack.use(self.tiles, stack.current)  # the run's own state again
        return [o.view(n, self.out_channels, oh, ow) for o in outs]

    def _chunk(self, x: Tensor, out: Tensor, gen) -> None:
        """Images ``x`` into ``out`` through several tiles (or an unfolded one); ``gen(tile)``: the
        tile's stream for these images."""
        if self.strided:
            subsets = ((x if len(self.rows) == 1 else x[:, c0:c1], tiles) for c0, c1, tiles in self.rows)
            result = _array_sum(
                ([t.forward_patches(sub, self.geometry, gen(t)) for t in tiles] for sub, tiles in subsets), 1
            )
        else:
            (kh, kw), (dh, dw), (ph, pw), (sh, sw) = self.geometry
            patches = F.unfold(x, kernel_size=(kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))
            splits = torch.split(patches, self.in_sizes, dim=1) if len(self.rows) > 1 else [patches]
            result = _array_sum(
                ([t.forward(p, gen(t), cols=True) for t in tiles] for p, (_, _, tiles) in zip(splits, self.rows)), 1
            )
        if self.bias is not None:
            result = result.add_(self.bias.detach().to(result.device).view(-1, 1))
        out.copy_(result)


def _conv2d_geometry(layer, kind: str) -> tuple:
    """``(kernel, dilation, padding, stride)`` of the layer as a 2-D convolution.

    An ``AnalogConv1d`` (or ``AnalogConv1dMapped``, whose tiles are indexed the same way on their
    channels) is one of height 1: aihwkit's indexed convolution (``_calculate_indexes``)
    gives the tile, for every output position, the vector of the input channels' kernel windows,
    channel-major and zero where the window reaches into the padding: exactly the patch of
    ``F.unfold`` with kernel (1, k) on the sequence seen as an image of height 1, with the same
    element order (c, 1, k) as the tile's weights (``weight.view(C_out, C_in * k)``)."""
    if kind in ("conv1d", "conv1d_mapped"):
        (k,), (d,), (p,), (s,) = layer.kernel_size, layer.dilation, layer.padding, layer.stride
        return (1, k), (1, d), (0, p), (1, s)
    return (tuple(layer.kernel_size), tuple(layer.dilation), tuple(layer.padding), tuple(layer.stride))


class FastConv2d(nn.Module):
    """``AnalogConv2d`` (its CPU path unfolds the input, then runs the tile module; a
    ``TileModuleArray`` splits the patch elements), ``AnalogConv2dMapped`` (``kind``
    "conv2d_mapped": input channels split over tile rows; digital bias), and their 1-D variants
    ``AnalogConv1d`` (``kind`` "conv1d": one tile module) and ``AnalogConv1dMapped``
    ("conv1d_mapped"), each sequence as an image of height 1."""

    #: No weight tensor, as on aihwkit's analog layers (their tiles hold the weights): code that
    #: checks ``isinstance(layer.weight, Tensor)`` before reading it (HuggingFace's T5) runs alike
    #: on both backends.
    weight = None

    def __init__(self, context: ForwardContext, add_tile: AddTile, layer, name: str, kind: str):
        super().__init__()
        grid = tile_grid(kind, layer)
        geometry = _conv2d_geometry(layer, kind)
        self.one_d = kind in ("conv1d", "conv1d_mapped")
        kk = geometry[0][0] * geometry[0][1]
        tiles = [
            [add_tile(t, f"{name}.{grid.label}.{i}.{j}") for j, t in enumerate(row)] for i, row in enumerate(grid.grid)
        ]
        if is_mapped(kind):
            channels = list(grid.in_sizes)
        elif all(size % kk == 0 for size in grid.in_sizes):
            channels = [size // kk for size in grid.in_sizes]
        else:
            channels = None
        analog_bias = any(t.analog_bias for row in tiles for t in row)
        bounds, start = [], 0
        for size in channels or grid.in_sizes:
            bounds.append((start, start + size))
            start += size
        rows = [(c0, c1, row) for (c0, c1), row in zip(bounds, tiles)]
        strided = channels is not None and not analog_bias
        self.exec = ConvExec(
            context,
            geometry,
            layer.out_channels,
            rows,
            grid.bias,
            in_sizes=None if strided else list(grid.in_sizes),
            name=name,
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C_out, H', W'), or for a 1-D layer (N, C, L) -> (N, C_out, L')
        (also unbatched)."""
        if self.one_d:
            return self.exec(x.unsqueeze(-2)).squeeze(-2)
        return self.exec(x)
