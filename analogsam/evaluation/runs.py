"""What evaluation needs from a trained run, and nothing of the run-folder format.

The protocol evaluates a ``torch.nn.Module`` and labels its rows; a
:class:`~analogsam.training.TrainedRun` (or a run folder) is unpacked here, once, into that network
and those labels. ``analogsam.training`` is imported inside the functions: evaluation sits above
training, and a user who evaluates their own network need not load the training stack.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from torch import nn

from analogsam.errors import InvalidParameterError

def unpack(subject) -> tuple[nn.Module, dict]:
    """(network, labels) of a ``torch.nn.Module`` (no labels) or a TrainedRun (its name, optimizer,
    model and dataset names)."""
    from analogsam.training import TrainedRun

    if isinstance(subject, TrainedRun):
        return subject.model, {"run": subject.name, "optimizer": subject.optimizer,
                               "model": subject.config.get("model"), "dataset": subject.config.get("dataset")}
    if isinstance(subject, nn.Module):
        return subject, {}
    raise InvalidParameterError(f"evaluate() needs a torch.nn.Module or a TrainedRun, got {type(subject).__name__}; "
                                "pass a network or analogsam.training.load_run(folder)")


def load_runs(runs: Sequence) -> list:
    """TrainedRun objects from TrainedRuns or run folders; refuses two runs with one name, whose rows
    would share cells."""
    from analogsam.training import TrainedRun, load_run

    if isinstance(runs, (str, os.PathLike)) or not isinstance(runs, Iterable):
        raise InvalidParameterError(f"runs must be a list of trained runs or run folders, got {runs!r}")
    loaded = [r if isinstance(r, TrainedRun) else load_run(r) for r in runs]
    if not loaded:
        raise InvalidParameterError("runs is empty: pass at least one trained run or run folder")
    names = [r.name for r in loaded]
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"two runs share a name ({', '.join(names)}): rename a run folder so rows "
                                    "stay apart")
    return loaded


def default_batches(run, batch_size: int = 2000):
    """Batches of the test split of the dataset ``run`` was trained on."""
    from analogsam.training import run_test_data

    return run_test_data(run).batches(batch_size)
