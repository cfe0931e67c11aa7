"""Device presets: the knob schema (:mod:`.schema`), loading and validating TOML files
(:mod:`.loading`), and the shipped presets (``shipped/*.toml``)."""

from analogsam.hardware.presets.loading import (
    Preset,
    PresetError,
    describe,
    knob_table_markdown,
    list_presets,
    load,
    parse_set_options,
    preset_dir,
)

__all__ = [
    "Preset",
    "PresetError",
    "describe",
    "knob_table_markdown",
    "list_presets",
    "load",
    "parse_set_options",
    "preset_dir",
]
