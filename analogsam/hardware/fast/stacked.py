"""Many synced states of one engine in one forward: repeats (programmings) and times stacked.

A Monte-Carlo sweep measures the same inputs under many (repeat, time) states of the same network:
each a programming drifted to a time, with its own forward-noise generator. Measured one by one,
every state pays for the work that does not depend on its weights again: the first analog layer's
input range and DAC (noise management and quantization of the inputs), the Python dispatch of
every layer, the digital layers' per-call overheads. :meth:`FastAnalogForward.forward_stacked
<analogsam.hardware.fast.FastAnalogForward.forward_stacked>` runs ``R`` captured states at once:

* the input (N, ...) is repeated into a batch of R*N, block k belonging to state k; digital layers
  (BatchNorm, activations, pooling, ...) run once on the R*N batch, per sample as always;
* each analog layer splits its input into the R blocks and runs block k with state k's weights and
  periphery, drawing from state k's generator, in the chunks and the order of a one-by-one
  forward of N inputs; a layer whose input is still the repeated network input (R identical
  blocks: no analog layer before it) quantizes it once for all states
  (:meth:`.tile.Tile.forward_patches_shared`).

So every state's generator draws the same numbers for the same operations as in its own forward,
and each block of the result equals the one-by-one forward of that state up to the summation order
of the digital layers' products at a different batch size (noise on or off); the analog layers are
bit-identical. The memory of the activations grows R times.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from analogsam.hardware.fast.support import FastPathUnsupported
from analogsam.hardware.fast.tile import Tile, TileState


class EngineState(NamedTuple):
    """One synced state of a :class:`~analogsam.hardware.fast.FastAnalogForward`: every tile's
    weights and periphery, and the generator its forward draws from (shared with the engine: a
    forward with this state advances it exactly as the engine's own forward would)."""

    tiles: tuple[TileState, ...]
    generator: Optional[torch.Generator]


class StackedPass:
    """The states of one stacked forward, as the analog layers use them (see the module docstring).

    ``shared``: the repeated network input; a layer input that still occupies its memory in full
    (the same storage and size, contiguous) consists of R identical blocks."""

    def __init__(self, states: Sequence[EngineState], shared: Tensor, per_state: int):
        self.states = list(states)
        self.count = len(self.states)
        self.per_state = per_state
        self._shared = shared

    def is_shared(self, x: Tensor) -> bool:
        """Whether ``x`` is still the repeated network input (R identical blocks along dim 0)."""
        s = self._shared
        return (x.is_contiguous() and x.data_ptr() == s.data_ptr() and x.numel() == s.numel()
                and x.dtype == s.dtype)

    def batch_dim(self, x: Tensor, layer: str) -> int:
        """The dimension of ``x`` that holds the R*N stacked samples (the first of that size)."""
        size = self.count * self.per_state
        for dim, n in enumerate(x.shape):
            if n == size:
                return dim
        raise FastPathUnsupported(
            f"stacked repeats: analog layer {layer or '(root)'} got an input of shape {tuple(x.shape)} without "
            f"the {self.count} x {self.per_state} stacked samples; measure one repeat per pass "
            f"(repeats_per_pass=None)")

    def use(self, tiles: Sequence[Tile], k: int) -> Optional[torch.Generator]:
        """Load state ``k`` into ``tiles``; returns its generator."""
        state = self.states[k]
        for tile in tiles:
            tile.load(state.tiles[tile.index])
        return state.generator

    def slots(self, tile: Tile) -> list[tuple[TileState, Optional[torch.Generator]]]:
        """``(state of tile, generator)`` of every stacked state."""
        return [(state.tiles[tile.index], state.generator) for state in self.states]
