"""Reference architectures build from their specs, run, and rebuild identically."""

import pytest
import torch

from analogsam.models import build_model, make_spec, model_names


@pytest.mark.parametrize("name,channels,size", [("mlp", 1, 28), ("lenet5", 1, 28), ("lenet5", 1, 8),
                                                 ("resnet20", 3, 32), ("resnet32", 3, 32), ("vgg8", 3, 32)])
def test_models_build_and_run(name, channels, size):
    model = build_model(make_spec(name, in_channels=channels, num_classes=7, input_size=size))
    assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


def test_parameter_counts_match_the_papers():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(build_model(make_spec("lenet5", in_channels=1, num_classes=10, input_size=28))) == 61706
    # He et al. 2016 report 0.27M and 0.46M parameters for the CIFAR ResNet-20 / -32
    assert round(count(build_model(make_spec("resnet20", in_channels=3, num_classes=10, input_size=32))), -4) == 270000
    assert round(count(build_model(make_spec("resnet32", in_channels=3, num_classes=10, input_size=32))), -4) == 460000


def test_spec_round_trip_through_a_checkpoint_like_dict():
    spec = make_spec("mlp", in_channels=1, num_classes=10, input_size=8, hidden=[32])
    torch.manual_seed(0)
    a = build_model(spec)
    b = build_model(dict(spec))
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(a(x), b(x))


def test_unknown_model_suggests():
    with pytest.raises(ValueError, match="Did you mean 'lenet5'"):
        build_model({"name": "lenet", "in_channels": 1, "num_classes": 10, "input_size": 28})
    assert "resnet20" in model_names()
