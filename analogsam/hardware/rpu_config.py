"""Build aihwkit ``InferenceRPUConfig`` objects from validated preset values.

Kept apart from ``analogsam.hardware.presets`` so that listing and validating presets does not import
aihwkit. Everything here is configured before conversion: on C++ tiles, changing
``rpu_config.forward`` after ``convert_to_analog`` has no effect.
"""

from __future__ import annotations

from aihwkit.inference.compensation.drift import (
    GlobalDriftCompensation,
    PerColumnDriftCompensation,
)
from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
from aihwkit.inference.noise.base import BaseNoiseModel
from aihwkit.inference.noise.custom import StateIndependentNoiseModel
from aihwkit.inference.noise.hermes import HermesNoiseModel
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.inference.noise.reram import ReRamCMONoiseModel, ReRamWan2022NoiseModel
from aihwkit.simulator.configs import InferenceRPUConfig
from aihwkit.simulator.parameters.enums import (
    BoundManagementType,
    NoiseManagementType,
    WeightNoiseType,
)
from torch import Tensor
from torch.autograd import no_grad

# ReRamWan2022NoiseModel's polynomial coefficients are in µS, fitted on devices with g_max = 40 µS.
WAN2022_FIT_G_MAX_US = 40.0


class NoDeviceNoiseModel(BaseNoiseModel):
    """Identity device model: programming and drift leave the conductances exact."""

    @no_grad()
    def apply_programming_noise_to_conductance(self, g_target: Tensor) -> Tensor:
        return g_target.clone()

    @no_grad()
    def apply_drift_noise_to_conductance(self, g_prog: Tensor, drift_noise_param: Tensor, t_inference: float) -> Tensor:
        return g_prog.clone()


def _resolution(bits: int) -> float:
    """aihwkit's step size for a signed converter with ``bits`` bits (8 -> 1/254); 0 -> off."""
    return -1.0 if bits == 0 else 1.0 / (2**bits - 2)


def build_noise_model(noise: dict) -> BaseNoiseModel:
    model = noise["model"]
    g_max, g_min = noise["g_max_uS"], noise["g_min_uS"]
    converter = SinglePairConductanceConverter(g_max=g_max, g_min=g_min)
    scales = {key: noise[key] for key in ("prog_noise_scale", "read_noise_scale", "drift_scale")}
    if model == "pcm-like":
        return PCMLikeNoiseModel(g_converter=converter, **scales)
    if model == "pcm-hermes":
        return HermesNoiseModel(g_converter=converter, num_devices=noise["hermes_devices"], g_max=g_max, **scales)
    if model == "rram-wan2022":
        nm = ReRamWan2022NoiseModel(g_converter=converter, noise_scale=noise["prog_noise_scale"])
        # aihwkit 1.1.0 never uses its 40 µS fit reference (it divides by g_max instead), so at
        # g_max != 40 µS the relative noise is off by 40/g_max. Setting the attribute it does use
        # makes the noise scale with g_max the way PCMLikeNoiseModel's does. At the shipped
        # g_max_uS = 40 this changes nothing.
        nm.coeff_g_max_reference = WAN2022_FIT_G_MAX_US
        return nm
    if model == "rram-cmo":
        return ReRamCMONoiseModel(
            g_max=g_max, g_min=g_min, acceptance_range=noise["cmo_acceptance_range_percent"], **scales
        )
    if model == "state-independent":
        return StateIndependentNoiseModel(
            g_converter=converter, drift_nu_mean=noise["drift_nu_mean"], drift_nu_std=noise["drift_nu_std"], **scales
        )
    if model == "none":
        return NoDeviceNoiseModel(converter)
    raise ValueError(f"unknown noise model {model!r}")  # validated earlier; defensive


_COMPENSATION = {
    "none": lambda: None,
    "global": GlobalDriftCompensation,
    "per-column": PerColumnDriftCompensation,
}

_W_NOISE = {
    "none": WeightNoiseType.NONE,
    "additive-constant": WeightNoiseType.ADDITIVE_CONSTANT,
    "pcm-read": WeightNoiseType.PCM_READ,
}

_NOISE_MANAGEMENT = {
    "abs-max": NoiseManagementType.ABS_MAX,
    "max": NoiseManagementType.MAX,
    "average-abs-max": NoiseManagementType.AVERAGE_ABS_MAX,
    "none": NoiseManagementType.NONE,
}

_BOUND_MANAGEMENT = {
    "iterative": BoundManagementType.ITERATIVE,
    "none": BoundManagementType.NONE,
}


def build_rpu_config(values: dict, rpu_config: InferenceRPUConfig | None = None):
    """A fresh ``InferenceRPUConfig`` configured from a preset's resolved ``values``."""
    cfg = rpu_config if rpu_config is not None else InferenceRPUConfig()
    noise, io, tile, mapping = values["noise"], values["io"], values["tile"], values["mapping"]

    cfg.noise_model = build_noise_model(noise)
    cfg.drift_compensation = _COMPENSATION[values["compensation"]["drift"]]()

    fwd = cfg.forward
    fwd.is_perfect = False
    fwd.inp_res = _resolution(io["dac_bits"])
    fwd.out_res = _resolution(io["adc_bits"])
    fwd.inp_bound = 1.0
    fwd.out_bound = io["out_bound"]
    fwd.out_noise = io["out_noise"]
    fwd.w_noise = io["w_noise"]
    fwd.w_noise_type = _W_NOISE[io["w_noise_type"]]
    fwd.ir_drop = io["ir_drop"]
    fwd.noise_management = _NOISE_MANAGEMENT[io["noise_management"]]
    fwd.bound_management = _BOUND_MANAGEMENT[io["bound_management"]]

    ir = cfg.pre_post.input_range
    if io["input_range_calibration"]:
        ir.enable = True
        ir.learn_input_range = False  # fixed by calibration, not learned
        ir.init_from_data = 0  # no on-the-fly estimate; calibrate_input_ranges sets it
    else:
        ir.enable = False

    m = cfg.mapping
    m.max_input_size = tile["rows"]
    m.max_output_size = tile["cols"]
    m.weight_scaling_omega = mapping["weight_scaling"]
    m.weight_scaling_columnwise = mapping["weight_scaling_columnwise"]
    m.digital_bias = mapping["digital_bias"]
    m.learn_out_scaling = False
    return cfg
