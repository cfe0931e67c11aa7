"""Device-shaped SAM: an ASAM whose neighbourhood is the target device's own noise.

SAM, ASAM and SAMSON (:mod:`.two_pass`) share ε = ρ · T ⊙ (T ⊙ g) / ‖T ⊙ g‖₂ and differ in the
scale T. ASAM's T = |w| + η (Kwon et al., ICML 2021, arXiv 2102.11600, eq. 4-7) makes the
neighbourhood {ε : ‖ε / T‖₂ ≤ ρ} an ellipsoid whose axes are proportional to the weights; SAMSON
divides by the layer's range (Mordido et al., arXiv 2211.11561). Neither knows the hardware. Here

    T_w = σ_device(w)

the standard deviation that the target preset's devices give the weight w once it is programmed and
read at a chosen time t, and T = 0 for every parameter that stays digital (biases, normalisation):
the hardware never perturbs those.

Derivation. aihwkit maps a layer's weights onto a pair of conductances per weight
(``SinglePairConductanceConverter``): with α = max |W| of the tensor, w ↦ (g⁺, g⁻) with
g⁺ = g_min + (g_max − g_min)·max(w, 0)/α and g⁻ = g_min + (g_max − g_min)·max(−w, 0)/α, and reads
w back as α (g⁺ − g⁻)/(g_max − g_min), divided by the drift-compensation factor c(t) (global
compensation rescales every output by the ratio of the layer's read-out now and after programming;
c = 1 without compensation). The two devices are programmed and drift independently, so

    σ_device(w)² = (α / ((g_max − g_min)·c(t)))² · (s_t(g⁺)² + s_t(g⁻)²),

where s_t(g) is the standard deviation of a device programmed to g and read at time t: programming
noise, the spread of the drift exponent and read noise, as the preset's aihwkit noise model draws
them. s_t is not written out per model: it is *measured* once, at construction, from the noise model
itself (``apply_programming_noise_to_conductance``, ``generate_drift_coefficients``,
``apply_drift_noise_to_conductance`` on :data:`LEVELS` conductance levels, :data:`DRAWS` draws each)
and interpolated linearly between levels; c(t) is the mean read-out of those levels at t over their
programmed targets (1 where the preset has no drift compensation). For PCM at t = 1 d this gives
σ_device/α from 0.008 (w = 0) to 0.09 (|w| = α): a floor from the noise of the low device of every pair, growing
with the conductance as PCM's programming noise does.

Then, as in ASAM, the worst case of the first-order loss over the ellipsoid {‖ε/T‖₂ ≤ ρ} is
ε = ρ T² g / ‖T g‖₂ (maximise gᵀε subject to ‖ε/T‖ ≤ ρ: substitute ε = T u, ‖u‖ ≤ ρ, u = ρ T g/‖T g‖).
ρ is therefore measured in device standard deviations: the perturbation has unit "σ of the device"
along each weight, ‖ε/T‖₂ = ρ, and no single weight moves by more than ρ σ_device(w) (|ε_i| =
ρ T_i |T_i g_i| / ‖T g‖ ≤ ρ T_i). The default ρ = 6 bounds that at six device standard deviations (ASAM's
ρ = 0.5 bounds a weight at half its magnitude) and makes ‖ε‖₂ about that of SAM at ρ = 0.05 on LeNet-5
(measured at initialisation on a Fashion-MNIST batch with PCM at 1 d: ‖ε‖₂ = 0.0081·ρ). ρ = 60, which
matched ASAM's ‖ε‖₂ at initialisation, diverged in the second epoch of LeNet-5 on Fashion-MNIST once the
gradient concentrated on a few weights (each then moved by up to 60 σ, several times its layer's range).

The scale depends on the weights (through α and |w|) and is recomputed at every step, like ASAM's.
Unlike SAM it needs the preset; unlike hardware-aware training it needs no tile in the training loop.
"""

from __future__ import annotations

import torch

from analogsam.errors import InvalidParameterError

from ._common import adaptive_param_groups
from .base import base_optimizer_class
from .hyperparameters import DEVICE_PRESET, DEVICE_TIME, METHODS
from .two_pass import SAM, SharpnessAwareMethod

#: Conductance levels (fractions of g_max − g_min) at which the device spread is measured.
LEVELS = 33
#: Draws per level (the standard deviation's relative error is about 1/sqrt(2·DRAWS), 1.1%).
DRAWS = 4000


def check_device_setting(preset, t_seconds: float):
    """The loaded preset, after checking that it exists and defines ``t_seconds``; an
    :class:`~analogsam.errors.InvalidParameterError` naming both settings otherwise."""
    from analogsam.hardware import presets as devices

    try:
        p = devices.load(preset) if not isinstance(preset, devices.Preset) else preset
        p.check_times([t_seconds])
    except ValueError as err:
        # (the preset or the time it names: both settings in the message, the user fixes either)
        raise InvalidParameterError(
            f"device-sam: device_preset={preset!r}, device_time={t_seconds:g} s: {err}"
        ) from err
    return p


@torch.no_grad()
def device_spread(preset, t_seconds: float, *, levels: int = LEVELS, draws: int = DRAWS, seed: int = 0):
    """(u, s, c, g_range): conductance levels u in [0, 1] (fractions of g_max − g_min above g_min), the
    measured standard deviation s(u) of one device programmed there and read at ``t_seconds`` (µS), the
    drift-compensation factor c(t) and g_max − g_min (µS), from ``preset``'s aihwkit noise model."""
    from analogsam.hardware.rpu_config import build_noise_model

    p = check_device_setting(preset, t_seconds)
    noise = build_noise_model(p.values["noise"])
    g_min, g_max = p.values["noise"]["g_min_uS"], p.values["noise"]["g_max_uS"]
    u = torch.linspace(0.0, 1.0, levels, dtype=torch.float64)
    target = (g_min + u * (g_max - g_min)).to(torch.float32).unsqueeze(1).expand(levels, draws).contiguous()
    with torch.random.fork_rng():  # a fixed table for a fixed preset and time; the caller's stream untouched
        torch.manual_seed(seed)
        programmed = noise.apply_programming_noise_to_conductance(target)
        nu = noise.generate_drift_coefficients(target)
        read = noise.apply_drift_noise_to_conductance(programmed, nu, float(t_seconds))
    read = read.double()
    spread = read.std(1)
    compensated = p.values["compensation"]["drift"] != "none"
    # global compensation divides by (read-out now / read-out when programmed), over the layer: the
    # levels' mean read-out over their mean target (the levels stand for a layer's spread of weights)
    c = float(read.mean(1)[1:].sum() / target.double().mean(1)[1:].sum()) if compensated else 1.0
    return u, spread, c, float(g_max - g_min)


class DeviceSAM(SAM):
    """Device-shaped SAM: ε = ρ · T² ⊙ g / ‖T ⊙ g‖₂ with T_w = σ_device(w) of ``preset`` at ``t``
    for crossbar weights and T = 0 (not perturbed) for digital parameters (derivation in the module
    docstring).

    Args:
        params: parameters or param groups; a group's ``adaptive`` flag says whether its tensors are
            crossbar weights (True) or digital (False); without it, tensors with ``dim() > 1`` are
            weights (:func:`analogsam.optim.adaptive_param_groups` sets the flag by layer type).
        base_optimizer: a torch optimizer class.
        rho: ρ in device standard deviations (‖ε / T‖₂ = ρ).
        preset: the device preset (name, TOML path or loaded preset) whose noise shapes T.
        t: the time after programming (seconds) at which the device's spread is taken.
    """

    def __init__(
        self,
        params,
        base_optimizer,
        rho: float = METHODS["device-sam"]["rho"].default,
        preset: str = DEVICE_PRESET.default,
        t: float = DEVICE_TIME.default,
        **base_kwargs,
    ):
        self._extra_defaults = {"adaptive": None}
        super().__init__(params, base_optimizer, rho=rho, **base_kwargs)
        u, spread, c, g_range = device_spread(preset, t)
        self.levels = u.float()
        self.level_spread = spread.float()  # µS per level
        self.compensation = c
        self.g_range = g_range

    def device_sigma(self, w: torch.Tensor) -> torch.Tensor:
        """σ_device of every element of the weight tensor ``w`` (same shape, weight units)."""
        alpha = w.detach().abs().max().clamp_min(1e-12)
        u = (w.detach().abs() / alpha).clamp(0.0, 1.0)
        spread = self.level_spread.to(w.device, w.dtype)
        pos = u * (len(spread) - 1)
        lo = pos.floor().long().clamp(max=len(spread) - 2)
        frac = pos - lo
        s_programmed = spread[lo] * (1 - frac) + spread[lo + 1] * frac  # the device the weight is on
        s_other = spread[0]  # the other device of the pair, at g_min
        return (alpha / (self.g_range * self.compensation)) * torch.sqrt(s_programmed**2 + s_other**2)

    def _scale(self, p, group):
        flag = group.get("adaptive")
        weight = bool(flag) if flag is not None else p.dim() > 1
        return self.device_sigma(p) if weight else torch.zeros_like(p)


class DeviceSharpnessMethod(SharpnessAwareMethod):
    """``device-sam`` in the training loop: :class:`SharpnessAwareMethod`'s two passes with
    :class:`DeviceSAM` (T from the preset's devices on the crossbar weights, 0 elsewhere). Here rather
    than in :mod:`.two_pass`, which :class:`DeviceSAM` builds on: the generic step does not import the
    device-shaped one."""

    @classmethod
    def resolve_hparams(cls, hparams: dict, *, epochs: int | None) -> dict:
        # the preset and its time, checked before any data is loaded
        check_device_setting(hparams["device_preset"], hparams["device_time"])
        return dict(hparams)

    def _make_optimizer(self, base, lr, momentum, weight_decay):
        cls, base_kwargs = base_optimizer_class(base)
        hp = self.hparams
        self.sam = DeviceSAM(
            adaptive_param_groups(self.model, "weights"),
            cls,
            rho=hp["rho"],
            preset=hp["device_preset"],
            t=hp["device_time"],
            **base_kwargs(lr, momentum, weight_decay),
        )
        return self.sam.base_optimizer
