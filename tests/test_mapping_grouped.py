"""Grouped and depthwise convolutions: one ungrouped convolution per group, equal to the original,
converted by aihwkit (each group on its own tiles) and evaluated on both backends."""

import copy

import pytest
import torch
from torch import nn

from analogsam.evaluation import evaluate
from analogsam.evaluation.settings import PassLayout
from analogsam.hardware.conversion import ConversionError, convert
from analogsam.hardware.mapping import REWRITES, map_to_tiles
from analogsam.hardware.mapping.grouped import GROUPED_CONV, GroupedConv

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _conv(dims: int, *args, **kwargs) -> nn.Module:
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims](*args, **kwargs)


# (dims, in, out, kernel, options)
_CASES = {
    "depthwise-2d": (2, 6, 6, 3, dict(padding=1, groups=6)),
    "depthwise-multiplier-2d": (2, 4, 8, 3, dict(padding=1, groups=4, bias=False)),
    "groups2-strided-dilated-2d": (2, 8, 6, (3, 2), dict(stride=(2, 1), padding=(2, 1), dilation=(2, 1), groups=2)),
    "groups4-same-2d": (2, 8, 4, 5, dict(padding="same", groups=4, bias=False)),
    "depthwise-1d": (1, 5, 5, 3, dict(stride=2, padding=1, groups=5)),
    "groups4-1d": (1, 8, 12, 5, dict(padding=2, groups=4, bias=False)),
    "groups2-valid-1d": (1, 4, 6, 3, dict(padding="valid", groups=2)),
    "groups2-3d": (3, 4, 4, 3, dict(padding=1, groups=2)),
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_rewritten_layer_equals_the_original(case):
    dims, cin, cout, kernel, options = _CASES[case]
    torch.manual_seed(0)
    conv = _conv(dims, cin, cout, kernel, **options).eval()
    rewritten = map_to_tiles(copy.deepcopy(conv))
    assert isinstance(rewritten, GroupedConv) and rewritten.analogsam_rewrite == "grouped-conv"
    groups = options["groups"]
    assert len(rewritten.convs) == groups
    assert all(c.groups == 1 and type(c) is type(conv) for c in rewritten.convs)
    assert all((c.bias is None) == (conv.bias is None) for c in rewritten.convs)
    # every weight of the original, exactly once, in its group's child
    assert sum(c.weight.numel() for c in rewritten.convs) == conv.weight.numel()
    torch.testing.assert_close(torch.cat([c.weight for c in rewritten.convs]), conv.weight, rtol=0, atol=0)
    x = torch.randn((3, cin) + (9,) * dims)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), conv(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rewritten(x[0]), conv(x[0]), rtol=1e-5, atol=1e-6)  # unbatched


def test_the_rewrite_is_registered_and_leaves_ungrouped_convs_alone():
    assert GROUPED_CONV in REWRITES
    model = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3), nn.Conv2d(3, 4, 1), nn.Conv1d(2, 2, 1))
    mapped = map_to_tiles(copy.deepcopy(model))
    assert isinstance(mapped[0], GroupedConv)
    assert type(mapped[1]) is nn.Conv2d and type(mapped[2]) is nn.Conv1d


def test_the_rewrite_keeps_training_mode_and_trainability():
    conv = nn.Conv2d(4, 4, 3, groups=2)
    conv.bias.requires_grad_(False)
    rewritten = GroupedConv(conv.train())
    assert rewritten.training and all(c.training for c in rewritten.convs)
    assert all(c.weight.requires_grad and not c.bias.requires_grad for c in rewritten.convs)


@pytest.mark.parametrize(
    "conv, words",
    [
        (nn.Conv2d(4, 4, 3, groups=2, padding=1, padding_mode="reflect"), ["padding_mode='reflect'", "zeros"]),
        (nn.Conv3d(4, 4, 3, groups=4, dilation=2), ["dilation=(2, 2, 2)", "AnalogConv3d", "dilation 1"]),
        (nn.Conv2d(4, 4, 4, groups=2, padding="same"), ["padding='same'", "even kernel"]),
    ],
)
def test_unmappable_grouped_convs_are_refused_by_name(conv, words):
    with pytest.raises(ConversionError) as err:
        convert(nn.Sequential(conv, nn.Flatten()), "pcm")
    message = str(err.value)
    assert "\n" not in message and "grouped Conv" in message
    for word in words:
        assert word in message


def mobilenet_style() -> nn.Module:
    """A MobileNet-style block on 8x8 images: stem, BatchNorm, a depthwise 3x3, a pointwise 1x1."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def test_each_group_gets_its_own_tiles():
    analog = convert(mobilenet_style(), "pcm")
    depthwise = analog[3]
    assert isinstance(depthwise, GroupedConv)
    tiles = [list(c.analog_tiles()) for c in depthwise.convs]
    assert [len(t) for t in tiles] == [1] * 8
    # each a 1 x 9 tile (one output channel, one 3x3 window), not a block-diagonal 8 x 72 one
    assert all(tuple(t[0].tile.get_weights().shape) == (1, 9) for t in tiles)


@pytest.fixture(scope="module")
def mobilenet_run(digits):
    from analogsam.training import train

    torch.manual_seed(0)
    return train(mobilenet_style(), digits, optimizer="sgd", epochs=4, batch_size=32, lr=0.1, seed=0, progress=False)


def test_evaluate_runs_a_depthwise_cnn_on_both_backends_alike(mobilenet_run, digits):
    """With the forward noise off and the same programmed and drifted weights, the fast engine and
    aihwkit's tiles classify the same samples the same way; ``evaluate`` runs on both backends (the
    fast backend programs every tile at once, another realisation of the same distributions:
    ``tests/test_programming.py`` compares those)."""
    from analogsam.hardware import presets
    from analogsam.hardware.fast import FastAnalogForward

    analog = convert(mobilenet_run.model, presets.load("pcm", io={"out_noise": 0.0}))
    engine = FastAnalogForward(analog)
    x = digits.test.x
    for t in (1.0, 86400.0):
        torch.manual_seed(3)
        analog.program_analog_weights()
        analog.drift_analog_weights(t)
        engine.sync(torch.Generator().manual_seed(1))
        with torch.no_grad():
            theirs, ours = analog(x), engine(x)
        # one sample may flip where an ADC rounding boundary falls between the two summation orders
        assert int((theirs.argmax(1) != ours.argmax(1)).sum()) <= 1, t
        assert float((theirs.argmax(1) == digits.test.y).float().mean()) > 0.5
    kwargs = dict(times="1s,1d", repeats=2, seed=3, progress=False, overrides={"io.out_noise": 0.0})
    fast = evaluate(mobilenet_run, digits.test.batches(400), "pcm", layout=PassLayout(backend="fast"), **kwargs)
    aihwkit = evaluate(mobilenet_run, digits.test.batches(400), "pcm", layout=PassLayout(backend="aihwkit"), **kwargs)
    assert len(fast) == len(aihwkit) == 4
    assert {r["backend"] for r in fast} == {"fast"} and {r["backend"] for r in aihwkit} == {"aihwkit"}
    assert fast[0]["digital_accuracy"] > 0.6  # a trained network, so agreement means something
    assert all(r["accuracy"] > 0.5 for r in fast + aihwkit)


def test_a_refused_grouped_layer_is_named_by_its_path():
    model = nn.Sequential(
        nn.Conv2d(4, 4, 3, groups=4, padding=1),
        nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2, padding=1, padding_mode="reflect")),
    )
    with pytest.raises(ConversionError, match=r"^layer 1\.1 \(Conv2d\): .*padding_mode='reflect'"):
        convert(model, "pcm")
