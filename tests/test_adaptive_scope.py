"""ASAM's and SAMSON's ``scope``: "weights" (the authors' code, today's rule) or "all" (davda54/sam,
pytorch_optimizer), each checked against the paper's ε = ρ T² g / ‖T g‖ written out by hand."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.models import roles
from analogsam.optim import ASAM, SAMSON, adaptive_param_groups, add_optimizer_arguments, build_method
from analogsam.optim.hyperparameters import ADAPTIVE_SCOPES, METHODS
from analogsam.robustness import sharpness as S


class TwoLayer(nn.Module):
    """Three parameter tensors, a bias among them: loss = (v · tanh(W x + b) − t)²."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 2).double()
        self.second = nn.Linear(2, 1, bias=False).double()
        with torch.no_grad():
            self.first.weight.copy_(torch.tensor([[0.5, -1.2, 0.03], [2.0, 0.0, -0.4]]))
            self.first.bias.copy_(torch.tensor([0.1, -0.3]))
            self.second.weight.copy_(torch.tensor([[0.7, -0.05]]))
        self.x = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
        self.t = torch.tensor([[0.3]], dtype=torch.float64)

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))

    def loss(self):
        return ((self(self.x) - self.t) ** 2).sum()


def hand_eps(model: TwoLayer, scope: str, rho: float, eta: float, samson_p: float | None = None):
    """ε per tensor (weight, bias, second weight) from the formula, independent of analogsam."""
    w, b, v = (t.detach().clone().requires_grad_() for t in (model.first.weight, model.first.bias, model.second.weight))
    loss = ((v @ torch.tanh(w @ model.x.T + b[:, None]) - model.t) ** 2).sum()
    grads = torch.autograd.grad(loss, (w, b, v))
    tensors = [t.detach() for t in (w, b, v)]
    scaled = [True, scope == "all", True]  # the bias is scaled only under scope="all"
    ts = []
    for x, s in zip(tensors, scaled):
        if not s:
            ts.append(torch.ones_like(x))
        elif samson_p is None:
            ts.append(x.abs() + eta)
        else:
            norm = x.abs().max() if math.isinf(samson_p) else x.pow(2).sum().sqrt()
            ts.append((x.abs() + eta) / norm)
    denom = math.sqrt(sum(float(((t * g) ** 2).sum()) for t, g in zip(ts, grads)))
    return [rho * t * t * g / denom for t, g in zip(ts, grads)]


def _params(model):
    return [model.first.weight, model.first.bias, model.second.weight]


@pytest.mark.parametrize("scope", ["weights", "all"])
def test_one_asam_step_of_the_training_method_is_the_papers_epsilon(scope):
    model = TwoLayer()
    before = [p.detach().clone() for p in _params(model)]
    method = build_method("asam", model, lr=0.1, momentum=0.0, weight_decay=0.0, scope=scope)
    assert method.hparams["scope"] == scope
    model.loss().backward()
    method.sam.first_step(zero_grad=True)
    for p, p0, e in zip(_params(model), before, hand_eps(TwoLayer(), scope, rho=0.5, eta=0.01)):
        torch.testing.assert_close(p.detach(), p0 + e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scope", ["weights", "all"])
@pytest.mark.parametrize("p", [math.inf, 2.0])
def test_one_samson_step_is_its_formula_for_each_scope(scope, p):
    model = TwoLayer()
    before = [t.detach().clone() for t in _params(model)]
    opt = SAMSON(adaptive_param_groups(model, scope), torch.optim.SGD, lr=0.1, rho=0.2, eta=0.01, p=p, scope=scope)
    model.loss().backward()
    opt.first_step(zero_grad=True)
    for t, t0, e in zip(_params(model), before, hand_eps(TwoLayer(), scope, rho=0.2, eta=0.01, samson_p=p)):
        torch.testing.assert_close(t.detach(), t0 + e, rtol=1e-12, atol=1e-12)


def test_scopes_differ_only_where_they_should():
    """Under "all" the bias moves by T²g/‖Tg‖ with T = |b| + η, under "weights" by g/‖Tg‖."""
    eps = {scope: hand_eps(TwoLayer(), scope, rho=0.5, eta=0.01) for scope in ADAPTIVE_SCOPES}
    assert not torch.allclose(eps["weights"][1], eps["all"][1])
    # the same direction for the weights, a different length (the norm now includes the scaled bias)
    ratio = eps["all"][0] / eps["weights"][0]
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio.flatten()[0])))


def test_weights_scope_is_todays_rule_bit_for_bit():
    """scope="weights" and no scope at all train the same numbers, exactly (the pinned ASAM run)."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    results = []
    for kwargs in ({}, {"scope": "weights"}):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
        method = build_method("asam", model, lr=0.1, **kwargs)
        for _ in range(3):
            method.optimizer.zero_grad()
            method.sam.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            method.sam.first_step(zero_grad=True)
            nn.functional.cross_entropy(model(x), y).backward()
            method.sam.second_step(zero_grad=True)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_a_group_flag_overrides_the_scope_and_dimension_rule_applies_without_groups():
    model = TwoLayer()
    opt = ASAM(model.parameters(), torch.optim.SGD, lr=0.1, scope="all")
    torch.testing.assert_close(opt._scale(model.first.bias, opt.param_groups[0]), model.first.bias.abs() + 0.01)
    opt = ASAM(model.parameters(), torch.optim.SGD, lr=0.1)  # weights: 1-d tensors are not scaled
    assert opt._scale(model.first.bias, opt.param_groups[0]) is None
    opt = ASAM([{"params": [model.first.bias], "adaptive": False}], torch.optim.SGD, lr=0.1, scope="all")
    assert opt._scale(model.first.bias, opt.param_groups[0]) is None


def test_param_groups_and_scales_per_scope():
    model = TwoLayer()
    weights = adaptive_param_groups(model, "weights")
    assert [len(g["params"]) for g in weights] == [2, 1] and [g["adaptive"] for g in weights] == [True, False]
    every = adaptive_param_groups(model, "all")
    assert len(every) == 1 and every[0]["adaptive"] and len(every[0]["params"]) == 3
    scales = roles.adaptive_scales(model, _params(model), 0.01, "all")
    torch.testing.assert_close(scales[1], model.first.bias.detach().abs() + 0.01)
    assert torch.equal(roles.adaptive_scales(model, _params(model), 0.01)[1], torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("scope", ["weights", "all"])
def test_one_step_adaptive_sharpness_is_the_loss_increase_of_asams_step(scope):
    """The metric with a scope measures what the optimizer with that scope ascends."""
    model = TwoLayer()
    eps = hand_eps(TwoLayer(), scope, rho=0.5, eta=0.01)
    with torch.no_grad():
        base = float(model.loss())
        for p, e in zip(_params(model), eps):
            p.add_(e)
        expected = float(model.loss()) - base
    value = S.adaptive_sharpness(
        TwoLayer(),
        [(TwoLayer().x, TwoLayer().t)],
        rho=0.5,
        steps=1,
        eta=0.01,
        scope=scope,
        loss_fn=lambda out, t: ((out - t) ** 2).sum(),
    ).value
    assert value == pytest.approx(expected, rel=1e-9)


def test_scope_is_declared_once_with_a_flag_and_checked():
    assert METHODS["asam"]["scope"].default == "weights" and METHODS["samson"]["scope"].default == "weights"
    assert METHODS["asam"]["scope"].choices == ADAPTIVE_SCOPES == roles.ADAPTIVE_SCOPES
    parser = argparse.ArgumentParser()
    add_optimizer_arguments(parser)
    assert parser.parse_args(["--optimizer", "asam", "--scope", "all"]).scope == "all"
    with pytest.raises(SystemExit):
        parser.parse_args(["--scope", "biases"])
    with pytest.raises(InvalidParameterError, match="scope"):
        build_method("asam", TwoLayer(), scope="biases")
    with pytest.raises(InvalidParameterError, match="scope"):
        ASAM(TwoLayer().parameters(), torch.optim.SGD, lr=0.1, scope="biases")
    with pytest.raises(InvalidParameterError, match="scope"):
        S.adaptive_sharpness(TwoLayer(), [(TwoLayer().x, TwoLayer().t)], scope="biases")


def test_analyze_follows_the_scope_each_adaptive_run_was_trained_with():
    from types import SimpleNamespace

    from analogsam.studies.flatness import adaptive_scope_for

    def run(optimizer, **hparams):
        return SimpleNamespace(optimizer=optimizer, config={"optimizer_hparams": hparams})

    assert adaptive_scope_for(run("asam", scope="all"), "weights") == "all"
    assert adaptive_scope_for(run("samson", scope="weights"), "all") == "weights"
    assert adaptive_scope_for(run("asam"), "all") == "weights"  # trained before the scope existed
    assert adaptive_scope_for(run("sgd"), "all") == "all"


def test_analyze_takes_the_scope_for_runs_of_other_methods():
    from analogsam.cli import build_parser

    args = build_parser().parse_args(["analyze", "runs/sgd", "--out", "x", "--asam-scope", "all"])
    assert args.asam_scope == "all"
    assert build_parser().parse_args(["analyze", "runs/sgd", "--out", "x"]).asam_scope is None
