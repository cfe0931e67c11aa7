"""Device presets: the knob schema (:mod:`.schema`), loading and validating TOML files
(:mod:`.loading`: the shipped presets of the top-level ``devices/`` folder and a user's folders),
knob sweeps (:mod:`.variants`) and differences between presets (:mod:`.diffing`)."""

from analogsam.hardware.presets.diffing import diff, format_diff
from analogsam.hardware.presets.loading import (
    DEVICES_ENV_VAR,
    Preset,
    PresetError,
    catalog,
    describe,
    device_folders,
    knob_table_markdown,
    list_presets,
    load,
    parse_set_options,
    preset_dir,
)
from analogsam.hardware.presets.variants import check_vary, parse_vary_options, variant_name, variants

__all__ = [
    "DEVICES_ENV_VAR",
    "Preset",
    "PresetError",
    "catalog",
    "check_vary",
    "describe",
    "device_folders",
    "diff",
    "format_diff",
    "knob_table_markdown",
    "list_presets",
    "load",
    "parse_set_options",
    "parse_vary_options",
    "preset_dir",
    "variant_name",
    "variants",
]
