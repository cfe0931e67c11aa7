"""Parameter roles: one answer for the optimizers, the sharpness metrics, the perturbations and the conversion."""

import pytest
import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.models import roles
from analogsam.optim import ASAM, adaptive_param_groups, non_norm_parameters, weight_parameters
from analogsam.robustness import sharpness


def bn_net(seed=0):
    """Conv -> BatchNorm -> ReLU -> Linear -> LayerNorm -> PReLU -> Linear, with non-trivial γ and running stats."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 16),
        nn.LayerNorm(16),
        nn.PReLU(),
        nn.Linear(16, 3),
    )
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 3.0)  # γ far from 1, so scaling it or not changes the metric
        model[1].bias.uniform_(-0.5, 0.5)
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
        model[5].weight.uniform_(0.5, 3.0)
    return model.eval()


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)


def test_roles_of_each_layer():
    model = bn_net()
    assert [n for n, _ in roles.crossbar_weights(model)] == ["0.weight", "4.weight", "7.weight"]
    assert [n for n, _ in weight_parameters(model)] == ["0.weight", "4.weight", "7.weight"]
    # biases and PReLU's slope are outside normalisation layers; γ/β of BatchNorm and LayerNorm are not
    assert [n for n, _ in non_norm_parameters(model)] == [
        "0.weight",
        "0.bias",
        "4.weight",
        "4.bias",
        "6.weight",
        "7.weight",
        "7.bias",
    ]
    kinds = [(roles.is_convertible(m), roles.is_digital_by_design(m)) for m in model]
    assert kinds == [
        (True, False),
        (False, True),
        (False, False),
        (False, False),
        (True, False),
        (False, True),
        (False, True),
        (True, False),
    ]
    assert roles.is_digital_by_design(nn.Embedding(3, 2)) and not roles.is_convertible(nn.Embedding(3, 2))  # a lookup


def test_frozen_weights_still_sit_on_the_crossbar():
    model = bn_net()
    model[0].weight.requires_grad_(False)
    assert [n for n, _ in roles.crossbar_weights(model)] == ["4.weight", "7.weight"]  # what an optimizer trains
    assert [n for n, _ in roles.select_parameters(model, "weights")] == ["0.weight", "4.weight", "7.weight"]
    assert "0.weight" not in dict(roles.select_parameters(model, "all"))


def test_no_weights_to_perturb_is_a_clear_error():
    with pytest.raises(InvalidParameterError, match="parameters='all'"):
        roles.select_parameters(nn.Sequential(nn.BatchNorm1d(3)), "weights")


def test_metric_scales_each_tensor_by_the_optimizers_T():
    """BatchNorm γ: the adaptive-sharpness metric's T is the ASAM optimizer's T, tensor by tensor."""
    model = bn_net()
    eta = 0.01
    opt = ASAM(adaptive_param_groups(model), torch.optim.SGD, lr=0.1, eta=eta)
    optimizer_t = {id(p): opt._scale(p, group) for group in opt.param_groups for p in group["params"]}
    params = [p for _, p in roles.select_parameters(model, "all")]
    metric_t = roles.adaptive_scales(model, params, eta)
    assert len(optimizer_t) == len(params) == 11
    for p, t in zip(params, metric_t):
        expected = torch.ones_like(p) if optimizer_t[id(p)] is None else optimizer_t[id(p)]
        assert torch.equal(t, expected)
    gamma = [i for i, p in enumerate(params) if p is model[1].weight]
    assert len(gamma) == 1 and torch.equal(metric_t[gamma[0]], torch.ones(4))  # γ stays digital: T = 1


def _asam_one_step_increase(model, x, y, groups, rho, eta):
    """L(w + ε) − L(w) for the ASAM optimizer's ε on ``groups``, in eval mode; the model is put back."""
    opt = ASAM(groups, torch.optim.SGD, lr=0.1, rho=rho, eta=eta)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.first_step(zero_grad=True)
    with torch.no_grad():
        perturbed = nn.functional.cross_entropy(model(x), y)
    opt.restore()
    return float(perturbed - loss.detach())


def test_one_step_adaptive_sharpness_is_the_loss_increase_of_asams_step_on_a_batchnorm_net():
    model = bn_net()
    x, y = batch()
    rho, eta = 0.5, 0.01
    metric = sharpness.adaptive_sharpness(model, [(x, y)], rho=rho, steps=1, eta=eta).diagnostics
    increase = metric["perturbed_loss"] - metric["loss"]
    optimizer = _asam_one_step_increase(model, x, y, adaptive_param_groups(model), rho, eta)
    assert increase == pytest.approx(optimizer, rel=1e-4)
    # The rule of the ASAM authors' code (every tensor named "weight" scaled, γ included) measures
    # something else on this network: the test can tell the two rules apart.
    named_weight = {id(p) for n, p in model.named_parameters() if n.endswith("weight")}
    by_name = [
        {"params": [p for p in model.parameters() if id(p) in named_weight], "adaptive": True},
        {"params": [p for p in model.parameters() if id(p) not in named_weight], "adaptive": False},
    ]
    assert abs(_asam_one_step_increase(model, x, y, by_name, rho, eta) - optimizer) > 100 * 1e-4 * abs(optimizer)
