"""Everything the fast engine reads from aihwkit's objects, in one place.

This is the only module of :mod:`analogsam.hardware.fast` that touches aihwkit's private bindings
and tile internals: the C++ tile's meta parameters (``tile.tile.get_meta_parameters()``), its
drawn per-output values (``dump_extra``), the enum objects of the bindings, its weights
(``tile.tile.get_weights()``), the Python tile's periphery attributes, the layers' tile grids
and the drift-compensation read-out. Porting the engine to another aihwkit version starts here
(and with the allow-list of :mod:`.support`).

aihwkit is imported inside the functions, so that importing the package works with any aihwkit
version and :func:`analogsam.hardware.fast.unsupported_reason` can name a version it does not
mirror instead of failing on a moved module.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from importlib import metadata

import torch
from torch import Tensor

# The IOParameters fields whose per-output (or per-device) values the C++ tile draws once at
# construction and keeps in its state, under these ``dump_extra`` keys.
_DRAWN_STATE = {
    "out_noise_std": "rpu.fb_pass.fwd.out_noise_values",
    "out_nonlinearity": "rpu.fb_pass.fwd.out_nonlinearity",
    "v_offset_std": "rpu.fb_pass.fwd.v_offset",
    "w_read_asymmetry_dtod": "rpu.fb_pass.fwd.w_asymmetry",
}


def installed_version() -> str | None:
    """The installed aihwkit distribution's version, or None if it is not installed."""
    try:
        return metadata.version("aihwkit")
    except metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# The forward IO parameters of one C++ tile
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardIO:
    """The forward IO parameters a C++ tile really uses.

    ``values``: every field of aihwkit's ``IOParameters`` by name, read from the tile's meta
    parameters (float32 values; the DAC/ADC steps already converted to ``res * 2 * bound``;
    enums as aihwkit's Python enum members), or from its ``rpu_config.forward`` for a field the
    bindings do not carry. ``drawn``: the fields whose per-output values the
    tile holds. ``fwd_alpha``: the tile's forward scale factor."""

    values: dict
    drawn: frozenset
    fwd_alpha: float


def _io_parameters_fields() -> tuple:
    """The fields of aihwkit's forward IO dataclass (``IOParameters``)."""
    from aihwkit.simulator.parameters.io import IOParameters

    return dataclasses.fields(IOParameters)


def read_forward_io(tile) -> tuple[ForwardIO | None, str | None]:
    """``(ForwardIO, None)``, or ``(None, reason)`` when ``tile`` has no readable C++ tile."""
    try:
        io = tile.tile.get_meta_parameters().forward_io
        extra = tile.tile.dump_extra()
    except Exception as exc:  # pragma: no cover - not a C++ RPU tile
        return None, f"cannot read the C++ tile's forward parameters ({exc})"
    values = {}
    for field in _io_parameters_fields():
        # a field the bindings do not carry is read from the tile's rpu_config
        source = io if hasattr(io, field.name) else tile.rpu_config.forward
        value = getattr(source, field.name)
        if isinstance(field.default, enum.Enum):  # the bindings' enum, by its name
            value = type(field.default)(getattr(value, "name", str(value)))
        values[field.name] = value
    drawn = frozenset(name for name, key in _DRAWN_STATE.items() if extra.get(key))
    fwd_alpha = float(extra.get("rpu.fwd_alpha", [1.0])[0])
    return ForwardIO(values, drawn, fwd_alpha), None


# --------------------------------------------------------------------------------------------
# Layers and their tiles
# --------------------------------------------------------------------------------------------


def layer_kind(module) -> str | None:
    """'linear' | 'conv1d' | 'conv2d' | 'conv1d_mapped' | 'conv2d_mapped' for the analog layers the
    engine replaces, 'other' for other analog layers, None for modules that are not analog layers."""
    from aihwkit.nn.modules.base import AnalogLayerBase
    from aihwkit.nn.modules.container import AnalogContainerBase
    from aihwkit.nn.modules.conv import AnalogConv1d, AnalogConv2d
    from aihwkit.nn.modules.conv_mapped import AnalogConv1dMapped, AnalogConv2dMapped
    from aihwkit.nn.modules.linear import AnalogLinear

    if type(module) is AnalogConv2dMapped:
        return "conv2d_mapped"
    if type(module) is AnalogConv1dMapped:
        return "conv1d_mapped"
    if type(module) is AnalogConv2d:
        return "conv2d"
    if type(module) is AnalogConv1d:
        return "conv1d"
    if isinstance(module, AnalogLinear) and type(module).forward is AnalogLinear.forward:
        return "linear"
    if isinstance(module, AnalogContainerBase):
        return None
    if isinstance(module, AnalogLayerBase) and any(True for _ in own_tiles(module)):
        return "other"
    return None


def is_tile(module) -> bool:
    """Whether ``module`` is an aihwkit analog tile (of any kind)."""
    return hasattr(module, "tile") and hasattr(module, "rpu_config")


def own_tiles(module):
    """The analog tiles inside ``module``."""
    for m in module.modules():
        if is_tile(m):
            yield m


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one analog layer: ``grid[i][j]`` takes input split ``i`` (of size
    ``in_sizes[i]``: patch elements, or input channels for a mapped convolution) and gives output
    split ``j``; ``bias``: the array's digital bias (None: in the tiles, or none); ``label``: the
    tiles' module path below the layer; ``array``: a ``TileModuleArray`` (or a mapped layer's
    array), whose outputs are concatenated and input splits summed; False: one tile module."""

    grid: list
    in_sizes: list
    bias: Tensor | None
    label: str
    array: bool


#: aihwkit's class of each kind of layer
_LAYER_NAMES = {"conv1d_mapped": "AnalogConv1dMapped", "conv2d_mapped": "AnalogConv2dMapped"}


def is_mapped(kind: str) -> bool:
    """Whether layers of ``kind`` are aihwkit's mapped convolutions (``AnalogConvNdMapped``: input
    channels split over tile rows, each tile an indexed convolution, a digital bias)."""
    return kind in _LAYER_NAMES


def tile_grid(kind: str, layer) -> TileGrid:
    """The tile grid of a layer of kind ``kind`` (see :func:`layer_kind`)."""
    from aihwkit.simulator.tiles.array import TileModuleArray

    if is_mapped(kind):
        return TileGrid([list(row) for row in layer.array], list(layer.in_sizes), layer.bias, "array", True)
    mod = layer.analog_module
    if isinstance(mod, TileModuleArray):
        return TileGrid([list(row) for row in mod.array], list(mod.in_sizes), mod.bias, "analog_module.array", True)
    return TileGrid([[mod]], [layer.in_features], None, "analog_module", False)


def layer_tiles(kind: str, layer) -> tuple[list, str | None]:
    """The tiles of a replaced layer, or a reason why its tile module is not reproduced."""
    from aihwkit.simulator.tiles.array import TileModuleArray
    from aihwkit.simulator.tiles.inference import InferenceTile

    if is_mapped(kind):
        tiles = [t for row in layer.array for t in row]
    else:
        mod = layer.analog_module
        blocked = aihwkit_cannot_run(layer)
        if blocked:
            return [], f"{blocked}; raise the preset's tile.rows/tile.cols to fit the layer"
        if type(mod) is TileModuleArray:
            tiles = [t for row in mod.array for t in row]
        elif type(mod) is InferenceTile:
            tiles = [mod]
        else:
            return [], f"tile module {type(mod).__name__} (only C++ InferenceTile / TileModuleArray of them)"
    for t in tiles:
        if type(t) is not InferenceTile:
            return [], (
                f"tile {type(t).__name__} (only aihwkit's C++ InferenceTile, i.e. InferenceRPUConfig, is reproduced)"
            )
    return tiles, None


def aihwkit_cannot_run(layer) -> str | None:
    """Why aihwkit's own forward of the analog layer ``layer`` raises, or None.

    ``AnalogConv1d`` always runs aihwkit's indexed convolution (``NEEDS_INDEXED``), which a
    ``TileModuleArray`` does not have: split over several tiles, its forward raises "Tile module
    does not support indexed computation"."""
    from aihwkit.nn.modules.conv import AnalogConv1d
    from aihwkit.simulator.tiles.array import TileModuleArray

    mod = getattr(layer, "analog_module", None)
    if type(layer) is AnalogConv1d and type(mod) is TileModuleArray:
        return (
            f"an AnalogConv1d on a {len(mod.array)}x{len(mod.array[0])} TileModuleArray, which aihwkit "
            "cannot run either (the array has no indexed forward)"
        )
    return None


def is_transposed(tile) -> bool:
    """Whether the tile's inputs or outputs are transposed."""
    return bool(tile.in_trans or tile.out_trans)


def has_learned_out_scaling(tile) -> bool:
    """Whether the tile holds learned output scales (``mapping.learn_out_scaling``)."""
    return getattr(tile, "out_scaling_alpha", None) is not None


def rpu_config_of(tile):
    """The ``rpu_config`` the tile was built from (its Python side; the C++ tile's forward IO
    parameters are read by :func:`read_forward_io`)."""
    return tile.rpu_config


# --------------------------------------------------------------------------------------------
# Drift compensation
# --------------------------------------------------------------------------------------------


def drift_compensation_reason(comp, kind: str) -> str | None:
    """Why the drift compensation ``comp`` of a tile in a layer of kind ``kind`` is not
    reproduced, or None (also for no compensation)."""
    from aihwkit.inference.compensation.base import BaseDriftCompensation
    from aihwkit.inference.compensation.drift import PerColumnDriftCompensation

    if comp is None:
        return None
    if not isinstance(comp, BaseDriftCompensation):
        return f"drift compensation {type(comp).__name__}"
    if not _exact_reference(comp) and type(comp).init_baseline is not BaseDriftCompensation.init_baseline:
        return f"drift compensation {type(comp).__name__} (custom init_baseline)"
    if is_mapped(kind) and isinstance(comp, PerColumnDriftCompensation):
        return f"per-column drift compensation on {_LAYER_NAMES[kind]}"
    if kind == "conv1d" and isinstance(comp, PerColumnDriftCompensation):
        # InferenceTileWithPeriphery.post_forward multiplies the indexed (N, C_out, L) output by
        # alpha (C_out,): broadcast along L, not the channels
        return "per-column drift compensation on AnalogConv1d (aihwkit applies it along the sequence)"
    return None


def _exact_reference(comp) -> bool:
    from aihwkit.inference.compensation.drift import GlobalDriftCompensationWithExactReference

    return isinstance(comp, GlobalDriftCompensationWithExactReference)


class DriftCompensation:
    """A tile's drift compensation, as ``InferenceTileWithPeriphery`` runs it: read-out vectors
    through the tile, one number (or one per column) from the outputs, alpha = baseline / current.
    """

    def __init__(self, tile, comp):
        self._tile = tile
        self._comp = comp
        #: the baseline is the exact product with the unprogrammed weights, not a tile read-out
        self.exact_reference = _exact_reference(comp)

    def readout_vectors(self) -> Tensor:
        return self._comp.get_readout_tensor(self._tile.tile.get_x_size()).detach().to(torch.float32)

    def reference_output(self, vectors: Tensor) -> Tensor:
        """The exact-reference baseline's outputs: the product with the reference weights."""
        return vectors @ self._tile.reference_combined_weights.T

    def readout(self, outputs: Tensor):
        return self._comp.readout(outputs)

    def alpha(self, outputs: Tensor, baseline) -> Tensor:
        return torch.as_tensor(self._comp.apply(outputs, baseline)).detach().float()


# --------------------------------------------------------------------------------------------
# The state of one tile: weights and digital periphery
# --------------------------------------------------------------------------------------------


def _copy(value) -> Tensor | None:
    return None if value is None else value.detach().float().clone()


class TileReader:
    """Reads one aihwkit ``InferenceTile``: its sizes, current weights and digital periphery."""

    def __init__(self, tile):
        self.tile = tile
        self.in_size = int(tile.in_size)
        self.out_size = int(tile.out_size)
        self.analog_bias = bool(tile.analog_bias)

    def weights(self) -> Tensor:
        """The C++ tile's current weights (d_size, x_size), as its forward uses them."""
        return torch.as_tensor(self.tile.tile.get_weights())

    def input_range(self) -> Tensor | None:
        return _copy(getattr(self.tile, "input_range", None))

    def mapping_scales(self) -> Tensor | None:
        ms = self.tile.mapping_scales
        return None if ms is None else ms.detach().float().view(-1)

    def out_scaling(self) -> Tensor | None:
        osa = getattr(self.tile, "out_scaling_alpha", None)
        return None if osa is None else osa.detach().float().view(-1).clone()

    def digital_bias(self) -> Tensor | None:
        return _copy(self.tile.bias) if self.tile.digital_bias else None

    def programmed_weights(self) -> Tensor | None:
        """The weights of the latest programming (a new object per programming), or None."""
        return getattr(self.tile, "programmed_weights", None)

    def initial_alpha(self) -> Tensor:
        """The drift-compensation factor of a tile that was never programmed."""
        return torch.as_tensor(self.tile.alpha).detach().float().clone()

    def drift_compensation(self) -> DriftCompensation | None:
        comp = getattr(self.tile.rpu_config, "drift_compensation", None)
        return None if comp is None else DriftCompensation(self.tile, comp)
