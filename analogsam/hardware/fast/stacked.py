"""Many synced states of one engine in one forward: repeats (programmings) and times stacked.

A Monte-Carlo sweep measures the same inputs under many (repeat, time) states of the same network:
each a programming drifted to a time, with its own forward noise (a :class:`.noise.NoiseSource`: a
seed and the samples its forwards have read). Measured one by one,
every state pays for the work that does not depend on its weights again: the first analog layer's
input range and DAC (noise management and quantization of the inputs), the Python dispatch of
every layer, the digital layers' per-call overheads. :meth:`FastAnalogForward.forward_stacked
<analogsam.hardware.fast.FastAnalogForward.forward_stacked>` runs ``R`` captured states at once:

* the input (N, ...) is repeated into a batch of R*N, block k belonging to state k; digital layers
  (BatchNorm, activations, pooling, ...) run once on the R*N batch, per sample as always;
* each analog layer splits its input into the R blocks and runs block k with state k's weights and
  periphery, its random numbers addressed by state k's seed and the samples' indices in state k's
  forwards, as in a one-by-one forward of N inputs; a layer whose input is still the repeated network input (R identical
  blocks: no analog layer before it) quantizes it once for all states
  (:meth:`.tile.Tile.forward_patches_shared`).

So every state draws the same numbers for the same operations as in its own forward, and each block of the result equals the one-by-one forward of that state up to the summation order
of the digital layers' products at a different batch size (noise on or off); the analog layers are
bit-identical. The memory of the activations grows R times.

That batched layout is what fills a GPU. On a CPU an R*N batch outgrows the caches, and the
digital layers and the products gain nothing from it (they cost per sample), so there the pass
runs state by state (``batched=False``, the CPU's default): the network runs R times on the N
inputs, state k loaded in every tile; the first analog layer of the network, if its input is the
network input, computes the outputs of every state in the first run (one quantization, each
state's product, noise and ADC from its own noise source) and hands each later run its state's
outputs. The numbers are addressed, not drawn in order, so every state's outputs are
bit-identical to its one-by-one forward; the memory
is one state's activations plus the first layer's R outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from torch import Tensor

from analogsam.hardware.fast.noise import NoiseSource, Stream
from analogsam.hardware.fast.support import FastPathUnsupported
from analogsam.hardware.fast.tile import Tile, TileState


class EngineState(NamedTuple):
    """One synced state of a :class:`~analogsam.hardware.fast.FastAnalogForward`: every tile's
    weights and periphery, and its forward noise (shared with the engine: a forward with this
    state advances its sample count exactly as the engine's own forward would)."""

    tiles: tuple[TileState, ...]
    noise: NoiseSource | None


class StackedPass:
    """The states of one stacked forward, as the analog layers use them (see the module docstring).

    ``shared``: the network input (batched: repeated R times); a layer input that still occupies
    its memory in full (the same storage and size, contiguous) is that input, unchanged."""

    def __init__(self, states: Sequence[EngineState], shared: Tensor, per_state: int, *, batched: bool = True):
        self.states = list(states)
        self.count = len(self.states)
        self.per_state = per_state
        self.batched = batched
        self._shared = shared
        # state by state (batched=False): the run in progress, its analog layer calls so far, and
        # the first analog layer with every state's outputs (set in the first run)
        self.current = 0
        self._calls = 0
        self._first: tuple[object, list] | None = None

    def begin(self, k: int, tiles: Sequence[Tile]) -> NoiseSource | None:
        """State by state: start the run of state ``k`` (loaded into ``tiles``); its noise."""
        self.current, self._calls = k, 0
        return self.use(tiles, k)

    def first_outputs(self, layer, x: Tensor, shareable: bool, every_state: Callable[[], list]) -> Tensor | None:
        """State by state: called by every analog layer of a run. The first analog layer of the
        first run, if ``shareable`` (it can compute many states at once) and its input ``x`` is the
        network input, computes ``every_state()`` (the outputs of every state, in order; it may
        leave another state loaded in its tiles) and gets state 0's; the same layer, first again
        in a later run, gets that run's state's. None: the layer runs as in a one-by-one forward
        (with the run's state)."""
        first, self._calls = self._calls == 0, self._calls + 1
        if not first:
            return None
        if self.current == 0 and shareable and self.is_shared(x):
            self._first = (layer, every_state())
        if self._first is None or self._first[0] is not layer:
            return None
        return self._first[1][self.current]

    def is_shared(self, x: Tensor) -> bool:
        """Whether ``x`` is still the repeated network input (R identical blocks along dim 0)."""
        s = self._shared
        return x.is_contiguous() and x.data_ptr() == s.data_ptr() and x.numel() == s.numel() and x.dtype == s.dtype

    def batch_dim(self, x: Tensor, layer: str) -> int:
        """The dimension of ``x`` that holds the R*N stacked samples (the first of that size)."""
        size = self.count * self.per_state
        for dim, n in enumerate(x.shape):
            if n == size:
                return dim
        raise FastPathUnsupported(
            f"stacked repeats: analog layer {layer or '(root)'} got an input of shape {tuple(x.shape)} without "
            f"the {self.count} x {self.per_state} stacked samples; measure one repeat per pass "
            f"(repeats_per_pass=None)"
        )

    def use(self, tiles: Sequence[Tile], k: int) -> NoiseSource | None:
        """Load state ``k`` into ``tiles``; returns its noise."""
        state = self.states[k]
        for tile in tiles:
            tile.load(state.tiles[tile.index])
        return state.noise

    def runs(self, layer) -> list[tuple]:
        """Every stacked state's run of a call of ``layer`` (this call counted): see :func:`slots`."""
        return [(state, state.noise, state.noise.call(layer)) for state in self.states]


def slots(
    tile: Tile, runs: Sequence[tuple], first_sample: int, vectors_per_sample: int
) -> list[tuple[TileState | None, Stream]]:
    """``(state of tile, stream)`` of every run of ``runs`` (a run: one state's part in an analog layer
    call, ``(EngineState, its noise, the layer's call number)``, the state None for the one loaded in
    the tiles: a one-state forward), for the inputs that start
    ``first_sample`` samples into the forward, ``vectors_per_sample`` input vectors each: what
    :meth:`.tile.Tile.forward_shared` and :meth:`.tile.Tile.forward_patches_shared` take (one run:
    the one-state forward)."""
    return [
        (
            None if state is None else state.tiles[tile.index],
            source.stream(tile.index, call, (source.samples + first_sample) * vectors_per_sample),
        )
        for state, source, call in runs
    ]
