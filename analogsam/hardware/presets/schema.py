"""The device-preset schema: every knob a preset may set, with its type, unit, allowed values,
default and meaning.

This module is plain data and does not import aihwkit, so listing and validating presets is fast.
``analogsam.hardware.presets`` loads and validates TOML files against it; ``analogsam.hardware.rpu_config`` turns a
validated preset into an aihwkit ``InferenceRPUConfig``; ``knob_table_markdown`` renders it as the
documentation table in ``docs/devices.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analogsam.validation import Boolean, Constraint, Interval, Options

SCHEMA_VERSION = 1

# Which device family each noise model stands for (a preset may still name its own ``device``).
MODEL_DEVICE = {
    "pcm-like": "PCM",
    "pcm-hermes": "PCM",
    "rram-wan2022": "RRAM",
    "rram-cmo": "RRAM",
    "state-independent": "generic",
    "none": "ideal",
}

NOISE_MODELS = tuple(MODEL_DEVICE)

# The aihwkit class behind each noise model (for descriptions and errors).
MODEL_CLASS = {
    "pcm-like": "aihwkit.inference.PCMLikeNoiseModel",
    "pcm-hermes": "aihwkit.inference.noise.hermes.HermesNoiseModel",
    "rram-wan2022": "aihwkit.inference.ReRamWan2022NoiseModel",
    "rram-cmo": "aihwkit.inference.noise.reram.ReRamCMONoiseModel",
    "state-independent": "aihwkit.inference.StateIndependentNoiseModel",
    "none": "analogsam.hardware.rpu_config.NoDeviceNoiseModel (identity: no programming noise, no drift)",
}

# Noise-model knobs that each model honours. A preset that sets any other noise knob away from its
# default is refused at load time: aihwkit would silently ignore it.
MODEL_KNOBS = {
    "pcm-like": {"g_max_uS", "g_min_uS", "prog_noise_scale", "read_noise_scale", "drift_scale"},
    "pcm-hermes": {"g_max_uS", "g_min_uS", "prog_noise_scale", "read_noise_scale", "drift_scale", "hermes_devices"},
    "rram-wan2022": {"g_max_uS", "g_min_uS", "prog_noise_scale"},
    "rram-cmo": {
        "g_max_uS",
        "g_min_uS",
        "prog_noise_scale",
        "read_noise_scale",
        "drift_scale",
        "cmo_acceptance_range_percent",
    },
    "state-independent": {
        "g_max_uS",
        "g_min_uS",
        "prog_noise_scale",
        "read_noise_scale",
        "drift_scale",
        "drift_nu_mean",
        "drift_nu_std",
    },
    "none": set(),
}

# ReRamWan2022NoiseModel is fitted at these inference times only (seconds): 1 s, 1 day, 2 days.
WAN2022_TIMES = (1.0, 86400.0, 172800.0)

#: The inference times (s) a noise model is defined at, for the models fitted at a few times only;
#: every other model is defined at any t >= 0.
MODEL_TIMES: dict[str, tuple[float, ...]] = {"rram-wan2022": WAN2022_TIMES}

_TIME_NAMES = {1: "1 s", 86400: "1 d", 172800: "2 d"}


def describe_time(t: float) -> str:
    """A time in seconds for errors and tables: ``86400 s (1 d)``."""
    if t == int(t):
        t = int(t)
    human = _TIME_NAMES.get(t)
    return f"{t} s" + (f" ({human})" if human and human != f"{t} s" else "")


# HermesNoiseModel refuses g_max above the characterised maximum (uS) for 1 or 2 devices per weight.
HERMES_G_MAX = {1: 10.35, 2: 20.7}


@dataclass(frozen=True)
class Knob:
    """One preset setting: ``section.key`` with its constraint (:mod:`analogsam.validation`), unit and default."""

    section: str
    key: str
    constraint: Constraint
    default: Any
    unit: str
    meaning: str

    @property
    def path(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def type(self) -> type:
        """bool, int, float or str: what a TOML value or a ``--set`` text is read as."""
        return self.constraint.type

    def allowed(self) -> str:
        """The allowed values in words, for errors and the knob table."""
        return self.constraint.describe()


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value) if isinstance(value, float) else str(value)


#: A converter of 1 bit has no symmetric levels around zero; 0 means no quantization.
_BITS = Interval(
    int,
    0,
    16,
    excluded=(1,),
    why="1 bit is not a symmetric converter; use 0 (no quantization) or 2..16 bits",
    note="0 = off",
)


def _float(section, key, default, unit, meaning, low=0.0, high=None, low_open=False):
    return Knob(section, key, Interval(float, low, high, low_open), default, unit, meaning)


def _choice(section, key, default, unit, meaning, choices):
    return Knob(section, key, Options(tuple(choices)), default, unit, meaning)


KNOBS: tuple[Knob, ...] = (
    # --- noise: the device model applied when programming and drifting the weights ----------------
    _choice(
        "noise",
        "model",
        "pcm-like",
        "-",
        "Device noise model: programming noise, drift and read noise of the conductances "
        "(aihwkit.inference noise models). `none` leaves the weights exact.",
        NOISE_MODELS,
    ),
    _float(
        "noise",
        "g_max_uS",
        25.0,
        "µS",
        "Conductance the largest |weight| maps to. pcm-like, pcm-hermes and rram-wan2022 "
        "scale their fitted µS noise with it (relative noise independent of g_max); "
        "rram-cmo and state-independent noise is absolute in µS.",
        low=0.0,
        high=1000.0,
        low_open=True,
    ),
    _float(
        "noise",
        "g_min_uS",
        0.0,
        "µS",
        "Smallest conductance (the weight-zero state for single-device rram-cmo; 0 for differential pairs).",
        low=0.0,
        high=1000.0,
    ),
    _float(
        "noise",
        "prog_noise_scale",
        1.0,
        "× model σ",
        "Multiplies the programming-noise standard deviation (rram-wan2022: its only "
        "noise scale, applied at every time).",
        low=0.0,
        high=100.0,
    ),
    _float(
        "noise",
        "read_noise_scale",
        1.0,
        "× model σ",
        "Multiplies the 1/f read-noise standard deviation.",
        low=0.0,
        high=100.0,
    ),
    _float(
        "noise",
        "drift_scale",
        1.0,
        "× model ν",
        "Multiplies the drift exponent ν (PCM) or the log-time relaxation (rram-cmo).",
        low=0.0,
        high=100.0,
    ),
    _choice(
        "noise",
        "hermes_devices",
        2,
        "devices per weight",
        "pcm-hermes only: PCM devices per sign of the weight (g_max limit 10.35 µS for 1, 20.7 µS for 2).",
        (1, 2),
    ),
    _choice(
        "noise",
        "cmo_acceptance_range_percent",
        0.2,
        "% of target",
        "rram-cmo only: program-and-verify acceptance range, selects the fitted programming-noise coefficients.",
        (0.2, 2.0),
    ),
    _float(
        "noise",
        "drift_nu_mean",
        0.1,
        "1",
        "state-independent only: mean drift exponent ν in g(t) = g·(t/t0)^-ν.",
        high=1.0,
    ),
    _float(
        "noise",
        "drift_nu_std",
        0.05,
        "1",
        "state-independent only: device-to-device standard deviation of ν.",
        high=1.0,
    ),
    # --- compensation ----------------------------------------------------------------------------
    _choice(
        "compensation",
        "drift",
        "global",
        "-",
        "Drift compensation in eval mode: `global` rescales each tile's output by the drift of "
        "a reference read-out (GlobalDriftCompensation), `per-column` per output column "
        "(PerColumnDriftCompensation), `none` shows the raw drift.",
        ("none", "global", "per-column"),
    ),
    # --- io: the periphery of every analog matrix-vector product ---------------------------------
    Knob(
        "io",
        "dac_bits",
        _BITS,
        8,
        "bits",
        "Input DAC resolution: inp_res = 1/(2^bits − 2) of the input range (8 bits: 254 steps). "
        "0 = no input quantization.",
    ),
    Knob(
        "io",
        "adc_bits",
        _BITS,
        8,
        "bits",
        "Output ADC resolution: out_res = 1/(2^bits − 2) of the output range (2·out_bound). "
        "0 = no output quantization.",
    ),
    _float(
        "io",
        "out_noise",
        0.04,
        "normalized output",
        "Std of additive Gaussian noise at each tile output, in units of the output of one "
        "fully-on input on a max-conductance weight (forward.out_noise).",
        high=10.0,
    ),
    _float(
        "io",
        "out_bound",
        10.0,
        "normalized output",
        "ADC saturation level (forward.out_bound); the ADC steps span ±out_bound.",
        high=1000.0,
        low_open=True,
    ),
    _float(
        "io",
        "w_noise",
        0.0,
        "fraction of w_max",
        "Weight read noise drawn anew at every MVM (forward.w_noise), of type w_noise_type.",
        high=1.0,
    ),
    _choice(
        "io",
        "w_noise_type",
        "none",
        "-",
        "Kind of per-read weight noise: `additive-constant` (Gaussian, constant σ) or `pcm-read` "
        "(σ ∝ sqrt(|w|), as in StandardHWATrainingPreset).",
        ("none", "additive-constant", "pcm-read"),
    ),
    _float(
        "io",
        "ir_drop",
        0.0,
        "× model",
        "Scale of the IR drop along the tile rows (forward.ir_drop); 0 = off, 1 = nominal.",
        high=100.0,
    ),
    _choice(
        "io",
        "noise_management",
        "abs-max",
        "-",
        "How inputs are scaled into the DAC range per vector (forward.noise_management). Must be "
        "`none` when input_range_calibration is on.",
        ("abs-max", "max", "average-abs-max", "none"),
    ),
    _choice(
        "io",
        "bound_management",
        "iterative",
        "-",
        "What happens when outputs saturate the ADC (forward.bound_management): `iterative` "
        "re-reads with down-scaled inputs, `none` clips.",
        ("iterative", "none"),
    ),
    Knob(
        "io",
        "input_range_calibration",
        Boolean(),
        False,
        "-",
        "Static per-tile input ranges (pre_post.input_range, as in StandardHWATrainingPreset) "
        "instead of per-vector noise management; the converted model must then be calibrated "
        "on data (aihwkit.inference.calibration.calibrate_input_ranges) before evaluation.",
    ),
    # --- tile --------------------------------------------------------------------------------------
    Knob(
        "tile",
        "rows",
        Interval(int, 0, 65536),
        512,
        "inputs",
        "Crossbar rows: layers with more inputs are split over several tiles (mapping.max_input_size). 0 = no limit.",
    ),
    Knob(
        "tile",
        "cols",
        Interval(int, 0, 65536),
        512,
        "outputs",
        "Crossbar columns: layers with more outputs are split over several tiles "
        "(mapping.max_output_size). 0 = no limit.",
    ),
    # --- mapping: how digital weights become conductances ----------------------------------------
    _float(
        "mapping",
        "weight_scaling",
        1.0,
        "× max |w|",
        "weight_scaling_omega: each layer (or column) is rescaled so max |w| maps to this "
        "value, with a digital output scale. 0 = no rescaling (aihwkit's default, which lets "
        "small weights drown in programming noise).",
        high=10.0,
    ),
    Knob(
        "mapping",
        "weight_scaling_columnwise",
        Boolean(),
        False,
        "-",
        "Rescale each output column separately (channel-wise) instead of the whole layer.",
    ),
    Knob(
        "mapping",
        "digital_bias",
        Boolean(),
        True,
        "-",
        "Add the bias digitally after the ADC instead of storing it as an analog row.",
    ),
)

KNOBS_BY_PATH = {k.path: k for k in KNOBS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(k.section for k in KNOBS))
TOP_LEVEL_KEYS = ("name", "description", "device", "extends")


def default_values() -> dict:
    """The nested dict of every knob at its default."""
    values: dict = {s: {} for s in SECTIONS}
    for knob in KNOBS:
        values[knob.section][knob.key] = knob.default
    return values


def knob_table_markdown() -> str:
    """The table of every knob: key, unit, allowed values, default, meaning (markdown)."""
    lines = [
        "| key | unit | allowed | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for k in KNOBS:
        meaning = k.meaning.replace("|", "\\|")
        allowed = k.allowed().replace("|", "\\|")
        unit = k.unit.replace("|", "\\|")
        lines.append(f"| `{k.path}` | {unit} | {allowed} | `{_fmt(k.default)}` | {meaning} |")
    return "\n".join(lines) + "\n"
