"""The architectures researchers download, converted as they are (issue 23): torchvision, timm and
HuggingFace transformers constructors with small configs and random weights (tests/zoo_architectures.py),
each evaluated on PCM with the fast engine, equal to the digital network when every noise source and
both converters are off, and reported by `analogsam inspect`.

torchvision, timm and transformers are test-only dependencies (pyproject's dev extra); a test whose
library is missing is skipped. The heavier architectures are marked slow.
"""

import math

import pytest
import torch
import zoo_architectures as zoo

from analogsam.cli import main
from analogsam.evaluation.backends import make_backend
from analogsam.hardware.conversion import ConversionError, convert
from analogsam.hardware.inspection import layer_report
from analogsam.scoring import model_output

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LIBRARY = {"torchvision": "torchvision", "timm": "timm", "hf": "transformers", "dilated": "torch"}
SLOW = {"timm-mobilevit", "torchvision-resnet18"}  # 10-20 s each on one busy core
NOISE_OFF = {"io.dac_bits": 0, "io.adc_bits": 0}  # the `ideal` preset with both converters off too


def _cases():
    for name in zoo.ZOO:
        marks = [pytest.mark.slow] if name in SLOW else []
        yield pytest.param(name, marks=marks, id=name)


def _build(name):
    pytest.importorskip(LIBRARY[name.split("-")[0]])
    return zoo.ZOO[name]()


@pytest.mark.parametrize("name", list(_cases()))
def test_converts_and_equals_the_digital_network_with_noise_off(name):
    model, x = _build(name)
    with torch.no_grad():
        digital = zoo.prediction(name, model(x))
    analog = convert(model, "ideal", overrides=NOISE_OFF, example_inputs=x)
    backend = make_backend(analog, "fast", "cpu")
    backend.program(0)
    backend.drift(1.0, 0)
    with torch.no_grad():
        ours = zoo.prediction(name, backend.forward(x))
    scale = float(digital.abs().max())
    # equal up to float32 summation order (tiles split and sum in another order than torch)
    torch.testing.assert_close(ours, digital, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("name", list(_cases()))
def test_evaluates_on_pcm_with_the_fast_engine_and_is_inspected(name, capsys):
    model, x = _build(name)
    metric, rows = zoo.evaluate_on_pcm(name, model, x)
    assert [r["backend"] for r in rows] == ["fast", "fast"]
    assert all(math.isfinite(r["value"]) for r in rows)
    assert rows[0]["digital_value"] == (0.0 if metric == "mse" else 1.0)
    function = zoo.ZOO[name].__name__
    assert main(["inspect", f"zoo_architectures:{function}", "--preset", "pcm"]) in (0, None)
    report = capsys.readouterr().out
    assert "engine: fast (the seeded fast engine replays every analog tile)" in report
    assert "refuses" not in report and "unmappable" not in report


def test_gpt2_is_mapped_with_its_conv1d_projections_as_linear_tiles():
    model, x = _build("hf-gpt2")
    analog = convert(model, "pcm", example_inputs=x)
    block = analog.transformer.h[0]
    kinds = {name: type(getattr(block.attn, name)).__name__ for name in ("c_attn", "c_proj")}
    kinds.update({f"mlp.{name}": type(getattr(block.mlp, name)).__name__ for name in ("c_fc", "c_proj")})
    assert set(kinds.values()) == {"AnalogLinear"}, kinds
    assert type(analog.lm_head).__name__ == "AnalogLinear"


def test_a_network_that_takes_weights_out_of_its_layers_is_refused_by_name():
    """torchvision's Swin passes its attention's qkv.weight to F.linear itself: an analog tile in
    place of that Linear would never be called, so conversion names the layers and the options."""
    pytest.importorskip("torchvision")
    build, layer = zoo.REFUSED["torchvision-swin"]
    model, x = build()
    with pytest.raises(ConversionError) as err:
        convert(model, "pcm", example_inputs=x)
    message = str(err.value)
    assert f"{layer}: its parameters are used outside its own forward (linear)" in message
    assert "allow_digital=(" in message and "\n" not in message


def test_a_network_that_reads_a_layers_weight_is_refused_by_name_and_runs_with_it_digital():
    """HuggingFace's ViT casts its pixels to projection.weight.dtype: the analog layer has no weight
    tensor, so the converted network's trial forward fails, and conversion names the layer; kept
    digital knowingly, the rest converts and equals the digital network with noise off."""
    pytest.importorskip("transformers")
    build, layer = zoo.REFUSED["hf-vit"]
    model, x = build()
    with pytest.raises(ConversionError) as err:
        convert(model, "pcm", example_inputs=x)
    message = str(err.value)
    assert f"{layer}: its weight's dtype read from outside the layer" in message
    assert "allow_digital=('vit.embeddings.patch_embeddings.projection',)" in message and "\n" not in message
    rows = layer_report(model, "pcm", example_inputs=x)
    assert rows.refusal == message
    row = next(r for r in rows if r["path"] == "vit.embeddings.patch_embeddings.projection")
    assert row["placement"] == "unmappable" and "its weight's dtype read from outside the layer" in row["why"]
    analog = convert(
        model,
        "ideal",
        overrides=NOISE_OFF,
        example_inputs=x,
        allow_digital=("vit.embeddings.patch_embeddings.projection",),
    )
    backend = make_backend(analog, "fast", "cpu")
    backend.program(0)
    backend.drift(1.0, 0)
    with torch.no_grad():
        digital, ours = model_output(model(x)), model_output(backend.forward(x))
    torch.testing.assert_close(ours, digital, rtol=1e-4, atol=1e-5 * float(digital.abs().max()))
