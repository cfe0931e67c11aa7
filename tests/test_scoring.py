"""The one accuracy/loss loop, checked against the loops it replaced."""

import pytest
import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.scoring import score


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(50, 5, generator=g), torch.randint(0, 3, (50,), generator=g)
    return [(x[i : i + 16], y[i : i + 16]) for i in range(0, 50, 16)]  # unequal last batch


def model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def reference_summed(forward, batches):
    """The loop of training.accuracy and evaluation's _score before they shared one."""
    correct, loss, total = 0, 0.0, 0
    for x, y in batches:
        logits = forward(x)
        loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
    return correct / total, loss / total


def reference_weighted(forward, batches, weights, loss_fn):
    """The loop of the robustness probes before they shared it (they returned loss first)."""
    loss, correct, total = 0.0, 0, 0
    for (x, y), w in zip(batches, weights):
        out = forward(x)
        loss += w * float(loss_fn(out, y))
        correct += int((out.argmax(dim=1) == y).sum())
        total += len(y)
    return correct / total, loss


@torch.no_grad()
def test_same_numbers_as_the_loops_it_replaced():
    net, batches = model(), data()
    assert score(net, batches) == reference_summed(net, batches)
    weights = [len(y) / 50 for _, y in batches]
    loss_fn = nn.functional.cross_entropy
    assert score(net, batches, loss_fn=loss_fn, weights=weights) == reference_weighted(net, batches, weights, loss_fn)
    acc, loss = score(net, batches)
    assert 0.0 <= acc <= 1.0 and loss == pytest.approx(score(net, batches, loss_fn=loss_fn, weights=weights)[1])


def test_extra_batch_items_device_and_callables():
    net, batches = model(), data()
    with_indices = [(x, y, torch.arange(len(y))) for x, y in batches]
    assert score(net, with_indices, device="cpu") == score(net, batches)
    assert score(lambda x: net(x), iter(batches)) == score(net, batches)  # any forward, any iterable


def test_empty_batches_and_half_a_weighted_call_are_refused():
    with pytest.raises(InvalidParameterError, match="no samples"):
        score(model(), [])
    with pytest.raises(InvalidParameterError, match="together"):
        score(model(), data(), loss_fn=nn.functional.cross_entropy)


def test_training_accuracy_uses_it_and_restores_the_mode(digits):
    from analogsam.training import accuracy

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Dropout(0.5)).train()
    batches = list(digits.test.batches(100))
    result = accuracy(net, batches)
    assert net.training  # put back in train mode
    net.eval()
    assert result == reference_summed(net, batches)
