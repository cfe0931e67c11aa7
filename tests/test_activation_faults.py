"""Faults in the activation memory of a quantized network (its layers' a-bit input codes), on
hand-sized layers whose faulted codes are written out by hand."""

import math

import pytest
import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.quantization import (
    activation_faulted_copy,
    faulted_copy,
    inject_activation_faults,
    quantize_model,
    quantized_layers,
)


def _layer(x_init: torch.Tensor, bits: int = 2) -> nn.Module:
    """One quantized Linear(3, 2) whose activation clip is set so that its codes are the inputs."""
    torch.manual_seed(0)
    net = quantize_model(nn.Sequential(nn.Linear(3, 2)), f"w4a{bits}")
    with torch.no_grad():
        net(x_init)  # the first forward: clips, signed or not
        net[0].activation_clip.fill_(float(2**bits - 1))  # L = 2^a − 1: the code of x is x itself
    return net.eval()


UNSIGNED = torch.tensor([[0.0, 1.0, 3.0]])  # codes 0, 1, 3 of 2-bit unsigned words


def test_a_flipped_cell_inverts_its_bit_and_stuck_cells_force_it():
    clean = _layer(UNSIGNED)
    assert not bool(clean[0].activation_signed)
    cases = {
        "bit-flip": [3.0, 2.0, 0.0],  # n -> 3 - n (both bits inverted)
        "stuck-at-1": [3.0, 3.0, 3.0],
        "stuck-at-0": [0.0, 0.0, 0.0],
    }
    for kind, codes in cases.items():
        faulted = activation_faulted_copy(clean, 1.0, kind=kind)
        torch.testing.assert_close(faulted(UNSIGNED), clean(torch.tensor([codes])), rtol=0, atol=1e-6, msg=kind)
    # only bit 1 (the most significant of two): n -> n ^ 2
    faulted = activation_faulted_copy(clean, 1.0, positions=(1,))
    torch.testing.assert_close(faulted(UNSIGNED), clean(torch.tensor([[2.0, 3.0, 1.0]])), rtol=0, atol=1e-6)
    # rate 0: nothing changes; the original keeps no hook
    torch.testing.assert_close(activation_faulted_copy(clean, 0.0)(UNSIGNED), clean(UNSIGNED), rtol=0, atol=0)
    assert not clean[0]._forward_pre_hooks and getattr(clean[0], "activation_faults", None) is None


def test_a_signed_input_is_faulted_on_the_weights_grid():
    """The first layer's input (negative values): level index n of the signed grid c(2n/L − 1); flipping
    every bit of the offset-binary word, n -> L − n, negates the value."""
    x = torch.tensor([[-3.0, -1.0, 1.0]])
    clean = _layer(x)
    assert bool(clean[0].activation_signed)
    faulted = activation_faulted_copy(clean, 1.0, kind="bit-flip")
    torch.testing.assert_close(faulted(x), clean(-x), rtol=0, atol=1e-6)


def test_faulty_cells_are_fixed_per_position_seeded_and_per_layer():
    torch.manual_seed(1)
    net = quantize_model(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)), "w8a8")
    x = torch.rand(5, 64)
    with torch.no_grad():
        net(x)
    net.eval()
    one = activation_faulted_copy(net, 0.05, seed=3)
    same = activation_faulted_copy(net, 0.05, seed=3)
    other = activation_faulted_copy(net, 0.05, seed=4)
    batch = x[:1].repeat(4, 1)
    out = one(batch)
    assert torch.equal(out, out[:1].expand_as(out))  # every sample meets the same faulty cells
    assert torch.equal(one(x), same(x)) and not torch.equal(one(x), other(x))
    assert not torch.equal(one(x), net(x))
    first, second = (layer.activation_faults for _, layer in quantized_layers(one))
    assert not torch.equal(first.masks[0][:32], second.masks[0])  # each layer its own cells
    # only the named layer
    only = activation_faulted_copy(net, 0.05, layers=["2"], seed=3)
    assert [getattr(m, "activation_faults", None) is not None for _, m in quantized_layers(only)] == [False, True]


def test_the_fraction_of_faulty_cells_is_the_rate():
    """100 000 cells at rate 0.1: the count is Binomial(1e5, 0.1), std 94.9; 5 std either side (a false
    failure about once in 1.7 million runs)."""
    net = _layer(UNSIGNED, bits=8)
    faulted = activation_faulted_copy(net, 0.1, seed=0)
    faults = faulted[0].activation_faults
    faults.codes(torch.zeros(1, 12_500, dtype=torch.int64))  # 12 500 words x 8 bits: the draw
    n = 12_500 * 8
    assert abs(faults.n_faulty - 0.1 * n) < 5 * math.sqrt(n * 0.1 * 0.9)


def test_faulted_copy_by_location_and_refusals():
    net = _layer(UNSIGNED)
    weight = faulted_copy(net, 1.0, location="weight", kind="bit-flip")
    assert not torch.equal(weight[0].weight, net[0].weight) and not weight[0]._forward_pre_hooks
    activation = faulted_copy(net, 1.0, location="activation")
    assert torch.equal(activation[0].weight, net[0].weight) and activation[0]._forward_pre_hooks
    with pytest.raises(InvalidParameterError, match="location"):
        faulted_copy(net, 0.1, location="bias")
    with pytest.raises(InvalidParameterError, match="are not quantized layers"):
        activation_faulted_copy(net, 0.1, layers=["fc9"])
    with pytest.raises(InvalidParameterError, match="needs a quantized model"):
        inject_activation_faults(nn.Linear(2, 2), 0.1)
    fresh = quantize_model(nn.Sequential(nn.Linear(3, 2)), "w4a4")
    with pytest.raises(InvalidParameterError, match="first forward"):
        inject_activation_faults(fresh, 0.1)
    twice = activation_faulted_copy(net, 0.1)
    with pytest.raises(InvalidParameterError, match="activation faults already"):
        inject_activation_faults(twice, 0.1)
