"""Weight noise, stuck-at faults and bit flips: their formulas, rates, seeds and curves."""

import math

import pytest
import torch
from torch import nn

from analogsam.robustness import perturbations as F


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 64),
        nn.ReLU(),
        nn.Linear(64, 3),
    )


def weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(model, saved):
    return all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def data(n_batches=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 1, 8, 8, generator=g), torch.randint(0, 3, (size,), generator=g)) for _ in range(n_batches)
    ]


def binomial_ok(k, n, p, z=5.0):
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


# --- Gaussian weight noise ---------------------------------------------------------------------


def test_relative_noise_is_proportional_to_each_weight():
    model = net()
    noisy = F.perturb_weights(model, 0.1, mode="relative", seed=1)
    for w, v in zip(weights(model), weights(noisy)):
        z = ((v - w) / (w.abs() * 0.1)).detach().flatten()
        assert abs(float(z.mean())) < 5 / math.sqrt(z.numel())
        assert float(z.std()) == pytest.approx(1.0, abs=5 * math.sqrt(0.5 / z.numel()))
    # biases and BatchNorm stay digital and untouched; the original model is untouched
    assert torch.equal(noisy[4].bias, model[4].bias) and torch.equal(noisy[1].weight, model[1].weight)
    assert not torch.equal(noisy[4].weight, model[4].weight)


def test_additive_noise_is_scaled_by_the_layer_max():
    model = net()
    noisy = F.perturb_weights(model, 0.05, mode="additive", seed=1)
    for w, v in zip(weights(model), weights(noisy)):
        z = ((v - w) / (0.05 * w.abs().max())).detach().flatten()
        assert float(z.std()) == pytest.approx(1.0, abs=5 * math.sqrt(0.5 / z.numel()))


def test_all_parameters_and_context_manager_restores():
    model = net()
    saved = state(model)
    with F.weight_noise(model, 0.3, parameters="all", seed=0):
        assert not torch.equal(model[4].bias, saved["4.bias"])
        assert not torch.equal(model[1].weight, saved["1.weight"])
    assert same_state(model, saved)
    inplace = F.perturb_weights(model, 0.0, inplace=True)
    assert inplace is model and same_state(model, saved)  # eta 0 changes nothing


def test_weight_noise_curve():
    model = net()
    model.train()
    saved, batches = state(model), data()
    curve = F.weight_noise_curve(model, batches, etas=[0.0, 0.5, 3.0], draws=3, seed=0)
    assert len(curve.rows) == 9 and [s["eta"] for s in curve.summary] == [0.0, 0.5, 3.0]
    zero = curve.summary[0]
    assert zero["mean"] == curve.clean_accuracy and zero["std"] == 0.0 and zero["mean_drop"] == 0.0
    for s in curve.summary:
        accs = [r["accuracy"] for r in curve.rows if r["eta"] == s["eta"]]
        assert s["min"] == min(accs) and s["mean"] == pytest.approx(sum(accs) / 3)
    assert curve.settings["n_samples"] == 32 and curve.kind == "weight-noise-relative"
    assert same_state(model, saved) and model.training
    again = F.weight_noise_curve(model, batches, etas=[0.0, 0.5, 3.0], draws=3, seed=0)
    assert again.rows == curve.rows


# --- stuck-at ----------------------------------------------------------------------------------


def test_stuck_at_rate_zero_changes_nothing():
    model = net()
    saved = state(model)
    counts = F.inject_stuck_at(model, 0.0, seed=0)
    assert same_state(model, saved) and counts["n_stuck"] == 0


@pytest.mark.parametrize("stuck_values, sign", [("zero", "random"), ("max", "keep"), ("max", "random")])
def test_stuck_at_rate_one_gives_the_stated_weights(stuck_values, sign):
    model = net()
    originals = [w.detach().clone() for w in weights(model)]
    counts = F.inject_stuck_at(model, 1.0, stuck_values=stuck_values, sign=sign, seed=0)
    assert counts["n_stuck"] == counts["n_weights"] == sum(w.numel() for w in originals)
    for w, orig in zip(weights(model), originals):
        w_max = orig.abs().max()
        if stuck_values == "zero":
            assert torch.equal(w, torch.zeros_like(w))
        elif sign == "keep":
            assert torch.equal(w, torch.where(orig < 0, -w_max, w_max))
        else:
            assert torch.equal(w.abs(), torch.full_like(w, float(w_max)))
            assert binomial_ok(int((w > 0).sum()), w.numel(), 0.5)


def test_stuck_at_fraction_mix_and_seed():
    model = net()
    originals = [w.detach().clone() for w in weights(model)]
    rate = 0.1
    counts = F.inject_stuck_at(model, rate, stuck_values={"max": 0.25, "zero": 0.75}, seed=4)
    n = counts["n_weights"]
    assert binomial_ok(counts["n_stuck"], n, rate)
    assert binomial_ok(counts["n_stuck_max"], counts["n_stuck"], 0.25)
    changed = sum(int((w != o).sum()) for w, o in zip(weights(model), originals))
    assert changed <= counts["n_stuck"]
    a, b, c = (F.faulted_copy(net(), stuck_at_rate=rate, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))
    assert not all(torch.equal(x, y) for x, y in zip(weights(a), weights(c)))


# --- bit flips ---------------------------------------------------------------------------------


def codes_of(model, bits):
    return [F.quantize_symmetric(w, bits) for w in weights(model)]


def test_bit_flip_rate_zero_is_quantization_only():
    model = net()
    expected = [(q.double() * s).float() for q, s in codes_of(model, 4)]
    counts = F.inject_bit_flips(model, 0.0, bits=4)
    assert counts["n_flipped"] == 0
    for w, e in zip(weights(model), expected):
        assert torch.equal(w, e)
        assert len(torch.unique(w)) <= 15  # 4-bit symmetric: levels -7..7


def test_bit_flips_flip_about_rate_of_the_bits():
    model = net()
    bits, rate = 8, 0.05
    before = codes_of(model, bits)
    counts = F.inject_bit_flips(model, rate, bits=bits, seed=3)
    n_bits = sum(q.numel() for q, _ in before) * bits
    assert counts["n_bits"] == n_bits and binomial_ok(counts["n_flipped"], n_bits, rate)
    # count the flipped bits independently, from the stored words before and after
    flipped = 0
    for w, (q, s) in zip(weights(model), before):
        q_after = torch.round(w.double() / s).to(torch.int64)
        diff = (q & 0xFF) ^ (q_after & 0xFF)
        flipped += sum(int(((diff >> b) & 1).sum()) for b in range(bits))
    assert flipped == counts["n_flipped"]


@pytest.mark.parametrize("encoding", ["twos-complement", "sign-magnitude"])
def test_bit_flip_rate_one_inverts_every_bit(encoding):
    model = net()
    bits = 6
    before = codes_of(model, bits)
    F.inject_bit_flips(model, 1.0, bits=bits, encoding=encoding)
    for w, (q, s) in zip(weights(model), before):
        if encoding == "twos-complement":
            expected = -q - 1  # ~q
        else:
            expected = torch.where(q > 0, -1, 1) * (2 ** (bits - 1) - 1 - q.abs())
            expected = torch.where(q == 0, -(2 ** (bits - 1) - 1), expected)  # +0 -> -max
        assert torch.equal(w, (expected.double() * s).float())


def test_bit_flips_reproducible_and_nested_across_rates():
    a, b = net(), net()
    F.inject_bit_flips(a, 0.01, seed=5)
    F.inject_bit_flips(b, 0.01, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))
    low, high = net(), net()
    q0 = codes_of(net(), 8)
    F.inject_bit_flips(low, 0.01, seed=5)
    F.inject_bit_flips(high, 0.05, seed=5)
    for wl, wh, (q, s) in zip(weights(low), weights(high), q0):
        changed_low = torch.round(wl.double() / s).to(torch.int64) != q
        changed_high = torch.round(wh.double() / s).to(torch.int64) != q
        assert not (changed_low & ~changed_high).any()


# --- faulted copies and curves -----------------------------------------------------------------


def test_faulted_copy_leaves_the_original_and_zero_rates_copy_exactly():
    model = net()
    saved = state(model)
    same = F.faulted_copy(model)
    assert same is not model and all(torch.equal(v, saved[k]) for k, v in same.state_dict().items())
    both = F.faulted_copy(model, stuck_at_rate=1.0, bit_flip_rate=0.5, seed=0, stuck_values="zero")
    assert all(torch.equal(w, torch.zeros_like(w)) for w in weights(both))
    assert same_state(model, saved)


def test_faulted_copy_converts_to_aihwkit_with_the_faulted_weights():
    pytest.importorskip("aihwkit")
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import InferenceRPUConfig

    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    faulted = F.faulted_copy(model, stuck_at_rate=0.3, bit_flip_rate=0.02, seed=0)
    analog = convert_to_analog(faulted, InferenceRPUConfig())
    layers = dict(analog.named_analog_layers())
    for name in ("0", "2"):
        tile_weight, _ = layers[name].get_weights()
        assert torch.allclose(tile_weight, faulted.get_submodule(name).weight.detach(), atol=1e-6)


@pytest.mark.parametrize("kind", ["stuck-at", "bit-flip"])
def test_fault_curve(kind):
    model = net()
    saved, batches = state(model), data()
    curve = F.fault_curve(model, batches, rates=[0.0, 1.0], kind=kind, draws=2, bits=4, stuck_values="zero")
    assert len(curve.rows) == 4 and curve.level_name == "rate" and curve.kind == kind
    assert same_state(model, saved)
    if kind == "stuck-at":
        assert curve.summary[0]["mean_drop"] == 0.0
        # all weights zero: every logit equals the last bias, so the prediction is constant
        assert curve.summary[1]["std"] == 0.0
    else:
        assert curve.settings["bits"] == 4


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: F.inject_stuck_at(m, -0.1), r"rate must be a number in \[0, 1\], got -0.1"),
        (lambda m: F.inject_stuck_at(m, 1.5), "rate"),
        (lambda m: F.inject_stuck_at(m, 0.1, stuck_values={"max": 0.5}), "sum to 1"),
        (lambda m: F.inject_stuck_at(m, 0.1, stuck_values="one"), "stuck_values"),
        (lambda m: F.inject_stuck_at(m, 0.1, sign="up"), "sign"),
        (lambda m: F.inject_bit_flips(m, 0.1, bits=1), "bits"),
        (lambda m: F.inject_bit_flips(m, 0.1, encoding="gray"), "encoding"),
        (lambda m: F.perturb_weights(m, -0.1), "eta"),
        (lambda m: F.perturb_weights(m, 0.1, mode="multiplicative"), "mode"),
        (lambda m: F.faulted_copy(m, bit_flip_rate=2), "bit_flip_rate"),
        (lambda m: F.weight_noise_curve(m, data(1), etas=[]), "etas"),
        (lambda m: F.fault_curve(m, data(1), kind="drift"), "kind"),
        (lambda m: F.inject_stuck_at(nn.Sequential(nn.BatchNorm1d(3)), 0.1), "parameters='all'"),
    ],
)
def test_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(net())
