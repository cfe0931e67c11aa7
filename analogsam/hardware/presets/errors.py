"""The error of the preset modules: a preset that cannot be found, loaded, validated or honoured."""

from __future__ import annotations

from analogsam.errors import AnalogsamError


class PresetError(AnalogsamError, ValueError):
    """A device preset that cannot be loaded, validated or honoured; the message names the file (or
    ``--set`` item), the key, the value and what is allowed."""
