"""Finding presets: the shipped folder, a user's folders (``devices=``, ``--devices``,
``$ANALOGSAM_DEVICES``), a preset name or path resolved to its file, and a file as tables show it."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

from analogsam.hardware.presets.errors import PresetError

#: Folders of a user's own presets (separated by ``os.pathsep``), loadable by name beside the shipped
#: ones, like ``--devices DIR`` on the command line and ``devices=`` in the API.
DEVICES_ENV_VAR = "ANALOGSAM_DEVICES"

#: The source :func:`~analogsam.hardware.presets.describing.list_presets` gives a shipped preset.
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


def shipped() -> dict:
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
    found = {name: (path, SHIPPED) for name, path in shipped().items()}
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


def resolve_file(name_or_path: str | os.PathLike, base_dir: Path | None = None, devices=None) -> Path:
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
