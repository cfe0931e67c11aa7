"""Device presets: validated, documented TOML data that configures aihwkit analog tiles.

A preset is a TOML file that names a noise model and sets knobs with units. The shipped ones live
in the repository's top-level ``devices/`` folder (installed with the package as ``analogsam/devices``);
a user's own file is passed by path, or loaded by name from a folder of them (``devices=``,
``--devices DIR`` or ``$ANALOGSAM_DEVICES``; :func:`~.discovery.catalog`). Every knob is declared in
:mod:`.schema`; ``docs/devices.md`` is the generated table of all of them.

    >>> from analogsam.hardware import presets
    >>> p = presets.load("pcm", io={"adc_bits": 6})          # or overrides={"io.adc_bits": 6}
    >>> p.values["io"]["adc_bits"], p.sources["io"]["adc_bits"]
    (6, 'override')
    >>> rpu_config = p.rpu_config()                          # a fresh aihwkit InferenceRPUConfig

Resolution order for every knob: the schema default, then the ``extends`` chain (parent first),
then the file, then the overrides. ``Preset.sources`` records which one won.

This module holds the :class:`Preset` and :func:`load`; each other job has its own module:
:mod:`.discovery` (finding files by name), :mod:`.values` (type coercion and the checks of each
value), :mod:`.chain` (the ``extends`` chain), :mod:`.cross_checks` (combinations aihwkit cannot
honour), :mod:`.describing` (tables for people) and :mod:`.set_options` (``--set`` parsing).
Errors are :class:`~.errors.PresetError` (a ``ValueError``) and name the file, the key, the value and
what is allowed. Settings that the chosen aihwkit tile cannot honour are refused here, at load time,
not in a forward pass.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from analogsam.hardware.presets.chain import extends_chain
from analogsam.hardware.presets.cross_checks import cross_check
from analogsam.hardware.presets.discovery import resolve_file
from analogsam.hardware.presets.errors import PresetError
from analogsam.hardware.presets.schema import (
    MODEL_CLASS,
    MODEL_DEVICE,
    MODEL_TIMES,
    SCHEMA_VERSION,
    SECTIONS,
    default_values,
    describe_time,
)
from analogsam.hardware.presets.values import apply, flatten, unknown_key

__all__ = ["Preset", "PresetError", "load"]

_OVERRIDE = "override"
_DEFAULT = "default"


# --------------------------------------------------------------------------------------------------
# The preset


@dataclass(frozen=True)
class Preset:
    """A resolved, validated device preset. Build aihwkit configs with ``rpu_config()``."""

    name: str
    description: str
    device: str
    values: dict
    sources: dict
    path: str | None = None  # the file it was loaded from (None: built from overrides only)
    overrides: dict = field(default_factory=dict)  # flat "section.key" -> value, as applied
    # A variant of a knob sweep (:func:`~analogsam.hardware.presets.variants.variants`): the varied
    # knobs ("section.key" -> value), which become columns of the result rows, and the name of the
    # preset it varies, from which its programming seeds are derived.
    varied: dict = field(default_factory=dict)
    base_name: str | None = None

    # ---- identity --------------------------------------------------------------------------------
    @property
    def hash(self) -> str:
        """Short sha256 of the canonical resolved knob values (not the name or description)."""
        canonical = json.dumps(
            {"schema": SCHEMA_VERSION, "values": self.values},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def seed_name(self) -> str:
        """The name the repeat seeds are derived from: a sweep's variants share their base preset's
        (common random numbers: every knob value is measured on the same programming-noise draws,
        so the differences between values are not buried in draw-to-draw spread, and a variant
        measures exactly what ``--set KEY=VALUE`` on the base preset measures)."""
        return self.base_name or self.name

    def flat_values(self) -> dict:
        """{"section.key": value} for every knob."""
        return {f"{s}.{k}": v for s, sec in self.values.items() for k, v in sec.items()}

    def __repr__(self) -> str:
        return f"Preset(name={self.name!r}, device={self.device!r}, hash={self.hash!r})"

    # ---- time support ----------------------------------------------------------------------------
    @property
    def supported_times(self) -> tuple[float, ...] | None:
        """None if any inference time (s) is allowed, else the tuple of allowed times in s."""
        return MODEL_TIMES.get(self.values["noise"]["model"])

    def defined_times(self, times_seconds: Iterable[float]) -> list:
        """The times (s) among ``times_seconds`` at which the noise model is defined, in their order
        (a comparison across presets measures each preset at these and leaves the others out)."""
        supported = self.supported_times
        return [float(t) for t in times_seconds if supported is None or float(t) in supported]

    def check_times(self, times_seconds: Iterable[float]) -> None:
        """Raise PresetError if the noise model is not defined at some of these times (s)."""
        times = [float(t) for t in times_seconds]
        negative = [t for t in times if t < 0 or not math.isfinite(t)]
        if negative:
            raise PresetError(
                f"preset {self.name!r}: inference times must be finite and >= 0 s, got "
                f"{', '.join(describe_time(t) for t in negative)}"
            )
        supported = self.supported_times
        defined = self.defined_times(times)
        bad = [t for t in times if t not in defined]
        if bad:
            model = self.values["noise"]["model"]
            fitted = MODEL_CLASS[model].split(" ")[0].rsplit(".", 1)[-1]
            raise PresetError(
                f'preset {self.name!r} (noise.model = "{model}", {fitted}) '
                f"is only defined at t = {', '.join(describe_time(t) for t in supported)}; "
                f"unsupported time(s): {', '.join(describe_time(t) for t in bad)}. "
                f"Use --times {','.join(str(int(t)) for t in supported)} or a different preset"
            )

    @property
    def needs_input_range_calibration(self) -> bool:
        """True if the converted model must be calibrated on data before evaluation."""
        return bool(self.values["io"]["input_range_calibration"])

    # ---- derived presets -------------------------------------------------------------------------
    def with_overrides(self, overrides: Mapping | None = None, **sections) -> Preset:
        """A new preset with these overrides applied on top (same syntax as ``load``)."""
        flat = _collect_overrides(overrides, sections)
        values = copy.deepcopy(self.values)
        sources = copy.deepcopy(self.sources)
        meta = {"name": self.name, "description": self.description, "device": self.device}
        where = f"overrides of preset {self.name!r}"
        apply(flat, values, sources, meta, _OVERRIDE, where)
        cross_check(values, sources, where)
        merged = dict(self.overrides)
        merged.update({k: values[k.split(".")[0]][k.split(".")[1]] for k in flat if "." in k})
        return Preset(
            name=meta["name"],
            description=meta["description"],
            device=meta["device"],
            values=values,
            sources=sources,
            path=self.path,
            overrides=merged,
            varied=dict(self.varied),
            base_name=self.base_name,
        )

    # ---- aihwkit ---------------------------------------------------------------------------------
    def rpu_config(self):
        """A fresh, fully configured aihwkit ``InferenceRPUConfig`` (C++ tiles) for this preset.

        Pass it to ``aihwkit.nn.conversion.convert_to_analog``. Changing the config after
        conversion has no effect on C++ tiles: make a new preset and convert again.
        """
        from analogsam.hardware.rpu_config import build_rpu_config

        return build_rpu_config(self.values)


def _collect_overrides(overrides: Mapping | None, sections: Mapping) -> dict:
    flat: dict = {}
    if overrides:
        if not isinstance(overrides, Mapping):
            raise PresetError(f"overrides must be a dict such as {{'io.adc_bits': 6}}, got {overrides!r}")
        flat.update(flatten(overrides, "overrides"))
    for section, table in sections.items():
        if section not in SECTIONS:
            raise unknown_key(section, "overrides")
        if not isinstance(table, Mapping):
            raise PresetError(f"overrides: {section}= must be a dict such as {section}={{...}}, got {table!r}")
        flat.update(flatten({section: table}, "overrides"))
    for key in ("extends",):
        if key in flat:
            raise PresetError("overrides: 'extends' can only be set in a preset file")
    return flat


def load(
    name_or_path: str | os.PathLike | Preset,
    overrides: Mapping | None = None,
    *,
    devices: str | os.PathLike | Sequence | None = None,
    **sections: Mapping,
) -> Preset:
    """Load a preset by name (``"pcm"``) or by the path of a TOML file, then apply overrides.

    A name is a shipped preset's or that of a ``*.toml`` in a user's folder: ``devices`` (one folder
    or a list) or ``$ANALOGSAM_DEVICES`` (:func:`~analogsam.hardware.presets.discovery.catalog`). ``overrides`` is flat
    (``{"io.adc_bits": 6}``) or nested (``{"io": {"adc_bits": 6}}``); keyword sections do the same
    (``load("pcm", io={"adc_bits": 6})``).
    """
    if isinstance(name_or_path, Preset):
        return name_or_path.with_overrides(overrides, **sections)
    path = resolve_file(name_or_path, devices=devices)
    values = default_values()
    sources = {s: {k: _DEFAULT for k in sec} for s, sec in values.items()}
    meta: dict = {}
    for file_path, data in extends_chain(path, devices):
        where = str(file_path)
        meta.pop("name", None)  # a name labels its own file only; description and device inherit
        apply(flatten(data, where), values, sources, meta, f"file:{file_path}", where)
    cross_check(values, sources, str(path))
    if "name" not in meta:
        meta["name"] = path.stem
    model = values["noise"]["model"]
    preset = Preset(
        name=meta["name"],
        description=meta.get("description", ""),
        device=meta.get("device", MODEL_DEVICE[model]),
        values=values,
        sources=sources,
        path=str(path),
    )
    if overrides or sections:
        preset = preset.with_overrides(overrides, **sections)
    return preset
