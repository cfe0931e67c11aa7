"""Linear layers in disguise (analogsam.hardware.mapping.linear_like): transformers' Conv1D, with its
weight stored transposed, goes onto tiles exactly as nn.Linear does, on both backends."""

import pytest
import torch
from torch import nn

from analogsam.hardware.conversion import ConversionError, convert
from analogsam.hardware.fast import FastAnalogForward, unsupported_reason
from analogsam.hardware.mapping.linear_like import as_linear

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D as transformers 5 writes it (copied here so that this test
    runs without transformers): y = x W + b with W of (nx, nf)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf, self.nx = nf, nx
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.3)
        nn.init.normal_(self.bias, std=0.1)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


def _gpt2_mlp(projection):
    torch.manual_seed(0)
    return nn.Sequential(projection(16, 8), nn.GELU(), projection(8, 16)).eval()


def _as_linears(model):
    """The same network with nn.Linear layers holding the Conv1D weights transposed."""
    torch.manual_seed(0)
    linears = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8)).eval()
    with torch.no_grad():
        for conv, linear in zip(model[::2], linears[::2]):
            linear.weight.copy_(conv.weight.t())
            linear.bias.copy_(conv.bias)
    return linears


def _run(analog, x, backend):
    torch.manual_seed(5)
    analog.program_analog_weights()
    analog.drift_analog_weights(86400.0)
    if backend == "aihwkit":
        return analog(x)
    engine = FastAnalogForward(analog)
    engine.sync(torch.Generator().manual_seed(6))
    return engine(x)


def _conv1d_classes():
    classes = [Conv1D]
    try:
        from transformers.pytorch_utils import Conv1D as HuggingFaceConv1D

        classes.append(HuggingFaceConv1D)
    except ImportError:
        pass
    return classes


@pytest.mark.parametrize("projection", _conv1d_classes(), ids=lambda c: c.__module__)
def test_conv1d_goes_onto_tiles_exactly_as_linear(projection):
    model = _gpt2_mlp(projection)
    linears = _as_linears(model)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))  # (batch, tokens, features)
    torch.testing.assert_close(linears(x), model(x))
    analog = convert(model, "pcm")
    assert [type(m).__name__ for m in analog[::2]] == ["AnalogLinear", "AnalogLinear"]
    assert unsupported_reason(analog) is None
    reference = convert(linears, "pcm")
    for backend in ("fast", "aihwkit"):
        ours = _run(analog, x, backend)
        theirs = _run(reference, x, backend)
        if backend == "fast":  # seeded: the same programming, drift and noise draws, bit for bit
            assert torch.equal(ours, theirs)
        else:  # aihwkit's forward noise cannot be seeded: the same programmed weights
            for a, b in zip(analog.analog_tiles(), reference.analog_tiles()):
                assert torch.equal(a.get_weights()[0], b.get_weights()[0])


def test_the_original_model_keeps_its_conv1d():
    model = _gpt2_mlp(Conv1D)
    convert(model, "pcm")
    assert type(model[0]) is Conv1D and model[0].weight.shape == (8, 16)


def test_a_namesake_that_computes_something_else_is_refused_by_name():
    class Conv1D(nn.Module):  # the structure of transformers' Conv1D, but x W^T, not x W
        def __init__(self):
            super().__init__()
            self.nf = 4
            self.weight = nn.Parameter(torch.randn(4, 4))
            self.bias = nn.Parameter(torch.zeros(4))

        def forward(self, x):
            return x @ self.weight.t() + self.bias

    with pytest.raises(ConversionError) as err:
        convert(nn.Sequential(Conv1D(), nn.Linear(4, 2)), "pcm")
    message = str(err.value)
    assert message.startswith("layer 0 (Conv1D): ") and "does not compute x @ weight + bias" in message
    assert "allow_digital" in message


def test_as_linear_keeps_trainability():
    conv = Conv1D(4, 3)
    conv.bias.requires_grad_(False)
    linear = as_linear(conv)
    assert linear.weight.requires_grad and not linear.bias.requires_grad
