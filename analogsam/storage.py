"""Durable files and resumable work: the one home for atomic writes and settings records.

Everything analogsam writes that a later run reads back (result tables, analysis records,
checkpoints, sweep settings) is written by :func:`atomic_write`: to a temporary file beside the
target, flushed to disk, then renamed over it, so a killed process never leaves a half-written file.
Resumable work (the result store, ``analyze``, train-or-reuse) records the settings it was done
with (:func:`write_json`); :func:`settings_hash` makes a stable digest of them, and
:func:`matching_record` reads a record back only if it was written with the same settings (work to
reuse), while a folder that must not be overwritten refuses other settings with
:class:`SettingsMismatchError`.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from analogsam.errors import AnalogsamError


class SettingsMismatchError(AnalogsamError, ValueError):
    """A folder holds work done with other settings than the ones asked for now."""


class OutputPathError(AnalogsamError, NotADirectoryError):
    """An output folder cannot be created where it was asked for."""


def ensure_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """``folder`` as a Path, created if missing, or a one-line error saying why it cannot be."""
    folder = Path(folder)
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(
                    f"cannot create the {what} {folder}: {parent} is a file, not a folder; choose another path"
                )
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(f"cannot create the {what} {folder}: {err.strerror}; choose another path") from err
    return folder


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], *, binary: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it onto ``path``."""
    path = Path(path)
    ensure_folder(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": "", "encoding": "utf-8"})) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types: mappings with str keys, tuples and arrays as lists, numpy/torch
    scalars and other numbers as int/float, non-finite floats kept (JSON NaN); anything else is left
    as it is (and written as its ``str`` by :func:`write_json` and :func:`settings_hash`)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (bool, str)) or obj is None:
        return obj
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist) and getattr(obj, "ndim", 0) > 0:
        return jsonable(obj.tolist())
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    return obj


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(jsonable(data), indent=2, allow_nan=True, default=str) + "\n"
    return atomic_write(path, lambda f: f.write(text))


def read_json(path: str | os.PathLike) -> Any | None:
    """The JSON in ``path``, or None if it is missing or unreadable (a record to redo, not an error)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def settings_hash(settings: Mapping) -> str:
    """A 16-hex-digit digest of ``settings`` that does not depend on key order."""
    text = json.dumps(jsonable(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def matching_record(path: str | os.PathLike, settings: Mapping) -> dict | None:
    """The JSON record at ``path`` if it was written for ``settings`` (its ``"settings_hash"`` is
    :func:`settings_hash` of them), else None: the test by which resumable work is skipped or redone."""
    record = read_json(path)
    if isinstance(record, dict) and record.get("settings_hash") == settings_hash(settings):
        return record
    return None


def safe_name(text: str) -> str:
    """``text`` as a file or folder name: runs of characters other than letters, digits, ``._-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def file_digest(path: str | os.PathLike) -> str:
    """A 16-hex-digit SHA-256 digest of a file's bytes (e.g. of a checkpoint a result depends on)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]
