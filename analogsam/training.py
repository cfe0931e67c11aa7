"""The digital training loop: any optimizer of ``analogsam.optim``, a cosine schedule, logs, checkpoints.

Training writes run folders and seed groups; :mod:`analogsam.runs` says what they hold and reads
them (:func:`~analogsam.runs.load_run`, :func:`~analogsam.runs.load_group`, whether a run is
finished). :func:`train` rewrites the checkpoint after every epoch, so a crash or a non-finite loss
keeps the last good epoch; :func:`train_or_reuse` writes the reuse record once the run is trained;
:func:`train_seeds` writes a seed group, reusing the seeds already finished.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from analogsam import __version__
from analogsam import distributed as ddp
from analogsam.data import DatasetSplits, load_dataset
from analogsam.device import resolve_device
from analogsam.errors import InvalidParameterError
from analogsam.models import build_model, make_spec
from analogsam.optim import TRAINING_SETTINGS, NonFiniteError, build_method, resolve_hyperparameters
from analogsam.progress import progress_bar
from analogsam.quantization import (
    ActivationL1,
    activation_sparsity,
    apply_activation_threshold,
    has_activation_modules,
    initialize_clips,
    parse_quantize,
    quantization_config,
    quantize_model,
)
from analogsam.runs import (
    CHECKPOINT,
    REUSE_RECORD,
    TrainedRun,
    is_finished,
    load_run,
    seed_folder,
)
from analogsam.scoring import resolve_metric, score, task_loss
from analogsam.storage import atomic_write, ensure_folder, file_digest, settings_hash, write_json
from analogsam.validation import check_real

_SETTINGS = TRAINING_SETTINGS  # each setting's default, range and meaning, declared once


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
    model: nn.Module | dict | str | None = "lenet5",
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
    init_from: str | os.PathLike | None = None,
    **optimizer_kwargs: Any,
) -> TrainedRun:
    """Train ``model`` on ``data`` digitally and return the trained run.

    Args:
        model: an ``nn.Module``, a model spec dict, or a model name (``mlp``, ``lenet5``, ``resnet20``, ...)
            built for the dataset's input shape; ``None`` with ``init_from``: that run's architecture.
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
        init_from: a full-precision run folder written by :func:`train` whose trained weights this run
            starts from (``--init-from RUN``): quantization-aware training and SAQ from a trained
            full-precision model, as ziplab/SAQ does (its ``--pretrained``; the quantizers' clips are then
            initialised from the trained weights and the first batch's activations, not from random ones).
            ``model`` is that run's architecture (a name or spec must match it; a module gets its weights);
            a thresholded ReLU it was trained with is kept. The config records the run and its
            checkpoint's digest. ``None`` (default): the model starts from its random initialisation.

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
    if init_from is not None:
        model = _start_from(init_from, model)
    elif model is None:
        raise InvalidParameterError("train: model=None needs init_from (the run whose architecture it takes)")
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


def _start_from(init_from, model) -> _Start:
    """The model of ``train(init_from=...)``: the run's trained full-precision network (see :func:`train`)."""
    if isinstance(init_from, TrainedRun) or not isinstance(init_from, (str, os.PathLike)):
        raise InvalidParameterError(
            f"init_from must be the folder of a run written by train (e.g. runs/fp), got {type(init_from).__name__}"
        )
    folder = Path(init_from)
    run = load_run(folder, model=model if isinstance(model, nn.Module) else None)
    if run.config.get("quantization"):
        raise InvalidParameterError(
            f"init_from: {folder} is a quantized run; start from a full-precision run (trained without --quantize)"
        )
    wanted = model if isinstance(model, str) else (model.get("name") if isinstance(model, dict) else None)
    stored = (run.model_spec or {}).get("name")
    if wanted is not None and stored is not None and wanted != stored:
        raise InvalidParameterError(
            f"init_from: {folder} holds a {stored!r} network, not {wanted!r}; pass model={stored!r} (or leave "
            "--model out) to start from it"
        )
    record = {
        "run": str(folder),
        "checkpoint": file_digest(folder / CHECKPOINT if folder.is_dir() else folder),
        "test_accuracy": (run.metrics[-1] if run.metrics else {}).get("test_accuracy"),
        "activation_threshold": run.config.get("activation_threshold", 0.0),
    }
    return _Start(run.model.train(), run.model_spec, record)


@dataclass
class _Start:
    """A trained network to start from, with its spec and the record of where it came from."""

    model: nn.Module
    spec: dict | None
    record: dict


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
    start = model if isinstance(model, _Start) else None
    model, spec = (start.model, start.spec) if start else _resolve_model(model, data)
    if start and not activation_threshold:  # the start's thresholded ReLUs stay what they are
        activation_threshold = start.record["activation_threshold"]
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
    if replicas and quantize is not None:
        # LIQ initialises its clips at the first forward, from that batch: each replica would get its own
        # (different activation clips for ever, the gradients being averaged). Initialised here, on each
        # replica's first batch, they are then overwritten with rank 0's by the broadcast of ddp.wrap.
        first = ddp.shard_indices(len(data.train), replicas.rank, replicas.world_size, seed)
        inputs = next(iter(ddp.shard_batches(data.train, first, local_batch, seed=seed * 100_003)))[0]
        initialize_clips(model, inputs.to(device))
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
        **({"init_from": start.record} if start else {}),
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
    if settings is not None and is_finished(out, settings):
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
    start = kwargs.get("init_from")
    if not isinstance(model, (str, dict)) and not (model is None and start is not None):
        return None
    options = {k: v for k, v in (kwargs.get("data_options") or {}).items() if v is not None and k != "root"}
    rest = {k: v for k, v in kwargs.items() if k not in _NOT_IDENTITY | {"data", "model", "data_options"}}
    if start is not None:  # the start by its trained weights, not its place: a retrained start retrains this
        folder = Path(start)  # one, a moved study folder does not
        file = folder / CHECKPOINT if folder.is_dir() else folder
        rest["init_from"] = {"checkpoint": file_digest(file) if file.exists() else None}
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
    default the folder's name) and keeps its seed as :attr:`~analogsam.runs.TrainedRun.train_seed`. A dataset given
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
        run = train_or_reuse(seed_folder(out, seed), model=model, data=data, seed=seed, run_name=name, **train_kwargs)
        run.group = name
        runs.append(run)
    return runs
