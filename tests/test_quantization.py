"""Quantization-aware training (LIQ), activation sparsity, SAQ and faults on the integer weight codes."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.optim import SAQ, build_method
from analogsam.optim.saq import quantized_sharpness
from analogsam.quantization import (
    ActivationL1,
    activation_sparsity,
    code_faulted_copy,
    decode_words,
    encode_codes,
    inject_code_faults,
    liq_weight,
    parse_quantize,
    programmable_copy,
    quantization_config,
    quantize_model,
    quantized_layers,
    weight_codes,
    weights_from_codes,
)
from analogsam.runs import load_run
from analogsam.training import train


class TinyNet(nn.Module):
    """A user's module: two Linear layers and a ReLU module."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _initialised(model, x):
    with torch.no_grad():
        model(x)
    return model


# -- the quantizer --------------------------------------------------------------------------------


def test_liq_weight_is_the_formula_on_hand_values():
    # k = 2: L = 3, levels c·(2n/3 − 1) = −c, −c/3, c/3, c for n = 0..3; c = 1.
    w = torch.tensor([-2.0, -0.5, -0.1, 0.2, 0.4, 0.9, 3.0])
    q = liq_weight(w, 2, torch.tensor(1.0))
    # (clamp(w)+1)/2·3 = 0, 0.75, 1.35, 1.8, 2.1, 2.85, 3 → round 0, 1, 1, 2, 2, 3, 3
    assert torch.allclose(q, torch.tensor([-1.0, -1 / 3, -1 / 3, 1 / 3, 1 / 3, 1.0, 1.0]))
    codes = weight_codes(w, 2, 1.0)
    assert codes.tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert torch.allclose(weights_from_codes(codes, 2, 1.0).float(), q)


def test_straight_through_gradient_and_clip_gradient():
    w = torch.tensor([0.3, -0.7, 1.5], requires_grad=True)
    c = torch.tensor(1.0, requires_grad=True)
    liq_weight(w, 4, c).sum().backward()
    assert w.grad.tolist() == [1.0, 1.0, 0.0]  # STE inside [−c, c], zero where clamped
    # d/dc of c·(2·round(L(w/c+1)/2)/L − 1) with the STE: Q/c − w/c inside, sign(w) where clamped
    levels = 15
    inside = [(2 * round(levels * (x + 1) / 2) / levels - 1) - x for x in (0.3, -0.7)]
    assert float(c.grad) == pytest.approx(sum(inside) + 1.0, abs=1e-6)


def test_parse_quantize_and_its_errors():
    assert parse_quantize("W4A8") == {"weight_bits": 4, "activation_bits": 8, "first_last": True}
    for bad in ("4bit", "w1a4", "w4a17", "w4"):
        with pytest.raises(InvalidParameterError, match="quantize|bits"):
            parse_quantize(bad)


def test_quantize_model_any_module_first_last_and_refusals():
    torch.manual_seed(0)
    x = torch.randn(16, 4)
    net = TinyNet()
    reference = net(x)
    quantize_model(net, "w8a8")
    assert [n for n, _ in quantized_layers(net)] == ["fc1", "fc2"]
    _initialised(net, x)
    assert bool(net.fc1.activation_signed) and not bool(net.fc2.activation_signed)  # raw input vs post-ReLU
    assert float(net.fc1.weight_clip) == pytest.approx(0.8 * float(net.fc1.weight.abs().max()))
    # the forward is the LIQ formula around each layer: signed input grid for fc1, unsigned for fc2
    from analogsam.quantization import liq_activation

    c = {n: (m.weight_clip.detach(), m.activation_clip.detach()) for n, m in quantized_layers(net)}
    h = F.relu(
        F.linear(liq_activation(x, 8, c["fc1"][1], True), liq_weight(net.fc1.weight, 8, c["fc1"][0]), net.fc1.bias)
    )
    out = F.linear(liq_activation(h, 8, c["fc2"][1]), liq_weight(net.fc2.weight, 8, c["fc2"][0]), net.fc2.bias)
    assert torch.allclose(net(x), out) and not torch.allclose(net(x), reference)
    spared = quantize_model(
        nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2)), "w4a4", first_last=False
    )
    assert [n for n, _ in quantized_layers(spared)] == ["2"]
    assert quantization_config(spared)["first_last"] is False
    with pytest.raises(InvalidParameterError, match="no Linear or Conv"):
        quantize_model(nn.Sequential(nn.ReLU()), "w4a4")
    with pytest.raises(InvalidParameterError, match="first or last"):
        quantize_model(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), "w4a4", first_last=False)


# -- stored formats and faults on the codes ---------------------------------------------------------


@pytest.mark.parametrize("encoding", ["offset-binary", "twos-complement", "sign-magnitude"])
def test_every_code_round_trips_through_its_word(encoding):
    codes = torch.arange(16)
    words = encode_codes(codes, 4, encoding)
    assert sorted(words.tolist()) == list(range(16))  # a bijection onto the 4-bit words
    assert decode_words(words, 4, encoding).tolist() == codes.tolist()


def test_top_bit_flip_per_encoding():
    codes = torch.arange(16)
    levels = weights_from_codes(codes, 4, 1.0)
    for encoding in ("offset-binary", "twos-complement"):
        flipped = decode_words(encode_codes(codes, 4, encoding) ^ 8, 4, encoding)
        assert ((flipped - codes).abs() == 8).all()  # 2^(k−1) levels, about c_w
    flipped = decode_words(encode_codes(codes, 4, "sign-magnitude") ^ 8, 4, "sign-magnitude")
    assert torch.allclose(weights_from_codes(flipped, 4, 1.0), -levels)  # the sign bit negates


def _quantized_tiny(bits="w4a4"):
    torch.manual_seed(1)
    net = quantize_model(TinyNet(), bits)
    return _initialised(net, torch.randn(32, 4))


def test_code_faults_at_rate_one_and_zero():
    net = _quantized_tiny()
    codes = {n: m.codes().clone() for n, m in quantized_layers(net)}
    untouched = code_faulted_copy(net, 0.0, seed=3)
    assert all(torch.equal(m.codes(), codes[n]) for n, m in quantized_layers(untouched))
    flipped = code_faulted_copy(net, 1.0, kind="bit-flip", seed=3)
    for n, m in quantized_layers(flipped):  # every bit inverted: n → 15 − n, i.e. w → −w on LIQ's grid
        assert torch.equal(m.codes(), 15 - codes[n])
    stuck = code_faulted_copy(net, 1.0, kind="stuck-at-1", seed=3)
    assert all((m.codes() == 15).all() for _, m in quantized_layers(stuck))
    counts = inject_code_faults(code_faulted_copy(net, 0.0), 1.0, kind="stuck-at-0")
    assert counts["n_faulty"] == counts["n_bits"] == 4 * (4 * 8 + 8 * 3)
    for n, m in quantized_layers(net):  # the original is untouched by the copies
        assert torch.equal(m.codes(), codes[n])


def test_code_faults_are_nested_seeded_and_respect_positions():
    net = _quantized_tiny("w8a8")
    base = {n: m.codes().clone() for n, m in quantized_layers(net)}

    def changed(rate, seed=0, **kw):
        faulted = code_faulted_copy(net, rate, seed=seed, **kw)
        return {n: m.codes() != base[n] for n, m in quantized_layers(faulted)}

    low, high = changed(0.02), changed(0.2)
    assert all((low[n] <= high[n]).all() for n in low) and any(low[n].any() for n in low)
    assert all(torch.equal(changed(0.2)[n], high[n]) for n in high)  # same seed, same faults
    top = code_faulted_copy(net, 0.5, positions=[7], seed=0)
    for n, m in quantized_layers(top):
        assert set((m.codes() - base[n]).abs().unique().tolist()) <= {0, 128}
    with pytest.raises(InvalidParameterError, match="bit position"):
        code_faulted_copy(net, 0.1, positions=[8])


def test_code_faults_refuse_a_full_precision_or_uninitialised_model():
    with pytest.raises(InvalidParameterError, match="quantized model"):
        inject_code_faults(TinyNet(), 0.1)
    with pytest.raises(InvalidParameterError, match="first forward"):
        inject_code_faults(quantize_model(TinyNet(), "w4a4"), 0.1)


def test_bit_flip_rate_statistics():
    """The fraction of faulty cells is Binomial(n_bits, rate)/n_bits: 5 sigma bounds, false-failure
    rate below 1e-6."""
    net = _quantized_tiny("w8a8")
    counts = inject_code_faults(code_faulted_copy(net, 0.0), 0.25, seed=11)
    n, rate = counts["n_bits"], 0.25
    assert abs(counts["n_faulty"] - n * rate) < 5 * (n * rate * (1 - rate)) ** 0.5


# -- SAQ ----------------------------------------------------------------------------------------------


def test_saq_step_equals_the_formula_on_a_hand_sized_problem():
    """One SAQ step (SGD, lr 0.1, no momentum or decay) against the paper's equations written out:
    g = (∇_{Q(w)}L, ∇_b L), ε = ρ g/‖g‖, second gradient at (Q(w) + ε_Q, b + ε_b) through the STE,
    w ← w − lr·∇_w, b ← b − lr·∇_b, c_a ← c_a − lr·∇_{c_a} (c_a perturbed too by default)."""
    torch.manual_seed(0)
    layer = quantize_model(nn.Sequential(nn.Linear(3, 2)), "w4a8")[0]
    x, y = torch.rand(5, 3), torch.tensor([0, 1, 1, 0, 1])
    _initialised(layer, x)
    rho, lr = 0.3, 0.1
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    cw, ca = layer.weight_clip.detach().clone(), layer.activation_clip.detach().clone()

    # the formula, by hand
    def loss_at(q_w, b, c_a):
        from analogsam.quantization import liq_activation

        return F.cross_entropy(F.linear(liq_activation(x, 8, c_a.abs()), q_w, b), y)

    q = liq_weight(w0, 4, cw.abs()).detach().requires_grad_(True)
    b, c_a = b0.clone().requires_grad_(True), ca.clone().requires_grad_(True)
    loss_at(q, b, c_a).backward()
    g = torch.cat([q.grad.flatten(), b.grad, c_a.grad])
    scale = rho / (g.norm() + 1e-12)
    eps_q, eps_b, eps_ca = q.grad * scale, b.grad * scale, c_a.grad * scale
    w = w0.clone().requires_grad_(True)
    cw_ = cw.clone().requires_grad_(True)
    b2, ca2 = (b0 + eps_b).requires_grad_(True), (ca + eps_ca).requires_grad_(True)
    loss_at(liq_weight(w, 4, cw_.abs()) + eps_q, b2, ca2).backward()
    expected = {
        "weight": w0 - lr * w.grad,
        "bias": b0 - lr * b2.grad,
        "activation_clip": ca - lr * ca2.grad,
        "weight_clip": cw - lr * cw_.grad,
    }

    saq = SAQ(layer, torch.optim.SGD, rho=rho, lr=lr)

    def closure():
        loss = F.cross_entropy(layer(x), y)
        loss.backward()
        return loss

    saq.step(closure)
    for name, value in expected.items():
        assert torch.allclose(getattr(layer, name).detach(), value, atol=1e-6), name
    assert layer.saq_epsilon is None  # the perturbation is gone after the step


def test_saq_options_and_full_precision_layers():
    torch.manual_seed(0)
    net = quantize_model(
        nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)),
        "w4a4",
        first_last=False,
    )
    assert [n for n, _ in quantized_layers(net)] == ["3"]
    _initialised(net, torch.rand(8, 3))
    names = {id(p): n for n, p in net.named_parameters()}
    # the spared first/last layers' weights are perturbed in place (Q = identity); the quantized
    # layer's latent weight never is; weight clips off, activation clips and BN on by default
    default = {names[id(p)] for p in SAQ(net, torch.optim.SGD, lr=0.1).in_place}
    assert default == {"0.weight", "0.bias", "1.weight", "1.bias", "3.bias", "3.activation_clip", "5.weight", "5.bias"}
    bare = SAQ(net, torch.optim.SGD, lr=0.1, norm_layers=False, activation_clips=False, weight_clips=True)
    assert {names[id(p)] for p in bare.in_place} == {
        "0.weight",
        "0.bias",
        "3.bias",
        "3.weight_clip",
        "5.weight",
        "5.bias",
    }


def test_saq_trains_through_build_method_and_keeps_bn_statistics_of_the_first_pass():
    torch.manual_seed(0)
    net = quantize_model(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)), "w4a4")
    method = build_method("saq", net, lr=0.05)
    assert method.hparams["rho"] == 0.1 and method.hparams["saq_weight_clips"] is False
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    net.train()
    losses = [float(method.train_step(x, y)[0]) for _ in range(30)]
    assert losses[-1] < losses[0]
    assert int(net[1].num_batches_tracked) == 30  # one update per step: the second pass is frozen


# -- activation sparsity ----------------------------------------------------------------------------


def test_activation_sparsity_counts_zeros_and_l1_penalty_is_its_formula():
    torch.manual_seed(0)
    net = TinyNet()
    x = torch.randn(50, 4)
    hidden = F.relu(net.fc1(x))
    measured = activation_sparsity(net, [(x[:20], None), (x[20:], None)])
    assert measured["layers"]["act"] == pytest.approx(float((hidden == 0).float().mean()))
    assert measured["overall"] == measured["layers"]["act"]
    penalty = ActivationL1(net, 0.5)
    net.train()
    logits = net(x)
    loss = penalty.wrap(F.cross_entropy)(logits, torch.zeros(50, dtype=torch.long))
    expected = F.cross_entropy(logits, torch.zeros(50, dtype=torch.long)) + 0.5 * hidden.abs().sum() / 50
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(InvalidParameterError, match="ReLU"):
        activation_sparsity(nn.Linear(2, 2), [(torch.zeros(1, 2), None)])


# -- training, checkpoints, sharpness and the analog copy -------------------------------------------


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "run"
    run = train(
        "mlp",
        "digits",
        epochs=3,
        optimizer="saq",
        quantize="w4a4",
        activation_l1=0.01,
        out=out,
        progress=False,
        data_options={"train_limit": 400, "test_limit": 200},
    )
    return run


def test_quantized_training_logs_sparsity_and_checkpoint_restores_quantizers(sparse_run):
    run = sparse_run
    assert run.config["quantization"]["weight_bits"] == 4 and run.config["activation_l1"] == 0.01
    assert 0.0 <= run.metrics[-1]["test_sparsity"] <= 1.0
    assert any(k.startswith("test_sparsity:") for k in run.metrics[-1])
    raw = torch.load(run.path / "checkpoint.pt", weights_only=True)
    assert any(k.endswith("weight_clip") for k in raw["state_dict"])
    loaded = load_run(run.path)
    x = torch.rand(10, 64)
    run.model.eval()
    assert torch.equal(loaded.model(x), run.model(x))
    for (_, a), (_, b) in zip(quantized_layers(loaded.model), quantized_layers(run.model)):
        assert torch.equal(a.codes(), b.codes())


def test_l1_penalty_makes_activations_sparser(sparse_run, tmp_path):
    dense = train(
        "mlp",
        "digits",
        epochs=3,
        optimizer="saq",
        quantize="w4a4",
        progress=False,
        data_options={"train_limit": 400, "test_limit": 200},
    )
    assert sparse_run.metrics[-1]["test_sparsity"] > dense.metrics[-1]["test_sparsity"] + 0.05


def test_quantized_sharpness_leaves_the_model_alone(sparse_run):
    model = sparse_run.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(32, 64), torch.randint(0, 10, (32,))
    result = quantized_sharpness(model, x, y, rho=0.1)
    assert result["sharpness"] > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(m.saq_epsilon is None for _, m in quantized_layers(model))


def test_programmable_copy_holds_the_quantized_weights_and_converts(sparse_run):
    import analogsam

    model = sparse_run.model.eval()
    plain = programmable_copy(model)
    x = torch.rand(10, 64)
    assert torch.allclose(plain(x), model(x), atol=1e-6)
    assert not quantized_layers(plain)
    analog = analogsam.convert(model, "pcm")
    tiles = [m for m in analog.modules() if type(m).__name__ == "AnalogLinear"]
    first = next(iter(quantized_layers(model)))[1]
    weights = tiles[0].get_weights()[0]
    assert torch.allclose(weights, first.quantize_weight().detach(), atol=1e-5)


def test_train_refuses_bad_quantization_settings():
    with pytest.raises(InvalidParameterError, match="quantize"):
        train("mlp", "digits", quantize="int4", progress=False)
    with pytest.raises(InvalidParameterError, match="activation_l1"):
        train("mlp", "digits", activation_l1=-1.0, progress=False)


def test_every_fault_kind_runs_on_every_encoding():
    net = _quantized_tiny()
    for kind, encoding in itertools.product(
        ("bit-flip", "stuck-at-0", "stuck-at-1", "stuck-at"), ("offset-binary", "twos-complement", "sign-magnitude")
    ):
        counts = inject_code_faults(code_faulted_copy(net, 0.0), 0.3, kind=kind, encoding=encoding, seed=2)
        assert counts["n_changed_weights"] > 0


def test_saq_method_ascends_on_the_task_loss_and_descends_with_the_penalty():
    """With train(activation_l1=λ), SAQ's ε comes from the task loss alone; the update from the task
    loss plus the penalty at the perturbed point (the penalty acts like weight decay)."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    nets = []
    for _ in range(2):
        torch.manual_seed(1)
        nets.append(_initialised(quantize_model(TinyNet(), "w4a4"), x))
    penalty = ActivationL1(nets[0], 0.05)
    method = build_method("saq", nets[0], lr=0.1, momentum=0.0, weight_decay=0.0, loss_fn=penalty.wrap(F.cross_entropy))
    nets[0].train()
    method.train_step(x, y)

    reference = nets[1].train()
    by_hand = ActivationL1(reference, 0.05)
    saq = SAQ(reference, torch.optim.SGD, rho=0.1, lr=0.1)
    F.cross_entropy(reference(x), y).backward()
    saq.first_step(zero_grad=True)
    (F.cross_entropy(reference(x), y) + by_hand.penalty()).backward()
    saq.second_step(zero_grad=True)
    for a, b in zip(nets[0].parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


def test_threshold_relu_zeroes_at_or_below_theta_and_survives_a_checkpoint(tmp_path):
    from analogsam.quantization import ThresholdReLU, apply_activation_threshold

    net = apply_activation_threshold(TinyNet(), 0.25)
    assert isinstance(net.act, ThresholdReLU)
    x = torch.tensor([-1.0, 0.0, 0.25, 0.2500001, 2.0], requires_grad=True)
    y = net.act(x)
    assert y.tolist() == [0.0, 0.0, 0.0, pytest.approx(0.2500001), 2.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    run = train(
        "mlp",
        "digits",
        epochs=1,
        activation_threshold=0.5,
        quantize="w8a8",
        out=tmp_path / "run",
        progress=False,
        data_options={"train_limit": 200, "test_limit": 100},
    )
    loaded = load_run(run.path)
    assert all(m.threshold == 0.5 for m in loaded.model.modules() if isinstance(m, ThresholdReLU))
    inputs = torch.rand(8, 64)
    assert torch.equal(loaded.model(inputs), run.model.eval()(inputs))
    with pytest.raises(InvalidParameterError, match="no nn.ReLU"):
        apply_activation_threshold(nn.Linear(2, 2), 0.1)


def test_hardware_aware_training_of_a_quantized_layer_puts_its_quantized_operands_on_the_tiles():
    """quantize= with hardware_aware=: the tiles hold Q(w) and read Q(x) (the same draws as a plain layer
    holding Q(w) fed Q(x), under the same seed), and the gradients are the digital quantized layer's
    (straight through the tiles, then through the quantizers to the weights and both clips)."""
    import copy

    from analogsam.hardware.hwa import attach_hardware_aware

    torch.manual_seed(0)
    for layer, x in ((nn.Linear(30, 6), torch.randn(5, 30)), (nn.Conv2d(3, 4, 3, padding=1), torch.randn(2, 3, 6, 6))):
        quantized = quantize_model(nn.Sequential(layer), "w4a4")[0]
        quantized(x)  # the clips, from the first forward
        digital = copy.deepcopy(quantized)
        plain = copy.deepcopy(layer)
        with torch.no_grad():
            plain.weight.copy_(quantized.quantize_weight())
            xq = quantized.quantize_input(x)
        attach_hardware_aware(quantized, "pcm")
        attach_hardware_aware(plain, "pcm")
        quantized.train()
        plain.train()
        torch.manual_seed(1)
        y = quantized(x)
        torch.manual_seed(1)
        assert torch.equal(y, plain(xq))
        assert not torch.equal(y, digital(x))  # the tiles' output, not the digital product
        xa, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randn_like(y)
        quantized(xa).backward(g)
        digital(xd).backward(g)
        for name in ("weight", "bias", "weight_clip", "activation_clip"):
            torch.testing.assert_close(getattr(quantized, name).grad, getattr(digital, name).grad)
        torch.testing.assert_close(xa.grad, xd.grad)


def test_quantized_hardware_aware_training_runs_checkpoints_and_converts_with_its_ranges(tmp_path):
    """train(quantize=..., hardware_aware=...) end to end: the config records both, load_run rebuilds the
    quantizers, and the learned input ranges land on the tiles behind the activation quantizers."""
    from analogsam.hardware import presets as devices
    from analogsam.hardware.conversion import convert
    from analogsam.training import load_run, train

    path = tmp_path / "hwa-noir.toml"
    path.write_text('name = "hwa-noir"\nextends = "hwa-standard"\n[io]\nir_drop = 0.0\n')
    preset = devices.load(str(path))
    run = train(
        "mlp", "digits", epochs=2, quantize="w8a8", hardware_aware=str(path), out=tmp_path / "run", progress=False
    )
    assert run.config["quantization"] and run.config["hardware_aware"]["learned_ranges"] is True
    assert run.metrics[-1]["test_accuracy"] > 0.5  # it learns (chance 0.1; measured 0.71, digital w8a8 0.78)
    loaded = load_run(tmp_path / "run")
    assert quantized_layers(loaded.model) and loaded.input_ranges == run.input_ranges
    analog = convert(loaded.model, preset, input_ranges=loaded.input_ranges)
    layers = {n: m for n, m in analog.named_modules() if hasattr(m, "analog_tiles") and n}
    for name, ranges in loaded.input_ranges.items():
        got = [float(t.input_range.abs()) for t in layers[f"{name}.1"].analog_tiles()]
        assert got == pytest.approx(ranges)


def test_a_quantized_network_converts_after_a_forward_that_kept_its_quantized_weights(sparse_run):
    # (SAQ keeps Q(w) with its graph during a step; a conversion right after must not trip on it)
    import analogsam

    model = sparse_run.model.train()
    for layer in (m for _, m in quantized_layers(model)):
        layer.keep_quantized_grad = True
    model(torch.rand(4, 64)).sum().backward()
    try:
        assert any(m.quantized_weight is not None for _, m in quantized_layers(model))
        analog = analogsam.convert(model.eval(), "pcm")
        assert analog is not None
        assert any(m.quantized_weight is not None for _, m in quantized_layers(model))  # the original untouched
    finally:
        for layer in (m for _, m in quantized_layers(model)):
            layer.keep_quantized_grad = False
            layer.quantized_weight = None


def test_initialize_clips_sets_the_clips_and_leaves_batchnorm_statistics_alone():
    from analogsam.quantization import initialize_clips

    torch.manual_seed(0)
    net = quantize_model(nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)), "w4a4").eval()
    x = torch.randn(16, 4)
    initialize_clips(net, x)
    first, last = (m for _, m in quantized_layers(net))
    assert bool(first.clips_initialized) and bool(last.clips_initialized) and not net.training
    assert float(first.activation_clip.detach()) == pytest.approx(0.8 * float(x.abs().max()))
    assert float(first.weight_clip.detach()) == pytest.approx(0.8 * float(first.weight.detach().abs().max()))
    bn = net[1]
    assert torch.equal(bn.running_mean, torch.zeros(6)) and torch.equal(bn.running_var, torch.ones(6))
    assert int(bn.num_batches_tracked) == 0
    with torch.no_grad():  # what the last layer saw: BatchNorm in training mode (batch statistics)
        hidden = torch.relu(F.batch_norm(net[0](x), None, None, bn.weight, bn.bias, training=True))
    assert float(last.activation_clip.detach()) == pytest.approx(0.8 * float(hidden.abs().max()), rel=1e-4)
