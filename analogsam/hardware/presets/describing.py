"""Presets for people: the list of loadable presets, one preset's table of values with units and
sources, and the generated knob table of ``docs/devices.md``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from analogsam.hardware.presets.discovery import catalog, shown_path, shown_source
from analogsam.hardware.presets.loading import Preset, load
from analogsam.hardware.presets.schema import KNOBS, MODEL_CLASS, MODEL_KNOBS, describe_time
from analogsam.hardware.presets.schema import knob_table_markdown as _knob_table_markdown
from analogsam.hardware.presets.values import show_value

__all__ = ["describe", "knob_table_markdown", "list_presets"]


def list_presets(devices: str | os.PathLike | Sequence | None = None) -> list:
    """Every preset loadable by name, shipped ones first, then those of the user's folders
    (``devices``, ``$ANALOGSAM_DEVICES``): [{"name", "device", "description", "path", "hash",
    "source"}, ...], where ``source`` is ``"shipped"`` or the user's folder."""
    rows = []
    for name, (path, source) in catalog(devices).items():
        p = load(path, devices=devices)
        rows.append(
            {
                "name": name,  # what loads it (a file's stem; its ``name =`` labels its rows)
                "device": p.device,
                "description": p.description,
                "path": str(path),
                "hash": p.hash,
                "source": source,
            }
        )
    return rows


def describe(preset: Preset | str) -> str:
    """A human-readable table of every resolved value with its unit and source (files shown by
    :func:`shown_path`)."""
    p = load(preset) if not isinstance(preset, Preset) else preset
    lines = [
        f"preset       {p.name}",
        f"device       {p.device}",
        f"description  {p.description}",
        f"file         {shown_path(p.path)}",
        f"hash         {p.hash}",
    ]
    times = p.supported_times
    if times is None:
        lines.append("times        any t >= 0 s")
    else:
        lines.append(
            "times        ONLY t = "
            + ", ".join(describe_time(t) for t in times)
            + f" ({MODEL_CLASS[p.values['noise']['model']].rsplit('.', 1)[-1]} is fitted at "
            "these times only; other times are refused)"
        )
    if p.needs_input_range_calibration:
        lines.append("calibration  input ranges must be calibrated on data after conversion")
    lines.append("")
    model = p.values["noise"]["model"]
    rows = [("key", "value", "unit", "source")]
    for knob in KNOBS:
        value = p.values[knob.section][knob.key]
        source = shown_source(p.sources[knob.section][knob.key])
        if knob.section == "noise" and knob.key != "model" and knob.key not in MODEL_KNOBS[model]:
            source += f" (unused by {model})"
        rows.append((knob.path, show_value(value), knob.unit, source))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, r in enumerate(rows):
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines) + "\n"


def knob_table_markdown() -> str:
    """The generated markdown table of every knob (key, unit, allowed, default, meaning)."""
    return _knob_table_markdown()
