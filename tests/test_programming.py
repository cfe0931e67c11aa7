"""Programming and drift of every tile at once (:mod:`analogsam.hardware.programming`) against
aihwkit's tile-by-tile ``program_analog_weights`` / ``drift_analog_weights``, for every shipped
preset: the programmed and drifted weights have the same distribution at several target
conductances (weight levels) and times.

The weights of one tile in one repeat are not independent draws: aihwkit converts a tile's
programmed weights back to conductances with a scale set by their maximum, a random number, so every
weight of the tile shares it (ReRamWan2022's drift draws around the targets, with that scale). The
statistics are therefore cluster-robust, a cluster being one (repeat, tile). Each (preset, time,
level) compares aihwkit's weights at that level with the batched ones: the means of the clusters'
means within 5.5 standard errors (Welch; false-failure rate about 4e-8 each), the clusters' mean
squared deviations likewise (the variance), and two two-sample KS tests at p > 1e-5 (1e-5 each):
one on the clusters' means, one on one weight of each cluster (both independent across clusters;
a KS test on all the weights would take the clusters for independent draws). About 6 presets x 2 times x 6 levels x 4 = 288 checks: a family
false-failure rate below 3e-3."""

import math

import pytest
import torch
from scipy import stats
from torch import nn

from analogsam.hardware import presets
from analogsam.hardware import programming as physics
from analogsam.hardware.conversion import convert

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHIPPED = ["pcm", "pcm-hermes", "rram-wan2022", "rram-cmo", "hwa-standard", "ideal"]
LEVELS = (1.0, 0.7, 0.4, 0.15, 0.03, 0.0)
TIMES = (1.0, 86400.0)  # (ReRamWan2022NoiseModel is defined at 1 s, 1 d and 2 d only)
REPEATS = 12
TILES = 6


def _network(preset: str) -> tuple[nn.Module, list, list[torch.Tensor]]:
    """Six 24x24 layers (six tiles), their weights at LEVELS with both signs (max |w| = 1 in each,
    so aihwkit's weight scaling leaves them); the tiles and their |target| weights."""
    torch.manual_seed(0)
    layers = [nn.Linear(24, 24, bias=False) for _ in range(TILES)]
    levels = torch.tensor(LEVELS)
    index = torch.arange(24 * 24).view(24, 24) % len(LEVELS)
    for layer in layers:
        sign = torch.where(torch.rand(24, 24) < 0.5, -1.0, 1.0)
        layer.weight.data = levels[index] * sign
    # (hwa-standard calibrates its input ranges on data by default: not needed for the weights)
    overrides = {"io": {"input_range_calibration": False}} if preset == "hwa-standard" else {}
    analog = convert(nn.Sequential(*layers), presets.load(preset, **overrides)).eval()
    tiles = physics.inference_tiles(analog)
    assert len(tiles) == TILES
    return analog, tiles, [t.tile.get_weights().abs() for t in tiles]


def _draws(tiles, targets, program, drift, t: float, seed0: int) -> dict[int, list[torch.Tensor]]:
    """The |weights| at each level over REPEATS programmings drifted to ``t``, one tensor per
    cluster (repeat, tile)."""
    pools: dict[int, list] = {k: [] for k in range(len(LEVELS))}
    for r in range(REPEATS):
        torch.manual_seed(seed0 + r)
        program()
        drift(t)
        for tile, target in zip(tiles, targets):
            w = tile.tile.get_weights().abs().double()
            for k, level in enumerate(LEVELS):
                pools[k].append(w[torch.isclose(target, torch.tensor(level), atol=1e-6)])
    return pools


def _welch_z(a: torch.Tensor, b: torch.Tensor) -> float:
    se = math.sqrt(float(a.var()) / len(a) + float(b.var()) / len(b))
    return abs(float(a.mean() - b.mean())) / se if se > 0 else 0.0


@pytest.mark.parametrize("preset", SHIPPED)
def test_batched_programming_and_drift_have_aihwkits_distribution(preset):
    analog, tiles, targets = _network(preset)
    for t in TIMES:
        reference = _draws(tiles, targets, analog.program_analog_weights, analog.drift_analog_weights, t, 100)
        batched = _draws(
            tiles, targets, lambda: physics.program_tiles(tiles), lambda t: physics.drift_tiles(tiles, t), t, 5000
        )
        for k, level in enumerate(LEVELS):
            where = (preset, t, level)
            ca, cb = reference[k], batched[k]
            a, b = torch.cat(ca), torch.cat(cb)
            if max(float(a.var()), float(b.var())) < 1e-12:  # no noise at this level: equal values
                assert torch.allclose(a, b, atol=1e-6), where
                continue
            assert _welch_z(torch.stack([c.mean() for c in ca]), torch.stack([c.mean() for c in cb])) < 5.5, where
            sq_a = torch.stack([((c - a.mean()) ** 2).mean() for c in ca])
            sq_b = torch.stack([((c - b.mean()) ** 2).mean() for c in cb])
            assert _welch_z(sq_a, sq_b) < 5.5, (where, float(a.var()), float(b.var()))
            means_a, means_b = torch.stack([c.mean() for c in ca]), torch.stack([c.mean() for c in cb])
            assert stats.ks_2samp(means_a.numpy(), means_b.numpy()).pvalue > 1e-5, where
            first_a, first_b = torch.stack([c[0] for c in ca]), torch.stack([c[0] for c in cb])
            assert stats.ks_2samp(first_a.numpy(), first_b.numpy()).pvalue > 1e-5, where


def test_batched_programming_stores_what_aihwkit_stores():
    """The programmed weights, drift coefficients and C++ weights are where aihwkit keeps them, and
    the batched drift reads them (it is the drift of those programmed weights)."""
    analog, tiles, _ = _network("pcm")
    torch.manual_seed(1)
    physics.program_tiles(tiles)
    for tile in tiles:
        assert torch.equal(tile.tile.get_weights(), tile.programmed_weights)
        assert len(tile.drift_noise_parameters) == 2  # g+ and g- slices
        assert tile.drift_noise_parameters[0].shape == tile.programmed_weights.shape
    programmed = [t.programmed_weights.clone() for t in tiles]
    physics.drift_tiles(tiles, 3600.0)
    for tile, p in zip(tiles, programmed):
        drifted = tile.tile.get_weights()
        assert torch.equal(tile.programmed_weights, p) and not torch.equal(drifted, p)
        assert float(drifted.abs().mean()) < float(p.abs().mean())  # a day of PCM drift: smaller conductances


def test_batched_readouts_set_aihwkits_compensation():
    """With ``readouts=True`` the tiles' drift-compensation baseline and alpha are aihwkit's
    (alpha > 1 after a day of PCM drift)."""
    analog, tiles, _ = _network("pcm")
    torch.manual_seed(2)
    physics.program_tiles(tiles, readouts=True)
    physics.drift_tiles(tiles, 86400.0, readouts=True)
    for tile in tiles:
        assert float(tile.alpha) > 1.0
