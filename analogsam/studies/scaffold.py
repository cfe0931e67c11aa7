"""What every study of training methods over training seeds shares (the robustness study, the
memory-fault study): the training recipe and the data, a study folder that refuses other settings,
where each trained network lives and whether it is finished, and how a remaining time is printed.

Whether a run is finished is :func:`analogsam.runs.is_finished`'s answer (the run-folder format has
one owner); a study asks it through :func:`finished_seeds`, never by looking at file names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from analogsam.data import load_dataset
from analogsam.errors import AnalogsamError
from analogsam.runs import finished_seeds, seed_folder
from analogsam.storage import read_json, settings_hash, write_json

__all__ = [
    "STUDY_RECORD",
    "SeedStudySettings",
    "check_study_folder",
    "duration_text",
    "finished",
    "group_folder",
    "run_folder",
]

#: The record of a study's settings in its folder.
STUDY_RECORD = "study.json"


@dataclass(frozen=True)
class SeedStudySettings:
    """The training recipe every network of a study shares, and its training seeds. A study's own
    settings extend it (a field redeclared there keeps its place, so the recorded settings, and the
    hash that guards a study folder, stay in one order)."""

    model: str = "lenet5"
    dataset: str = "fashion-mnist"
    train_limit: int | None = None
    test_limit: int | None = None
    epochs: int = 8
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    seeds: tuple[int, ...] = (0, 1, 2)

    def train_kwargs(self) -> dict:
        """The settings of every run (a method's optimizer and hyperparameters are added to them), all
        explicit, so a later change of a package default does not change what a study trains."""
        return {
            "model": self.model,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "schedule": self.schedule,
            "data_options": {"train_limit": self.train_limit, "test_limit": self.test_limit},
        }

    def load_data(self, root: str | os.PathLike | None = None):
        """The dataset, limited to the study's training and test samples."""
        options = {"root": root, "train_limit": self.train_limit, "test_limit": self.test_limit}
        return load_dataset(self.dataset, **{k: v for k, v in options.items() if v is not None})


def check_study_folder(out: Path, settings: dict, error: type[AnalogsamError], what: str) -> None:
    """Record ``settings`` in ``out`` (:data:`STUDY_RECORD`), or refuse, with ``error``, a folder that
    holds ``what`` with other settings: its runs and results would mix."""
    record = read_json(out / STUDY_RECORD)
    if record is None:
        write_json(out / STUDY_RECORD, {"settings": settings, "settings_hash": settings_hash(settings)})
    elif record.get("settings_hash") != settings_hash(settings):
        raise error(
            f"{out} holds {what} with other settings ({out / STUDY_RECORD}); "
            "pass another --out (e.g. a separate folder for --quick)"
        )


def group_folder(out: Path, label: str) -> Path:
    """The seed group of the method (or network kind) ``label``: ``OUT/train/<label>``."""
    return out / "train" / label


def run_folder(out: Path, label: str, seed: int) -> Path:
    """The run folder of ``label`` trained with ``seed``: ``OUT/train/<label>/seed-N``."""
    return seed_folder(group_folder(out, label), seed)


def finished(out: Path, label: str, seeds) -> list[int]:
    """The seeds of ``label`` whose run is finished (:func:`analogsam.runs.is_finished`)."""
    return finished_seeds(group_folder(out, label), seeds)


def duration_text(seconds: float) -> str:
    """A wall time as a study prints it: seconds, minutes or hours."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
