"""Programming and drift of every tile of a network at once, with aihwkit's own noise-model formulas.

aihwkit programs and drifts a network tile by tile (``AnalogLayerBase.program_analog_weights`` ->
``InferenceTileWithPeriphery.program_weights`` / ``drift_weights``, aihwkit 1.1.0): per tile, the
conductance converter, the noise model's formulas on each conductance slice (a few dozen small
torch operations), the weights set into the C++ tile, and a drift-compensation read-out through the
C++ forward. With hundreds of small tiles (a depthwise network) the fixed cost of those calls, not
the arithmetic, sets the time (about 0.5 ms per tile).

Here the noise model's conductance-level methods (``apply_programming_noise_to_conductance``,
``generate_drift_coefficients``, ``apply_drift_noise_to_conductance``: element-wise formulas in every
aihwkit noise model, PCM-like, Hermes, Wan2022, CMO, state-independent) run once on the
concatenated conductances of every tile that shares the same noise model (type and settings), and
only the conversions to and from conductances (each tile has its own scale) stay per tile. Then the
results are stored in the tiles exactly where aihwkit stores them (``programmed_weights``,
``drift_noise_parameters``, the C++ tile's weights), so the rest of aihwkit and the fast engine read
them as if aihwkit had computed them. The drift-compensation read-outs are left to the fast engine,
which does them itself at :meth:`FastAnalogForward.sync <analogsam.hardware.fast.FastAnalogForward.sync>`
(baseline once per programming, current value at every sync); aihwkit's own ``alpha`` and
``drift_baseline`` of the tiles are not updated (``readouts=True`` does aihwkit's read-outs too).

The numbers: the same formulas and the same distributions, drawn from torch's global generator (as
aihwkit draws them), but in another order (each slice's draws for all tiles at once), so not the
same realisation as aihwkit's tile-by-tile calls: ``tests/test_programming.py`` compares the
distributions per shipped preset.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["drift_tiles", "inference_tiles", "program_tiles"]


def inference_tiles(model: torch.nn.Module) -> list:
    """The tiles of ``model`` that aihwkit programs and drifts (``InferenceTileWithPeriphery``), in
    aihwkit's order."""
    from aihwkit.simulator.tiles.inference import InferenceTileWithPeriphery

    return [t for t in model.analog_tiles() if isinstance(t, InferenceTileWithPeriphery)]


def _groups(tiles: Iterable) -> list[list]:
    """The tiles grouped by noise model (its type and settings), in first-seen order."""
    groups: dict[tuple, list] = {}
    for tile in tiles:
        nm = tile.rpu_config.noise_model
        groups.setdefault((type(nm), str(nm)), []).append(tile)
    return list(groups.values())


def _concat(parts: list[Tensor | None]) -> Tensor | None:
    if any(p is None for p in parts):
        return None
    return torch.cat([p.reshape(-1) for p in parts])


def _split(flat: Tensor | None, like: list[Tensor]) -> list[Tensor | None]:
    if flat is None:
        return [None] * len(like)
    out, start = [], 0
    for t in like:
        out.append(flat[start : start + t.numel()].view(t.shape))
        start += t.numel()
    return out


def _sliced(tiles: list, weights: list[Tensor]) -> tuple[list, list, bool]:
    """Each tile's conductance slices and conversion parameters for ``weights``, and whether the
    converter gives one tensor instead of a list of slices (``SingleDeviceConductanceConverter``:
    aihwkit then iterates over its rows, drawing row by row and keeping one drift parameter per
    row; the formulas are element-wise, so here the whole tensor is one slice)."""
    conductances, params, single = [], [], False
    for tile, w in zip(tiles, weights):
        g, p = tile.rpu_config.noise_model.g_converter.convert_to_conductances(w)
        single = isinstance(g, Tensor)
        conductances.append([g] if single else list(g))
        params.append(p)
    return conductances, params, single


def _rows(nu: Tensor | None, rows: int) -> list:
    """Drift parameters of a one-tensor converter as aihwkit keeps them: one per row."""
    return [None] * rows if nu is None else list(nu)


def _whole(nus: list) -> Tensor | None:
    """The inverse of :func:`_rows`."""
    return None if any(nu is None for nu in nus) else torch.stack(nus)


@torch.no_grad()
def program_tiles(tiles: Iterable, *, readouts: bool = False) -> None:
    """``program_weights()`` of every tile of ``tiles`` (see the module docstring): the programming
    noise and drift coefficients of each conductance slice drawn for all tiles of a noise model at
    once. ``readouts``: also aihwkit's drift-compensation baseline read-out of each tile."""
    for group in _groups(tiles):
        nm = group[0].rpu_config.noise_model
        for tile in group:
            if tile.reference_combined_weights is None:
                tile.reference_combined_weights = Tensor(tile.tile.get_weights())
        conductances, params, single = _sliced(group, [t.reference_combined_weights for t in group])
        noisy, nus = [[] for _ in group], [[] for _ in group]
        for s in range(len(conductances[0])):
            slices = [g[s] for g in conductances]
            g = _concat(slices)
            for i, part in enumerate(_split(nm.apply_programming_noise_to_conductance(g), slices)):
                noisy[i].append(part)
            for i, part in enumerate(_split(nm.generate_drift_coefficients(g), slices)):
                nus[i].append(part)
        for tile, g, p, nu in zip(group, noisy, params, nus):
            converter = tile.rpu_config.noise_model.g_converter
            tile.programmed_weights = converter.convert_back_to_weights(g[0] if single else g, p)
            tile.drift_noise_parameters = _rows(nu[0], len(g[0])) if single else nu
            tile.tile.set_weights(tile.programmed_weights)
            if readouts and getattr(tile.rpu_config, "drift_compensation", None) is not None:
                tile.drift_baseline = tile.rpu_config.drift_compensation.init_baseline(tile)


@torch.no_grad()
def drift_tiles(tiles: Iterable, t_inference: float, *, readouts: bool = False) -> None:
    """``drift_weights(t_inference)`` of every tile (programmed first where it never was): the drift
    of each conductance slice computed for all tiles of a noise model at once. ``readouts``: also
    aihwkit's drift-compensation read-out and ``alpha`` of each tile."""
    tiles = list(tiles)
    unprogrammed = [t for t in tiles if t.programmed_weights is None]
    if unprogrammed:
        program_tiles(unprogrammed, readouts=readouts)
    for group in _groups(tiles):
        nm = group[0].rpu_config.noise_model
        conductances, params, single = _sliced(group, [t.programmed_weights for t in group])
        drifted = [[] for _ in group]
        for s in range(len(conductances[0])):
            slices = [g[s] for g in conductances]
            nu = _concat([_whole(t.drift_noise_parameters) if single else t.drift_noise_parameters[s] for t in group])
            g = nm.apply_drift_noise_to_conductance(_concat(slices), nu, t_inference)
            for i, part in enumerate(_split(g, slices)):
                drifted[i].append(part)
        for tile, g, p in zip(group, drifted, params):
            converter = tile.rpu_config.noise_model.g_converter
            tile.tile.set_weights(converter.convert_back_to_weights(g[0] if single else g, p))
            if readouts and getattr(tile.rpu_config, "drift_compensation", None) is not None:
                out = tile._forward_drift_readout_tensor()
                alpha = tile.rpu_config.drift_compensation.apply(out, tile.drift_baseline)
                tile.__dict__.pop("alpha", None)  # (as aihwkit's drift_weights does)
                tile.alpha = alpha
