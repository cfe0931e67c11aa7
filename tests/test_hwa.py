"""Hardware-aware training (analogsam.hardware.hwa): the training forward against aihwkit's own tile
forward in training mode, straight-through gradients, learned input ranges, the checkpoint and the
conversion of a HWA run, and the refusals.

Statistical tests compare per-output means (every |z| < 5 over all outputs: with 2 x 32-64 outputs
a false failure has probability below 1e-4) and the summed variances (within 8%, about 6 standard
errors of the ratio at these draw counts)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conformance import compare_draws, repeated
from torch import nn

from analogsam.hardware import presets as devices
from analogsam.hardware.hwa import (
    INIT_FROM_DATA,
    RANGE_ATTRIBUTE,
    HardwareAwareError,
    _blocks,
    attach_hardware_aware,
    detach_hardware_aware,
    training_tile_model,
)

DRAWS = 300


def _aihwkit_training_forward(module: nn.Module, preset, x, input_range: float | None = None):
    """aihwkit's analog copy of ``module`` (C++ tiles from the preset's InferenceRPUConfig) in train mode."""
    from aihwkit.nn.conversion import convert_to_analog

    analog = convert_to_analog(copy.deepcopy(module), preset.rpu_config())
    analog.train()
    if input_range is not None:
        for tile in analog.analog_tiles():
            tile.set_input_range(input_range)
    return lambda: analog(x)


def _ours(module: nn.Module, preset, x, input_range: float | None = None):
    ours = copy.deepcopy(module)
    attach_hardware_aware(ours, preset)
    ours.train()
    if input_range is not None:
        for m in ours.modules():
            if hasattr(m, RANGE_ATTRIBUTE):
                getattr(m, RANGE_ATTRIBUTE).data.fill_(input_range)
                m.hwa_range_batches.fill_(INIT_FROM_DATA)  # the range as set, not initialised from data
    return lambda: ours(x)


def _noir(tmp_path):
    """hwa-standard without IR drop (which has no training forward): learned input ranges, PCM_READ
    weight noise, channel-wise weight scaling, no noise or bound management."""
    path = tmp_path / "hwa-noir.toml"
    path.write_text('name = "hwa-noir"\nextends = "hwa-standard"\n[io]\nir_drop = 0.0\n')
    return devices.load(str(path))


@pytest.mark.parametrize("preset_name", ["pcm", "rram-wan2022", "hwa-noir"])
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_training_forward_matches_aihwkit_in_distribution(preset_name, layer, tmp_path):
    """Same weights (and input ranges): the training forward's per-output means and variances are
    aihwkit's (C++ tiles, train mode). rram-wan2022 splits the 300 inputs over two 256-row tiles."""
    torch.manual_seed(0)
    preset = _noir(tmp_path) if preset_name == "hwa-noir" else devices.load(preset_name)
    if layer == "linear":
        module = nn.Linear(300, 32)
        x = torch.randn(4, 300)
    else:
        module = nn.Conv2d(3, 8, 3, padding=1)
        x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        module.weight.mul_(3.0)  # weights well above the noise floor
    r = 2.0 if preset_name == "hwa-noir" else None
    a = repeated(_aihwkit_training_forward(module, preset, x, r), DRAWS)
    b = repeated(_ours(module, preset, x, r), DRAWS)
    stats = compare_draws(a.flatten(1), b.flatten(1))
    assert stats.noise > 1e-4  # the forward is noisy: the test compares distributions, not one draw
    assert stats.max_z < 5.0, stats.max_z
    assert abs(stats.variance_ratio - 1) < 0.08, stats.variance_ratio


@pytest.mark.parametrize(
    "preset_name, in_channels, kernel",
    [
        ("pcm", 64, 3),  # 576 inputs on 512-row tiles: 2 x 288 = 2 x 32 whole channels (patches per tile)
        ("hwa-noir", 64, 3),  # the same split, a learned input range per tile
        ("pcm", 7, 9),  # 567 inputs: 284 + 283 rows cut a 9 x 9 kernel (unfolded patches)
        ("hwa-noir", 7, 9),
    ],
)
def test_split_convolution_matches_aihwkit_in_distribution(preset_name, in_channels, kernel, tmp_path):
    """A convolution over two tiles: aihwkit splits the unfolded patches' rows (F.unfold's (C, kh, kw)
    order); the training forward reads each tile's patches from its channels where the split keeps
    whole kernels, and unfolds them where it does not. Same per-output means and variances."""
    torch.manual_seed(6)
    preset = _noir(tmp_path) if preset_name == "hwa-noir" else devices.load(preset_name)
    module = nn.Conv2d(in_channels, 6, kernel, padding=1)
    assert len(_blocks(in_channels * kernel * kernel, 512)) == 2
    with torch.no_grad():
        module.weight.mul_(3.0)  # weights well above the noise floor
    x = torch.randn(2, in_channels, kernel, kernel)
    r = 2.0 if preset_name == "hwa-noir" else None
    a = repeated(_aihwkit_training_forward(module, preset, x, r), DRAWS)
    b = repeated(_ours(module, preset, x, r), DRAWS)
    stats = compare_draws(a.flatten(1), b.flatten(1))
    assert stats.noise > 1e-4
    assert stats.max_z < 5.0, stats.max_z
    assert abs(stats.variance_ratio - 1) < 0.08, stats.variance_ratio


def test_bound_management_matches_aihwkit():
    """Outputs that saturate out_bound are recomputed at half the input scale, as the C++ tile does."""
    torch.manual_seed(1)
    preset = devices.load("pcm")
    module = nn.Linear(400, 16, bias=False)
    with torch.no_grad():
        module.weight.copy_(torch.sign(torch.randn(16, 400)) * 0.5)
        module.weight[:, :200] = module.weight[:, :200].abs()
    x = torch.rand(3, 400)  # large positive sums: |y| ~ 100 normalised units, well above out_bound 10
    a = repeated(_aihwkit_training_forward(module, preset, x), DRAWS)
    b = repeated(_ours(module, preset, x), DRAWS)
    stats = compare_draws(a.flatten(1), b.flatten(1))
    assert stats.max_z < 5.0, stats.max_z
    assert abs(stats.variance_ratio - 1) < 0.1, stats.variance_ratio


def test_gradient_is_the_digital_layers():
    """Straight through: the gradient of the training forward equals the digital layer's gradient at
    the same input, weights and output gradient (aihwkit's ideal backward and outer-product update)."""
    torch.manual_seed(2)
    cases = (
        (nn.Linear(20, 7), torch.randn(5, 20)),
        (nn.Conv2d(2, 4, 3, stride=2), torch.randn(3, 2, 9, 9)),
        (nn.Linear(600, 7), torch.randn(5, 600)),  # two 300-row tiles on pcm's 512 rows
        (nn.Conv2d(64, 8, 3, padding=1), torch.randn(2, 64, 6, 6)),  # 576 rows: two tiles
    )
    for module, x in cases:
        digital = copy.deepcopy(module)
        attach_hardware_aware(module, "pcm")
        module.train()
        xa, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
        y = module(xa)
        g = torch.randn_like(y)
        y.backward(g)
        digital(xd).backward(g)
        assert not torch.equal(y, digital(x))  # the forward is the tiles'
        torch.testing.assert_close(xa.grad, xd.grad)
        torch.testing.assert_close(module.weight.grad, digital.weight.grad)
        torch.testing.assert_close(module.bias.grad, digital.bias.grad)


def test_gradient_with_learned_ranges_is_the_digital_layers_at_the_clipped_input(tmp_path):
    """With a learned input range per tile, the inputs' and weights' gradients are the digital layer's at
    the input clipped block by block (each tile's range on its rows), and each range's gradient is
    aihwkit's ``InputRangeForward`` on what its tile reads: the input vectors of a Linear or of a
    convolution whose split cuts kernels (aihwkit's unfolded convolution), the image's channels where
    every tile holds whole channels (aihwkit's indexed convolution, as one tile's convolution is)."""
    from analogsam.hardware.hwa import _ClipToRange

    torch.manual_seed(7)
    cases = (
        (nn.Linear(600, 5), torch.randn(4, 600) * 2),  # two 300-row tiles
        (nn.Conv2d(64, 4, 3, padding=1), torch.randn(2, 64, 5, 5) * 2),  # two tiles of 32 whole channels
        (nn.Conv2d(7, 4, 9, padding=1), torch.randn(2, 7, 9, 9) * 2),  # two tiles cutting a kernel
    )
    for module, x in cases:
        digital = copy.deepcopy(module)
        attach_hardware_aware(module, _noir(tmp_path))
        module.train()
        ranges = getattr(module, RANGE_ATTRIBUTE)
        ranges.data.copy_(torch.tensor([1.5, 2.5]))
        module.hwa_range_batches.fill_(INIT_FROM_DATA)
        xa = x.clone().requires_grad_()
        y = module(xa)
        g = torch.randn_like(y)
        y.backward(g)
        # the reference: each block clipped to its own (leaf) range, then the digital product
        r_ref = torch.tensor([1.5, 2.5], requires_grad=True)
        xd = x.clone().requires_grad_()
        blocks = _blocks(module.weight[0].numel(), 512)
        w = digital.weight.reshape(digital.weight.shape[0], -1)
        if isinstance(module, nn.Linear):
            yd = torch.cat([_ClipToRange.apply(xd[:, rows], r_ref[i]) for i, rows in enumerate(blocks)], -1) @ w.t()
        elif module.in_channels == 64:  # the image's channels 0-31 and 32-63
            xc = torch.cat([_ClipToRange.apply(xd[:, 32 * i : 32 * (i + 1)], r_ref[i]) for i in range(2)], 1)
            yd = digital._conv_forward(xc, digital.weight, None).flatten(2).transpose(1, 2)
        else:  # the unfolded vectors' rows
            v = torch.nn.functional.unfold(xd, module.kernel_size, padding=module.padding).transpose(1, 2)
            yd = torch.cat([_ClipToRange.apply(v[..., rows], r_ref[i]) for i, rows in enumerate(blocks)], -1) @ w.t()
        yd = yd + digital.bias
        if not isinstance(module, nn.Linear):
            yd = yd.transpose(1, 2).reshape(y.shape)
        yd.backward(g)
        torch.testing.assert_close(xa.grad, xd.grad)
        torch.testing.assert_close(module.weight.grad, digital.weight.grad)
        torch.testing.assert_close(module.bias.grad, digital.bias.grad)
        # (far more than 5% of the inputs clip: no decay term in either)
        torch.testing.assert_close(ranges.grad, r_ref.grad, rtol=1e-4, atol=1e-4)
        assert torch.all(ranges.grad < 0)


def _saturating_layer(split: bool = False) -> nn.Linear:
    """Outputs 0-3 read about 32 in tile units (64 inputs in [0, 1] times a normalised weight of 1): far
    beyond 0.999 out_bound = 9.99, though bound management computes them right; outputs 4-7 read under
    1.3. With ``split``, 600 inputs (three 200-row tiles of rram-wan2022)."""
    layer = nn.Linear(600 if split else 64, 8)
    with torch.no_grad():
        layer.weight[:4] = 0.5
        layer.weight[4:] = 0.01 * torch.sign(torch.randn(4, layer.in_features))
    return layer


@pytest.mark.parametrize("split", [False, True])
def test_saturated_outputs_pass_no_gradient_back_as_aihwkits_tiles(split):
    """zero_saturated_gradients (off by default) is aihwkit's C++ tiles' rule: an output whose read-out
    (after noise management's rescaling) reaches 0.999 out_bound passes no gradient to the layer's
    inputs, while the layer's own update (AnalogSGD's on aihwkit's tile, the weights' gradient here) and
    the digital bias take the whole output gradient. Checked against aihwkit on the same layer."""
    from aihwkit.nn.conversion import convert_to_analog, convert_to_digital
    from aihwkit.optim import AnalogSGD

    torch.manual_seed(5)
    layer = _saturating_layer(split)
    x = torch.rand(16, layer.in_features)
    c = torch.randn(16, 8)  # loss sum(c * y): dL/dy = c whatever the forward's noise
    preset = devices.load("rram-wan2022" if split else "pcm")  # (256-row tiles: 600 inputs on three)
    analog = convert_to_analog(copy.deepcopy(layer), preset.rpu_config())
    analog.train()
    before = convert_to_digital(copy.deepcopy(analog)).weight.detach().clone()
    xa = x.clone().requires_grad_()
    (analog(xa) * c).sum().backward()
    sgd = AnalogSGD(analog.parameters(), lr=0.01)
    sgd.regroup_param_groups(analog)
    sgd.step()
    aihwkit_update = (before - convert_to_digital(copy.deepcopy(analog)).weight.detach()) / 0.01

    ours = copy.deepcopy(layer)
    attach_hardware_aware(ours, {"preset": preset, "zero_saturated_gradients": True})
    ours.train()
    xo = x.clone().requires_grad_()
    (ours(xo) * c).sum().backward()
    masked = c.clone()
    masked[:, :4] = 0.0  # the four saturated outputs pass nothing back
    torch.testing.assert_close(xa.grad, masked @ layer.weight.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(xo.grad, xa.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, c.t() @ x)  # the whole gradient
    torch.testing.assert_close(aihwkit_update, ours.weight.grad, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(ours.bias.grad, c.sum(0))

    default = copy.deepcopy(layer)  # by default every output passes its gradient back
    attach_hardware_aware(default, preset)
    default.train()
    xd = x.clone().requires_grad_()
    (default(xd) * c).sum().backward()
    torch.testing.assert_close(xd.grad, c @ layer.weight.detach())


def test_eval_mode_is_digital_and_detach_restores_the_layer():
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 3))
    x = torch.randn(4, 10)
    before = m(x)
    attach_hardware_aware(m, "pcm")
    m.eval()
    torch.testing.assert_close(m(x), before)
    detach_hardware_aware(m)
    m.train()
    torch.testing.assert_close(m(x), before)
    assert not any(hasattr(layer, "hwa_model") for layer in m.modules())


def test_input_ranges_initialise_from_data_then_learn(tmp_path):
    """aihwkit's init_from_data: r = running mean of 3 std(x) over the first batches; then the range
    gradient: clipped inputs push r out, decay pulls it in while fewer than 5% clip."""
    torch.manual_seed(4)
    m = nn.Linear(50, 4)
    attach_hardware_aware(m, _noir(tmp_path))
    m.train()
    stds = []
    for _ in range(3):
        x = torch.randn(64, 50) * 2.0
        stds.append(float(x.std()))
        m(x)
    r = getattr(m, RANGE_ATTRIBUTE)
    assert r.shape == (1,)
    assert float(r.detach()[0]) == pytest.approx(3.0 * sum(stds) / 3, rel=1e-5)
    # decay only: no input clips at a huge range -> the gradient is decay * r (> 0, r shrinks under SGD)
    r.data.fill_(100.0)
    m.hwa_range_batches.fill_(INIT_FROM_DATA)
    m.zero_grad()
    m(torch.randn(8, 50)).sum().backward()
    assert float(r.grad[0]) == pytest.approx(0.001 * 100.0)
    # clipped inputs whose growth would lower the loss (negative input gradient) push r out
    r.data.fill_(0.1)
    m.zero_grad()
    with torch.no_grad():
        m.weight.fill_(1.0)
    (-m(torch.full((8, 50), 5.0))).sum().backward()
    assert float(r.grad[0]) < 0
    m.zero_grad()
    m(torch.full((8, 50), 5.0)).sum().backward()  # growing them would raise the loss: no push
    assert float(r.grad[0]) == 0.0


def test_tiles_split_as_aihwkit_does():
    assert [(s.start, s.stop) for s in _blocks(400, 256)] == [(0, 200), (200, 400)]
    assert [(s.start, s.stop) for s in _blocks(513, 512)] == [(0, 257), (257, 513)]
    assert [(s.start, s.stop) for s in _blocks(10, 0)] == [(0, 10)]


def test_untrainable_settings_are_refused_by_name():
    with pytest.raises(HardwareAwareError, match="io.ir_drop"):
        training_tile_model("hwa-standard")
    with pytest.raises(HardwareAwareError, match="noise_management"):
        training_tile_model("pcm", {"io.noise_management": "average-abs-max"})
    with pytest.raises(HardwareAwareError, match="groups=2"):
        attach_hardware_aware(nn.Conv2d(4, 4, 3, groups=2), "pcm")


def test_a_hwa_run_checkpoints_its_ranges_and_is_measured_with_them(tmp_path):
    """train(hardware_aware=...) with learned ranges: the config names the preset, the checkpoint
    (weights_only) holds the ranges outside the state dict, load_run returns them, and conversion
    sets them as the tiles' static input ranges instead of calibrating."""
    from analogsam.data import load_dataset
    from analogsam.hardware.conversion import convert
    from analogsam.runs import load_run
    from analogsam.training import train

    preset = _noir(tmp_path)
    data = load_dataset("digits")
    run = train("mlp", data, epochs=1, progress=False, hardware_aware=preset.path, out=tmp_path / "run")
    assert run.config["hardware_aware"]["learned_ranges"] is True
    assert json.loads((tmp_path / "run" / "config.json").read_text())["hardware_aware"]["preset"] == "hwa-noir"
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert not any("hwa" in k for k in ckpt["state_dict"])
    assert ckpt["input_ranges"] == run.input_ranges and len(run.input_ranges) >= 2
    loaded = load_run(tmp_path / "run")
    assert loaded.input_ranges == run.input_ranges
    analog = convert(loaded.model, preset, input_ranges=loaded.input_ranges)  # no calibration batches needed
    layers = {n: m for n, m in analog.named_modules() if hasattr(m, "analog_tiles") and n}
    for name, ranges in loaded.input_ranges.items():
        got = [float(t.input_range.abs()) for t in layers[name].analog_tiles()]
        assert got == pytest.approx(ranges)


def test_every_optimizer_composes_with_hwa():
    """The parameters stay ordinary tensors: two-pass methods perturb them, every method trains."""
    from analogsam.data import load_dataset
    from analogsam.training import train

    data = load_dataset("digits")
    extra = {"mesa": {"mesa_start": 0}, "adversarial": {"attack_steps": 2}}
    for name in ("sam", "asam", "samson", "adversarial", "mesa", "rwp", "device-sam"):
        run = train(
            "mlp", data, optimizer=name, epochs=1, progress=False, hardware_aware="pcm", seed=0, **extra.get(name, {})
        )
        assert run.metrics[-1]["test_accuracy"] > 0.3, name


def test_command_line_trains_hardware_aware_and_refuses_an_untrainable_preset(tmp_path, capsys):
    from analogsam.cli import main

    out = tmp_path / "run"
    argv = ["train", "--data", "digits", "--model", "mlp", "--epochs", "1", "--quiet", "--out", str(out)]
    assert main([*argv, "--hardware-aware", "rram-wan2022", "--optimizer", "sam"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["hardware_aware"]["preset"] == "rram-wan2022" and config["optimizer"] == "sam"
    capsys.readouterr()
    assert main([*argv, "--hardware-aware", "hwa-standard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "io.ir_drop" in err[0]
