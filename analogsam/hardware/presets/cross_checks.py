"""Combinations of knobs that aihwkit cannot honour (or would silently ignore), refused at load time."""

from __future__ import annotations

from analogsam.hardware.presets.errors import PresetError
from analogsam.hardware.presets.schema import HERMES_G_MAX, MODEL_CLASS, MODEL_KNOBS, default_values
from analogsam.hardware.presets.values import show_value


def cross_check(values: dict, sources: dict, where: str) -> None:
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
            f"{where}: noise.{key} = {show_value(value)} ({sources['noise'][key]}) has no effect with "
            f"noise.model = {show_value(model)} ({what}); it only uses "
            f"{', '.join('noise.' + k for k in sorted(used)) or 'no noise knobs'}. "
            f"Remove it or set it back to {show_value(defaults[key])}"
        )
    if model == "pcm-hermes":
        limit = HERMES_G_MAX[noise["hermes_devices"]]
        if noise["g_max_uS"] > limit:
            raise PresetError(
                f"{where}: noise.g_max_uS = {show_value(noise['g_max_uS'])} is out of range for "
                f"pcm-hermes with {noise['hermes_devices']} device(s) per weight; allowed: "
                f"(0, {limit}] µS (HermesNoiseModel's characterised maximum)"
            )
    if noise["g_min_uS"] >= noise["g_max_uS"]:
        raise PresetError(
            f"{where}: noise.g_min_uS = {show_value(noise['g_min_uS'])} must be below noise.g_max_uS = "
            f"{show_value(noise['g_max_uS'])}"
        )
    io = values["io"]
    if io["w_noise"] > 0 and io["w_noise_type"] == "none":
        raise PresetError(
            f"{where}: io.w_noise = {show_value(io['w_noise'])} needs io.w_noise_type "
            f'("additive-constant" | "pcm-read"); with "none" it is ignored'
        )
    if io["input_range_calibration"] and io["noise_management"] != "none":
        raise PresetError(
            f'{where}: io.input_range_calibration = true needs io.noise_management = "none" '
            f"(got {show_value(io['noise_management'])}): aihwkit's input-range calibration refuses "
            f"noise management, and the static range replaces it"
        )
