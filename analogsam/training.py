"""The digital training loop: any optimizer of ``analogsam.optim``, a cosine schedule, logs, checkpoints.

A run folder holds:

- ``checkpoint.pt``: ``state_dict``, ``model_spec``, ``config`` and ``metrics``, all plain data, so
  it loads with ``torch.load(path, weights_only=True)`` and never runs code;
- ``log.csv``: one row per epoch (loss, train / validation / test metric, learning rate, seconds): the
  metric's columns are ``train_<metric>``, ``test_<metric>``, ``val_<metric>`` (``train_accuracy``...
  for the default top-1 accuracy, the columns every run had before metrics were a choice);
- ``config.json``: the same configuration, for people and other tools;
- ``train_settings.json`` (written by :func:`train_or_reuse`): the settings it was trained with, so a
  later call with the same settings reuses the run instead of training it again.

The checkpoint is rewritten after every epoch, so a crash or a non-finite loss keeps the last good
epoch.

A *seed group* is a folder holding one run folder per training seed, ``seed-0``, ``seed-1``, ...
(:func:`train_seeds` writes one; :func:`load_group` reads it back). Every run of a group carries the
group's name (the folder's name) and its own :attr:`TrainedRun.train_seed`: a claim about a training
method is about all its seeds, not about one trained network.
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
from analogsam import distributed as ddp
from analogsam.data import ArrayDataset, DatasetSplits, load_dataset
from analogsam.device import resolve_device
from analogsam.errors import AnalogsamError, InvalidParameterError
from analogsam.models import build_model, make_spec
from analogsam.optim import TRAINING_SETTINGS, NonFiniteError, build_method, resolve_hyperparameters
from analogsam.progress import progress_bar
from analogsam.quantization import (
    ActivationL1,
    activation_sparsity,
    apply_activation_threshold,
    has_activation_modules,
    parse_quantize,
    quantization_config,
    quantize_model,
)
from analogsam.scoring import resolve_metric, score, task_loss
from analogsam.storage import atomic_write, ensure_folder, file_digest, matching_record, settings_hash, write_json
from analogsam.validation import check_real

CHECKPOINT = "checkpoint.pt"

#: The record :func:`train_or_reuse` writes beside a finished run: the settings it was trained with,
#: their hash and the digest of the checkpoint they produced.
REUSE_RECORD = "train_settings.json"

#: How the run folder of training seed N inside a seed group is named (``seed-0``, ``seed-1``, ...).
SEED_FOLDER = "seed-{}"
_SEED_FOLDER = re.compile(r"seed-(\d+)")

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
    #: The seed group's name if this run is one training seed of a group (:func:`load_group`,
    #: :func:`train_seeds`), else ``None``: a single run.
    group: str | None = None
    #: True when :func:`train_or_reuse` loaded this run instead of training it.
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


@torch.no_grad()
def accuracy(
    model: nn.Module, batches, device: str | torch.device = "cpu", *, metric=None, output_fn=None
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode over ``(inputs, labels)`` batches;
    with ``metric`` (see :func:`analogsam.scoring.resolve_metric`), that metric and its task loss."""
    was_training = model.training
    model.eval()
    try:
        return score(model, batches, device=device, metric=metric, output_fn=output_fn)
    finally:
        model.train(was_training)


def _resolve_model(model, data: DatasetSplits) -> tuple[nn.Module, dict | None]:
    if isinstance(model, nn.Module):
        return model, None
    text = {"vocabulary": data.vocabulary} if data.vocabulary else {}  # a text model's ids are its spec's
    spec = (
        make_spec(model, in_channels=data.in_channels, num_classes=data.num_classes, input_size=data.input_size, **text)
        if isinstance(model, str)
        else dict(model)
    )
    return build_model(spec), spec


def _atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def train(
    model: nn.Module | dict | str = "lenet5",
    data: DatasetSplits | str = "fashion-mnist",
    *,
    optimizer: str = "sgd",
    epochs: int = _SETTINGS["epochs"].default,
    batch_size: int = _SETTINGS["batch_size"].default,
    lr: float | None = _SETTINGS["lr"].default,
    momentum: float = _SETTINGS["momentum"].default,
    weight_decay: float = _SETTINGS["weight_decay"].default,
    schedule: str = _SETTINGS["schedule"].default,
    seed: int = _SETTINGS["seed"].default,
    out: str | os.PathLike | None = None,
    run_name: str | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    distributed: bool | None = None,
    data_options: dict | None = None,
    metric="accuracy",
    output_fn=None,
    quantize: str | dict | None = None,
    quantize_first_last: bool = True,
    activation_l1: float = 0.0,
    activation_threshold: float = 0.0,
    hardware_aware: str | dict | None = None,
    **optimizer_kwargs: Any,
) -> TrainedRun:
    """Train ``model`` on ``data`` digitally and return the trained run.

    Args:
        model: an ``nn.Module``, a model spec dict, or a model name (``mlp``, ``lenet5``, ``resnet20``, ...)
            built for the dataset's input shape.
        data: a :class:`~analogsam.data.DatasetSplits` or a dataset name (loaded with ``data_options``).
        optimizer: one of ``analogsam.optim.OPTIMIZER_NAMES``; its hyperparameters go in ``optimizer_kwargs``
            (e.g. ``rho=0.05``).
        epochs, batch_size, lr, momentum, weight_decay: the base optimizer's settings; ``lr`` defaults
            to the base optimizer's usual value (0.05 for SGD, 1e-3 for AdamW). ``batch_size`` is the
            global batch of one step: in data-parallel training each of N processes takes
            ``batch_size / N`` of it.
        schedule: ``"cosine"`` (cosine annealing to 0 over all steps) or ``"constant"``.
        seed: seeds the weight initialisation, the batch order and the optimizer's own randomness.
        out: a folder for checkpoint, log and config; nothing is written if ``None``.
        device: ``"cpu"`` (the default), ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when torch sees a
            GPU); see :func:`analogsam.device.resolve_device`. Every optimizer of the family runs there.
        distributed: data-parallel training over the processes of a ``torch.distributed`` group
            (:mod:`analogsam.distributed`: DDP, one fixed shard of the training set per process, the
            SAM family's perturbation per process); ``None`` (default) means "when launched by
            ``torchrun``". On CUDA each process takes ``cuda:LOCAL_RANK``. Rank 0 alone writes ``out``
            and prints; the logged training metrics are summed over the processes, the test and
            validation metrics are rank 0's evaluation of the (identical) weights.
        metric: what each epoch reports on the training, validation and test data (log.csv columns
            ``train_<name>``, ``val_<name>``, ``test_<name>`` and the progress line): a name
            (``"accuracy"``, the default, ``"top5"``, ``"cross_entropy"``, ``"perplexity"``, ``"mse"``,
            ``"r2"``), a :class:`~analogsam.scoring.Metric` or a callable returning (sum, count); see
            :func:`analogsam.scoring.resolve_metric`. It also picks the loss trained on
            (:func:`analogsam.scoring.task_loss`): cross-entropy for classification and sequence
            metrics (per token, padding left out), mean squared error for regression metrics
            (``mse``, ``r2``). The config records the metric's name.
        output_fn: picks the prediction from the model's output (default: a tensor, a tuple's first
            element, a dict's or output object's ``logits``; :func:`analogsam.scoring.model_output`).
        quantize: quantization-aware training, ``"wKaK"`` (e.g. ``"w8a8"``, ``"w4a4"``): every Linear/Conv
            layer quantized with LIQ and learnable clips (:mod:`analogsam.quantization.liq`); ``None``
            (default) trains in full precision. The checkpoint records the quantizers, and
            :func:`load_run` rebuilds them. ``optimizer="saq"`` is sharpness-aware quantization.
        quantize_first_last: quantize the first and last Linear/Conv layers too (default) or keep them
            in full precision.
        activation_l1: λ of the activation-sparsity penalty λ·Σ_l ‖a_l‖₁ (per sample) on the model's
            ReLU outputs (Kurtz et al., ICML 2020; :mod:`analogsam.quantization.sparsity`); 0 (default) is
            off. ``train_loss`` then includes the penalty. With it, or with ``quantize``, every epoch
            logs the test set's activation sparsity (``test_sparsity``, and per ReLU module).
        activation_threshold: θ of a thresholded ReLU (FATReLU, Kurtz et al.) in place of every
            ``nn.ReLU``: activations at or below θ are 0; 0 (default) keeps the ReLUs. Recorded in the
            config and restored by :func:`load_run`; also logs the sparsity.
        hardware_aware: a device preset (name or TOML path): hardware-aware training, each
            convertible layer's training forward replaced by the preset's training-time tile model
            (:mod:`analogsam.hardware.hwa`: DAC/ADC, weight and output noise, bound management, learned
            input ranges where the preset uses static ones), for any ``optimizer`` (``"sam"``: SAM+HWA).
            The config records the preset; the learned input ranges go into the checkpoint and become
            the tiles' static input ranges at conversion. ``{"preset": "pcm", "remap": False}`` keeps
            each tile's weight scale where it started instead of following the weights (aihwkit's
            default ``InferenceRPUConfig``; see :class:`analogsam.hardware.hwa.TrainingTileModel`).
            With ``quantize`` the tiles hold the quantized weights Q(w) and read the quantized
            activations Q(x), as the converted network will (its gradient goes on through the
            quantizers' straight-through estimators to the weights and clips). ``None`` (default):
            digital training.

    For a text (``load_dataset("text", ...)``: targets (N, T), a model with logits (B, T, V) such as
    ``char-lm``) the metrics and the loss are per token (next-character accuracy, perplexity).

    Every setting's allowed values are declared in :data:`analogsam.optim.TRAINING_SETTINGS`; a wrong
    one raises :class:`~analogsam.errors.InvalidParameterError` naming it, before any data is loaded.
    """
    epochs = _SETTINGS["epochs"].check(epochs)
    batch_size = _SETTINGS["batch_size"].check(batch_size)
    schedule = _SETTINGS["schedule"].check(schedule)
    seed = _SETTINGS["seed"].check(seed)
    metric = resolve_metric(metric)
    if hardware_aware is not None:
        from analogsam.hardware.hwa import training_tile_model

        training_tile_model(hardware_aware)  # refuse an untrainable preset before loading anything
    resolve_hyperparameters(
        optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, epochs=epochs, **optimizer_kwargs
    )  # refuse a bad hyperparameter before loading anything
    quantize = None if quantize is None else parse_quantize(quantize, first_last=quantize_first_last)
    activation_l1 = check_real("activation_l1", activation_l1, 0.0)
    activation_threshold = check_real("activation_threshold", activation_threshold, 0.0)
    replicas = ddp.join(device) if distributed or (distributed is None and ddp.launched_by_torchrun()) else None
    try:
        return _train(
            model,
            data,
            replicas,
            optimizer=optimizer,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            schedule=schedule,
            seed=seed,
            out=out,
            run_name=run_name,
            progress=progress,
            device=replicas.device if replicas else resolve_device(device),
            data_options=data_options,
            metric=metric,
            output_fn=output_fn,
            quantize=quantize,
            activation_l1=activation_l1,
            activation_threshold=activation_threshold,
            hardware_aware=hardware_aware,
            **optimizer_kwargs,
        )
    finally:
        if replicas is not None:
            replicas.close()


def _train(
    model,
    data,
    replicas: ddp.Replicas | None,
    *,
    optimizer,
    epochs,
    batch_size,
    lr,
    momentum,
    weight_decay,
    schedule,
    seed,
    out,
    run_name,
    progress,
    device,
    data_options,
    metric,
    output_fn,
    quantize=None,
    activation_l1=0.0,
    activation_threshold=0.0,
    hardware_aware=None,
    **optimizer_kwargs,
) -> TrainedRun:
    """:func:`train` with its settings checked and its process group (``replicas``, or ``None``) joined."""
    main = replicas is None or replicas.is_main  # the process that writes files and prints
    local_batch = batch_size if replicas is None else ddp.per_replica_batch(batch_size, replicas.world_size)
    data_options = {k: v for k, v in (data_options or {}).items() if v is not None}
    if isinstance(data, str):
        data = load_dataset(data, **data_options)
    data_options.pop("root", None)  # a local path is no part of the run's identity
    torch.manual_seed(seed)
    model, spec = _resolve_model(model, data)
    if activation_threshold > 0:
        apply_activation_threshold(model, activation_threshold)
    if quantize is not None:
        quantize_model(model, quantize)
    model.to(device)
    loss_fn = task_loss(metric)
    if activation_l1 > 0:
        loss_fn = ActivationL1(model, activation_l1).wrap(loss_fn)
    logs_sparsity = (activation_l1 > 0 or activation_threshold > 0 or quantize is not None) and has_activation_modules(
        model
    )
    hwa = None
    if hardware_aware is not None:  # before the optimizer is built: learned input ranges are parameters
        from analogsam.hardware.hwa import attach_hardware_aware

        hwa = attach_hardware_aware(model, hardware_aware)
    wrapped = ddp.wrap(model, replicas) if replicas else None  # rank 0's weights on every replica from here
    method = build_method(
        optimizer,
        model,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        num_samples=len(data.train),
        num_classes=data.num_classes,
        epochs=epochs,
        output_fn=output_fn,
        loss_fn=loss_fn,
        **optimizer_kwargs,
    )
    if replicas:
        method.distribute(wrapped)
        ddp.seed_replica(seed, replicas.rank)  # each replica its own noise, attack starts, dropout masks
        shard = ddp.shard_indices(len(data.train), replicas.rank, replicas.world_size, seed)
    steps_per_epoch = math.ceil((len(shard) if replicas else len(data.train)) / local_batch)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(method.optimizer, T_max=epochs * steps_per_epoch)
        if schedule == "cosine"
        else None
    )

    out_dir = Path(out) if out is not None else None
    config = {
        "run_name": run_name or (out_dir.name if out_dir else optimizer),
        "dataset": data.name,
        "data_options": data_options,
        "model": spec["name"] if spec else type(model).__name__,
        "optimizer": optimizer,
        "optimizer_hparams": method.hparams,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": method.hparams.get("lr", lr),
        "momentum": momentum,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "seed": seed,
        "metric": metric.name,
        **({"quantization": quantization_config(model)} if quantize is not None else {}),
        **({"activation_l1": activation_l1} if activation_l1 > 0 else {}),
        **({"activation_threshold": activation_threshold} if activation_threshold > 0 else {}),
        "analogsam_version": __version__,
        "torch_version": str(torch.__version__),
    }
    if hwa is not None:
        config["hardware_aware"] = hwa.describe()
    if replicas:
        config["distributed"] = replicas.describe(batch_size)
    if out_dir and main:
        ensure_folder(out_dir, "run folder")
        (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    run = TrainedRun(model, spec, config, [], out_dir)

    step = 0
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        method.begin_epoch(epoch)
        loss_sum, seen, sums = 0.0, 0, None
        order_seed = seed * 100_003 + epoch
        batches = (
            ddp.shard_batches(data.train, shard, local_batch, seed=order_seed)
            if replicas
            else data.train.batches(batch_size, shuffle=True, seed=order_seed, with_indices=True)
        )
        bar = progress_bar(  # off a terminal: only the line per epoch below
            batches,
            total=steps_per_epoch,
            desc=f"{optimizer} epoch {epoch + 1}/{epochs}",
            disable=not (progress and main),
            leave=False,
            unit="batch",
            lines=False,
        )
        for inputs, labels, indices in bar:
            inputs, labels = inputs.to(device), labels.to(device)
            try:
                loss, logits = method.train_step(inputs, labels, indices)
            except NonFiniteError as err:
                kept = f"; the last good checkpoint (epoch {epoch}) is in {out_dir}" if out_dir and epoch else ""
                raise NonFiniteError(
                    f"training {optimizer!r} stopped in epoch {epoch + 1}: {err}{kept}. "
                    "Lower the learning rate or rho, or check the inputs for NaN."
                ) from err
            if scheduler is not None:
                scheduler.step()
            step += 1
            loss_sum += loss.item() * len(labels)
            batch = metric.batch_sums(logits, labels)  # the metric of the step's own forward pass
            sums = list(batch) if sums is None else [a + b for a, b in zip(sums, batch)]
            seen += len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", **{metric.name: metric.format(metric.finish(sums))})
        method.end_epoch(epoch)
        if replicas:  # the epoch over every replica's shard: sums of the sums and counts
            loss_sum, seen, *sums = ddp.sum_over_replicas([loss_sum, seen, *sums])
        row = (
            _epoch_row(
                model,
                data,
                metric,
                output_fn,
                device,
                epoch,
                loss_sum / seen,
                sums,
                method.optimizer.param_groups[0]["lr"],
                start,
            )
            if main
            else None
        )
        if row is not None and logs_sparsity:
            row.update(_sparsity_columns(model, data, device))
        row = ddp.share_from_main(row) if replicas else row  # rank 0 evaluated the (identical) weights
        run.metrics.append(row)
        name, test_value = metric.name, row[f"test_{metric.name}"]
        if progress and main:
            shown = (lambda v: f"{v:.2%}") if metric.percent else metric.format
            tqdm.write(
                f"[{config['run_name']}] epoch {epoch + 1}/{epochs}: loss {row['train_loss']:.4f}, "
                f"train {name} {shown(row[f'train_{name}'])}, test {name} {shown(test_value)}, "
                f"{row['seconds']:.1f} s"
            )
        if out_dir and main:
            _write_log(out_dir / "log.csv", run.metrics)
            save_checkpoint(run, out_dir / CHECKPOINT)
    if hwa is not None:  # the trained network is a plain one again; its input ranges travel with the run
        from analogsam.hardware.hwa import detach_hardware_aware

        run.input_ranges = detach_hardware_aware(model)
    return run


def _epoch_row(model, data, metric, output_fn, device, epoch, train_loss, sums, lr, start) -> dict:
    """One log.csv row: the epoch's training loss and metric, the test (and validation) metric now."""
    name = metric.name
    evaluated = {"metric": metric, "output_fn": output_fn}
    test_value, test_loss = accuracy(model, data.test.batches(1024), device, **evaluated)
    row = {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        f"train_{name}": metric.finish(sums),
        "test_loss": test_loss,
        f"test_{name}": test_value,
        "lr": lr,
    }
    if len(data.val):
        row[f"val_{name}"], row["val_loss"] = accuracy(model, data.val.batches(1024), device, **evaluated)
    row["seconds"] = time.perf_counter() - start
    return row


def _sparsity_columns(model, data, device) -> dict:
    """The test set's activation sparsity: ``test_sparsity`` overall and ``test_sparsity:<module>`` each."""
    measured = activation_sparsity(model, data.test.batches(1024), device)
    return {"test_sparsity": measured["overall"], **{f"test_sparsity:{n}": f for n, f in measured["layers"].items()}}


def _write_log(path: Path, metrics: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in metrics for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(metrics)


def save_checkpoint(run: TrainedRun, path: str | os.PathLike) -> None:
    """Write ``run`` as plain data (tensors, dicts, lists, numbers, strings), loadable with weights_only=True."""
    ranges = run.input_ranges
    if any(hasattr(m, "hwa_model") for m in run.model.modules()):  # (during hardware-aware training)
        from analogsam.hardware.hwa import input_ranges

        ranges = input_ranges(run.model)
    # the training forward's own tensors (input ranges, their counters) are not the network's weights
    state = {k: v.detach().cpu() for k, v in run.model.state_dict().items() if ".hwa_" not in k and "hwa_" != k[:4]}
    # A JSON round trip keeps only plain types, which weights_only loading accepts.
    plain = json.loads(
        json.dumps({"model_spec": run.model_spec, "config": run.config, "metrics": run.metrics, "input_ranges": ranges})
    )
    _atomic_save({"format": "analogsam-checkpoint-1", "state_dict": state, **plain}, Path(path))


def load_run(path: str | os.PathLike, model: nn.Module | None = None) -> TrainedRun:
    """Load a run folder (or a checkpoint file) written by :func:`train`.

    The architecture is rebuilt from the stored spec; for a user's own module that has no spec, pass
    an instance as ``model`` and its weights are loaded into it.
    """
    path = Path(path)
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.exists() and is_seed_group(path):
        raise RunNotFoundError(
            f"{path} is a seed group (one run per training seed), not one run: pass one of its "
            "seed-N folders, or load every run with analogsam.training.load_group"
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


# -- reusing finished runs, and seed groups ------------------------------------------------------------

# Arguments of ``train`` that do not change what is trained (how progress is shown, the device, where it
# is written; a local data folder is dropped from data_options): everything else is part of its identity.
_NOT_IDENTITY = {"progress", "device", "out"}


def train_or_reuse(out: str | os.PathLike, **train_kwargs) -> TrainedRun:
    """Train into ``out`` unless ``out`` already holds the run these settings train.

    Takes :func:`train`'s arguments. After training, the settings (dataset and model names, data
    options, every training setting and optimizer hyperparameter given here) are recorded in
    ``out/train_settings.json`` with their :func:`~analogsam.storage.settings_hash` and the
    checkpoint's digest: the same resume record as ``analyze`` and the result store use. A later call
    with the same settings loads that run; other settings, a changed checkpoint or a missing record
    (e.g. a run interrupted before it finished) retrain and overwrite ``out``. A model given as a
    module has no name to record, so it is always trained.
    """
    out = Path(out)
    settings = _identity(train_kwargs)
    if settings is not None and (out / CHECKPOINT).exists():
        record = matching_record(out / REUSE_RECORD, settings)
        if record is not None and record.get("checkpoint") == file_digest(out / CHECKPOINT):
            run = load_run(out)
            run.reused = True
            return run
    run = train(out=out, **train_kwargs)
    if settings is not None and ddp.is_main_process():  # (under torchrun, rank 0 writes the run folder)
        write_json(
            out / REUSE_RECORD,
            {
                "settings": settings,
                "settings_hash": settings_hash(settings),
                "checkpoint": file_digest(out / CHECKPOINT),
            },
        )
    return run


def _identity(kwargs: dict) -> dict | None:
    """What decides the trained run: the settings of ``kwargs`` with the dataset and model by name."""
    data = kwargs.get("data", "fashion-mnist")
    model = kwargs.get("model", "lenet5")
    if not isinstance(model, (str, dict)):
        return None
    options = {k: v for k, v in (kwargs.get("data_options") or {}).items() if v is not None and k != "root"}
    rest = {k: v for k, v in kwargs.items() if k not in _NOT_IDENTITY | {"data", "model", "data_options"}}
    return {"dataset": data if isinstance(data, str) else data.name, "model": model, "data_options": options, **rest}


def check_seeds(seeds) -> list[int]:
    """``seeds`` as a list of distinct integers >= 0 (also read from text such as ``"0,1,2"``)."""
    if isinstance(seeds, str):
        try:
            seeds = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise InvalidParameterError(
                f"seeds: cannot read {seeds!r} as training seeds; pass integers such as 0,1,2"
            ) from None
    if isinstance(seeds, (bytes, int)) or not hasattr(seeds, "__iter__"):
        raise InvalidParameterError(f"seeds must be a list of training seeds such as [0, 1, 2], got {seeds!r}")
    seeds = [_SETTINGS["seed"].check(s) for s in seeds]
    if not seeds:
        raise InvalidParameterError("seeds is empty: pass at least one training seed, e.g. [0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise InvalidParameterError(f"seeds lists a training seed twice ({seeds}); give each seed once")
    return seeds


def train_seeds(
    model: nn.Module | dict | str = "lenet5",
    data: DatasetSplits | str = "fashion-mnist",
    *,
    seeds,
    out: str | os.PathLike,
    run_name: str | None = None,
    **train_kwargs: Any,
) -> list[TrainedRun]:
    """Train one run per training seed into the seed group ``out``: ``out/seed-0``, ``out/seed-1``, ...

    Takes :func:`train`'s arguments (except ``seed``: each run gets one of ``seeds``). A seed whose
    folder already holds the run these settings train is loaded, not trained again
    (:func:`train_or_reuse`), so an interrupted or extended group (``seeds=[0, 1, 2]`` after
    ``[0, 1]``) trains only what is missing. Every run is named after the group (``run_name``, by
    default the folder's name) and keeps its seed as :attr:`TrainedRun.train_seed`. A dataset given
    by name is loaded once for all seeds. Returns the runs in the order of ``seeds``.
    """
    if "seed" in train_kwargs:
        raise InvalidParameterError(
            "train_seeds() takes seeds=[...], not seed=: each run of the group gets one of the seeds"
        )
    seeds = check_seeds(seeds)
    out = ensure_folder(out, "seed group folder")
    name = run_name or out.name
    if isinstance(data, str):
        options = {k: v for k, v in (train_kwargs.get("data_options") or {}).items() if v is not None}
        data = load_dataset(data, **options)
    runs = []
    for seed in seeds:
        run = train_or_reuse(
            out / SEED_FOLDER.format(seed), model=model, data=data, seed=seed, run_name=name, **train_kwargs
        )
        run.group = name
        runs.append(run)
    return runs


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
