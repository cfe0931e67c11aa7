"""The digital training loop: any optimizer of ``analogsam.optim``, a cosine schedule, logs, checkpoints.

A run folder holds:

- ``checkpoint.pt``: ``state_dict``, ``model_spec``, ``config`` and ``metrics``, all plain data, so
  it loads with ``torch.load(path, weights_only=True)`` and never runs code;
- ``log.csv``: one row per epoch (loss, train / validation / test accuracy, learning rate, seconds);
- ``config.json``: the same configuration, for people and other tools.

The checkpoint is rewritten after every epoch, so a crash or a non-finite loss keeps the last good
epoch.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from analogsam import __version__
from analogsam.data import ArrayDataset, DatasetSplits, load_dataset
from analogsam.errors import AnalogsamError
from analogsam.models import build_model, make_spec
from analogsam.optim import TRAINING_SETTINGS, NonFiniteError, build_method, resolve_hyperparameters
from analogsam.scoring import score
from analogsam.storage import atomic_write, ensure_folder

CHECKPOINT = "checkpoint.pt"

_SETTINGS = TRAINING_SETTINGS  # each setting's default, range and meaning, declared once


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

    @property
    def name(self) -> str:
        return self.config.get("run_name") or (self.path.name if self.path else "model")

    @property
    def optimizer(self) -> str:
        return self.config.get("optimizer", "unknown")


@torch.no_grad()
def accuracy(model: nn.Module, batches, device: str | torch.device = "cpu") -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode over ``(inputs, labels)`` batches."""
    was_training = model.training
    model.eval()
    try:
        return score(model, batches, device=device)
    finally:
        model.train(was_training)


def _resolve_model(model, data: DatasetSplits) -> tuple[nn.Module, dict | None]:
    if isinstance(model, nn.Module):
        return model, None
    text = {"vocabulary": data.vocabulary} if data.vocabulary else {}  # a text model's ids are its spec's
    spec = make_spec(model, in_channels=data.in_channels, num_classes=data.num_classes,
                     input_size=data.input_size, **text) if isinstance(model, str) else dict(model)
    return build_model(spec), spec


def _atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def train(model: nn.Module | dict | str = "lenet5", data: DatasetSplits | str = "fashion-mnist", *,
          optimizer: str = "sgd", epochs: int = _SETTINGS["epochs"].default,
          batch_size: int = _SETTINGS["batch_size"].default, lr: float | None = _SETTINGS["lr"].default,
          momentum: float = _SETTINGS["momentum"].default, weight_decay: float = _SETTINGS["weight_decay"].default,
          schedule: str = _SETTINGS["schedule"].default, seed: int = _SETTINGS["seed"].default,
          out: str | os.PathLike | None = None, run_name: str | None = None,
          progress: bool = True, device: str = "cpu", data_options: dict | None = None,
          **optimizer_kwargs: Any) -> TrainedRun:
    """Train ``model`` on ``data`` digitally and return the trained run.

    Args:
        model: an ``nn.Module``, a model spec dict, or a model name (``mlp``, ``lenet5``, ``resnet20``, ...)
            built for the dataset's input shape.
        data: a :class:`~analogsam.data.DatasetSplits` or a dataset name (loaded with ``data_options``).
        optimizer: one of ``analogsam.optim.OPTIMIZER_NAMES``; its hyperparameters go in ``optimizer_kwargs``
            (e.g. ``rho=0.05``).
        epochs, batch_size, lr, momentum, weight_decay: the base optimizer's settings; ``lr`` defaults
            to the base optimizer's usual value (0.05 for SGD, 1e-3 for AdamW).
        schedule: ``"cosine"`` (cosine annealing to 0 over all steps) or ``"constant"``.
        seed: seeds the weight initialisation, the batch order and the optimizer's own randomness.
        out: a folder for checkpoint, log and config; nothing is written if ``None``.

    For a text (``load_dataset("text", ...)``: targets (N, T), a model with logits (B, T, V) such as
    ``char-lm``) every token counts as one sample: the loss is the mean cross-entropy per token and the
    accuracies are next-character accuracies.

    Every setting's allowed values are declared in :data:`analogsam.optim.TRAINING_SETTINGS`; a wrong
    one raises :class:`~analogsam.errors.InvalidParameterError` naming it, before any data is loaded.
    """
    epochs = _SETTINGS["epochs"].check(epochs)
    batch_size = _SETTINGS["batch_size"].check(batch_size)
    schedule = _SETTINGS["schedule"].check(schedule)
    seed = _SETTINGS["seed"].check(seed)
    resolve_hyperparameters(optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, epochs=epochs,
                            **optimizer_kwargs)  # refuse a bad hyperparameter before loading anything
    data_options = {k: v for k, v in (data_options or {}).items() if v is not None}
    if isinstance(data, str):
        data = load_dataset(data, **data_options)
    data_options.pop("root", None)  # a local path is no part of the run's identity
    torch.manual_seed(seed)
    model, spec = _resolve_model(model, data)
    model.to(device)
    stepped, per_sample, num_samples = _per_sample_view(model, data)
    method = build_method(optimizer, stepped, lr=lr, momentum=momentum, weight_decay=weight_decay,
                          num_samples=num_samples, num_classes=data.num_classes, epochs=epochs,
                          **optimizer_kwargs)
    steps_per_epoch = math.ceil(len(data.train) / batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(method.optimizer, T_max=epochs * steps_per_epoch)
                 if schedule == "cosine" else None)

    out_dir = Path(out) if out is not None else None
    config = {
        "run_name": run_name or (out_dir.name if out_dir else optimizer),
        "dataset": data.name, "data_options": data_options, "model": spec["name"] if spec else type(model).__name__,
        "optimizer": optimizer, "optimizer_hparams": method.hparams, "epochs": epochs,
        "batch_size": batch_size, "lr": method.hparams.get("lr", lr), "momentum": momentum, "weight_decay": weight_decay,
        "schedule": schedule, "seed": seed, "analogsam_version": __version__, "torch_version": str(torch.__version__),
    }
    if out_dir:
        ensure_folder(out_dir, "run folder")
        (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    run = TrainedRun(model, spec, config, [], out_dir)

    step = 0
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        method.begin_epoch(epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(per_sample(data.train.batches(batch_size, shuffle=True, seed=seed * 100_003 + epoch,
                                                 with_indices=True)),
                   total=steps_per_epoch, desc=f"{optimizer} epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False, unit="batch")
        for inputs, labels, indices in bar:
            inputs, labels = inputs.to(device), labels.to(device)
            try:
                loss, logits = method.train_step(inputs, labels, indices)
            except NonFiniteError as err:
                kept = f"; the last good checkpoint (epoch {epoch}) is in {out_dir}" if out_dir and epoch else ""
                raise NonFiniteError(f"training {optimizer!r} stopped in epoch {epoch + 1}: {err}{kept}. "
                                     "Lower the learning rate or rho, or check the inputs for NaN.") from err
            if scheduler is not None:
                scheduler.step()
            step += 1
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        method.end_epoch(epoch)
        test_acc, test_loss = accuracy(stepped, per_sample(data.test.batches(1024)), device)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
               "test_loss": test_loss, "test_accuracy": test_acc, "lr": method.optimizer.param_groups[0]["lr"]}
        if len(data.val):
            row["val_accuracy"], row["val_loss"] = accuracy(stepped, per_sample(data.val.batches(1024)), device)
        row["seconds"] = time.perf_counter() - start
        run.metrics.append(row)
        if progress:
            tqdm.write(f"[{config['run_name']}] epoch {epoch + 1}/{epochs}: loss {row['train_loss']:.4f}, "
                       f"train {row['train_accuracy']:.2%}, test {test_acc:.2%}, {row['seconds']:.1f} s")
        if out_dir:
            _write_log(out_dir / "log.csv", run.metrics)
            save_checkpoint(run, out_dir / CHECKPOINT)
    return run


# -- sequence targets (a text): every token is one sample -------------------------------------------------

class _PerToken(nn.Module):
    """A sequence model's (B, T, V) logits read as B·T samples of V logits, so the optimizers' cross-entropy,
    the loop's counts and the test accuracy are per token (next-character prediction)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        return logits.reshape(-1, logits.shape[-1])


def _per_token_batches(batches):
    """``(inputs, targets (B, T)[, indices (B,)])`` as ``(inputs, targets (B·T,)[, token indices (B·T,)])``;
    token j of sequence i is sample i·T + j (SAF's per-sample buffers hold one row per token)."""
    for inputs, targets, *indices in batches:
        flat = [targets.reshape(-1)]
        if indices:
            steps = targets.shape[1]
            flat.append((indices[0][:, None] * steps + torch.arange(steps, device=indices[0].device)).reshape(-1))
        yield (inputs, *flat)


def _per_sample_view(model: nn.Module, data: DatasetSplits):
    """(the module the optimizer steps, the batch adapter, the number of samples): for one target per
    position (a text, targets (N, T)) the per-token view, otherwise ``model`` and its batches as they are."""
    if data.train.y.dim() < 2:
        return model, lambda batches: batches, len(data.train)
    return _PerToken(model), _per_token_batches, data.train.y.numel()


def _write_log(path: Path, metrics: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in metrics for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(metrics)


def save_checkpoint(run: TrainedRun, path: str | os.PathLike) -> None:
    """Write ``run`` as plain data (tensors, dicts, lists, numbers, strings), loadable with weights_only=True."""
    state = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
    # A JSON round trip keeps only plain types, which weights_only loading accepts.
    plain = json.loads(json.dumps({"model_spec": run.model_spec, "config": run.config, "metrics": run.metrics}))
    _atomic_save({"format": "analogsam-checkpoint-1", "state_dict": state, **plain}, Path(path))


def load_run(path: str | os.PathLike, model: nn.Module | None = None) -> TrainedRun:
    """Load a run folder (or a checkpoint file) written by :func:`train`.

    The architecture is rebuilt from the stored spec; for a user's own module that has no spec, pass
    an instance as ``model`` and its weights are loaded into it.
    """
    path = Path(path)
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.exists():
        raise RunNotFoundError(f"no checkpoint at {file}: expected a run folder written by "
                               "`analogsam train` (it holds checkpoint.pt) or a checkpoint file")
    ckpt = _read_checkpoint(file)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{file} is not an analogsam checkpoint (it holds no state_dict): pass a run "
                              "folder written by `analogsam train`")
    if model is None:
        if not ckpt.get("model_spec"):
            raise CheckpointError(f"{file} holds a custom model without a spec: pass the module as "
                                  "load_run(path, model=MyNet()) to load its weights")
        model = build_model(ckpt["model_spec"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"the weights in {file} do not fit the model ({first}); pass the module "
                              "the run was trained with") from err
    model.eval()
    return TrainedRun(model, ckpt.get("model_spec"), ckpt.get("config", {}), ckpt.get("metrics", []),
                      path if path.is_dir() else path.parent)


def _read_checkpoint(file: Path) -> Any:
    """``torch.load(file, weights_only=True)``, its failures told as one line that says what to do."""
    retrain = (f"retrain the run (`analogsam train ... --out {file.parent}`) or restore {file.name} from a "
               "backup")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses pickled objects, since unpickling them can run code from the file.
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" (a {found.group(1)} object)" if found else ""
        raise CheckpointError(f"{file} holds a pickled Python object{what}, which analogsam refuses to load "
                              "since unpickling can run code from the file (`analogsam train` writes plain data "
                              f"only): {retrain}") from err
    except OSError as err:
        raise CheckpointError(f"cannot read {file}: {err.strerror or err}; check its permissions") from err
    except (RuntimeError, EOFError, KeyError, ValueError) as err:
        # A cut-off zip archive (RuntimeError), an empty file (EOFError) or other bytes (KeyError).
        raise CheckpointError(f"{file} is damaged or incomplete ({file.stat().st_size} bytes that torch "
                              f"cannot read as a checkpoint): {retrain}") from err


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
