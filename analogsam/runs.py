"""Run folders and seed groups: what they hold, how to read them, whether a run is finished.

:mod:`analogsam.training` writes them; everything else (evaluation, the studies, the command line)
reads them through this module, so the folder format has one owner.

A run folder holds:

- ``checkpoint.pt``: ``state_dict``, ``model_spec``, ``config`` and ``metrics``, all plain data, so
  it loads with ``torch.load(path, weights_only=True)`` and never runs code;
- ``log.csv``: one row per epoch (loss, train / validation / test metric, learning rate, seconds): the
  metric's columns are ``train_<metric>``, ``test_<metric>``, ``val_<metric>`` (``train_accuracy``...
  for the default top-1 accuracy, the columns every run had before metrics were a choice);
- ``config.json``: the same configuration, for people and other tools;
- ``train_settings.json`` (:data:`REUSE_RECORD`, written by :func:`analogsam.training.train_or_reuse`
  once the run is trained): the settings it was trained with and the checkpoint's digest. A run is
  *finished* (:func:`is_finished`) when this record is there and the checkpoint is the one it names.

A *seed group* is a folder holding one run folder per training seed, ``seed-0``, ``seed-1``, ...
(:func:`analogsam.training.train_seeds` writes one; :func:`load_group` reads it back). Every run of a
group carries the group's name (the folder's name) and its own :attr:`TrainedRun.train_seed`: a claim
about a training method is about all its seeds, not about one trained network.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from analogsam.data import ArrayDataset, load_dataset
from analogsam.errors import AnalogsamError
from analogsam.models import build_model
from analogsam.quantization import apply_activation_threshold, quantize_model
from analogsam.storage import file_digest, matching_record, read_json

CHECKPOINT = "checkpoint.pt"

#: The record :func:`~analogsam.training.train_or_reuse` writes beside a finished run: the settings it was trained with,
#: their hash and the digest of the checkpoint they produced.
REUSE_RECORD = "train_settings.json"

#: How the run folder of training seed N inside a seed group is named (``seed-0``, ``seed-1``, ...).
SEED_FOLDER = "seed-{}"
_SEED_FOLDER = re.compile(r"seed-(\d+)")


class RunNotFoundError(AnalogsamError, FileNotFoundError):
    """A path that should hold a run folder or a checkpoint holds neither."""


class CheckpointError(AnalogsamError, ValueError):
    """A checkpoint file exists but cannot be used: damaged, not analogsam's, or not fitting the model."""


@dataclass
class TrainedRun:
    """A trained model with everything needed to rebuild, evaluate or report it."""

    model: nn.Module
    model_spec: dict | None
    config: dict
    metrics: list[dict] = field(default_factory=list)
    path: Path | None = None
    #: The seed group's name if this run is one training seed of a group (:func:`load_group`,
    #: :func:`~analogsam.training.train_seeds`), else ``None``: a single run.
    group: str | None = None
    #: True when :func:`~analogsam.training.train_or_reuse` loaded this run instead of training it.
    reused: bool = False
    #: Hardware-aware training's learned input ranges, {layer name: one range per tile} (empty for
    #: other runs): the tiles' static input ranges when the network is converted for evaluation.
    input_ranges: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The group's name for a run of a seed group, else the run's own name."""
        return self.group or self.config.get("run_name") or (self.path.name if self.path else "model")

    @property
    def train_seed(self) -> int | None:
        """The seed the network was trained with (its config's ``seed``); ``None`` if not recorded."""
        seed = self.config.get("seed")
        return int(seed) if seed is not None else None

    @property
    def optimizer(self) -> str:
        return self.config.get("optimizer", "unknown")


def load_run(path: str | os.PathLike, model: nn.Module | None = None) -> TrainedRun:
    """Load a run folder (or a checkpoint file) written by :func:`~analogsam.training.train`.

    The architecture is rebuilt from the stored spec; for a user's own module that has no spec, pass
    an instance as ``model`` and its weights are loaded into it.
    """
    path = Path(path)
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.exists() and is_seed_group(path):
        raise RunNotFoundError(
            f"{path} is a seed group (one run per training seed), not one run: pass one of its "
            "seed-N folders, or load every run with analogsam.runs.load_group"
        )
    if not file.exists():
        raise RunNotFoundError(
            f"no checkpoint at {file}: expected a run folder written by "
            "`analogsam train` (it holds checkpoint.pt) or a checkpoint file"
        )
    ckpt = _read_checkpoint(file)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{file} is not an analogsam checkpoint (it holds no state_dict): pass a run "
            "folder written by `analogsam train`"
        )
    if model is None:
        if not ckpt.get("model_spec"):
            raise CheckpointError(
                f"{file} holds a custom model without a spec: pass the module as "
                "load_run(path, model=MyNet()) to load its weights"
            )
        model = build_model(ckpt["model_spec"])
    threshold = (ckpt.get("config") or {}).get("activation_threshold")
    if threshold:
        apply_activation_threshold(model, threshold)
    quantized = (ckpt.get("config") or {}).get("quantization")
    if quantized:  # the quantizers first: their clips are in the state dict
        quantize_model(model, quantized)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"the weights in {file} do not fit the model ({first}); pass the module the run was trained with"
        ) from err
    model.eval()
    return TrainedRun(
        model,
        ckpt.get("model_spec"),
        ckpt.get("config", {}),
        ckpt.get("metrics", []),
        path if path.is_dir() else path.parent,
        input_ranges=ckpt.get("input_ranges") or {},
    )


def _read_checkpoint(file: Path) -> Any:
    """``torch.load(file, weights_only=True)``, its failures told as one line that says what to do."""
    retrain = f"retrain the run (`analogsam train ... --out {file.parent}`) or restore {file.name} from a backup"
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses pickled objects, since unpickling them can run code from the file.
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" (a {found.group(1)} object)" if found else ""
        raise CheckpointError(
            f"{file} holds a pickled Python object{what}, which analogsam refuses to load "
            "since unpickling can run code from the file (`analogsam train` writes plain data "
            f"only): {retrain}"
        ) from err
    except OSError as err:
        raise CheckpointError(f"cannot read {file}: {err.strerror or err}; check its permissions") from err
    except (RuntimeError, EOFError, KeyError, ValueError) as err:
        # A cut-off zip archive (RuntimeError), an empty file (EOFError) or other bytes (KeyError).
        raise CheckpointError(
            f"{file} is damaged or incomplete ({file.stat().st_size} bytes that torch "
            f"cannot read as a checkpoint): {retrain}"
        ) from err


def run_test_data(run: TrainedRun, root: str | os.PathLike | None = None) -> ArrayDataset:
    """The test split of the dataset ``run`` was trained on, as it was prepared for training."""
    config = run.config
    if "dataset" not in config:
        raise CheckpointError(f"run {run.name!r} does not record its dataset; pass the test batches yourself")
    options = dict(config.get("data_options", {}))
    if root is not None:
        options["root"] = root
    if (run.model_spec or {}).get("vocabulary"):
        options["vocabulary"] = run.model_spec["vocabulary"]  # a text encoded with the model's own ids
    return load_dataset(config["dataset"], **options).test


def _seed_folders(path: Path) -> dict[int, Path]:
    """{N: path/seed-N} for the ``seed-N`` folders of ``path`` that hold a checkpoint, by seed."""
    found = {}
    for p in path.iterdir():
        match = _SEED_FOLDER.fullmatch(p.name)
        if match and (p / CHECKPOINT).exists():
            found[int(match.group(1))] = p
    return dict(sorted(found.items()))


def is_seed_group(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a seed group: a folder without a checkpoint of its own that holds run
    folders named ``seed-N``."""
    path = Path(path)
    return path.is_dir() and not (path / CHECKPOINT).exists() and bool(_seed_folders(path))


def load_group(path: str | os.PathLike) -> list[TrainedRun]:
    """Every run of the seed group ``path`` (by training seed), each named after the group (the
    folder's name) with its :attr:`~TrainedRun.train_seed`; a single run folder gives ``[that run]``.

    A ``seed-N`` folder whose run was trained with another seed than N is refused: its rows would
    be labelled with the wrong training seed.
    """
    path = Path(path)
    if not is_seed_group(path):
        return [load_run(path)]
    runs = []
    for expected, folder in _seed_folders(path).items():
        run = load_run(folder)
        if run.train_seed != expected:
            raise CheckpointError(
                f"{folder} holds a run trained with seed {run.train_seed}, not {expected}: rename "
                f"the folder to {SEED_FOLDER.format(run.train_seed)} or retrain it"
            )
        run.group = path.name
        runs.append(run)
    methods = sorted({r.optimizer for r in runs})
    if len(methods) > 1:
        raise CheckpointError(
            f"seed group {path} mixes optimizers ({', '.join(methods)}): a group holds one "
            "training method; move the other runs to a group of their own"
        )
    return runs


def seed_folder(group: str | os.PathLike, seed: int) -> Path:
    """The run folder of training seed ``seed`` in the seed group ``group``."""
    return Path(group) / SEED_FOLDER.format(seed)


def is_finished(folder: str | os.PathLike, settings: dict | None = None) -> bool:
    """Whether ``folder`` holds a finished run: its checkpoint, and the reuse record written after
    training that names this very checkpoint (by digest). With ``settings``, also trained with those
    settings (:func:`analogsam.training.train_or_reuse`'s identity of a run).

    A folder whose training was interrupted (a checkpoint of the last good epoch, no record), or
    whose checkpoint was replaced afterwards, is not finished.
    """
    folder = Path(folder)
    if not (folder / CHECKPOINT).exists():
        return False
    path = folder / REUSE_RECORD
    record = read_json(path) if settings is None else matching_record(path, settings)
    return record is not None and record.get("checkpoint") == file_digest(folder / CHECKPOINT)


def run_config(folder: str | os.PathLike) -> dict | None:
    """The configuration a run was trained with (its ``config.json``), or None where there is none yet."""
    return read_json(Path(folder) / "config.json")


def finished_seeds(group: str | os.PathLike, seeds) -> list[int]:
    """The seeds among ``seeds`` whose run folder in ``group`` holds a finished run (:func:`is_finished`)."""
    return [s for s in seeds if is_finished(seed_folder(group, s))]
