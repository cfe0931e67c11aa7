"""Device presets: validated, documented TOML data that configures aihwkit analog tiles.

A preset is a TOML file that names a noise model and sets knobs with units. The shipped ones live
in the repository's top-level ``devices/`` folder (installed with the package as ``analogsam/devices``);
a user's own file is passed by path, or loaded by name from a folder of them (``devices=``,
``--devices DIR`` or ``$ANALOGSAM_DEVICES``; :func:`catalog`). Every knob is declared in ``analogsam.hardware.presets.schema``; ``docs/devices.md`` is the
generated table of all of them.

    >>> from analogsam.hardware import presets
    >>> p = presets.load("pcm", io={"adc_bits": 6})          # or overrides={"io.adc_bits": 6}
    >>> p.values["io"]["adc_bits"], p.sources["io"]["adc_bits"]
    (6, 'override')
    >>> rpu_config = p.rpu_config()                          # a fresh aihwkit InferenceRPUConfig

Resolution order for every knob: the schema default, then the ``extends`` chain (parent first),
then the file, then the overrides. ``Preset.sources`` records which one won.

Errors are ``PresetError`` (a ``ValueError``) and name the file, the key, the value and what is
allowed. Settings that the chosen aihwkit tile cannot honour are refused here, at load time, not in
a forward pass.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analogsam.errors import AnalogsamError
from analogsam.hardware.presets.schema import (
    HERMES_G_MAX,
    KNOBS,
    KNOBS_BY_PATH,
    MODEL_CLASS,
    MODEL_DEVICE,
    MODEL_KNOBS,
    SCHEMA_VERSION,
    SECTIONS,
    TOP_LEVEL_KEYS,
    WAN2022_TIMES,
    Knob,
    default_values,
)
from analogsam.hardware.presets.schema import knob_table_markdown as _knob_table_markdown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "PresetError",
    "Preset",
    "load",
    "list_presets",
    "describe",
    "knob_table_markdown",
    "parse_set_options",
    "preset_dir",
    "catalog",
    "device_folders",
    "DEVICES_ENV_VAR",
]

_OVERRIDE = "override"
_DEFAULT = "default"


class PresetError(AnalogsamError, ValueError):
    """A device preset that cannot be loaded, validated or honoured."""


# --------------------------------------------------------------------------------------------------
# Finding presets


#: Folders of a user's own presets (separated by ``os.pathsep``), loadable by name beside the shipped
#: ones, like ``--devices DIR`` on the command line and ``devices=`` in the API.
DEVICES_ENV_VAR = "ANALOGSAM_DEVICES"

#: The source :func:`list_presets` gives a shipped preset.
SHIPPED = "shipped"


def preset_dir() -> Path:
    """The folder that holds the shipped ``*.toml`` presets: the top-level ``devices/`` of the source
    tree (an editable install), or its copy ``analogsam/devices`` inside an installed wheel."""
    package = Path(__file__).resolve().parents[2]  # .../analogsam
    for folder in (package / "devices", package.parent / "devices"):
        if folder.is_dir():
            return folder
    raise PresetError(  # pragma: no cover (a broken install)
        f"the shipped presets are missing: neither {package / 'devices'} (a wheel install) nor "
        f"{package.parent / 'devices'} (the source tree) exists; reinstall analogsam"
    )


def _presets_in(folder: Path) -> dict:
    """name -> Path of every ``*.toml`` in ``folder`` (not its subfolders)."""
    return {p.stem: p.resolve() for p in sorted(folder.glob("*.toml"), key=lambda p: p.stem) if p.is_file()}


def _shipped() -> dict:
    """name -> Path of every shipped preset file."""
    return _presets_in(preset_dir())


def device_folders(devices: str | os.PathLike | Sequence | None = None) -> list:
    """The folders of a user's presets: ``devices`` (one folder or several: ``--devices``,
    ``devices=``), then each folder of ``$ANALOGSAM_DEVICES``; each once, each checked to exist."""
    given = [] if devices is None else [devices] if isinstance(devices, (str, os.PathLike)) else list(devices)
    named = [(Path(d), "devices=" if not isinstance(d, str) else f"--devices {d}") for d in given]
    env = os.environ.get(DEVICES_ENV_VAR, "")
    named += [(Path(d), f"${DEVICES_ENV_VAR}") for d in env.split(os.pathsep) if d.strip()]
    folders: list = []
    for folder, origin in named:
        folder = folder.expanduser()
        if not folder.is_dir():
            raise PresetError(
                f"devices folder {folder} (from {origin}) is not a folder: pass a folder that holds preset .toml files"
            )
        folder = folder.resolve()
        if folder != preset_dir().resolve() and folder not in folders:
            folders.append(folder)
    return folders


def catalog(devices: str | os.PathLike | Sequence | None = None) -> dict:
    """name -> (Path, source) of every preset loadable by name: the shipped ones (source
    ``"shipped"``) and those of the user's folders (:func:`device_folders`; source: the folder).

    A name defined twice (a user preset named like a shipped one, or two user files of one name) is
    an error naming both files, never a silent override.
    """
    found = {name: (path, SHIPPED) for name, path in _shipped().items()}
    for folder in device_folders(devices):
        for name, path in _presets_in(folder).items():
            if name in found:
                other, source = found[name]
                hint = (
                    f'; to start from the shipped one, write extends = "{name}" in a file of another name'
                    if source == SHIPPED
                    else ""
                )
                raise PresetError(
                    f"preset name {name!r} is defined twice: {other} ({source}) and {path}: rename one of the files{hint}"
                )
            found[name] = (path, str(folder))
    return found


def _looks_like_path(name: str) -> bool:
    return name.endswith(".toml") or os.sep in name or "/" in name


def _resolve_file(name_or_path: str | os.PathLike, base_dir: Path | None = None, devices=None) -> Path:
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(str(name_or_path)):
        path = Path(name_or_path).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise PresetError(
                f"preset file not found: {path} (pass a preset name, one of "
                f"{', '.join(catalog(devices))}, or the path of an existing .toml file)"
            )
        return path.resolve()
    known = catalog(devices)
    name = str(name_or_path)
    if name not in known:
        near = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise PresetError(
            f"unknown preset {name!r}{hint}; available presets: {', '.join(known)} (or pass the path of a "
            f".toml file, or a folder of your own presets with --devices DIR or ${DEVICES_ENV_VAR})"
        )
    return known[name][0]


# --------------------------------------------------------------------------------------------------
# Validation


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string"}.get(type(value), type(value).__name__)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _check_value(knob: Knob, value: Any, where: str) -> Any:
    """Return ``value`` coerced to the knob's type, or raise a PresetError naming everything."""
    bad = f"{where}: {knob.path} = {_fmt(value)}"
    allowed = knob.allowed()
    if knob.type is bool:
        if not isinstance(value, bool):
            raise PresetError(f"{bad} has the wrong type ({_type_name(value)}); expected {allowed}")
    elif knob.type is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PresetError(f"{bad} has the wrong type ({_type_name(value)}); expected {allowed}")
    elif knob.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PresetError(f"{bad} has the wrong type ({_type_name(value)}); expected {allowed}")
        value = float(value)
        if not math.isfinite(value):
            raise PresetError(f"{bad} is not a finite number; expected {allowed}")
    elif knob.type is str:
        if not isinstance(value, str):
            raise PresetError(f"{bad} has the wrong type ({_type_name(value)}); expected {allowed}")
    if knob.choices is not None:
        if value not in knob.choices:
            near = difflib.get_close_matches(str(value), [str(c) for c in knob.choices], n=1, cutoff=0.5)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise PresetError(f"{bad} is not allowed{hint}; allowed: {allowed}")
        return value
    if knob.low is not None and (value < knob.low or (knob.low_open and value == knob.low)):
        raise PresetError(f"{bad} is out of range; allowed: {allowed}")
    if knob.high is not None and value > knob.high:
        raise PresetError(f"{bad} is out of range; allowed: {allowed}")
    if knob.extra_check is not None:
        msg = knob.extra_check(value)
        if msg:
            raise PresetError(f"{bad} is not allowed: {msg}")
    return value


def _unknown_key(path: str, where: str) -> PresetError:
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


def _flatten(data: Mapping, where: str) -> dict:
    """A TOML/override mapping -> {"section.key": value}; top-level keys stay bare."""
    flat = {}
    for key, value in data.items():
        if key in TOP_LEVEL_KEYS:
            flat[key] = value
        elif key in SECTIONS:
            if not isinstance(value, Mapping):
                raise PresetError(f"{where}: [{key}] must be a table of settings, got {_fmt(value)}")
            for sub, subval in value.items():
                if isinstance(subval, Mapping):
                    raise _unknown_key(f"{key}.{sub}", where)
                flat[f"{key}.{sub}"] = subval
        elif "." in key:
            flat[key] = value
        else:
            raise _unknown_key(key, where)
    return flat


def _apply(flat: Mapping, values: dict, sources: dict, meta: dict, source: str, where: str):
    for path, value in flat.items():
        if path in TOP_LEVEL_KEYS:
            if path == "extends":
                continue
            if not isinstance(value, str):
                raise PresetError(
                    f"{where}: {path} = {_fmt(value)} has the wrong type ({_type_name(value)}); expected a string"
                )
            meta[path] = value
            continue
        knob = KNOBS_BY_PATH.get(path)
        if knob is None:
            raise _unknown_key(path, where)
        values[knob.section][knob.key] = _check_value(knob, value, where)
        sources[knob.section][knob.key] = source


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{path}: not valid TOML: {exc}") from None


def _chain(path: Path, devices=None) -> list:
    """The extends chain of a preset file: [(path, data), ...], root ancestor first (a parent named
    by name is looked up among the shipped presets and the user's folders, :func:`catalog`)."""
    chain = []
    seen = []
    while True:
        if path in seen:
            cycle = " -> ".join(str(p) for p in seen + [path])
            raise PresetError(f"{seen[-1]}: circular 'extends': {cycle}")
        seen.append(path)
        data = _read_toml(path)
        chain.append((path, data))
        parent = data.get("extends")
        if parent is None:
            break
        if not isinstance(parent, str) or not parent:
            raise PresetError(f"{path}: extends = {_fmt(parent)} must be a preset name or a .toml path")
        try:
            path = _resolve_file(parent, base_dir=path.parent, devices=devices)
        except PresetError as exc:
            raise PresetError(f"{path}: extends = {parent!r}: {exc}") from None
    return chain[::-1]


def _cross_check(values: dict, sources: dict, where: str) -> None:
    """Refuse combinations that aihwkit cannot honour (or would silently ignore)."""
    noise = values["noise"]
    model = noise["model"]
    defaults = default_values()["noise"]
    used = MODEL_KNOBS[model]
    for key, value in noise.items():
        if key == "model" or key in used or value == defaults[key]:
            continue
        what = MODEL_CLASS[model].split(" ")[0]
        raise PresetError(
            f"{where}: noise.{key} = {_fmt(value)} ({sources['noise'][key]}) has no effect with "
            f"noise.model = {_fmt(model)} ({what}); it only uses "
            f"{', '.join('noise.' + k for k in sorted(used)) or 'no noise knobs'}. "
            f"Remove it or set it back to {_fmt(defaults[key])}"
        )
    if model == "pcm-hermes":
        limit = HERMES_G_MAX[noise["hermes_devices"]]
        if noise["g_max_uS"] > limit:
            raise PresetError(
                f"{where}: noise.g_max_uS = {_fmt(noise['g_max_uS'])} is out of range for "
                f"pcm-hermes with {noise['hermes_devices']} device(s) per weight; allowed: "
                f"(0, {limit}] µS (HermesNoiseModel's characterised maximum)"
            )
    if noise["g_min_uS"] >= noise["g_max_uS"]:
        raise PresetError(
            f"{where}: noise.g_min_uS = {_fmt(noise['g_min_uS'])} must be below noise.g_max_uS = "
            f"{_fmt(noise['g_max_uS'])}"
        )
    io = values["io"]
    if io["w_noise"] > 0 and io["w_noise_type"] == "none":
        raise PresetError(
            f"{where}: io.w_noise = {_fmt(io['w_noise'])} needs io.w_noise_type "
            f'("additive-constant" | "pcm-read"); with "none" it is ignored'
        )
    if io["input_range_calibration"] and io["noise_management"] != "none":
        raise PresetError(
            f'{where}: io.input_range_calibration = true needs io.noise_management = "none" '
            f"(got {_fmt(io['noise_management'])}): aihwkit's input-range calibration refuses "
            f"noise management, and the static range replaces it"
        )


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
        if self.values["noise"]["model"] == "rram-wan2022":
            return WAN2022_TIMES
        return None

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
                f"{', '.join(_fmt_t(t) for t in negative)}"
            )
        supported = self.supported_times
        defined = self.defined_times(times)
        bad = [t for t in times if t not in defined]
        if bad:
            raise PresetError(
                f'preset {self.name!r} (noise.model = "rram-wan2022", ReRamWan2022NoiseModel) '
                f"is only defined at t = {', '.join(_fmt_t(t) for t in supported)}; "
                f"unsupported time(s): {', '.join(_fmt_t(t) for t in bad)}. "
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
        _apply(flat, values, sources, meta, _OVERRIDE, where)
        _cross_check(values, sources, where)
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


def _fmt_t(t: float) -> str:
    if t == int(t):
        t = int(t)
    human = {1: "1 s", 86400: "1 d", 172800: "2 d"}.get(t)
    return f"{t} s" + (f" ({human})" if human and human != f"{t} s" else "")


def _collect_overrides(overrides: Mapping | None, sections: Mapping) -> dict:
    flat: dict = {}
    if overrides:
        if not isinstance(overrides, Mapping):
            raise PresetError(f"overrides must be a dict such as {{'io.adc_bits': 6}}, got {overrides!r}")
        flat.update(_flatten(overrides, "overrides"))
    for section, table in sections.items():
        if section not in SECTIONS:
            raise _unknown_key(section, "overrides")
        if not isinstance(table, Mapping):
            raise PresetError(f"overrides: {section}= must be a dict such as {section}={{...}}, got {table!r}")
        flat.update(_flatten({section: table}, "overrides"))
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
    or a list) or ``$ANALOGSAM_DEVICES`` (:func:`catalog`). ``overrides`` is flat
    (``{"io.adc_bits": 6}``) or nested (``{"io": {"adc_bits": 6}}``); keyword sections do the same
    (``load("pcm", io={"adc_bits": 6})``).
    """
    if isinstance(name_or_path, Preset):
        return name_or_path.with_overrides(overrides, **sections)
    path = _resolve_file(name_or_path, devices=devices)
    values = default_values()
    sources = {s: {k: _DEFAULT for k in sec} for s, sec in values.items()}
    meta: dict = {}
    for file_path, data in _chain(path, devices):
        where = str(file_path)
        meta.pop("name", None)  # a name labels its own file only; description and device inherit
        _apply(_flatten(data, where), values, sources, meta, f"file:{file_path}", where)
    _cross_check(values, sources, str(path))
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


# --------------------------------------------------------------------------------------------------
# Listing, describing, documentation


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


def shown_path(path: str | os.PathLike | None) -> str:
    """A preset file as tables show it: ``devices/pcm.toml`` for a shipped one (wherever the package
    is installed), a path relative to the working folder where it lies below it, else the full path;
    so that printed tables (and notebook outputs) carry no machine's absolute paths."""
    if path is None:
        return "-"
    path = Path(path)
    for base, prefix in ((preset_dir().resolve(), Path("devices")), (Path.cwd().resolve(), Path())):
        try:
            return str(prefix / path.resolve().relative_to(base))
        except ValueError:
            continue
    return str(path)


def shown_source(source: str) -> str:
    """A knob's source (``default``, ``override``, ``file:<path>``) with the path as :func:`shown_path`."""
    return f"file:{shown_path(source[len('file:') :])}" if source.startswith("file:") else source


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
            + ", ".join(_fmt_t(t) for t in times)
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
        rows.append((knob.path, _fmt(value), knob.unit, source))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, r in enumerate(rows):
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines) + "\n"


def knob_table_markdown() -> str:
    """The generated markdown table of every knob (key, unit, allowed, default, meaning)."""
    return _knob_table_markdown()


# --------------------------------------------------------------------------------------------------
# CLI --set parsing

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
            raise _unknown_key(key, where)
        out[key] = _parse_raw(knob, raw, where)
    return out


def _parse_raw(knob: Knob, raw: str, where: str) -> Any:
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
        raise PresetError(
            f"{where}: {raw!r} is not a valid {knob.type.__name__} for {knob.path}; allowed: {knob.allowed()}"
        ) from None
    return text
