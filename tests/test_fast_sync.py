"""The engine's sync: the drift-compensation read-outs of every tile batched (tiles with the same
forward settings and read-out vectors quantize them once) give every tile's own numbers."""

import pytest
import torch

from analogsam.hardware import presets
from analogsam.hardware.conversion import convert
from analogsam.hardware.fast import FastAnalogForward
from analogsam.hardware.fast import tile as tile_module
from analogsam.hardware.fast.noise import NoiseSource, seed_of
from analogsam.models import build_model, make_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _analog(name: str, compensation: str):
    torch.manual_seed(0)
    spec = make_spec(name, in_channels=1 if name == "dscnn" else 3, num_classes=10, input_size=8)
    analog = convert(build_model(spec).eval(), presets.load("pcm", compensation={"drift": compensation}))
    return analog.eval()


def _tile_by_tile(analog, generator: torch.Generator, engine=None):
    """Each tile synced alone (its read-outs a batch of one), under ``generator``'s seed."""
    engine = engine or FastAnalogForward(analog)
    source = NoiseSource(seed_of(generator))
    for tile in engine.tiles:
        tile.sync(source)
    return engine


@pytest.mark.parametrize(
    "name, compensation", [("resnet20", "global"), ("resnet20", "per-column"), ("dscnn", "global")]
)
def test_batched_readouts_equal_tile_by_tile(monkeypatch, name, compensation):
    analog = _analog(name, compensation)
    torch.manual_seed(1)
    analog.program_analog_weights()
    batched = FastAnalogForward(analog)
    alone = FastAnalogForward(analog)
    calls = []
    real = tile_module.Tile._rows_dac
    monkeypatch.setattr(tile_module.Tile, "_rows_dac", lambda self, v: calls.append(self.name) or real(self, v))
    for t, seed in ((None, 7), (3600.0, 8), (86400.0, 9)):  # the baseline at the programming, then drifts
        if t is not None:
            analog.drift_analog_weights(t)
        calls.clear()
        batched.sync(torch.Generator().manual_seed(seed))
        batched_calls = len(calls)
        _tile_by_tile(analog, torch.Generator().manual_seed(seed), alone)
        # fewer quantizations than tile-by-tile read-outs: the tiles shared them
        assert batched_calls < len(calls) - batched_calls, (batched_calls, len(calls))
        for a, b in zip(batched.tiles, alone.tiles):
            assert torch.equal(a.alpha, b.alpha), (t, a.name)
            assert torch.equal(a.compensation._baseline, b.compensation._baseline), (t, a.name)
            assert a.post is not None and all((x == y).all() for x, y in zip(a.post, b.post)), (t, a.name)
    alphas = torch.cat([tile.alpha.reshape(-1) for tile in batched.tiles])
    assert not torch.all(
        alphas == alphas[0]
    )  # the tiles' factors differ: a read-out given to the wrong tile would show
