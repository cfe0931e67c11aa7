"""The data a probe measures on: the first ``num_batches`` ``(inputs, labels)`` batches, held fixed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.scoring import model_output, task_loss
from analogsam.validation import check_int

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _to(x, device):
    return x.to(device) if isinstance(x, torch.Tensor) else x


def take_batches(batches, num_batches: int | None, device) -> list[tuple]:
    """The first ``num_batches`` ``(inputs, labels)`` batches (all when None), on ``device``.

    They are held in a list so every evaluation of a probe sees the very same samples, even when
    the source is a shuffling DataLoader.
    """
    if num_batches is not None:
        num_batches = check_int("num_batches", num_batches, low=1)
    if (
        isinstance(batches, (tuple, list))
        and len(batches) == 2
        and isinstance(batches[0], torch.Tensor)
        and isinstance(batches[1], torch.Tensor)
        and batches[0].shape[:1] == batches[1].shape[:1]
        and batches[1].ndim <= 1
    ):
        raise InvalidParameterError(
            "batches must be an iterable of (inputs, labels) pairs, not one pair; "
            "wrap a single batch in a list: [(inputs, labels)]"
        )
    taken = []
    for batch in batches:
        if num_batches is not None and len(taken) == num_batches:
            break
        try:
            inputs, labels = batch[0], batch[1]
        except (TypeError, IndexError, KeyError):
            raise InvalidParameterError(
                f"each batch must be an (inputs, labels) pair, got {type(batch).__name__}"
            ) from None
        taken.append((_to(inputs, device), _to(labels, device)))
    if not taken:
        raise InvalidParameterError("batches is empty: the probes need at least one (inputs, labels) batch")
    return taken


def batch_size(labels) -> int:
    if isinstance(labels, torch.Tensor) and labels.ndim >= 1:
        return int(labels.shape[0])
    try:
        return len(labels)
    except TypeError:
        return 1


def sample_count(batches: Sequence[tuple]) -> int:
    return sum(batch_size(y) for _, y in batches)


def batch_weights(batches: Sequence[tuple]) -> list[float]:
    """Each batch's share of the samples, so the loss is a per-sample mean over all batches."""
    sizes = [batch_size(y) for _, y in batches]
    total = sum(sizes)
    return [s / total for s in sizes]


def resolve_loss(loss_fn: LossFn | None, metric=None) -> LossFn:
    """The batch-mean loss of (prediction, targets): ``loss_fn``, else the task loss of ``metric``
    (:func:`analogsam.scoring.task_loss`: cross-entropy, per token for sequence logits (B, T, V),
    when neither is given)."""
    return task_loss(metric) if loss_fn is None else loss_fn


def output_loss(loss_fn: LossFn, output_fn=None) -> LossFn:
    """``loss_fn`` of the prediction in a model's raw output (:func:`analogsam.scoring.model_output`):
    what the autograd helpers call with ``model(x)``."""
    return lambda output, targets: loss_fn(model_output(output, output_fn), targets)
