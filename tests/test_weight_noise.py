"""The one Gaussian weight-noise draw reproduces, bit for bit, the three draws it replaced."""

import pytest
import torch

from analogsam.optim import injection_noise
from analogsam.robustness.perturbations import gaussian_weight_noise


def weights(dtype=torch.float32):
    g = torch.Generator().manual_seed(7)
    return torch.randn(6, 5, generator=g, dtype=dtype)


def draw_on(generator, w):
    """How the robustness probes drew N(0, 1): on the generator's device, then moved."""
    return torch.randn(w.shape, generator=generator, device=generator.device, dtype=w.dtype).to(w.device)


@pytest.mark.parametrize("additive, multiplicative", [(0.0175, 0.0), (0.05, 0.2), (0.0, 0.3), (0.0, 0.0)])
def test_noise_injection_draw_is_unchanged(additive, multiplicative):
    w = weights()
    torch.manual_seed(3)
    if multiplicative == 0.0:
        old = torch.randn_like(w).mul_(additive * w.abs().max())
    else:
        std = (w.abs() * multiplicative).square_().add_((additive * w.abs().max()) ** 2).sqrt_()
        old = torch.randn_like(w).mul_(std)
    torch.manual_seed(3)
    assert torch.equal(injection_noise(w, additive, multiplicative), old)


@pytest.mark.parametrize("mode", ["relative", "additive"])
@pytest.mark.parametrize("eta", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_perturbation_draws_are_unchanged(mode, eta, dtype):
    w = weights(dtype)
    scale = w.abs() if mode == "relative" else w.abs().max()
    old = eta * scale * draw_on(torch.Generator().manual_seed(5), w)
    new = gaussian_weight_noise(w, **{mode: eta}, generator=torch.Generator().manual_seed(5))
    assert torch.equal(new, old) and new.dtype == dtype


@pytest.mark.parametrize("relative", [True, False])
def test_average_sharpness_draws_are_unchanged(relative):
    w, sigma = weights(), 0.1
    old = sigma * (w.abs() if relative else 1.0) * draw_on(torch.Generator().manual_seed(2), w)
    kind = "relative" if relative else "absolute"
    assert torch.equal(gaussian_weight_noise(w, **{kind: sigma}, generator=torch.Generator().manual_seed(2)), old)


def test_one_draw_per_call_whatever_the_levels_and_w_untouched():
    w = weights()
    saved = w.clone()
    g = torch.Generator().manual_seed(0)
    gaussian_weight_noise(w, generator=g)  # every σ zero: still one draw
    after_zero = torch.randn(1, generator=g)
    g = torch.Generator().manual_seed(0)
    gaussian_weight_noise(w, relative=0.5, additive=0.1, absolute=0.2, generator=g)
    assert torch.equal(torch.randn(1, generator=g), after_zero) and torch.equal(w, saved)


def test_combined_noise_has_the_summed_variance():
    w = torch.full((200, 200), 0.5)
    w[0, 0] = 2.0  # max|w|
    eps = gaussian_weight_noise(
        w, relative=0.2, additive=0.05, absolute=0.03, generator=torch.Generator().manual_seed(1)
    )
    expected = (0.2 * 0.5) ** 2 + (0.05 * 2.0) ** 2 + 0.03**2
    assert float(eps[1:].var()) == pytest.approx(expected, rel=0.03)
