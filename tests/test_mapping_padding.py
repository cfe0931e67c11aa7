"""Convolutions with padding='same'/'valid' (analogsam.hardware.mapping.padding), and aihwkit's own
conversion refusals reported by layer: a ConversionError naming the path, type and what to do."""

import pytest
import torch
from torch import nn

from analogsam.evaluation.backends import make_backend
from analogsam.hardware.conversion import ConversionError, convert

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NOISE_OFF = {"io.dac_bits": 0, "io.adc_bits": 0}


@pytest.mark.parametrize(
    "conv, shape",
    [
        (nn.Conv2d(2, 3, 3, padding="same"), (4, 2, 6, 6)),
        (nn.Conv2d(2, 3, (3, 5), padding="same", dilation=(1, 2)), (4, 2, 9, 9)),
        (nn.Conv1d(2, 3, 3, padding="same"), (4, 2, 7)),
        (nn.Conv1d(2, 3, 4, padding="valid"), (4, 2, 7)),
    ],
)
@pytest.mark.parametrize("backend", ["fast", "aihwkit"])
def test_named_padding_runs_on_both_backends(conv, shape, backend):
    torch.manual_seed(0)
    model = nn.Sequential(conv, nn.Flatten()).eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    measure = make_backend(convert(model, "ideal", overrides=NOISE_OFF), backend, "cpu")
    measure.program(0)
    measure.drift(1.0, 0)
    with torch.no_grad():
        torch.testing.assert_close(measure.forward(x), model(x), rtol=1e-5, atol=1e-5)


def test_same_padding_that_pads_one_side_more_is_refused_by_name():
    with pytest.raises(ConversionError, match=r"^layer 0 \(Conv2d\): .*padding='same' with an even kernel"):
        convert(nn.Sequential(nn.Conv2d(2, 3, 4, padding="same"), nn.Flatten()), "pcm")


def test_aihwkits_own_refusal_names_the_layer():
    model = nn.Sequential(
        nn.Linear(4, 4), nn.Unflatten(1, (1, 2, 2)), nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")
    )
    with pytest.raises(ConversionError) as err:
        convert(model, "pcm")
    message = str(err.value)
    assert message.startswith("layer 2 (Conv2d(1, 2, ") and 'Only "zeros" padding mode is supported' in message
    assert "replace the layer" in message and "\n" not in message
