"""A preset file and its ``extends`` chain: each file read as TOML, parents resolved by name or path."""

from __future__ import annotations

import sys
from pathlib import Path

from analogsam.hardware.presets.discovery import resolve_file
from analogsam.hardware.presets.errors import PresetError
from analogsam.hardware.presets.values import show_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{path}: not valid TOML: {exc}") from None


def extends_chain(path: Path, devices=None) -> list:
    """The extends chain of a preset file: [(path, data), ...], root ancestor first (a parent named
    by name is looked up among the shipped presets and the user's folders, :func:`~analogsam.hardware.presets.discovery.catalog`)."""
    chain = []
    seen = []
    while True:
        if path in seen:
            cycle = " -> ".join(str(p) for p in seen + [path])
            raise PresetError(f"{seen[-1]}: circular 'extends': {cycle}")
        seen.append(path)
        data = read_toml(path)
        chain.append((path, data))
        parent = data.get("extends")
        if parent is None:
            break
        if not isinstance(parent, str) or not parent:
            raise PresetError(f"{path}: extends = {show_value(parent)} must be a preset name or a .toml path")
        try:
            path = resolve_file(parent, base_dir=path.parent, devices=devices)
        except PresetError as exc:
            raise PresetError(f"{path}: extends = {parent!r}: {exc}") from None
    return chain[::-1]
