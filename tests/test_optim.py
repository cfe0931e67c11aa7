"""The optimizer family: perturbations equal their formulas, reductions are exact, every method learns."""

from __future__ import annotations

import argparse
import copy
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call

from analogsam.optim import (
    ASAM,
    OPTIMIZER_NAMES,
    SAM,
    SAMSON,
    TRAINING_SETTINGS,
    HyperparameterError,
    NonFiniteError,
    adaptive_param_groups,
    add_optimizer_arguments,
    build_method,
    filter_wise_noise,
    frozen_batchnorm_stats,
    hyperparameter_defaults,
    injection_noise,
    kl_div_logits,
    method_kwargs_from_args,
    non_norm_parameters,
    parameter_attack,
)
from analogsam.optim.hyperparameters import method_flags, optimizer_table_markdown
from analogsam.optim.methods import DEFAULT_LR

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_mlp(bn: bool = True, hidden: int = 8, d_in: int = 5, classes: int = 3) -> nn.Module:
    layers = (
        [nn.Linear(d_in, hidden)] + ([nn.BatchNorm1d(hidden)] if bn else []) + [nn.ReLU(), nn.Linear(hidden, classes)]
    )
    return nn.Sequential(*layers)


def batch(n=16, d_in=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g), torch.randint(0, classes, (n,), generator=g)


def params_of(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_params_equal(model, reference):
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), reference[n]), n


# -- SAM / ASAM / SAMSON against their formulas ----------------------------------------------------


class HandModel(nn.Module):
    """A 2x3 weight and a bias: loss = Σ (W x + b − t)² + 0.1 Σ W³, small enough to check by hand."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[0.5, -1.2, 0.03], [2.0, 0.0, -0.4]], dtype=torch.float64))
        self.bias = nn.Parameter(torch.tensor([0.1, -0.3], dtype=torch.float64))
        self.x = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        self.t = torch.tensor([0.3, 1.0], dtype=torch.float64)

    def loss(self, weight=None, bias=None):
        w = self.weight if weight is None else weight
        b = self.bias if bias is None else bias
        return ((w @ self.x + b - self.t) ** 2).sum() + 0.1 * (w**3).sum()

    def grads_at(self, w, b):
        w = w.clone().requires_grad_()
        b = b.clone().requires_grad_()
        return torch.autograd.grad(self.loss(w, b), (w, b))


def expected_eps(kind, w, b, gw, gb, rho, eta=0.01, p=math.inf):
    """ε from the papers' equations, written out independently of analogsam."""
    if kind == "sam":
        tw, tb = torch.ones_like(w), torch.ones_like(b)
    elif kind == "asam":
        tw, tb = w.abs() + eta, torch.ones_like(b)
    else:  # samson: the whole tensor's p-norm
        norm = w.abs().max() if math.isinf(p) else w.pow(2).sum().sqrt()
        tw, tb = (w.abs() + eta) / norm, torch.ones_like(b)
    denom = math.sqrt(float(((tw * gw) ** 2).sum() + ((tb * gb) ** 2).sum()))
    return rho * tw * tw * gw / denom, rho * tb * tb * gb / denom


@pytest.mark.parametrize(
    "kind, cls, kwargs",
    [
        ("sam", SAM, {"rho": 0.05}),
        ("asam", ASAM, {"rho": 0.5, "eta": 0.01}),
        ("samson", SAMSON, {"rho": 0.2, "eta": 0.01, "p": math.inf}),
        ("samson", SAMSON, {"rho": 0.2, "eta": 0.01, "p": 2.0}),
    ],
)
def test_two_pass_perturbation_and_update_equal_the_formula(kind, cls, kwargs):
    model = HandModel()
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    lr = 0.1
    opt = cls(model.parameters(), torch.optim.SGD, lr=lr, **kwargs)

    model.loss().backward()
    gw, gb = model.grads_at(w0, b0)
    ew, eb = expected_eps(kind, w0, b0, gw, gb, **kwargs)
    opt.first_step(zero_grad=True)
    torch.testing.assert_close(model.weight.detach(), w0 + ew, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.bias.detach(), b0 + eb, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(opt.state[model.weight]["e_w"], ew, rtol=1e-12, atol=1e-12)

    model.loss().backward()
    gw2, gb2 = model.grads_at(w0 + ew, b0 + eb)
    opt.second_step(zero_grad=True)
    torch.testing.assert_close(model.weight.detach(), w0 - lr * gw2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.bias.detach(), b0 - lr * gb2, rtol=1e-12, atol=1e-12)
    assert opt.step_count == 1


def test_step_closure_equals_first_and_second_step():
    a, b = HandModel(), HandModel()
    opt_a = ASAM(a.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    opt_b = ASAM(b.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    for _ in range(3):
        a.loss().backward()
        opt_a.first_step(zero_grad=True)
        a.loss().backward()
        opt_a.second_step(zero_grad=True)

        def closure():
            loss = b.loss()
            loss.backward()
            return loss

        first_loss = opt_b.step(closure)  # no gradient yet: the closure computes the first one too
        assert first_loss is not None
        opt_b.zero_grad()
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)


def test_adaptive_flag_and_default_weight_rule():
    model = HandModel()
    # Without groups: the 2-d weight is scaled, the 1-d bias is not (T = 1).
    opt = ASAM(model.parameters(), torch.optim.SGD, lr=0.1)
    assert opt._scale(model.bias, opt.param_groups[0]) is None
    torch.testing.assert_close(opt._scale(model.weight, opt.param_groups[0]), model.weight.abs() + 0.01)
    # A group may say otherwise.
    opt = ASAM(
        [{"params": [model.weight], "adaptive": False}, {"params": [model.bias], "adaptive": True}],
        torch.optim.SGD,
        lr=0.1,
    )
    assert opt._scale(model.weight, opt.param_groups[0]) is None
    torch.testing.assert_close(opt._scale(model.bias, opt.param_groups[1]), model.bias.abs() + 0.01)


def test_adaptive_param_groups_scale_layer_weights_only():
    model = tiny_mlp(bn=True)
    groups = adaptive_param_groups(model)
    adaptive = {id(p) for g in groups if g["adaptive"] for p in g["params"]}
    assert adaptive == {id(model[0].weight), id(model[3].weight)}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_scheduler_and_state_dict_reach_the_base_optimizer():
    model = HandModel()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    assert opt.param_groups is opt.base_optimizer.param_groups
    sched = torch.optim.lr_scheduler.StepLR(opt.base_optimizer, step_size=1, gamma=0.5)
    model.loss().backward()
    opt.first_step()
    model.loss().backward()
    opt.second_step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert "momentum_buffer" in next(iter(opt.state_dict()["state"].values()))


def test_sam_second_step_with_nan_gradient_restores_weights_and_names_step():
    model = HandModel()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    for _ in range(2):
        model.loss().backward()
        opt.first_step()
        model.loss().backward()
        opt.second_step()
    before = params_of(model)
    model.loss().backward()
    opt.first_step()
    model.loss().backward()
    model.weight.grad[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="step 3") as err:
        opt.second_step()
    assert err.value.step == 3
    assert_params_equal(model, before)
    # and in the first pass, before any weight is written
    opt.zero_grad()
    model.loss().backward()
    model.bias.grad[1] = float("inf")
    with pytest.raises(NonFiniteError, match="step 3"):
        opt.first_step()
    assert_params_equal(model, before)


# -- BatchNorm --------------------------------------------------------------------------------------


def test_frozen_batchnorm_stats_context():
    model = tiny_mlp(bn=True).train()
    x, _ = batch()
    bn = model[1]
    with frozen_batchnorm_stats(model):
        model(x)
    assert int(bn.num_batches_tracked) == 0 and torch.equal(bn.running_mean, torch.zeros(8))
    assert bn.track_running_stats
    model(x)
    assert int(bn.num_batches_tracked) == 1


@pytest.mark.parametrize("name", ["sam", "asam", "samson", "adversarial", "rwp", "mesa", "noise", "saf"])
def test_extra_passes_leave_batchnorm_running_stats_alone(name):
    torch.manual_seed(0)
    model = tiny_mlp(bn=True).train()
    reference = copy.deepcopy(model)
    x, y = batch()
    extra = {"attack_steps": 2} if name == "adversarial" else {"mesa_start": 0} if name == "mesa" else {}
    method = build_method(name, model, lr=0.1, num_samples=16, num_classes=3, **extra)
    torch.manual_seed(1)
    method.train_step(x, y, torch.arange(16))
    torch.manual_seed(1)
    if name == "noise":  # its only forward is at the noisy weights: replay that noise
        with torch.no_grad():
            for p in (reference[0].weight, reference[3].weight):
                p.add_(injection_noise(p, 0.0175, 0.0))
    with torch.no_grad():
        reference(x)  # exactly one clean forward's worth of statistics
    bn, ref_bn = model[1], reference[1]
    assert int(bn.num_batches_tracked) == 1
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean, rtol=0, atol=1e-7)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var, rtol=0, atol=1e-7)


# -- non-finite values -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_nan_loss_raises_naming_the_step_and_leaves_weights(name):
    torch.manual_seed(0)
    model = tiny_mlp(bn=False)
    extra = {"attack_steps": 2} if name == "adversarial" else {}
    method = build_method(name, model, lr=0.1, num_samples=16, num_classes=3, **extra)
    x, y = batch()
    method.train_step(x, y, torch.arange(16))
    before = params_of(model)
    x_bad = x.clone()
    x_bad[3, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="step 2") as err:
        method.train_step(x_bad, y, torch.arange(16))
    assert isinstance(err.value, FloatingPointError) and err.value.step == 2
    assert_params_equal(model, before)


@pytest.mark.parametrize("name", ["sgd", "sam", "samson", "adversarial", "saf", "noise", "rwp"])
def test_nan_gradient_with_finite_loss_raises_and_leaves_weights(name):
    torch.manual_seed(0)
    model = tiny_mlp(bn=False)
    extra = {"attack_steps": 2} if name == "adversarial" else {}
    method = build_method(name, model, lr=0.1, num_samples=16, num_classes=3, **extra)
    x, y = batch()
    before = params_of(model)
    model[2].bias.register_hook(lambda g: g * float("nan"))
    with pytest.raises(NonFiniteError, match="step 1.*gradient"):
        method.train_step(x, y, torch.arange(16))
    assert_params_equal(model, before)


# -- adversarial ---------------------------------------------------------------------------------------


def test_attack_stays_in_the_relative_box_and_increases_the_kl():
    torch.manual_seed(0)
    model = tiny_mlp(bn=True, hidden=16).train()
    x, _ = batch(n=32)
    params = dict(non_norm_parameters(model))
    assert "1.weight" not in params and "1.bias" not in params  # BatchNorm excluded
    with torch.no_grad():
        clean = model(x)
    zeta = 0.1
    result = parameter_attack(model, x, clean, params, zeta_attack=zeta, steps=5, zeta_init=0.001)
    star = result.theta_star(params)
    for n, p in params.items():
        assert torch.all((star[n] - p).abs() <= zeta * p.abs() + 1e-7), n
    with torch.no_grad(), frozen_batchnorm_stats(model):
        final_kl = float(kl_div_logits(clean, functional_call(model, star, (x,))))
    assert len(result.kl) == 5
    assert final_kl > 10 * result.kl[0] and final_kl > result.kl[-1]
    # a random point of the same box is far less harmful than the attack
    with torch.no_grad(), frozen_batchnorm_stats(model):
        rand = {n: p + zeta * p.abs() * torch.empty_like(p).uniform_(-1, 1) for n, p in params.items()}
        assert float(kl_div_logits(clean, functional_call(model, rand, (x,)))) < final_kl


def test_gradient_through_the_attack_is_the_diagonal_jacobian():
    torch.manual_seed(0)
    model = tiny_mlp(bn=False)
    x, _ = batch()
    params = dict(non_norm_parameters(model))
    with torch.no_grad():
        clean = model(x)
    result = parameter_attack(model, x, clean, params, zeta_attack=0.1, steps=3)
    star = result.theta_star(params, differentiable=True)
    grads_theta = torch.autograd.grad(kl_div_logits(clean, functional_call(model, star, (x,))), list(params.values()))
    leaf = {n: t.detach().requires_grad_() for n, t in star.items()}
    grads_star = torch.autograd.grad(kl_div_logits(clean, functional_call(model, leaf, (x,))), list(leaf.values()))
    for (n, p), g_theta, g_star in zip(params.items(), grads_theta, grads_star):
        torch.testing.assert_close(g_theta, g_star * (1 + torch.sign(p.detach()) * result.coefficients[n]))


def test_adversarial_beta_zero_is_exactly_the_base_optimizer():
    torch.manual_seed(0)
    a = tiny_mlp(bn=True)
    b = copy.deepcopy(a)
    ma = build_method("adversarial", a, lr=0.1, beta=0.0)
    mb = build_method("sgd", b, lr=0.1)
    for seed in range(4):
        x, y = batch(seed=seed)
        ma.train_step(x, y, None)
        mb.train_step(x, y, None)
    assert_params_equal(a, params_of(b))


@pytest.mark.parametrize("gradient", ["through", "constant"])
def test_adversarial_term_changes_the_update(gradient):
    torch.manual_seed(0)
    a = tiny_mlp(bn=False)
    b = copy.deepcopy(a)
    x, y = batch()
    build_method("adversarial", a, lr=0.1, attack_steps=2, attack_gradient=gradient).train_step(x, y, None)
    build_method("sgd", b, lr=0.1).train_step(x, y, None)
    assert not torch.equal(a[0].weight, b[0].weight)


def test_adversarial_forward_noise_trains_at_noisy_weights():
    torch.manual_seed(0)
    a = tiny_mlp(bn=True)
    b = copy.deepcopy(a)
    x, y = batch()
    loss, _ = build_method("adversarial", a, lr=0.1, beta=0.0, zeta_forward=0.3).train_step(x, y, None)
    loss_sgd, _ = build_method("sgd", b, lr=0.1).train_step(x, y, None)
    assert torch.equal(loss, loss_sgd)  # the logged loss is the clean one
    assert not torch.equal(a[0].weight, b[0].weight)
    assert int(a[1].num_batches_tracked) == 1


# -- SAF / MESA --------------------------------------------------------------------------------------


def test_saf_buffer_holds_the_right_epochs_logits_for_the_right_samples():
    torch.manual_seed(0)
    model = tiny_mlp(bn=False)
    method = build_method("saf", model, lr=0.1, num_samples=10, num_classes=3, saf_history=2, saf_start=2)
    assert method.logits_buffer.shape == (10, 3, 3)
    x_all, y_all = batch(n=10)
    seen = {}  # (epoch, sample) -> logits returned by train_step
    plan = {0: [[1, 4, 7], [0, 2]], 1: [[4, 9], [1]], 2: [[7, 1, 4], [3]], 3: [[2, 9]]}
    for epoch, batches in plan.items():
        method.begin_epoch(epoch)
        for idx in batches:
            idx = torch.tensor(idx)
            if epoch >= 2:
                ref, valid = method.reference_logits(idx)
                for k, i in enumerate(idx.tolist()):
                    assert bool(valid[k]) == ((epoch - 2, i) in seen), (epoch, i)
                    if valid[k]:
                        torch.testing.assert_close(ref[k], seen[(epoch - 2, i)], rtol=0, atol=0)
            _, logits = method.train_step(x_all[idx], y_all[idx], idx)
            for k, i in enumerate(idx.tolist()):
                seen[(epoch, i)] = logits[k]
        method.end_epoch(epoch)
    # the ring buffer: epoch 3 overwrote slot 0 (epoch 0) for samples 2 and 9 only
    torch.testing.assert_close(method.logits_buffer[2, :, 0], seen[(3, 2)], rtol=0, atol=0)
    torch.testing.assert_close(method.logits_buffer[1, :, 0], seen[(0, 1)], rtol=0, atol=0)
    assert method.recorded_epoch[9].tolist() == [3, 1, -1]


def test_saf_lambda_zero_is_exactly_the_base_optimizer_and_lambda_matters():
    torch.manual_seed(0)
    a = tiny_mlp(bn=True)
    b, c = copy.deepcopy(a), copy.deepcopy(a)
    methods = [
        build_method("saf", a, lr=0.1, num_samples=16, saf_lambda=0.0, saf_history=1, saf_start=1),
        build_method("sgd", b, lr=0.1),
        build_method("saf", c, lr=0.1, num_samples=16, saf_history=1, saf_start=1),
    ]
    x, y = batch()
    for epoch in range(3):
        for m in methods:
            m.begin_epoch(epoch)
            m.train_step(x, y, torch.arange(16))
    assert_params_equal(a, params_of(b))
    assert not torch.equal(c[0].weight, b[0].weight)


def test_saf_started_before_it_has_a_history_uses_no_reference():
    method = build_method("saf", tiny_mlp(bn=False), num_samples=16, saf_history=3, saf_start=0)
    x, y = batch()
    for epoch in range(3):  # epochs 0-2 have nothing from 3 epochs earlier: never-written slots hold -1
        method.begin_epoch(epoch)
        assert not method.reference_logits(torch.arange(16))[1].any()
        method.train_step(x, y, torch.arange(16))
    method.begin_epoch(3)
    assert method.reference_logits(torch.arange(16))[1].all()


def test_saf_needs_num_samples_and_indices():
    with pytest.raises(ValueError, match="num_samples"):
        build_method("saf", tiny_mlp())
    method = build_method("saf", tiny_mlp(), num_samples=16)
    with pytest.raises(ValueError, match="ind"):
        method.train_step(*batch(), None)


def test_mesa_ema_follows_its_formula():
    torch.manual_seed(0)
    model = tiny_mlp(bn=False)
    method = build_method("mesa", model, lr=0.1, mesa_decay=0.9, mesa_ema_warmup=False, mesa_start=0)
    ema0 = params_of(method.ema_model)
    method.train_step(*batch(), None)
    for n, p in model.named_parameters():
        torch.testing.assert_close(dict(method.ema_model.named_parameters())[n], 0.9 * ema0[n] + 0.1 * p.detach())
    warm = build_method("mesa", tiny_mlp(), mesa_decay=0.9998)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)


# -- noise injection and RWP ------------------------------------------------------------------------


def test_noise_injection_steps_the_clean_weights_with_the_noisy_gradient():
    torch.manual_seed(0)
    model = tiny_mlp(bn=False)
    replica = copy.deepcopy(model)
    x, y = batch()
    method = build_method(
        "noise", model, lr=0.1, momentum=0.0, weight_decay=0.0, noise_additive=0.05, noise_multiplicative=0.2
    )
    clean = params_of(replica)
    torch.manual_seed(5)
    method.train_step(x, y, None)
    torch.manual_seed(5)
    with torch.no_grad():
        for layer in (replica[0], replica[2]):
            layer.weight.add_(injection_noise(layer.weight, 0.05, 0.2))
    nn.functional.cross_entropy(replica(x), y).backward()
    for n, p in replica.named_parameters():
        torch.testing.assert_close(dict(model.named_parameters())[n].detach(), clean[n] - 0.1 * p.grad)


def test_noise_scales():
    torch.manual_seed(0)
    w = torch.randn(400, 300)
    torch.testing.assert_close(injection_noise(w, 0.1, 0.0).std(), 0.1 * w.abs().max(), rtol=0.02, atol=0)
    rel = injection_noise(w, 0.0, 0.3) / w
    torch.testing.assert_close(rel.std(), torch.tensor(0.3), rtol=0.02, atol=0)
    eps = filter_wise_noise(w, 0.01)
    torch.testing.assert_close(eps.std(dim=1), 0.01 * w.norm(dim=1), rtol=0.2, atol=0)


def test_rwp_alpha_zero_is_exactly_the_base_optimizer():
    torch.manual_seed(0)
    a = tiny_mlp(bn=True)
    b = copy.deepcopy(a)
    ma, mb = build_method("rwp", a, lr=0.1, rwp_alpha=0.0), build_method("sgd", b, lr=0.1)
    for seed in range(3):
        x, y = batch(seed=seed)
        ma.train_step(x, y, None)
        mb.train_step(x, y, None)
    assert_params_equal(a, params_of(b))


# -- names, hyperparameters, command line -------------------------------------------------------------


def test_unknown_name_suggests_the_nearest():
    with pytest.raises(ValueError, match="'sam'") as err:
        build_method("sma", tiny_mlp())
    assert all(n in str(err.value) for n in OPTIMIZER_NAMES)


def test_unknown_hyperparameter_names_it_and_the_valid_ones():
    with pytest.raises(HyperparameterError, match="'eta'.*rho") as err:
        build_method("sam", tiny_mlp(), eta=0.1)
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match="rho"):
        build_method("sam", tiny_mlp(), rho=-1)
    with pytest.raises(ValueError, match="attack_gradient"):
        build_method("adversarial", tiny_mlp(), attack_gradient="sideways")


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_hparams_are_json_and_rebuild_the_same_method(name):
    method = build_method(name, tiny_mlp(), num_samples=16, num_classes=3, epochs=10)
    text = json.dumps(method.hparams, allow_nan=False)
    again = build_method(name, tiny_mlp(), num_samples=16, num_classes=3, **json.loads(text))
    assert again.hparams == method.hparams
    assert isinstance(method.optimizer, torch.optim.Optimizer)
    assert method.optimizer.param_groups[0]["lr"] == method.hparams["lr"]


def test_defaults_resolve_per_method_and_run():
    assert build_method("sgd", tiny_mlp()).hparams["lr"] == DEFAULT_LR["sgd"]
    assert build_method("adamw", tiny_mlp()).hparams["lr"] == DEFAULT_LR["adamw"] == 1e-3
    assert isinstance(build_method("sam", tiny_mlp(), base="adamw").optimizer, torch.optim.AdamW)
    assert build_method("samson", tiny_mlp()).hparams["p"] == "inf"
    assert build_method("saf", tiny_mlp(), num_samples=4, epochs=20).hparams["saf_start"] == 6
    assert build_method("saf", tiny_mlp(), num_samples=4, epochs=5).hparams["saf_start"] == 3  # >= history
    with pytest.raises(ValueError, match="would never switch on"):  # not a silent copy of SGD
        build_method("saf", tiny_mlp(), num_samples=4, epochs=3)
    with pytest.raises(ValueError, match="base"):
        build_method("sgd", tiny_mlp(), base="adamw")


def test_command_line_flags():
    parser = argparse.ArgumentParser()
    add_optimizer_arguments(parser)
    text = parser.format_help()
    for flag in (
        "--rho",
        "--eta",
        "--p",
        "--beta",
        "--zeta-attack",
        "--attack-steps",
        "--zeta-init",
        "--attack-gradient",
        "--saf-lambda",
        "--saf-tau",
        "--saf-history",
        "--saf-start",
        "--mesa-decay",
        "--noise-additive",
        "--noise-multiplicative",
        "--rwp-gamma",
        "--rwp-alpha",
        "--base-optimizer",
        "--weight-decay",
    ):
        assert flag in text
    args = parser.parse_args(["--optimizer", "samson", "--rho", "0.3", "--p", "2", "--base-optimizer", "adamw"])
    kwargs = method_kwargs_from_args(args)
    assert kwargs == {"lr": 1e-3, "momentum": 0.9, "weight_decay": 5e-4, "base": "adamw", "rho": 0.3, "p": 2.0}
    method = build_method(args.optimizer, tiny_mlp(), **kwargs)
    assert method.hparams["rho"] == 0.3 and method.hparams["eta"] == 0.01
    args = parser.parse_args(["--optimizer", "sgd", "--rho", "0.1", "--lr", "0.05"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kwargs = method_kwargs_from_args(args)
    assert kwargs == {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
    assert "--rho" in str(caught[0].message)
    args = parser.parse_args(["--optimizer", "mesa", "--no-mesa-ema-warmup", "--p", "inf"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert method_kwargs_from_args(args)["mesa_ema_warmup"] is False


def test_declared_defaults_are_the_methods_defaults():
    # the values the methods had before their defaults moved into the declarations
    before = {
        "sgd": {},
        "adamw": {},
        "sam": {"rho": 0.05},
        "asam": {"rho": 0.5, "eta": 0.01, "scope": "weights"},
        "samson": {"rho": 0.2, "eta": 0.01, "p": "inf", "scope": "weights"},  # scope added later, today's rule
        "adversarial": {
            "beta": 0.25,
            "zeta_attack": 0.1,
            "attack_steps": 10,
            "zeta_init": 0.001,
            "attack_gradient": "through",
            "zeta_forward": 0.0,
        },
        "saf": {"saf_lambda": 0.3, "saf_tau": 5.0, "saf_history": 3, "saf_start": None, "saf_end": None},
        "mesa": {
            "mesa_lambda": 0.8,
            "mesa_tau": 5.0,
            "mesa_decay": 0.9998,
            "mesa_start": None,
            "mesa_end": None,
            "mesa_ema_warmup": True,
        },
        "noise": {"noise_additive": 0.0175, "noise_multiplicative": 0.0},
        "rwp": {"rwp_gamma": 0.01, "rwp_alpha": 0.5},
        "saq": {"rho": 0.1, "saq_norm_layers": True, "saq_activation_clips": True, "saq_weight_clips": False},
        "device-sam": {"rho": 6.0, "device_preset": "pcm", "device_time": 86400.0},  # issue 21
    }
    assert {name: hyperparameter_defaults(name) for name in OPTIMIZER_NAMES} == before
    assert DEFAULT_LR == {"sgd": 0.05, "adamw": 1e-3}
    assert {
        k: TRAINING_SETTINGS[k].default
        for k in ("momentum", "weight_decay", "epochs", "batch_size", "seed", "schedule")
    } == {"momentum": 0.9, "weight_decay": 5e-4, "epochs": 10, "batch_size": 128, "seed": 0, "schedule": "cosine"}
    import inspect

    from analogsam.training import train

    signature = inspect.signature(train).parameters
    assert all(signature[k].default == hp.default for k, hp in TRAINING_SETTINGS.items() if k in signature)


def test_help_states_every_declared_default_and_range():
    # one long line: argparse would otherwise wrap at a hyphen ("device-sam") as well as at spaces
    parser = argparse.ArgumentParser(formatter_class=lambda prog: argparse.HelpFormatter(prog, width=100_000))
    add_optimizer_arguments(parser)
    text = " ".join(parser.format_help().split())
    for hp, _users, defaults in method_flags():
        assert f"{hp.option} " in text and hp.allowed() in text and f"(default: {defaults})" in text, hp.name
    assert "(default: 0.05 sam, 0.5 asam, 0.2 samson, 6 device-sam, 0.1 saq)" in text


def test_readme_optimizer_table_is_generated_from_the_declarations():
    table = optimizer_table_markdown()
    assert all(f"| `{name}` |" in table for name in OPTIMIZER_NAMES)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert table in readme, "README.md is stale: paste optimizer_table_markdown() into its Optimizers section"
