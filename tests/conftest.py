"""Shared fixtures: small real data and a small trained model, built once per test session."""

import pytest
import torch

from analogsam.data import load_dataset


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits, normalised (1438 train / 359 test)."""
    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_run(digits, tmp_path_factory):
    """An MLP trained with SGD on digits for a few epochs (about 95% test accuracy), saved as a run folder."""
    from analogsam.training import train

    out = tmp_path_factory.mktemp("runs") / "sgd"
    return train("mlp", digits, optimizer="sgd", epochs=8, batch_size=32, lr=0.05, seed=0, out=out, progress=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny models: more threads only add OpenMP barrier waits
    on a busy 2-core machine. Modules opt in with ``pytestmark``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _restore_rng():
    """Tests that seed torch do not leak their state into the next test."""
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)
