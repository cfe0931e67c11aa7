"""Knob sweeps: one preset, many values of its knobs (``--vary KEY=V1,V2,...``, ``vary=``).

A sweep over a device knob is a set of preset *variants*: each is the preset with the knob (or, for
several knobs, one point of their grid) overridden, validated exactly as ``--set`` validates it, with
its own hash and a readable name, ``pcm[io.adc_bits=4]`` or ``pcm[io.adc_bits=4,noise.drift_scale=0.5]``.
The variant remembers what it varies (``Preset.varied``), which becomes one column per knob of
the result rows, and the preset it varies (``Preset.base_name``), from which its programming
seeds are derived, so every value of a knob is measured on the same noise draws.

    >>> from analogsam.hardware import presets
    >>> vary = presets.parse_vary_options(["io.adc_bits=4,6"])
    >>> [p.name for p in presets.variants("pcm", vary)]
    ['pcm[io.adc_bits=4]', 'pcm[io.adc_bits=6]']
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

from analogsam.hardware.presets.errors import PresetError
from analogsam.hardware.presets.loading import Preset, load
from analogsam.hardware.presets.schema import KNOBS_BY_PATH
from analogsam.hardware.presets.set_options import parse_raw
from analogsam.hardware.presets.values import check_value, unknown_key

__all__ = ["format_knob_value", "parse_vary_options", "variant_name", "variants", "check_vary"]


def format_knob_value(value) -> str:
    """A knob value as variant names and tables show it: ``4``, ``0.5``, ``1.0``, ``true``, ``pcm-like``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def variant_name(base: str, varied: Mapping) -> str:
    """``base[key=value,...]``: the name of the variant of ``base`` with the knobs ``varied``."""
    return f"{base}[{','.join(f'{k}={format_knob_value(v)}' for k, v in varied.items())}]"


def parse_vary_options(items: Sequence[str] | None) -> dict:
    """Parse CLI ``--vary KEY=V1,V2,...`` items into ``{key: [typed values]}`` (keys in the order given).

    ``KEY`` is any key ``--set`` accepts; each value is parsed and range-checked as ``--set`` does.

    >>> parse_vary_options(["io.adc_bits=4,6", "noise.drift_scale=0.5,2"])
    {'io.adc_bits': [4, 6], 'noise.drift_scale': [0.5, 2.0]}
    """
    out: dict = {}
    for item in items or ():
        if not isinstance(item, str) or "=" not in item:
            raise PresetError(f"--vary {item!r}: expected SECTION.KEY=V1,V2,..., e.g. --vary io.adc_bits=4,6,8")
        key, raw = (s.strip() for s in item.split("=", 1))
        where = f"--vary {item}"
        texts = [t.strip() for t in raw.split(",")]
        if not key or not raw or not all(texts):
            raise PresetError(
                f"{where}: expected SECTION.KEY=V1,V2,... with no empty value, e.g. --vary io.adc_bits=4,6,8"
            )
        knob = KNOBS_BY_PATH.get(key)
        if knob is None:
            raise unknown_key(key, where)
        if key in out:
            raise PresetError(f"{where}: {key} is varied twice; give all its values in one --vary {key}=V1,V2,...")
        out.update(check_vary({key: [parse_raw(knob, text, where) for text in texts]}, where))
    return out


def check_vary(vary: Mapping | None, where: str = "vary") -> dict:
    """``vary`` (``{key: [values]}``) with every key known and every value valid for its knob (coerced
    to the knob's type), or a PresetError naming the key, the value and what is allowed."""
    if vary is None:
        return {}
    if not isinstance(vary, Mapping):
        raise PresetError(f"{where} must be a dict such as {{'io.adc_bits': [4, 6, 8]}}, got {vary!r}")
    out = {}
    for key, values in vary.items():
        knob = KNOBS_BY_PATH.get(key)
        if knob is None:
            raise unknown_key(str(key), where)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise PresetError(f"{where}: {key} needs a non-empty list of values, e.g. [4, 6, 8], got {values!r}")
        checked = [check_value(knob, v, where) for v in values]
        repeated = sorted({format_knob_value(v) for v in checked if checked.count(v) > 1})
        if repeated:
            raise PresetError(f"{where}: {key} lists {', '.join(repeated)} more than once; give each value once")
        out[key] = checked
    return out


def variants(preset, vary: Mapping | None, *, overrides: Mapping | None = None, devices=None) -> list:
    """The variants of ``preset`` (a name, a path or a :class:`Preset`, with ``overrides`` applied first)
    over the grid of ``vary`` (``{key: [values]}``; several keys: every combination, the first key
    slowest); ``[preset]`` itself when ``vary`` is empty. A key both overridden and varied is refused."""
    vary = check_vary(vary)
    base = load(preset, overrides=overrides, devices=devices) if not isinstance(preset, Preset) else preset
    if isinstance(preset, Preset) and overrides:
        base = preset.with_overrides(overrides)
    if not vary:
        return [base]
    fixed = [k for k in vary if k in base.overrides]
    if fixed:
        raise PresetError(
            f"preset {base.name!r}: {', '.join(fixed)} is both set (--set, overrides=) and varied (--vary, vary=): "
            "give its values in one of them"
        )
    if base.varied:
        raise PresetError(f"preset {base.name!r} is already a variant of {base.base_name!r}: vary the base preset")
    out = []
    for combo in itertools.product(*vary.values()):
        varied = dict(zip(vary, combo))
        variant = base.with_overrides(varied)
        out.append(
            dataclasses.replace(variant, name=variant_name(base.name, varied), varied=varied, base_name=base.name)
        )
    return out
