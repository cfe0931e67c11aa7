"""Conversion to aihwkit tiles: the torch/aihwkit pair works, and conversion matches aihwkit used directly."""

import pytest
import torch
from torch import nn

from analogsam.hardware import presets as devices
from analogsam.hardware.conversion import ConversionError, convert


def test_cpp_tile_builds_and_computes():
    """Catches a wrong torch/aihwkit pair: aihwkit imports on torch 2.13+, but its C++ tiles fail."""
    from aihwkit.nn import AnalogLinear
    from aihwkit.simulator.configs import InferenceRPUConfig
    from aihwkit.simulator.rpu_base import tiles

    config = InferenceRPUConfig()
    config.forward.is_perfect = True
    layer = AnalogLinear(4, 3, bias=False, rpu_config=config)
    assert any(isinstance(t.tile, tiles.AnalogTile) for t in layer.analog_tiles())
    weight = torch.tensor([[0.1, -0.2, 0.3, 0.0], [0.5, 0.5, -0.5, 0.1], [0.0, 0.2, 0.1, -0.3]])
    layer.set_weights(weight)
    x = torch.tensor([[1.0, 0.5, -0.5, 0.25]])
    torch.testing.assert_close(layer(x), x @ weight.T, atol=1e-5, rtol=1e-5)


def test_convert_equals_aihwkit_used_directly():
    from aihwkit.nn.conversion import convert_to_analog

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    preset = devices.load("pcm", io={"out_noise": 0.0})
    ours = convert(model, preset)
    direct = convert_to_analog(model, preset.rpu_config()).eval()
    x = torch.randn(8, 1, 8, 8)
    for analog in (ours, direct):
        torch.manual_seed(1)
        analog.program_analog_weights()
        analog.drift_analog_weights(3600.0)
    torch.testing.assert_close(ours(x), direct(x))
    assert ours(x).shape == model(x).shape
    # the original model is untouched
    assert isinstance(model[0], nn.Conv2d) and not any("Analog" in type(m).__name__ for m in model.modules())


def test_unconvertible_layer_is_named():
    model = nn.Sequential(nn.Bilinear(4, 4, 8), nn.Linear(8, 2))  # weights, but no aihwkit layer for them
    with pytest.raises(ConversionError, match=r"0 \(Bilinear\)"):
        convert(model, "pcm")
    analog = convert(model, "pcm", allow_digital=("0",))
    assert type(analog[0]).__name__ == "Bilinear"


def test_model_without_layers_to_convert():
    with pytest.raises(ConversionError, match="nothing to put on analog tiles"):
        convert(nn.Sequential(nn.ReLU()), "pcm")
