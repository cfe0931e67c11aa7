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

__all__ = ["DriftCompensation", "apply", "compensate", "kernel_arguments"]


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
        current weights), its read-outs through the tile's forward with ``source``'s numbers
        (:func:`compensate` of this tile alone)."""
        return compensate([tile], source)[0]


def compensate(tiles, source: rng.NoiseSource) -> list[Tensor | None]:
    """The drift-compensation factor of each of ``tiles`` (:class:`.tile.Tile` s after reading
    their current weights; None: a tile without compensation), each tile's read-outs through its
    forward with its own streams of ``source`` (addressed by the tile's index, so the order and the
    batching of the read-outs do not move a number), each tile's baseline kept in its
    :class:`DriftCompensation`.

    The read-outs are batched: the tiles with the same forward settings (the same IO spec, hence
    the same DAC, noise and ADC arithmetic) and the same read-out vectors run as the passes of one
    ``Tile._mvm``, which quantizes the vectors once for all of them; each pass's
    product, noise and ADC are its tile's, so each output equals that tile's own read-out."""
    alphas: list[Tensor | None] = [None] * len(tiles)
    jobs = []  # (tile position, read-out vectors, weights, stream, on_output)
    for i, tile in enumerate(tiles):
        reader, device, state = tile.reader, tile.device, tile.compensation
        comp = reader.drift_compensation()
        if comp is None:
            continue
        programmed = reader.programmed_weights()
        if programmed is None:
            # never programmed: aihwkit multiplies by its initial alpha (1)
            alphas[i] = _on(reader.initial_alpha(), device)
            continue
        readout = comp.readout_vectors()
        vectors = _on(readout, device)
        if state._programmed is not programmed:
            # one read-out of the programmed weights (one noise draw per programming)
            if comp.exact_reference:  # (aihwkit's reference weights stay on the CPU)
                state._baseline = comp.readout(_on(comp.reference_output(readout), device))
            else:
                jobs.append(
                    (i, vectors, Weights(programmed, device), source.baseline(tile.index), _baseline(comp, state))
                )
            state._programmed = programmed
        jobs.append((i, vectors, tile.weights, source.readout(tile.index), _current(comp, state, alphas, i)))
    for group in _groups(tiles, jobs):
        runner = tiles[group[0][0]]
        outputs = runner._mvm(group[0][1], [(None, weights, stream, None) for _, _, weights, stream, _ in group])
        for (*_, on_output), out in zip(group, outputs):
            on_output(out)
    return alphas


def _baseline(comp, state: DriftCompensation):
    def keep(out: Tensor) -> None:
        state._baseline = comp.readout(out)

    return keep


def _current(comp, state: DriftCompensation, alphas: list, i: int):
    def keep(out: Tensor) -> None:  # (after the same tile's baseline: jobs keep their order)
        alphas[i] = comp.alpha(out, state._baseline)

    return keep


def _groups(tiles, jobs) -> list[list]:
    """``jobs`` in groups that one tile's ``Tile._mvm`` runs as passes: the same
    forward arithmetic (spec, kernels, device) and equal read-out vectors; in order within each."""
    groups: dict = {}
    for job in jobs:
        tile, vectors = tiles[job[0]], job[1]
        key = (tile.spec, tile.fused_dac, tile.fused_adc, tile.device, tuple(vectors.shape))
        candidates = groups.setdefault(key, [])
        for group in candidates:
            if _same(group[0][1], vectors):
                group.append(job)
                break
        else:
            candidates.append([job])
    return [group for candidates in groups.values() for group in candidates]


def _same(a: Tensor, b: Tensor) -> bool:
    """Whether read-out vectors ``a`` and ``b`` (same shape and device) are equal; False for
    tensors without readable data (e.g. torch's fake tensors: each tile is then read out alone)."""
    if a is b:
        return True
    try:
        return torch.equal(a, b)
    except RuntimeError:  # (torch's DataDependentOutputException: no data to compare)
        return False
