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
from dataclasses import dataclass, field

import torch
from torch import nn

from analogsam.errors import ConversionError, InvalidParameterError
from analogsam.hardware import presets as devices
from analogsam.hardware.mapping import map_to_tiles
from analogsam.hardware.usage import ELEMENTWISE, MATRIX, ParameterUse, call_model, record_uses, sample_of
from analogsam.models.roles import is_convertible, is_digital_by_design
from analogsam.quantization import programmable_copy, quantized_layers


def unconvertible_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(name, type) of each layer that has its own weights but is neither convertible nor digital by design
    (:mod:`analogsam.models.roles`)."""
    bad = []
    for name, module in model.named_modules():
        if is_convertible(module) or is_digital_by_design(module):
            continue
        if any(True for _ in module.parameters(recurse=False)):
            bad.append((name or "<root>", type(module).__name__))
    return bad


@dataclass
class LayerUse:
    """A layer with parameters of its own outside the known layers (``path``, ``type``), and how
    the sample forward used each of them (``uses``)."""

    path: str
    type: str
    uses: list[ParameterUse]

    @property
    def digital_by_use(self) -> bool:
        """Every parameter used, and element-wise only: the layer stays digital by nature."""
        return bool(self.uses) and all(u.kind == ELEMENTWISE for u in self.uses)

    def problem(self) -> str:
        """Why the layer cannot stay digital by use (for the refusal)."""
        matrix = [u for u in self.uses if u.kind == MATRIX]
        if matrix:
            return (
                f"{', '.join(u.describe() for u in matrix)}: an operand of a matrix product, a crossbar "
                "matrix that no rewrite maps onto tiles"
            )
        unused = [u for u in self.uses if u.kind != ELEMENTWISE]
        return f"{', '.join(u.name for u in unused)} not used by the sample forward, so its use cannot be determined"


@dataclass
class LayerCheck:
    """Which layers outside the known ones stay digital by use (``by_use``), and which ones
    :func:`convert` refuses: ``refused``, ``(path, type, why)`` each, ``why`` None where the use was
    not recorded (no sample given)."""

    by_use: list[LayerUse]
    refused: list[tuple[str, str, str | None]]
    #: Linear/Conv layers whose weights' attributes the network reads from outside them (path ->
    #: what it reads): converted, then tried with one forward (see :func:`convert`).
    read_outside: dict[str, list[str]] = field(default_factory=dict)

    def error(self) -> ConversionError | None:
        """The one-line refusal naming every refused layer, its type, why and what to do; or None."""
        if not self.refused:
            return None
        names = ", ".join(repr(path) for path, _, _ in self.refused)
        keep = f"pass allow_digital=({names},) to keep them digital knowingly"
        if all(why is None for _, _, why in self.refused):
            listed = ", ".join(f"{n} ({t})" for n, t, _ in self.refused)
            return ConversionError(
                f"cannot map these layers onto analog tiles: {listed}. They hold parameters of their own outside "
                "Linear/Conv layers: pass example_inputs= (a sample batch) so that convert() can tell how each is "
                f"used (element-wise ones stay digital), replace these layers, or {keep}."
            )
        listed = "; ".join(f"{n} ({t})" + (f": {why}" if why else "") for n, t, why in self.refused)
        return ConversionError(
            f"cannot map these layers onto analog tiles: {listed}. Replace these layers with Linear/Conv layers "
            f"that the network calls, or {keep}."
        )


def _kept_digital(path: str, allow_digital) -> bool:
    """Whether ``allow_digital`` names the layer at ``path`` or a module around it (aihwkit then
    leaves the whole module digital)."""
    return any(path == name or path.startswith(name + ".") for name in allow_digital)


def check_layers(digital: nn.Module, allow_digital=(), example_inputs=None) -> LayerCheck:
    """Which layers of ``digital`` (already mapped) stay digital by use and which are refused (those in
    ``allow_digital`` aside): layers with parameters aihwkit cannot map that are used as a matrix or
    whose use is unknown, and Linear/Conv layers whose parameters the network uses from outside the
    layer's forward (a tile holds no weight tensor to hand out)."""
    unknown = [(n, t) for n, t in unconvertible_layers(digital) if not _kept_digital(n, allow_digital)]
    if example_inputs is None:
        return LayerCheck([], [(n, t, None) for n, t in unknown])
    modules = dict(digital.named_modules())
    own = {}
    for path, _ in unknown:
        module = modules["" if path == "<root>" else path]
        prefix = "" if path == "<root>" else path + "."
        own[path] = [prefix + n for n, _ in module.named_parameters(recurse=False)]
    layers = {
        path or "<root>": m
        for path, m in modules.items()
        if is_convertible(m) and not _kept_digital(path or "<root>", allow_digital)
    }
    recording = record_uses(digital, example_inputs, [n for names in own.values() for n in names], layers)
    uses = [LayerUse(path, kind, [recording.uses[n] for n in own[path]]) for path, kind in unknown]
    refused = [(u.path, u.type, u.problem()) for u in uses if not u.digital_by_use]
    for path, calls in recording.bypassed.items():
        refused.append(
            (
                path,
                type(layers[path]).__name__,
                f"its parameters are used outside its own forward ({', '.join(calls)}), so an analog tile "
                "cannot stand in for it",
            )
        )
    return LayerCheck([u for u in uses if u.digital_by_use], refused, recording.read_outside)


def _try_forward(analog: nn.Module, digital: nn.Module, example_inputs, check: LayerCheck) -> None:
    """One forward of the converted network on the sample, where the network reads attributes of a
    layer's weight from outside the layer (which an analog layer, holding no weight tensor, lacks):
    a failure is refused with those layers' names instead of surfacing at the first evaluation."""
    try:
        with torch.no_grad():
            call_model(analog, example_inputs)
    except Exception as err:  # noqa: BLE001 (whatever the network's own code raises: named with its layers)
        layers = {path: dict(digital.named_modules()).get(path) for path in check.read_outside}
        listed = "; ".join(
            f"{path} ({type(module).__name__ if module is not None else '?'}): its weight's "
            f"{', '.join(reads)} read from outside the layer"
            for (path, module), reads in zip(layers.items(), check.read_outside.values())
        )
        names = ", ".join(repr(p) for p in check.read_outside)
        raise ConversionError(
            f"the converted network fails on the sample ({type(err).__name__}: {err}) where it reads the "
            f"weights of analog layers, which hold no weight tensor: {listed}. Pass allow_digital=({names},) "
            "to keep them digital knowingly, or replace that code"
        ) from err


def resolve_preset(preset: str | devices.Preset, overrides: dict | None = None) -> devices.Preset:
    """A :class:`~analogsam.hardware.presets.Preset` from a name, a TOML path or a preset, with ``overrides`` applied."""
    return devices.load(preset, overrides=overrides)


def _on_cpu(inputs):
    from torch.utils._pytree import tree_map

    return tree_map(lambda t: t.cpu() if isinstance(t, torch.Tensor) else t, inputs)


def _forget_wrapper_of_namesake(root: nn.Module) -> None:
    """Make aihwkit wrap ``root`` in a class of its own.

    aihwkit wraps a root module that is not a container in ``AnalogWrapper<ClassName>``, a subclass
    of both that it creates once and keeps by class *name* (``AnalogWrapper.SUBCLASSES``): after
    torchvision's ``VisionTransformer`` was converted, timm's ``VisionTransformer`` would be given
    torchvision's class, forward and all. The entry of a namesake class is dropped, so that aihwkit
    creates the right one (models converted before keep theirs)."""
    from aihwkit.nn.modules.container import AnalogWrapper

    registry = getattr(AnalogWrapper, "SUBCLASSES", None)
    if not isinstance(registry, dict):
        return
    name = f"{AnalogWrapper.__name__}{type(root).__name__}"
    known = registry.get(name)
    if known is not None and type(root) not in known.__bases__:
        del registry[name]


def _aihwkit_refusal(digital: nn.Module, rpu_config, err: Exception) -> ConversionError:
    """aihwkit's conversion failed with ``err``: the layer it fails on, by path and type, tried
    one at a time, with what to do."""
    from aihwkit.nn.conversion import convert_to_analog

    for path, module in digital.named_modules():
        if not is_convertible(module):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                convert_to_analog(copy.deepcopy(module), rpu_config)
        except Exception as layer_err:  # noqa: BLE001 (any error of aihwkit's is reported with its layer)
            return ConversionError(
                f"layer {path or '<root>'} ({type(module).__name__}({module.extra_repr()})): aihwkit cannot "
                f"put it on analog tiles ({type(layer_err).__name__}: {layer_err}); change the layer's "
                "settings to ones aihwkit supports, or replace the layer"
            )
    return ConversionError(f"aihwkit cannot convert this network ({type(err).__name__}: {err})")


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
    example_inputs=None,
    input_ranges: dict | None = None,
) -> nn.Module:
    """Return an analog copy of ``model`` whose Linear/Conv layers are aihwkit tiles for ``preset``.

    Args:
        model: any ``torch.nn.Module``; it is not modified.
        preset: a preset name (``pcm``, ``rram-wan2022``, ...), a path to a TOML preset, or a loaded preset.
        overrides: preset values to change, e.g. ``{"io.adc_bits": 6}``.
        allow_digital: paths of layers to keep digital knowingly: layers with parameters aihwkit cannot
            map (otherwise refused), or Linear/Conv layers (then left out of the conversion).
        calibration_batches: ``(inputs, labels)`` batches for presets that need input-range
            calibration (``preset.needs_input_range_calibration``); the first 1000 samples are used.
        example_inputs: a sample batch of inputs (what ``model(inputs)`` takes; a dict is passed
            as keywords), or None: the inputs of the first batch of ``calibration_batches``.
            Needed only when the model holds parameters outside Linear/Conv and the known layers:
            one forward on its first two samples tells which of them are used element-wise (they
            stay digital) and which as a matrix (refused by name).
        input_ranges: ``{layer name: [range per tile]}``, the input ranges hardware-aware training
            learned (:attr:`analogsam.runs.TrainedRun.input_ranges`): for a preset with static
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
    # A quantized network is programmed with its quantized weights (programmable_copy deep-copies).
    digital = map_to_tiles(programmable_copy(model)).cpu().eval()
    if example_inputs is None and calibration_batches is not None:
        example_inputs = next(iter(calibration_batches), (None,))[0]
    if example_inputs is not None:
        example_inputs = _on_cpu(sample_of(example_inputs))
    check = check_layers(digital, allow_digital, example_inputs)
    if check.error() is not None:
        raise check.error()
    if not any(is_convertible(m) for m in digital.modules()):
        raise ConversionError(f"{type(model).__name__} has no Linear or Conv layer: nothing to put on analog tiles")
    preset = resolve_preset(preset, overrides)
    rpu_config = preset.rpu_config()
    with warnings.catch_warnings():
        # aihwkit warns about every layer it keeps digital; we checked those above.
        warnings.simplefilter("ignore")
        _forget_wrapper_of_namesake(digital)
        try:
            analog = convert_to_analog(digital, rpu_config, exclude_modules=list(allow_digital))
        except Exception as err:  # aihwkit's own refusal (a ValueError, say): name the layer
            raise _aihwkit_refusal(digital, rpu_config, err) from err
    analog.eval()
    if check.read_outside:
        _try_forward(analog, digital, example_inputs, check)
    analog.analogsam_digital_by_use = check.by_use  # the layers whose parameters stay digital by use
    if preset.needs_input_range_calibration and input_ranges:
        # a quantized layer is programmed behind its activation quantizer: it is the copy's "<name>.1"
        behind = {name: f"{name}.1" for name, _ in quantized_layers(model)}
        _set_input_ranges(analog, {behind.get(name, name): values for name, values in input_ranges.items()})
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
