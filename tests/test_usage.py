"""Parameters judged by use (analogsam.hardware.usage and convert's decision): an operand of a
matrix product is a crossbar matrix, a parameter used element-wise stays digital by nature."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analogsam.hardware.conversion import ConversionError, convert
from analogsam.hardware.inspection import format_layer_report, layer_report
from analogsam.hardware.usage import ELEMENTWISE, MATRIX, UNUSED, parameter_uses, record_uses

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Tokens(nn.Module):
    """A ViT-style front: class token (concatenated), position embedding (added), layer scale
    (multiplied), an RMS-norm weight, a bias table indexed by a buffer; then a Linear."""

    def __init__(self):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, 4))
        self.pos = nn.Parameter(torch.randn(1, 4, 4))
        self.scale = nn.Parameter(torch.full((4,), 0.5))
        self.norm_weight = nn.Parameter(torch.ones(4))
        self.table = nn.Parameter(torch.randn(5, 4))
        self.register_buffer("index", torch.tensor([0, 2, 4, 1]))
        self.fc = nn.Linear(4, 3)

    def forward(self, x):  # x: (B, 3, 4)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.norm_weight
        x = x + self.table[self.index]
        return self.fc(x * self.scale)


class Projections(nn.Module):
    """Parameters in products, written in every way torch allows."""

    def __init__(self):
        super().__init__()
        self.w_matmul = nn.Parameter(torch.randn(4, 4))
        self.w_t = nn.Parameter(torch.randn(4, 4))
        self.w_einsum = nn.Parameter(torch.randn(4, 4))
        self.gain = nn.Parameter(torch.ones(4))
        self.w_normed = nn.Parameter(torch.randn(4, 4))
        self.bias = nn.Parameter(torch.zeros(4))
        self.unused = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        x = x @ self.w_matmul
        x = F.linear(x, self.w_t.t(), self.bias)  # the bias of a product is added: element-wise
        x = torch.einsum("bi,ij->bj", x, self.w_einsum)
        x = torch.einsum("bi,i->bi", x, self.gain)  # no contraction: a per-feature gain
        weight = self.w_normed / self.w_normed.norm(dim=1, keepdim=True)  # weight normalisation
        return torch.addmm(self.bias, x, weight)


def test_element_wise_uses_are_recognised():
    model = Tokens().eval()
    uses = parameter_uses(model, torch.randn(2, 3, 4), ["cls", "pos", "scale", "norm_weight", "table"])
    assert {n: u.kind for n, u in uses.items()} == dict.fromkeys(uses, ELEMENTWISE)
    assert uses["cls"].operations == ["cat"] and uses["pos"].operations == ["add"]
    assert uses["norm_weight"].operations == ["mul"] and uses["table"].operations == ["add"]
    assert uses["cls"].describe() == "cls (1x1x4, element-wise: cat)"


def test_matrix_uses_are_recognised_through_views_and_parameter_arithmetic():
    uses = parameter_uses(Projections().eval(), torch.randn(2, 4), [n for n, _ in Projections().named_parameters()])
    kinds = {n: u.kind for n, u in uses.items()}
    assert kinds == {
        "w_matmul": MATRIX,
        "w_t": MATRIX,
        "w_einsum": MATRIX,
        "gain": ELEMENTWISE,
        "w_normed": MATRIX,
        "bias": ELEMENTWISE,
        "unused": UNUSED,
    }
    assert uses["w_matmul"].operations == ["matmul"] and uses["w_t"].operations == ["linear"]
    assert uses["w_normed"].operations == ["addmm"] and set(uses["bias"].operations) == {"linear", "addmm"}


def test_convert_keeps_element_wise_parameters_digital_given_a_sample():
    model = Tokens().eval()
    x = torch.randn(6, 3, 4)
    with pytest.raises(ConversionError) as err:
        convert(model, "pcm")  # no sample: the use cannot be determined
    message = str(err.value)
    assert "<root> (Tokens)" in message and "example_inputs=" in message and "allow_digital=('<root>',)" in message
    analog = convert(model, "ideal", overrides={"io.dac_bits": 0, "io.adc_bits": 0}, example_inputs=x)
    assert type(analog.fc).__name__ == "AnalogLinear"
    assert [u.path for u in analog.analogsam_digital_by_use] == ["<root>"]
    torch.testing.assert_close(analog(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_parameter_used_as_a_matrix_is_refused_with_its_operation():
    model = nn.Sequential(nn.Linear(4, 4), Projections())
    with pytest.raises(ConversionError) as err:
        convert(model, "pcm", example_inputs=torch.randn(2, 4))
    message = str(err.value)
    assert message.startswith("cannot map these layers onto analog tiles: 1 (Projections): ")
    assert "w_matmul (4x4, matrix: matmul)" in message and "an operand of a matrix product" in message
    assert "allow_digital=('1',)" in message and "\n" not in message
    convert(model, "pcm", example_inputs=torch.randn(2, 4), allow_digital=("1",))  # knowingly


def test_an_unused_parameter_keeps_its_layer_refused():
    class Dormant(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.spare = nn.Parameter(torch.zeros(2))

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(ConversionError, match=r"<root> \(Dormant\): spare not used by the sample forward"):
        convert(Dormant(), "pcm", example_inputs=torch.randn(2, 4))


class WeightsTakenFromTheLayer(nn.Module):
    """torchvision's Swin style: the block passes its Linear's weight to F.linear itself."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(F.linear(x, self.qkv.weight, self.qkv.bias))


def test_a_layer_whose_weight_is_used_outside_its_forward_is_refused_by_name():
    x = torch.randn(2, 4)
    model = WeightsTakenFromTheLayer()
    recording = record_uses(model, x, [], {"qkv": model.qkv, "out": model.out})
    assert recording.bypassed == {"qkv": ["linear"]}  # out runs its own forward
    with pytest.raises(ConversionError) as err:
        convert(model, "pcm", example_inputs=x)
    message = str(err.value)
    assert "qkv (Linear): its parameters are used outside its own forward (linear)" in message
    analog = convert(model, "pcm", example_inputs=x, allow_digital=("qkv",))
    assert type(analog.qkv) is nn.Linear and type(analog.out).__name__ == "AnalogLinear"


def test_tied_weights_used_by_their_other_layer_are_not_a_bypass():
    class Tied(nn.Module):  # GPT-2's lm_head shares the token embedding's table
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids):
            return self.head(self.emb(ids))

    analog = convert(Tied(), "pcm", example_inputs=torch.randint(0, 10, (2, 3)))
    assert type(analog.head).__name__ == "AnalogLinear"


def test_the_layer_report_names_parameters_digital_by_use():
    x = torch.randn(2, 3, 4)
    rows = layer_report(Tokens(), "pcm", example_inputs=x)
    root = next(r for r in rows if r["path"] == "<root>")
    assert root["placement"] == "digital" and rows.refusal is None
    assert root["digital_by_use"] == ["cls", "pos", "scale", "norm_weight", "table"]
    assert "digital by use" in root["why"] and "cls (1x1x4, element-wise: cat)" in root["why"]
    text = format_layer_report(rows)
    assert "1 analog layer on 1 tile (12 cells), 1 digital layer, 5 parameters digital by use" in text
    # without a sample the report shows the layer refused, and what to pass
    rows = layer_report(Tokens(), "pcm")
    root = next(r for r in rows if r["path"] == "<root>")
    assert root["placement"] == "unmappable" and "example_inputs=" in root["why"]
