"""Device presets: the knob schema (:mod:`.schema`); finding files (:mod:`.discovery`: the shipped
presets of the top-level ``devices/`` folder and a user's folders), reading values
(:mod:`.values`), the ``extends`` chain (:mod:`.chain`), cross-checks (:mod:`.cross_checks`), the
resolved :class:`Preset` (:mod:`.loading`), tables (:mod:`.describing`), ``--set`` parsing
(:mod:`.set_options`), knob sweeps (:mod:`.variants`) and differences between presets (:mod:`.diffing`)."""

from analogsam.hardware.presets.describing import describe, knob_table_markdown, list_presets
from analogsam.hardware.presets.diffing import diff, format_diff
from analogsam.hardware.presets.discovery import DEVICES_ENV_VAR, catalog, device_folders, preset_dir
from analogsam.hardware.presets.errors import PresetError
from analogsam.hardware.presets.loading import Preset, load
from analogsam.hardware.presets.set_options import parse_set_options
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
