"""Device-shaped SAM (analogsam.optim.device_sam): the step equals its formula on a hand-sized
problem, and the measured device spread equals the noise model's own formulas where they are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.optim import adaptive_param_groups, build_method
from analogsam.optim.device_sam import DeviceSAM, device_spread

# aihwkit's PCMLikeNoiseModel programming noise, µS: sigma = c0 + c1 (g/g_max) + c2 (g/g_max)^2
PCM_PROG = (0.26348, 1.9650, -1.1731)


def test_step_is_rho_T2_g_over_norm_Tg_on_a_hand_sized_layer():
    """ε_W = ρ T² ⊙ g / ‖T ⊙ g‖₂ with T = α/((g_max − g_min) c) · sqrt(s(|w|/α)² + s(0)²) on the
    weight, and ε = 0 on the bias (digital: the device never perturbs it)."""
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.25, 0.0], [1.0, 0.1, -0.75]]))
        layer.bias.copy_(torch.tensor([0.3, -0.2]))
    layer.weight.grad = torch.tensor([[0.2, -0.4, 0.1], [0.05, 0.3, -0.6]])
    layer.bias.grad = torch.tensor([1.0, -1.0])
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    opt = DeviceSAM(adaptive_param_groups(layer, "weights"), torch.optim.SGD, rho=3.0, lr=0.1)

    # the expected T by hand, from the optimizer's measured table s(u) (33 levels over [0, 1])
    s = opt.level_spread.numpy().astype(np.float64)
    w, g = w0.numpy().astype(np.float64), layer.weight.grad.numpy().astype(np.float64)
    alpha = np.abs(w).max()  # 1.0
    u = np.abs(w) / alpha
    s_u = np.interp(u, np.linspace(0, 1, len(s)), s)
    t = alpha / (opt.g_range * opt.compensation) * np.sqrt(s_u**2 + s[0] ** 2)
    eps = 3.0 * t**2 * g / np.linalg.norm(t * g)

    opt.first_step(zero_grad=False)
    np.testing.assert_allclose(layer.weight.detach().numpy() - w, eps, rtol=1e-4, atol=1e-9)
    assert torch.equal(layer.bias.detach(), b0)
    # ‖ε / T‖₂ = ρ: the radius is in device standard deviations
    assert np.linalg.norm(eps / t) == pytest.approx(3.0, rel=1e-6)
    opt.restore()
    assert torch.equal(layer.weight.detach(), w0)


def test_pcm_spread_is_its_programming_and_read_noise_at_one_second():
    """At t = 1 s PCM's drift has barely begun ((21/20)^-ν ≈ 0.997, its spread negligible), so the
    measured spread of a device programmed to g = u g_max is aihwkit's programming noise
    c0 + c1 u + c2 u² (µS) and its 1/f read noise g · min(0.0088 / u^0.65, 0.2) · sqrt(ln((t + t0 +
    t_read) / (2 t_read))), t0 = 20 s, t_read = 250 ns, added in quadrature: within 5% (4000 draws:
    about 1.1% standard error), away from g = 0 where the programmed conductance is clipped at 0."""
    u, s, c, g_range = device_spread("pcm", 1.0)
    assert g_range == 25.0
    read = math.sqrt(math.log((1.0 + 20.0 + 250e-9) / (2 * 250e-9)))
    for level in (0.25, 0.5, 0.75, 1.0):
        i = int(round(level * (len(u) - 1)))
        prog = PCM_PROG[0] + PCM_PROG[1] * level + PCM_PROG[2] * level**2
        g = 25.0 * level
        expected = math.hypot(prog, g * min(0.0088 / level**0.65, 0.2) * read)
        assert float(s[i]) == pytest.approx(expected, rel=0.05), level
    assert c == pytest.approx(1.0, abs=0.01)


def test_spread_grows_with_time_under_drift_and_compensation_undoes_the_mean_decay():
    _, s_1s, c_1s, _ = device_spread("pcm", 1.0)
    _, s_1y, c_1y, _ = device_spread("pcm", 365 * 86400.0)
    assert c_1y < 0.6 < c_1s  # PCM conductances decay by about half in a year
    # the compensated spread (s / c) grows: the drift exponent's spread adds to the programming noise
    assert float(s_1y[-1] / c_1y) > 1.2 * float(s_1s[-1] / c_1s)


def test_an_ideal_device_gives_no_perturbation():
    layer = nn.Linear(4, 3)
    layer.weight.grad = torch.ones_like(layer.weight)
    layer.bias.grad = torch.ones_like(layer.bias)
    w0 = layer.weight.detach().clone()
    opt = DeviceSAM(adaptive_param_groups(layer, "weights"), torch.optim.SGD, preset="ideal", t=1.0, lr=0.1)
    opt.first_step()
    assert torch.equal(layer.weight.detach(), w0)


def test_rram_times_are_checked_and_the_method_trains():
    with pytest.raises(InvalidParameterError, match="device-sam"):
        DeviceSAM(nn.Linear(2, 2).parameters(), torch.optim.SGD, preset="rram-wan2022", t=3600.0, lr=0.1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    method = build_method("device-sam", model, lr=0.1, device_preset="rram-wan2022", device_time=86400.0)
    assert method.hparams["rho"] == 6.0 and method.hparams["device_preset"] == "rram-wan2022"
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    losses = [float(method.train_step(x, y, torch.arange(32))[0]) for _ in range(30)]
    assert losses[-1] < losses[0] and math.isfinite(losses[-1])
