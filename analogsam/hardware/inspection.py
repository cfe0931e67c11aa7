"""The layer report: where every layer of a network goes on the simulated hardware, and why.

:func:`layer_report` converts a copy of the network for a preset exactly as
:func:`analogsam.hardware.conversion.convert` does (the rewrites of :mod:`analogsam.hardware.mapping`,
then aihwkit's conversion) and reads the result back: for each layer, whether it sits on analog tiles
or stays digital and why, the real tiles aihwkit built for it (rows = inputs, including an analog
bias row, x columns = outputs, as the preset's ``tile.rows`` / ``tile.cols`` bound them), its
parameters, and which engine runs it (:func:`analogsam.hardware.fast.unsupported_reason` decides
whether the fast engine replays the whole network; digital layers run as torch modules in both
backends). :func:`format_layer_report` prints it as a table.

Layers are the leaf modules of the network, a module that holds parameters of its own, and each
rewritten module as one layer (its ``Linear``/``Conv`` children are its tiles; the rewrite's
:attr:`~analogsam.hardware.mapping.base.Rewrite.description` says which parts are analog).
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn

from analogsam.hardware.conversion import ConversionError, check_layers, convert, resolve_preset
from analogsam.hardware.mapping import REWRITES, map_to_tiles
from analogsam.hardware.usage import sample_of
from analogsam.models.roles import is_convertible, is_digital_by_design, is_norm_layer

#: Why a layer without crossbar weights stays digital, by kind.
_DIGITAL_BY_DESIGN = (
    (is_norm_layer, "digital by design (normalisation, applied by the digital periphery)"),
    (lambda m: isinstance(m, nn.PReLU), "digital by design (an activation, applied by the digital periphery)"),
    (lambda m: isinstance(m, (nn.Embedding, nn.EmbeddingBag)), "digital (a lookup, not a matrix-vector product)"),
)


class LayerReport(list):
    """The rows of :func:`layer_report`, with what the table's header and footer say: ``network``
    (its class name), ``preset`` (the resolved preset), ``engine_reason`` (None: the fast engine
    replays every tile; else why ``backend="auto"`` uses aihwkit), ``refusal`` (the error
    :func:`~analogsam.hardware.conversion.convert` raises for this network, or None), ``notes`` and
    ``device`` (the device the engines were chosen for; on a GPU only the fast engine runs)."""

    def __init__(self, rows, *, network: str, preset, engine_reason, refusal, notes=(), device="cpu"):
        super().__init__(rows)
        self.device = str(device)
        self.network = network
        self.preset = preset
        self.engine_reason = engine_reason
        self.refusal = refusal
        self.notes = list(notes)


def _network(model) -> nn.Module:
    # A TrainedRun (analogsam.training, a layer above this one) is recognised by its network.
    if not isinstance(model, nn.Module) and isinstance(getattr(model, "model", None), nn.Module):
        return model.model
    if not isinstance(model, nn.Module):
        from analogsam.errors import InvalidParameterError

        raise InvalidParameterError(
            f"layer_report() needs a torch.nn.Module or a TrainedRun, got {type(model).__name__}"
        )
    return model


def _layers(module: nn.Module, path: str = ""):
    """(path, module, whole) of each layer: rewritten modules (whole: their children are theirs),
    leaves, and modules with parameters of their own (whole=False: their children are listed)."""
    rewritten = getattr(module, "analogsam_rewrite", None) is not None
    children = [(k, c) for k, c in module._modules.items() if c is not None]
    if rewritten or not children:
        yield path, module, True
        return
    if any(True for _ in module.parameters(recurse=False)):
        yield path, module, False
    for key, child in children:
        yield from _layers(child, f"{path}.{key}" if path else key)


def _tiles(analog_module) -> list[tuple[int, int]]:
    """(rows, cols) of every analog tile in ``analog_module``: inputs (plus an analog bias row)
    by outputs."""
    from analogsam.hardware.fast.aihwkit_adapter import own_tiles

    return [(int(t.in_size) + int(bool(t.analog_bias)), int(t.out_size)) for t in own_tiles(analog_module)]


def _rewrite_description(name: str) -> str:
    return next((r.description for r in REWRITES if r.name == name), f"rewritten by {name}")


def _digital_why(
    kind: str, module: nn.Module, path: str, *, allowed: bool, refused: str | None, unmappable: bool, by_use=None
) -> tuple[str, str]:
    """(placement, why) of a layer that has no tiles (``refused``: why convert() refuses it, if it does;
    ``by_use``: its :class:`~analogsam.hardware.conversion.LayerUse` if its parameters stay digital by use)."""
    if unmappable and not allowed:
        what = f"{kind}: {refused}" if refused else f"{kind}: cannot be mapped onto analog tiles (no rewrite for it)"
        return "unmappable", (
            f"{what}; pass allow_digital=({path!r},) to keep it digital, or replace the layer"
            + ("" if refused else " (or pass example_inputs= so its parameters' use can be recorded)")
        )
    knowingly = " (allow_digital)" if unmappable else ""
    if by_use is not None:
        listed = ", ".join(u.describe() for u in by_use.uses)
        return "digital", f"{kind}: digital by use, its parameters used element-wise only: {listed}"
    for test, why in _DIGITAL_BY_DESIGN:
        if test(module):
            return "digital", f"{kind}: {why}{knowingly}"
    if unmappable or allowed:
        return "digital", f"{kind}: kept digital knowingly (allow_digital)"
    if is_digital_by_design(module):
        return "digital", f"{kind}: digital by design"
    if any(True for _ in module.parameters(recurse=False)) and is_convertible(module):
        return "digital", (
            f"{kind}: digital, since aihwkit converts the exact Linear/Conv classes only and this is a subclass"
        )
    return "digital", f"{kind}: digital (no weights)"


def layer_report(
    model,
    preset="pcm",
    overrides: dict | None = None,
    *,
    allow_digital: tuple[str, ...] = (),
    device=None,
    example_inputs=None,
) -> LayerReport:
    """One row per layer of ``model`` (a ``torch.nn.Module`` or a TrainedRun) converted for ``preset``.

    Each row is a dict: ``path``, ``type`` (of the layer in ``model``), ``placement`` ("analog",
    "digital" or "unmappable": refused by :func:`~analogsam.hardware.conversion.convert`), ``why``,
    ``rewrite`` (the rewrite's name, or None), ``tiles`` (``[rows, cols]`` of each analog tile),
    ``parameters`` (weights and biases the layer holds) and ``engine`` ("fast" or "aihwkit" for an
    analog layer, as ``backend="auto"`` chooses for the whole network; "torch" for a digital one;
    "-" for an unmappable one), with ``engine_reason``: why the fast engine does not replay this
    layer, or None.

    The report also lists a network that ``convert`` refuses (its ``refusal`` says why): its
    unmappable layers are then left digital to show the rest. A preset that calibrates input ranges
    on data is reported uncalibrated (calibration sets the ranges, not the tiles or the engine).

    ``device`` (:func:`analogsam.device.resolve_device`; None: the CPU): the engines as an evaluation
    there chooses them. aihwkit's tiles run on the CPU only: on an explicit GPU a layer the fast
    engine does not replay gets ``engine`` "none"; ``"auto"`` measures such a network on the CPU.

    ``example_inputs``: a sample batch, as :func:`~analogsam.hardware.conversion.convert` takes it:
    parameters outside the known layers are then judged by use, and a layer whose parameters are
    used element-wise only is ``digital`` by use (its row's ``digital_by_use`` names them; the
    report's ``digital_by_use`` counts them); without it such layers are unmappable.
    """
    from analogsam.device import asks_for_accelerator, resolve_device
    from analogsam.hardware.fast import aihwkit_adapter, unsupported_reason
    from analogsam.hardware.fast.support import layer_reasons

    resolved = torch.device("cpu") if device is None else resolve_device(device)
    on_gpu = asks_for_accelerator(device, resolved)

    network = _network(model)
    preset = resolve_preset(preset, overrides)
    mapped = map_to_tiles(copy.deepcopy(network)).cpu().eval()
    if example_inputs is not None:
        example_inputs = sample_of(example_inputs)
    check = check_layers(mapped, allow_digital, example_inputs)
    refused = {path: why for path, _, why in check.refused}
    by_use = {u.path: u for u in check.by_use}
    refusal = None
    if refused or check.read_outside:
        try:
            convert(network, preset, allow_digital=allow_digital, example_inputs=example_inputs)
        except ConversionError as err:
            refusal = str(err)
            if not refused:  # the converted network failed where it reads these layers' weights
                refused = {
                    path: f"its weight's {', '.join(reads)} read from outside the layer, where the converted "
                    "network fails"
                    for path, reads in check.read_outside.items()
                }
    unmappable = list(refused)
    notes = []
    converted_with = preset
    if preset.needs_input_range_calibration:
        converted_with = resolve_preset(preset, {"io.input_range_calibration": False})
        notes.append(
            "input ranges not calibrated for this report (io.input_range_calibration: they are set "
            "from data before evaluation; the tiles and the engine are the same)"
        )
    analog = convert(
        network,
        converted_with,
        allow_digital=tuple(set(allow_digital) | set(unmappable)),
        example_inputs=example_inputs,
    )
    engine_reason = unsupported_reason(analog)
    reasons = layer_reasons(analog) if engine_reason is not None else {}
    analog_modules = dict(analog.named_modules())
    original_modules = dict(network.named_modules())

    rows = []
    for path, module, whole in _layers(mapped):
        original = original_modules.get(path, module)
        kind = type(original).__name__
        rewrite = getattr(module, "analogsam_rewrite", None)
        analog_module = analog_modules.get(path)
        tiles = _tiles(analog_module) if analog_module is not None and whole else []
        parameters = sum(p.numel() for p in module.parameters(recurse=whole))
        name = path or "<root>"
        row = {
            "path": name,
            "type": kind,
            "rewrite": rewrite,
            "tiles": [list(t) for t in tiles],
            "parameters": parameters,
            "engine_reason": None,
            "digital_by_use": [u.name for u in by_use[name].uses] if name in by_use else [],
        }
        if tiles:
            row["placement"] = "analog"
            row["why"] = f"{kind}: {_rewrite_description(rewrite)}" if rewrite else f"{kind}: analog tiles"
            row["engine"] = "fast" if engine_reason is None else ("none" if on_gpu else "aihwkit")
            if any(aihwkit_adapter.aihwkit_cannot_run(m) for m in analog_module.modules()):
                row["engine"] = "none"  # neither backend can run it
            row["engine_reason"] = next((r for p, r in reasons.items() if _within(p, path)), None)
        else:
            placement, why = _digital_why(
                kind,
                module,
                name,
                allowed=name in allow_digital,
                refused=refused.get(name),
                unmappable=name in unmappable,
                by_use=by_use.get(name),
            )
            row.update(placement=placement, why=why, engine="-" if placement == "unmappable" else "torch")
        rows.append(row)
    return LayerReport(
        rows,
        network=type(network).__name__,
        preset=preset,
        engine_reason=engine_reason,
        refusal=refusal,
        notes=notes,
        device=resolved if engine_reason is None or on_gpu else "cpu",
    )


def _within(name: str, path: str) -> bool:
    """Whether module ``name`` is the layer at ``path`` or inside it."""
    return not path or name == path or name.startswith(path + ".")


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def _tiles_text(tiles) -> str:
    if not tiles:
        return "-"
    counts = Counter(tuple(t) for t in tiles)
    return " + ".join(f"{n} x {r}x{c}" for (r, c), n in counts.items())


def _engine_verdict(rows, analog) -> str:
    device = getattr(rows, "device", "cpu")
    if device != "cpu" and rows.engine_reason is not None:
        return (
            f"engine: none on {device}: aihwkit's tiles run on the CPU only and the fast engine does not "
            f"replay {rows.engine_reason} (evaluate with --device cpu)"
        )
    blocked = [r["path"] for r in analog if r["engine"] == "none"]
    if blocked:
        return (
            f"engine: none: aihwkit cannot run layer {', '.join(blocked)} and the fast engine does not replay it either"
        )
    if rows.engine_reason is None:
        return "engine: fast (the seeded fast engine replays every analog tile)" + (
            "" if device == "cpu" else f", on {device}"
        )
    listed = any(r.get("engine_reason") for r in analog)
    return (
        "engine: aihwkit's C++ tiles for the whole network (backend='auto'), since the fast engine does not "
        "replay" + (":" if listed else f" {rows.engine_reason}")
    )


def format_layer_report(rows) -> str:
    """The report as a text table (columns: layer, type, placement, tiles as count x rows x cols,
    parameters, engine, why), with a header naming the network and preset and a footer with the
    totals and the engine's verdict."""
    preset = getattr(rows, "preset", None)
    lines = []
    if preset is not None:
        tile = preset.values["tile"]
        size = " x ".join(f"{tile[k]} {k}" if tile[k] else f"any {k}" for k in ("rows", "cols"))
        lines.append(
            f"{getattr(rows, 'network', 'network')} on preset {preset.name!r} "
            f"(tiles of at most {size}; rows are inputs, columns outputs)"
        )
    header = ("layer", "type", "placement", "tiles", "parameters", "engine", "why")
    table = [header] + [
        (r["path"], r["type"], r["placement"], _tiles_text(r["tiles"]), f"{r['parameters']:,}", r["engine"], r["why"])
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for line in table:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1])
    analog = [r for r in rows if r["placement"] == "analog"]
    n_tiles = sum(len(r["tiles"]) for r in analog)
    cells = sum(t[0] * t[1] for r in analog for t in r["tiles"])
    digital = sum(r["placement"] == "digital" for r in rows)
    by_use = sum(len(r.get("digital_by_use", ())) for r in rows)
    lines.append("")
    lines.append(
        f"{_count(len(analog), 'analog layer')} on {_count(n_tiles, 'tile')} ({_count(cells, 'cell')}), "
        f"{_count(digital, 'digital layer')}, {_count(by_use, 'parameter')} digital by use"
    )
    if hasattr(rows, "engine_reason"):
        lines.append(_engine_verdict(rows, analog))
    for r in analog:
        if r.get("engine_reason"):
            lines.append(f"  {r['path']} ({r['type']}): {r['engine_reason']}")
    for note in getattr(rows, "notes", []):
        lines.append(f"note: {note}")
    if getattr(rows, "refusal", None):
        lines.append(f"convert() refuses this network as it is: {rows.refusal}")
    return "\n".join(lines)
