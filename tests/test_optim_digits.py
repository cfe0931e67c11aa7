"""Every training method learns scikit-learn's 8x8 digits well above chance (10 %), with its own tiny loop."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from analogsam.optim import OPTIMIZER_NAMES, build_method

EPOCHS, BATCH = 4, 64
# Settings that make each method's own term active within this short run.
EXTRA = {
    "adamw": {"lr": 0.01},
    "adversarial": {"attack_steps": 3},
    "saf": {"saf_history": 1, "saf_start": 1},
    "mesa": {"mesa_start": 1},
}


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)  # pixel values 0..16 -> [0, 1]
    y = torch.tensor(y)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = order[:1400], order[1400:]
    return x[train], y[train], x[test], y[test]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow  # trains every method on digits
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_each_method_learns_digits(name, digits):
    x_train, y_train, x_test, y_test = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    kwargs = {"lr": 0.05, **EXTRA.get(name, {})}
    method = build_method(name, model, num_samples=len(x_train), num_classes=10, epochs=EPOCHS, **kwargs)
    losses = []
    for epoch in range(EPOCHS):
        model.train()
        method.begin_epoch(epoch)
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            loss, logits = method.train_step(x_train[idx], y_train[idx], idx)
            assert loss.dim() == 0 and not loss.requires_grad and logits.shape == (len(idx), 10)
            losses.append(float(loss))
        method.end_epoch(epoch)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.85, f"{name}: test accuracy {accuracy:.3f}"
    assert sum(losses[-10:]) < sum(losses[:10]) / 3
    assert method.step_count == EPOCHS * -(-len(x_train) // BATCH)
