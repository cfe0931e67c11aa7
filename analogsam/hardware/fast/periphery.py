"""The digital periphery of an ``InferenceTile`` and its drift compensation.

After the raw tile (:mod:`.tile`) come, in aihwkit's order (``TileWithPeriphery.post_forward`` and
``InferenceTile``): the input range times the mapping scales (``post_scale``), the drift
compensation factor ``alpha``, the learned output scales and the digital bias. :func:`apply` runs
them with torch operations; :func:`kernel_arguments` gives them to the compiled ADC kernels, which
apply them in the same order as they write each output.

The drift compensation (:class:`DriftCompensation`) is aihwkit's: ``alpha = baseline / current``,
the baseline read out once per programming (``InferenceTileWithPeriphery.program_weights`` ->
``init_baseline``) and the current value at every drift, both through the tile's own forward
(noise included), here the engine's replay of it, its numbers from the state's
:class:`.noise.NoiseSource` (the read-out and baseline streams of the tile).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from analogsam.hardware.fast import noise as rng
from analogsam.hardware.fast.products import Weights

__all__ = ["DriftCompensation", "apply", "kernel_arguments"]


def _on(t: Tensor | None, device: torch.device) -> Tensor | None:
    return None if t is None else t.to(device)


def apply(y: Tensor, view, post_scale, alpha, out_scaling, bias) -> Tensor:
    """The periphery on ``y`` in place, each per-output tensor viewed as ``view`` (e.g. (-1,) for
    rows (M, N), (-1, 1) for columns (B, N, L)); None: a step the tile does not have."""
    if post_scale is not None:
        y.mul_(post_scale.view(*view))
    if alpha is not None:
        y.mul_(alpha.view(*view) if alpha.dim() else alpha)
    if out_scaling is not None:
        y.mul_(out_scaling.view(*view))
    if bias is not None:
        y.add_(bias.view(*view))
    return y


def kernel_arguments(n: int, post_scale, alpha, out_scaling, bias) -> tuple:
    """The periphery per output for the ADC kernels: four float32 arrays of ``n``; identities
    (x * 1 and x + -0.0 return x exactly) stand for the steps this tile does not have."""
    return tuple(
        np.ascontiguousarray(torch.broadcast_to(t.reshape(-1), (n,)).numpy())
        if t is not None
        else np.full(n, identity, np.float32)
        for t, identity in ((post_scale, 1.0), (alpha, 1.0), (out_scaling, 1.0), (bias, -0.0))
    )


class DriftCompensation:
    """One tile's drift compensation: the baseline read-out of its last programming, kept until
    the tile is programmed again, and the factor at its current weights."""

    def __init__(self):
        self._programmed = None  # the programmed weights the baseline was read from
        self._baseline = None

    def alpha(self, tile, source: rng.NoiseSource) -> Tensor | None:
        """The factor aihwkit computes for ``tile`` (a :class:`.tile.Tile` after reading its
        current weights), its read-outs through the tile's forward with ``source``'s numbers."""
        reader, device = tile.reader, tile.device
        comp = reader.drift_compensation()
        if comp is None:
            return None
        programmed = reader.programmed_weights()
        if programmed is None:
            # never programmed: aihwkit multiplies by its initial alpha (1)
            return _on(reader.initial_alpha(), device)
        readout = comp.readout_vectors()
        if self._programmed is not programmed:
            # one read-out of the programmed weights (one noise draw per programming)
            if comp.exact_reference:  # (aihwkit's reference weights stay on the CPU)
                out = _on(comp.reference_output(readout), device)
            else:
                out = tile.mvm(_on(readout, device), Weights(programmed, device), source.baseline(tile.index))
            self._baseline = comp.readout(out)
            self._programmed = programmed
        current = tile.mvm(_on(readout, device), tile.weights, source.readout(tile.index))
        return comp.alpha(current, self._baseline)
