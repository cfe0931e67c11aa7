"""Torch model -> aihwkit analog model, configured from a device preset.

``convert(model, "pcm")`` deep-copies ``model``, rewrites the layers aihwkit cannot convert itself
(:mod:`analogsam.hardware.mapping`), builds the preset's complete ``InferenceRPUConfig``
(C++ tiles) *before* conversion — aihwkit 1.1.0 ignores forward settings changed on a converted
C++ tile — and replaces every ``Linear`` and ``Conv1d/2d/3d`` by its analog counterpart with
``aihwkit.nn.conversion.convert_to_analog``. Normalisation, pooling and activations stay digital.
A layer that holds weights but cannot become an analog tile is refused with its name, instead of
being left digital without a word.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from analogsam.errors import AnalogsamError, InvalidParameterError
from analogsam.hardware import presets as devices
from analogsam.hardware.mapping import map_to_tiles
from analogsam.robustness.roles import is_convertible, is_digital_by_design


class ConversionError(AnalogsamError, ValueError):
    """The model holds layers that cannot be mapped onto analog tiles."""


def unconvertible_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(name, type) of each layer that has its own weights but is neither convertible nor digital by design
    (:mod:`analogsam.robustness.roles`)."""
    bad = []
    for name, module in model.named_modules():
        if is_convertible(module) or is_digital_by_design(module):
            continue
        if any(True for _ in module.parameters(recurse=False)):
            bad.append((name or "<root>", type(module).__name__))
    return bad


def resolve_preset(preset: str | devices.Preset, overrides: dict | None = None) -> devices.Preset:
    """A :class:`~analogsam.hardware.presets.Preset` from a name, a TOML path or a preset, with ``overrides`` applied."""
    return devices.load(preset, overrides=overrides)


def calibrate(analog: nn.Module, batches, max_samples: int = 1000, seed: int = 0) -> None:
    """Set the static input ranges of every tile from data (aihwkit's CACHE_QUANTILE calibration).

    Needed by presets with ``io.input_range_calibration = true`` (e.g. ``hwa-standard``), whose tiles
    clip inputs at a fixed range instead of scaling each input vector. It must run before programming,
    since calibration rebuilds the tiles.
    """
    from aihwkit.inference.calibration import InputRangeCalibrationType, calibrate_input_ranges

    inputs, seen = [], 0
    for batch in batches:
        inputs.append(batch[0])
        seen += len(batch[0])
        if seen >= max_samples:
            break
    if not inputs:
        raise InvalidParameterError("calibration needs at least one batch of inputs")
    x = torch.cat([t.cpu() for t in inputs])[:max_samples]  # (the tiles are on the CPU; inputs may be on a GPU)
    # aihwkit subsamples its input cache with torch's global generator: fix it here, without
    # disturbing the caller's random stream, so the same data always gives the same ranges.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        calibrate_input_ranges(
            analog,
            InputRangeCalibrationType.CACHE_QUANTILE,
            iter([((x[i : i + 250],), {}) for i in range(0, len(x), 250)]),
        )


def convert(
    model: nn.Module,
    preset: str | devices.Preset = "pcm",
    *,
    overrides: dict | None = None,
    allow_digital: tuple[str, ...] = (),
    calibration_batches=None,
    input_ranges: dict | None = None,
) -> nn.Module:
    """Return an analog copy of ``model`` whose Linear/Conv layers are aihwkit tiles for ``preset``.

    Args:
        model: any ``torch.nn.Module``; it is not modified.
        preset: a preset name (``pcm``, ``rram-wan2022``, ...), a path to a TOML preset, or a loaded preset.
        overrides: preset values to change, e.g. ``{"io.adc_bits": 6}``.
        allow_digital: names of layers with weights that may stay digital (otherwise an error).
        calibration_batches: ``(inputs, labels)`` batches for presets that need input-range
            calibration (``preset.needs_input_range_calibration``); the first 1000 samples are used.
        input_ranges: ``{layer name: [range per tile]}``, the input ranges hardware-aware training
            learned (:attr:`analogsam.training.TrainedRun.input_ranges`): for a preset with static
            input ranges they are set on the tiles instead of calibrating (a network measured as it
            was trained); ignored by presets that scale each input vector instead.

    The returned model is in eval mode; call ``program_analog_weights()`` and
    ``drift_analog_weights(t)`` on it (or use :func:`analogsam.evaluate`, which does). It is on
    the CPU, wherever ``model`` is: aihwkit's wheels have no CUDA tiles. Evaluation on a GPU keeps
    it there for programming and drift and runs the fast engine's forward on the GPU
    (:class:`analogsam.hardware.fast.FastAnalogForward`, ``device=``).
    """
    from aihwkit.nn.conversion import convert_to_analog

    if not isinstance(model, nn.Module):
        raise InvalidParameterError(f"convert() needs a torch.nn.Module, got {type(model).__name__}")
    digital = map_to_tiles(copy.deepcopy(model)).cpu().eval()
    bad = [(n, t) for n, t in unconvertible_layers(digital) if n not in allow_digital]
    if bad:
        listed = ", ".join(f"{n} ({t})" for n, t in bad)
        raise ConversionError(
            f"cannot map these layers onto analog tiles: {listed}. aihwkit converts Linear and Conv1d/2d/3d "
            "layers; replace these layers, or pass allow_digital=(names...) to keep them digital knowingly."
        )
    if not any(is_convertible(m) for m in digital.modules()):
        raise ConversionError(f"{type(model).__name__} has no Linear or Conv layer: nothing to put on analog tiles")
    preset = resolve_preset(preset, overrides)
    with warnings.catch_warnings():
        # aihwkit warns about every layer it keeps digital; we checked those above.
        warnings.simplefilter("ignore")
        analog = convert_to_analog(digital, preset.rpu_config())
    analog.eval()
    if preset.needs_input_range_calibration and input_ranges:
        _set_input_ranges(analog, input_ranges)
    elif preset.needs_input_range_calibration:
        if calibration_batches is None:
            raise ConversionError(
                f"preset {preset.name!r} has io.input_range_calibration = true: pass calibration_batches= "
                "(a few batches of typical inputs), or --set io.input_range_calibration=false"
            )
        calibrate(analog, calibration_batches)
    analog.analogsam_preset = preset  # so evaluation can record the preset with its results
    return analog


def _set_input_ranges(analog: nn.Module, ranges: dict) -> None:
    """Set each tile's static input range from ``ranges`` ({layer: one value per input block}, in
    aihwkit's tile order: input blocks outer, output blocks inner)."""
    from aihwkit.nn.modules.base import AnalogLayerBase

    layers = {name: m for name, m in analog.named_modules() if isinstance(m, AnalogLayerBase) and name}
    missing = sorted(set(ranges) - set(layers))
    if missing:
        raise ConversionError(
            f"input ranges given for layers the converted network does not have: {', '.join(missing)}; "
            "pass the ranges of the network they were learned on"
        )
    for name, values in ranges.items():
        tiles = list(layers[name].analog_tiles())
        per_block = len(tiles) // len(values) if values and len(tiles) % len(values) == 0 else None
        if per_block is None:
            raise ConversionError(
                f"layer {name}: {len(values)} learned input range(s) for {len(tiles)} tile(s); train and evaluate "
                "with the same tile size (tile.rows)"
            )
        for i, tile in enumerate(tiles):
            tile.set_input_range(float(values[i // per_block]))
