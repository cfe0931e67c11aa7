"""What the fast engine reproduces: the aihwkit versions, layers, tiles and settings, as an allow-list.

Every field of an ``InferenceRPUConfig`` (nested dataclasses walked down to their fields: forward
and backward ``IOParameters``, mapping, input ranges, runtime, clip, remap, modifier, update,
device) is declared in :data:`ALLOW_LIST`, either

* :class:`Reproduced`: the engine gives aihwkit's result for it (for any value, or for the listed
  values only), including the fields that do not act on the eval-mode forward at all (training
  updates, the backward pass); or
* :class:`Refused`: the engine does not reproduce it, and refuses a tile whose value is not the
  no-op one (by default: the field's default), with the reason.

A field the list does not name (a newer aihwkit's) refuses the tile: settings are refused, never
approximated. The forward IO values are read from the C++ tile (what it really uses, see
:func:`.aihwkit_adapter.read_forward_io`); every other value from the tile's ``rpu_config``.
A tile that holds per-output values drawn for a refused field (``dump_extra``) is refused even when
the field reads as its default. A perfect forward (``is_perfect``, or ``mv_type`` IDEAL) is the
plain product times ``out_scale``: the other forward fields are not looked at.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from analogsam.errors import AnalogsamError
from analogsam.hardware.fast import aihwkit_adapter as aihwkit
from analogsam.hardware.fast.tile import IOSpec

__all__ = [
    "AIHWKIT_VERSIONS",
    "ALLOW_LIST",
    "FastPathUnsupported",
    "Refused",
    "Reproduced",
    "aihwkit_version_reason",
    "config_settings",
    "io_spec",
    "unsupported_reason",
]

#: The aihwkit versions whose C++ tile arithmetic the engine replays (``rpu_forward_backward_pass.cpp``,
#: ``InferenceTile``'s periphery, the meta-parameter bindings the adapter reads). 1.2.0 is listed
#: because the conformance tests (tests/test_fastpath.py, tests/test_fast_support.py) pass under it:
#: its InferenceRPUConfig has the same 131 fields, its bindings and the eval-mode forward of its
#: Python periphery are 1.1.0's (docs/install-matrix.md lists what changed and why none of it acts
#: on the engine's numbers).
AIHWKIT_VERSIONS = ("1.1.0", "1.2.0")


class FastPathUnsupported(AnalogsamError, ValueError):
    """The model holds a layer or a setting that the fast path does not reproduce."""


def aihwkit_version_reason() -> str | None:
    """None if the installed aihwkit is one of :data:`AIHWKIT_VERSIONS`, else a one-line reason."""
    version = aihwkit.installed_version()
    if version in AIHWKIT_VERSIONS:
        return None
    found = "aihwkit is not installed" if version is None else f"aihwkit {version} is installed"
    return (
        f"{found}, but the fast engine mirrors aihwkit {' / '.join(AIHWKIT_VERSIONS)} "
        "(analogsam.hardware.fast.AIHWKIT_VERSIONS): use backend='aihwkit' or install a mirrored version"
    )


# --------------------------------------------------------------------------------------------
# The allow-list
# --------------------------------------------------------------------------------------------


def _shown(value) -> str:
    """A value as a reason shows it: enum members by name, float32 values without their noise."""
    if isinstance(value, enum.Enum):
        return value.name
    return f"{value:.7g}" if isinstance(value, float) else repr(value)


@dataclass(frozen=True)
class Context:
    """What a rule may look at besides its field's value: every setting of the tile by dotted
    path (``values``) and the kind of layer the tile is in (``kind``)."""

    values: dict
    kind: str


@dataclass(frozen=True)
class Reproduced:
    """A field whose effect the engine reproduces: ``how``; ``values``: the only values reproduced
    (enum member names), None for every value; ``check(value, kind)``: a reason for a value of a
    tile in a layer of kind ``kind`` that is not reproduced, or None."""

    how: str
    values: tuple | None = None
    check: Callable | None = None

    def reason(self, path: str, value, default, context: Context) -> str | None:
        if self.values is not None and getattr(value, "name", value) not in self.values:
            return f"{path} {_shown(value)} (reproduced: {', '.join(self.values)})"
        return self.check(value, context.kind) if self.check else None


@dataclass(frozen=True)
class Refused:
    """A field the engine does not reproduce (``why``): a tile is refused unless the value is a
    no-op, as judged by ``noop(value, context)`` (default: the field's default value)."""

    why: str
    noop: Callable | None = None

    def reason(self, path: str, value, default, context: Context) -> str | None:
        if self.noop is not None:
            return None if self.noop(value, context) else f"{path} {_shown(value)} ({self.why})"
        return None if value == default else f"{path} {_shown(value)}, not {_shown(default)} ({self.why})"


# The fields that act only in training (or in another pass than the eval-mode forward): any value
# gives aihwkit's eval-mode result, since the engine reads the weights they have shaped.
_TRAINING = Reproduced(
    "acts only in training (updates, the backward pass, autograd): no effect "
    "on the eval-mode forward, whose weights the engine reads"
)
_READ = Reproduced("its effect is in the tile's state, which the engine reads at every sync")

# forward IOParameters, as ForwardBackwardPassIOManaged::forwardVector uses them
_FORWARD = {
    "is_perfect": Reproduced("a perfect forward is the plain product times out_scale"),
    "mv_type": Reproduced("one analog pass; IDEAL is a perfect forward", ("ONE_PASS", "IDEAL")),
    "inp_bound": Reproduced("DAC clip"),
    "inp_noise": Reproduced("input noise, from the generator"),
    "inp_res": Reproduced("DAC step"),
    "inp_sto_round": Reproduced("stochastic DAC rounding, from the generator"),
    "inp_asymmetry": Reproduced("input asymmetry"),
    "out_bound": Reproduced("ADC clip and bound test"),
    "out_noise": Reproduced("output noise, from the generator"),
    "out_noise_std": Refused("per-output noise levels drawn inside the C++ tile"),
    "out_res": Reproduced("ADC step"),
    "out_sto_round": Reproduced("stochastic ADC rounding, from the generator"),
    "out_scale": Reproduced("final output scale"),
    "out_asymmetry": Reproduced("output asymmetry"),
    "bound_management": Reproduced(
        "iterative: saturated vectors recomputed at half input scale", ("NONE", "ITERATIVE")
    ),
    "noise_management": Reproduced("input scaling per vector", ("NONE", "ABS_MAX", "MAX", "CONSTANT")),
    "w_noise": Reproduced("output-referred weight noise, from the generator"),
    "w_noise_type": Reproduced("output-referred weight noise", ("NONE", "ADDITIVE_CONSTANT", "PCM_READ")),
    "ir_drop": Reproduced("IR drop along the input lines"),
    "ir_drop_g_ratio": Reproduced("IR drop conductance ratio"),
    "out_nonlinearity": Refused("S-shaped output non-linearity"),
    "out_nonlinearity_std": Refused("output-to-output variation of the non-linearity"),
    "slope_calibration": Refused("calibration of the output non-linearity"),
    "v_offset_std": Refused("voltage offsets"),
    "v_offset_w_min": Refused("voltage offset of an implicit reference unit"),
    "r_series": Refused("series resistance"),
    "w_read_asymmetry_dtod": Refused("device polarity read dependence, per-device factors drawn inside the C++ tile"),
    "max_bm_factor": Reproduced("bound-management stop"),
    "max_bm_res": Reproduced("bound-management stop"),
    "bm_test_negative_bound": Reproduced("bound test of negative outputs"),
    "nm_thres": Reproduced("noise-management threshold"),
}

_INPUT_RANGE = {
    "enable": _READ,
    "learn_input_range": _TRAINING,
    "init_value": _READ,
    "init_from_data": _TRAINING,  # (aihwkit updates the range from data only when not is_test)
    "init_std_alpha": _TRAINING,
    "decay": _TRAINING,
    "input_min_percentage": _TRAINING,
    "manage_output_clipping": _TRAINING,
    "output_min_percentage": _TRAINING,
    "gradient_scale": _TRAINING,
    "gradient_relative": _TRAINING,
    "calibration_info": Reproduced("an information field: no effect"),
}

_MAPPING = {
    "digital_bias": Reproduced("digital bias after the periphery, or an analog bias column driven by 1"),
    "weight_scaling_omega": _READ,
    "weight_scaling_columnwise": _READ,
    "weight_scaling_lr_compensation": _TRAINING,
    "learn_out_scaling": _READ,
    "out_scaling_columnwise": _READ,
    "max_input_size": Reproduced("tiles split along inputs, partial sums added in digital"),
    "max_output_size": Reproduced("tiles split along outputs, outputs concatenated"),
}

_MODIFIER_FIELDS = (
    "std_dev",
    "per_batch_sample",
    "res",
    "sto_round",
    "dorefa_clip",
    "pdrop",
    "rel_to_actual_wmax",
    "assumed_wmax",
    "copy_last_column",
    "coeffs",
    "type",
    "g_max",
    "pcm_zero_thres",
    "pcm_t_inference",
    "pcm_prob_at_reset",
    "pcm_prob_at_gmax",
    "pcm_prob_at_random",
    "pcm_t0",
)

#: Every field of an InferenceRPUConfig by dotted path, and what the engine does with it.
ALLOW_LIST: dict = {
    "tile_class": Reproduced("checked on the tiles themselves: aihwkit's C++ InferenceTile"),
    "tile_array_class": Reproduced("checked on the layers themselves: TileModuleArray"),
    "runtime.data_type": Reproduced("float32 arithmetic", ("FLOAT",)),
    "runtime.on_the_fly_bindings": _TRAINING,
    "runtime.offload_input": _TRAINING,
    "runtime.offload_gradient": _TRAINING,
    **{f"pre_post.input_range.{name}": rule for name, rule in _INPUT_RANGE.items()},
    **{f"mapping.{name}": rule for name, rule in _MAPPING.items()},
    **{f"forward.{name}": rule for name, rule in _FORWARD.items()},
    **{f"backward.{name}": _TRAINING for name in _FORWARD},
    **{
        f"update.{name}": _TRAINING
        for name in (
            "desired_bl",
            "fixed_bl",
            "pulse_type",
            "res",
            "x_res_implicit",
            "d_res_implicit",
            "d_sparsity",
            "sto_round",
            "update_bl_management",
            "update_management",
            "um_grad_scale",
        )
    },
    "noise_model": Reproduced(
        "programming and drift run in aihwkit's own Python (torch's generator); the engine reads the resulting weights"
    ),
    "drift_compensation": Reproduced(
        "alpha recomputed through the engine's seeded forward", check=aihwkit.drift_compensation_reason
    ),
    **{f"clip.{name}": _TRAINING for name in ("fixed_value", "sigma", "type")},
    **{f"remap.{name}": _TRAINING for name in ("remapped_wmax", "max_scale_range", "max_scale_ref", "type")},
    "modifier.enable_during_test": Refused(
        "weight modifier drawn by the C++ tile in eval mode",
        noop=lambda value, context: not value or context.values["modifier.type"].name == "NONE",
    ),
    **{f"modifier.{name}": _TRAINING for name in _MODIFIER_FIELDS},
    **{f"device.{name}": _TRAINING for name in ("construction_seed", "diffusion", "lifetime", "reset_std")},
}

# The class of each nested section the list was written for.
_SECTIONS = {
    "runtime": "RuntimeParameter",
    "pre_post": "PrePostProcessingParameter",
    "pre_post.input_range": "InputRangeParameter",
    "mapping": "MappingParameter",
    "forward": "IOParameters",
    "backward": "IOParameters",
    "update": "UpdateParameters",
    "clip": "WeightClipParameter",
    "remap": "WeightRemapParameter",
    "modifier": "WeightModifierParameter",
    "device": "IdealDevice",
}


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def config_settings(config, prefix: str = "") -> tuple[dict, dict, dict]:
    """``(values, defaults, sections)`` of a dataclass ``config``, walked down through its nested
    dataclasses: the leaf fields' values and defaults by dotted path, and the nested sections'
    class names by path."""
    values, defaults, sections = {}, {}, {}
    for field in dataclasses.fields(config):
        path = prefix + field.name
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            sections[path] = type(value).__name__
            sub = config_settings(value, path + ".")
            values.update(sub[0])
            defaults.update(sub[1])
            sections.update(sub[2])
        else:
            values[path] = value
            defaults[path] = _default(field)
    return values, defaults, sections


def _settings_reason(tile, io: aihwkit.ForwardIO, kind: str) -> str | None:
    """Why the allow-list refuses ``tile``'s settings, or None."""
    values, defaults, sections = config_settings(aihwkit.rpu_config_of(tile))
    for path, name in sections.items():
        if _SECTIONS.get(path, name) != name:
            return f"{path} is a {name} (the fast engine knows {_SECTIONS[path]})"
    values.update({f"forward.{name}": value for name, value in io.values.items()})
    perfect = _is_perfect(io)
    context = Context(values, kind)
    for path, value in values.items():
        if perfect and path.startswith("forward."):
            continue  # (a perfect forward uses none of the other forward fields)
        rule = ALLOW_LIST.get(path)
        if rule is None:
            section = path.rpartition(".")[0] or "InferenceRPUConfig"
            return f"{path} (a field of {section} the fast engine does not know)"
        reason = rule.reason(path, value, defaults.get(path), context)
        if reason:
            return reason
    # Per-output values the C++ tile drew although every field is at its no-op value (r_series > 0,
    # for one, draws out_nonlinearity values; so could set_forward_parameters after conversion).
    drawn = [] if perfect else sorted(io.drawn)
    if drawn:
        path = f"forward.{drawn[0]}"
        return f"{path} at its default, but the C++ tile holds values drawn for it ({ALLOW_LIST[path].why})"
    return None


def _is_perfect(io: aihwkit.ForwardIO) -> bool:
    return bool(io.values["is_perfect"]) or io.values["mv_type"].name == "IDEAL"


# --------------------------------------------------------------------------------------------
# The IO spec of a reproduced tile
# --------------------------------------------------------------------------------------------

_NOISE_MANAGEMENT = {"NONE": "none", "ABS_MAX": "abs_max", "MAX": "max", "CONSTANT": "constant"}
_WEIGHT_NOISE = {"NONE": "none", "ADDITIVE_CONSTANT": "additive_constant", "PCM_READ": "pcm_read"}
_AS_TYPE = {"bool": bool, "int": int, "float": float}


def io_spec(io: aihwkit.ForwardIO) -> IOSpec:
    """The :class:`IOSpec` of a tile whose settings the allow-list accepts."""
    v = io.values
    derived = {
        "perfect": _is_perfect(io),
        "nm": _NOISE_MANAGEMENT.get(v["noise_management"].name, "none"),
        "bm": v["bound_management"].name == "ITERATIVE",
        "out_scale": float(np.float32(v["out_scale"]) * np.float32(io.fwd_alpha)),
        "w_noise_type": _WEIGHT_NOISE.get(v["w_noise_type"].name, "none"),
    }
    # the other fields carry aihwkit's name and value, as the field's type
    plain = {f.name: getattr(f.type, "__name__", f.type) for f in dataclasses.fields(IOSpec) if f.name not in derived}
    return IOSpec(**derived, **{name: _AS_TYPE[kind](v[name]) for name, kind in plain.items()})


# --------------------------------------------------------------------------------------------
# Layers and tiles
# --------------------------------------------------------------------------------------------


def tile_reason(tile, kind: str) -> str | None:
    """Why a C++ InferenceTile in a layer of kind ``kind`` cannot be replayed, or None."""
    if aihwkit.is_transposed(tile):
        return "transposed tile inputs/outputs"
    io, reason = aihwkit.read_forward_io(tile)
    if reason:
        return reason
    reason = _settings_reason(tile, io, kind)
    if reason:
        return reason
    if aihwkit.is_mapped(kind) and aihwkit.has_learned_out_scaling(tile):
        return "learned out scaling on a mapped convolution (aihwkit applies it along the image width)"
    return None


def _layer_reason(kind: str, module) -> tuple[list, str | None]:
    """(tiles, None) of an analog layer of kind ``kind`` the engine replays, or ([], the reason)."""
    if kind == "other":
        return [], "only AnalogLinear, AnalogConv1d, AnalogConv2d and their mapped variants are reproduced"
    tiles, reason = aihwkit.layer_tiles(kind, module)
    if reason:
        return [], reason
    for t in tiles:
        reason = tile_reason(t, kind)
        if reason:
            return [], reason
    return tiles, None


def _unreplayed(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(path, module, reason) of each analog layer the engine does not replay, in module order,
    then of each analog tile outside the layers it replays or refuses."""
    found, covered = [], set()
    for name, module in model.named_modules():
        kind = aihwkit.layer_kind(module)
        if kind is None:
            continue
        tiles, reason = _layer_reason(kind, module)
        if reason:
            found.append((name, module, reason))
            tiles = aihwkit.own_tiles(module)  # (said once, for the layer)
        covered.update(id(t) for t in tiles)
    for name, module in model.named_modules():
        if aihwkit.is_tile(module) and id(module) not in covered:
            found.append((name, module, "outside a supported analog layer"))
    return found


def _model_reason(model: nn.Module) -> str | None:
    for name, module, reason in _unreplayed(model):
        if aihwkit.layer_kind(module) is None:  # a tile outside the layers
            return f"analog tile '{name}' ({type(module).__name__}) {reason}"
        return f"layer '{name or type(model).__name__}' ({type(module).__name__}): {reason}"
    return None


def layer_reasons(analog_model: nn.Module) -> dict[str, str]:
    """``{path: reason}`` for each analog layer (or stray tile) of ``analog_model`` that the engine
    does not replay; empty when it replays them all (the aihwkit version aside: see
    :func:`aihwkit_version_reason`). :func:`unsupported_reason` names the first of them."""
    return {name: reason for name, _, reason in _unreplayed(analog_model)}


def unsupported_reason(analog_model: nn.Module) -> str | None:
    """None if :class:`~analogsam.hardware.fast.FastAnalogForward` reproduces every analog tile of
    ``analog_model``; else a short string: an aihwkit version the engine does not mirror, or the
    first layer and the setting it does not reproduce."""
    reason = aihwkit_version_reason()
    if reason:
        return reason
    if not isinstance(analog_model, nn.Module):
        return f"not a torch.nn.Module: {type(analog_model).__name__}"
    return _model_reason(analog_model)
