"""The values of a preset file or of overrides: their keys found in the schema, their types coerced
as TOML gives them, and each checked by the one validator (:func:`analogsam.validation.check`)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from analogsam.hardware.presets.errors import PresetError
from analogsam.hardware.presets.schema import KNOBS_BY_PATH, SECTIONS, TOP_LEVEL_KEYS, Knob
from analogsam.validation import Text, check


def show_value(value: Any) -> str:
    """A value as TOML writes it (``true``, ``"pcm"``, ``6``), for errors and tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def coerce(knob: Knob, value: Any) -> Any:
    """A value as TOML or JSON may spell it, in its knob's type: ``6.0`` for an integer knob is ``6``,
    ``2`` for a number knob is ``2.0`` (so a preset's hash does not depend on the spelling)."""
    if knob.type is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if knob.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check_value(knob: Knob, value: Any, where: str) -> Any:
    """``value`` coerced to the knob's type and checked against its constraint, or a PresetError in
    the one format of :func:`analogsam.validation.check`, prefixed with the file or ``--set`` item."""
    return check(knob.path, coerce(knob, value), knob.constraint, place=where, show=show_value, error=PresetError)


def unknown_key(path: str, where: str) -> PresetError:
    candidates = list(KNOBS_BY_PATH) + list(SECTIONS) + list(TOP_LEVEL_KEYS)
    near = difflib.get_close_matches(path, candidates, n=1, cutoff=0.5)
    if not near and "." in path:
        # a right key in the wrong section, or a misspelt key in a right section
        leaf = path.rsplit(".", 1)[1]
        near = [p for p in KNOBS_BY_PATH if p.rsplit(".", 1)[1] == leaf][:1] or difflib.get_close_matches(
            leaf, [p.rsplit(".", 1)[1] for p in KNOBS_BY_PATH], n=1
        )
        if near and near[0] not in KNOBS_BY_PATH:
            near = [p for p in KNOBS_BY_PATH if p.endswith("." + near[0])][:1]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return PresetError(
        f"{where}: unknown key {path!r}{hint}; valid sections: {', '.join(SECTIONS)}; "
        f"see docs/devices.md or analogsam.hardware.presets.knob_table_markdown() for every key"
    )


def flatten(data: Mapping, where: str) -> dict:
    """A TOML/override mapping -> {"section.key": value}; top-level keys stay bare."""
    flat = {}
    for key, value in data.items():
        if key in TOP_LEVEL_KEYS:
            flat[key] = value
        elif key in SECTIONS:
            if not isinstance(value, Mapping):
                raise PresetError(f"{where}: [{key}] must be a table of settings, got {show_value(value)}")
            for sub, subval in value.items():
                if isinstance(subval, Mapping):
                    raise unknown_key(f"{key}.{sub}", where)
                flat[f"{key}.{sub}"] = subval
        elif "." in key:
            flat[key] = value
        else:
            raise unknown_key(key, where)
    return flat


def apply(flat: Mapping, values: dict, sources: dict, meta: dict, source: str, where: str):
    """Check each of ``flat``'s values and write it into ``values`` (its ``source`` into ``sources``,
    a top-level text such as ``name`` into ``meta``)."""
    for path, value in flat.items():
        if path in TOP_LEVEL_KEYS:
            if path != "extends":
                meta[path] = check(path, value, Text(), place=where, show=show_value, error=PresetError)
            continue
        knob = KNOBS_BY_PATH.get(path)
        if knob is None:
            raise unknown_key(path, where)
        values[knob.section][knob.key] = check_value(knob, value, where)
        sources[knob.section][knob.key] = source
