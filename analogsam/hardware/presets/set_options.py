"""The command line's ``--set SECTION.KEY=VALUE``: each text read as its knob's type and checked
where it was typed, so an error names the ``--set`` item."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analogsam.hardware.presets.errors import PresetError
from analogsam.hardware.presets.schema import KNOBS_BY_PATH, Knob
from analogsam.hardware.presets.values import check_value, unknown_key
from analogsam.validation import refusal

__all__ = ["parse_set_options", "parse_raw"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_set_options(items: Sequence[str] | None) -> dict:
    """Parse CLI ``--set section.key=value`` items into a flat overrides dict with typed values.

    >>> parse_set_options(["io.adc_bits=6", "noise.model=pcm-like"])
    {'io.adc_bits': 6, 'noise.model': 'pcm-like'}
    """
    out: dict = {}
    for item in items or ():
        if not isinstance(item, str) or "=" not in item:
            raise PresetError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. --set io.adc_bits=6")
        key, raw = (s.strip() for s in item.split("=", 1))
        where = f"--set {item}"
        if not key or not raw:
            raise PresetError(f"{where}: expected SECTION.KEY=VALUE, e.g. --set io.adc_bits=6")
        knob = KNOBS_BY_PATH.get(key)
        if knob is None:
            if key in ("name", "description", "device"):
                out[key] = raw
                continue
            raise unknown_key(key, where)
        out[key] = check_value(knob, parse_raw(knob, raw, where), where)  # refused naming the --set item
    return out


def parse_raw(knob: Knob, raw: str, where: str) -> Any:
    """The text ``raw`` read as the knob's type (its range is checked when the value is applied)."""
    text = raw.strip().strip('"').strip("'")
    try:
        if knob.type is bool:
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if knob.type is int:
            return int(text)
        if knob.type is float:
            return float(text)
    except ValueError:
        raise PresetError(refusal(knob.path, knob.constraint, raw, place=where)) from None
    return text
