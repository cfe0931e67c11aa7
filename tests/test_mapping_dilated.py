"""Dilated 1-D convolutions on tiles (analogsam.hardware.mapping.dilated): the kernel on one tile as
for an undilated convolution, the inputs gathered with the dilation, on aihwkit's tiles and on the
fast engine, which agree (noise off: up to summation order; noise on: the same distributions)."""

import pytest
import torch
from conformance import compare_draws, repeated
from torch import nn

from analogsam.hardware.conversion import ConversionError, convert
from analogsam.hardware.fast import FastAnalogForward, unsupported_reason
from analogsam.hardware.mapping.dilated import DilatedConv1d

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the preset with every noise source and both converters off
NOISE_OFF = {"io.dac_bits": 0, "io.adc_bits": 0}


def tcn() -> nn.Module:
    """WaveNet-style: dilations 2 and 3 (one grouped, one with padding='same'), then a classifier."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(3, 8, 3, dilation=2, padding=2),
        nn.ReLU(),
        nn.Conv1d(8, 6, 3, dilation=3, groups=2, padding="same", bias=False),
        nn.ReLU(),
        nn.Conv1d(6, 4, 2, dilation=4, stride=2),
        nn.Flatten(),
        nn.Linear(4 * 8, 5),
    ).eval()


def signals(n: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, 20, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv1d(3, 5, 3, dilation=2),
        nn.Conv1d(3, 5, 4, dilation=3, stride=2, padding=4),
        nn.Conv1d(2, 2, 3, dilation=2, padding="same", bias=False),
    ],
)
def test_the_rewrite_computes_the_convolution(conv):
    x = torch.randn(4, conv.in_channels, 17)
    rewritten = DilatedConv1d(conv)
    torch.testing.assert_close(rewritten(x), conv(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(rewritten(x[0]), conv(x[0]), rtol=1e-6, atol=1e-6)  # an unbatched signal
    # one tile of C_in * k rows, as for the undilated kernel
    assert rewritten.conv.weight.shape == (conv.out_channels, conv.in_channels, 1, conv.kernel_size[0])


def test_the_kernel_sits_on_the_tile_of_an_undilated_convolution():
    analog = convert(tcn(), "pcm")
    tiles = [(int(t.in_size), int(t.out_size)) for t in analog[0].conv.analog_tiles()]
    assert tiles == [(3 * 3, 8)]  # C_in * k rows, C_out columns
    grouped = [(int(t.in_size), int(t.out_size)) for c in analog[2].convs for t in c.conv.analog_tiles()]
    assert grouped == [(4 * 3, 3)] * 2
    assert unsupported_reason(analog) is None  # the fast engine replays every tile


def _programmed(preset, overrides=None):
    analog = convert(tcn(), preset, overrides=overrides)
    torch.manual_seed(3)
    analog.program_analog_weights()
    analog.drift_analog_weights(3600.0)
    engine = FastAnalogForward(analog)
    engine.sync(torch.Generator().manual_seed(4))
    return analog, engine


def test_noise_off_both_backends_equal_the_digital_network_up_to_summation_order():
    model, x = tcn(), signals()
    analog, engine = _programmed("ideal", NOISE_OFF)
    with torch.no_grad():
        digital, theirs, ours = model(x), analog(x), engine(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, digital, rtol=1e-5, atol=1e-5)


def test_with_converters_the_backends_differ_by_at_most_one_adc_step():
    """8-bit DAC and ADC (the ``ideal`` preset): the same quantization in both backends, an output
    moving by one ADC step at most where summation order puts it at a rounding boundary."""
    x = signals()
    analog, engine = _programmed("ideal")
    with torch.no_grad():
        theirs, ours = analog(x), engine(x)
    differ = (ours - theirs).abs()
    step = 2 * 10.0 / 254  # the last layer's ADC step (out_bound 10, 8 bits), times its output scale 1
    assert float(differ.max()) <= step * 1.01
    assert float((differ > 1e-5).float().mean()) < 0.02


def test_noise_on_the_backends_draw_the_same_distributions():
    """PCM (programmed and drifted once, read noise and output noise at every forward; without drift
    compensation, whose alpha each backend draws once from its own noisy read-out, which would shift
    every mean by the same random factor): per-output means and standard deviations over 300 draws
    of each backend agree. The bounds are 5.5 standard errors
    for every one of the 80 outputs' means (false failure about 80 x 4e-8), a summed-variance
    ratio within 10% and a median relative std difference below 0.1 (chi-square with 299 degrees
    of freedom: the median of |s_b/s_a - 1| is about 0.04)."""
    x = signals(16)
    analog, engine = _programmed("pcm", {"compensation.drift": "none"})
    stats = compare_draws(repeated(lambda: analog(x), 300), repeated(lambda: engine(x), 300))
    assert stats.noise > 1e-6  # the noise is there
    assert stats.max_z < 5.5, stats.max_z
    assert abs(stats.variance_ratio - 1) < 0.1, stats.variance_ratio
    assert stats.median_relative_std(min_var=1e-6) < 0.1


def test_a_dilated_conv3d_is_refused_by_name_not_with_aihwkits_value_error():
    model = nn.Sequential(nn.Conv3d(2, 2, 3, dilation=2), nn.Flatten())
    with pytest.raises(ConversionError) as err:
        convert(model, "pcm")
    message = str(err.value)
    assert "layer 0 (Conv3d(" in message and "Only dilation = 1 is supported" in message
    assert "replace the layer" in message and "\n" not in message
