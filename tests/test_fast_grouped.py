"""The fused pass over a grouped convolution's tiles (fast/grouped.py) is bit-identical to the
tile-by-tile path it replaces, noise on, same seed; where it cannot be exact it runs that path."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from analogsam.hardware import presets
from analogsam.hardware.conversion import convert
from analogsam.hardware.fast import FastAnalogForward, grouped_kernels
from analogsam.hardware.fast.grouped import FastGroupedConv
from analogsam.hardware.fast.tile import Weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (dims, in, out, kernel, options): depthwise, channel multiplier, strided/dilated, several channels
_CASES = {
    "depthwise-1d": (1, 6, 6, 3, dict(padding=1, groups=6, bias=False)),
    "depthwise-strided-1d": (1, 5, 5, 3, dict(stride=2, padding=1, groups=5)),
    "groups2-1d": (1, 4, 6, 5, dict(padding=2, groups=2)),
    "depthwise-2d": (2, 4, 4, 3, dict(padding=1, groups=4)),
    "multiplier-strided-dilated-2d": (2, 4, 8, 3, dict(stride=2, padding=2, dilation=2, groups=4, bias=False)),
}


def _network(dims, cin, cout, kernel, options):
    conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    torch.manual_seed(0)
    return nn.Sequential(
        conv(cin, cin, 1),
        nn.ReLU(),  # ReLU: patches that are all zero
        conv(cin, cout, kernel, **options),
        norm(cout),
        nn.ReLU(),
    ).eval()


def _outputs(analog, x, fused: bool, monkeypatch):
    """Two forwards of ``x`` after a sync, through the fused pass or tile by tile."""
    with monkeypatch.context() as patch:
        if not fused:
            patch.setattr(FastGroupedConv, "_fused", lambda self, x: None)
        engine = FastAnalogForward(analog)
        engine.sync(torch.Generator().manual_seed(3), baseline_generator=torch.Generator().manual_seed(4))
        return engine(x), engine(x)


def _converted(case, **io):
    dims, cin, cout, kernel, options = _CASES[case]
    analog = convert(
        _network(dims, cin, cout, kernel, options), presets.load("pcm", io=io) if io else presets.load("pcm")
    )
    torch.manual_seed(1)
    analog.program_analog_weights()
    analog.drift_analog_weights(3600.0)
    shape = (23, cin, 17) if dims == 1 else (23, cin, 9, 11)
    return analog, torch.randn(shape, generator=torch.Generator().manual_seed(2))


@pytest.mark.slow  # seconds per case
@pytest.mark.parametrize("case", sorted(_CASES))
@pytest.mark.parametrize("noise_management", ["abs-max", "max"])
def test_the_fused_pass_is_bit_identical_to_the_tile_by_tile_path(case, noise_management, monkeypatch):
    analog, x = _converted(case, noise_management=noise_management)
    calls = []
    kernel = grouped_kernels.grouped_conv

    def counted(*args):
        calls.append(1)
        return kernel(*args)

    monkeypatch.setattr(grouped_kernels, "grouped_conv", counted)
    fused = _outputs(analog, x, True, monkeypatch)
    assert calls, "the fused pass was not taken"
    reference = _outputs(analog, x, False, monkeypatch)
    for ours, theirs in zip(fused, reference):
        assert torch.equal(ours, theirs)
    assert not torch.equal(fused[0], fused[1])  # the noise is on: two forwards differ


def test_a_saturating_layer_falls_back_to_the_tile_by_tile_path(monkeypatch):
    # an ADC range this small saturates: bound management reruns patches, which only the
    # tile-by-tile path does; the fused pass resets the generator and hands over
    analog, x = _converted("depthwise-1d", out_bound=0.05)
    reference = _outputs(analog, x, False, monkeypatch)
    fused = _outputs(analog, x, True, monkeypatch)
    for ours, theirs in zip(fused, reference):
        assert torch.equal(ours, theirs)


def test_a_layer_the_kernel_does_not_cover_runs_tile_by_tile():
    analog, _ = _converted("depthwise-1d", ir_drop=1.0)
    layer = next(
        m for m in FastAnalogForward(copy.deepcopy(analog)).network.modules() if isinstance(m, FastGroupedConv)
    )
    assert layer.tiles is None


@pytest.mark.parametrize("n, k, length", [(1, 3, 14), (2, 6, 9), (4, 9, 20)])
def test_a_grouped_layers_tiles_compute_the_kernels_product(n, k, length):
    """Tile by tile, a grouped layer's tiles compute the kernel's chain of fused multiply-adds, not
    the BLAS product (whose order OpenBLAS picks by CPU): the two paths agree on every machine."""
    g = torch.Generator().manual_seed(99)
    w = torch.randn(n, k, generator=g)
    x = torch.randint(-127, 128, (200, k, length), generator=g).float() * 0.0078740157
    ours = np.empty((200, n, length), np.float32)
    grouped_kernels.chain_product(w.numpy(), x.numpy(), ours)
    tiles = Weights(w, chain=True).matmul(x, torch.empty(200, n, length))
    assert np.array_equal(tiles.numpy(), ours)
    expected = np.einsum("nk,bkl->bnl", w.double().numpy(), x.double().numpy())
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)  # the product, to float32 rounding
    blas = Weights(w).matmul(x, torch.empty(200, n, length))
    np.testing.assert_allclose(blas.numpy(), ours, rtol=1e-5, atol=1e-6)
