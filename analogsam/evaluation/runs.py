"""What evaluation needs from a trained run, and nothing of the run-folder format.

The protocol evaluates a ``torch.nn.Module`` and labels its rows; a
:class:`~analogsam.runs.TrainedRun` (or a run folder) is unpacked here, once, into that network
and those labels. Run folders are read by :mod:`analogsam.runs`, their one owner.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.runs import TrainedRun, load_group, run_test_data


def unpack(subject) -> tuple[nn.Module, dict]:
    """(network, labels) of a ``torch.nn.Module`` (no labels) or a TrainedRun (its name, optimizer,
    model and dataset names, its training seed and whether it is one seed of a seed group)."""
    if isinstance(subject, TrainedRun):
        return subject.model, {
            "run": subject.name,
            "optimizer": subject.optimizer,
            "model": subject.config.get("model"),
            "dataset": subject.config.get("dataset"),
            "train_seed": subject.train_seed,
            "grouped": subject.group is not None,
            "input_ranges": subject.input_ranges,
        }
    if isinstance(subject, nn.Module):
        return subject, {}
    raise InvalidParameterError(
        f"evaluate() needs a torch.nn.Module or a TrainedRun, got {type(subject).__name__}; "
        "pass a network or analogsam.runs.load_run(folder)"
    )


def describe(run) -> str:
    """``name``, or ``name seed N`` for one training seed of a seed group: how progress names a run."""
    return f"{run.name} seed {run.train_seed}" if run.group is not None else run.name


def load_runs(runs: Sequence) -> list:
    """TrainedRun objects from TrainedRuns, run folders and seed-group folders (a group gives all its
    runs, :func:`analogsam.runs.load_group`).

    Refuses two runs whose rows would share cells: two single runs with one name, a single run named
    like a group, or two runs of a group with one training seed.
    """
    if isinstance(runs, (str, os.PathLike)) or not isinstance(runs, Iterable):
        raise InvalidParameterError(f"runs must be a list of trained runs or run folders, got {runs!r}")
    loaded = [one for r in runs for one in ([r] if isinstance(r, TrainedRun) else load_group(r))]
    if not loaded:
        raise InvalidParameterError("runs is empty: pass at least one trained run or run folder")
    seen: dict[str, list] = {}
    for r in loaded:
        seen.setdefault(r.name, []).append(r)
    for name, members in seen.items():
        if len(members) == 1:
            continue
        seeds = [m.train_seed for m in members]
        if any(m.group is None for m in members):
            raise InvalidParameterError(
                f"two runs share the name {name!r}: rename a run folder so rows stay apart "
                "(or pass the seed-group folder that holds them)"
            )
        if len(set(seeds)) != len(seeds):
            raise InvalidParameterError(
                f"two runs of seed group {name!r} share a training seed ({seeds}): pass "
                "each group once, or rename one group's folder"
            )
    return loaded


def default_batches(run, batch_size: int = 2000):
    """Batches of the test split of the dataset ``run`` was trained on."""
    return run_test_data(run).batches(batch_size)
