"""The one accuracy-and-loss loop: top-1 accuracy and mean loss of any forward callable over batches.

Used by the training loop (test and validation accuracy per epoch), the Monte-Carlo evaluation
(digital accuracy and every analog forward, aihwkit's tiles or the fast engine) and the robustness
probes (clean and perturbed accuracy). A forward callable is anything that maps inputs to logits:
a ``torch.nn.Module``, an analog model, the fast engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from analogsam.errors import InvalidParameterError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def score(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable, *,
          loss_fn: LossFn | None = None, weights: Sequence[float] | None = None,
          device: str | torch.device | None = None) -> tuple[float, float]:
    """(accuracy, mean loss) of ``forward`` over ``(inputs, labels, ...)`` batches (extra items ignored).

    Accuracy is the fraction of samples whose largest logit is the label. The loss is per sample:

    - by default cross-entropy summed over every sample and divided by their number;
    - with ``loss_fn`` (a batch-mean loss such as ``nn.functional.cross_entropy``) and ``weights``
      (each batch's share of the samples), Σ_b w_b · loss_fn(forward(x_b), y_b): the same mean,
      accumulated the way the robustness probes accumulate their losses and gradients, so their
      clean and perturbed losses add up identically.

    ``device``: where to move each batch first (None: leave it). Gradients are off; the caller sets
    eval/train mode. Raises :class:`~analogsam.errors.InvalidParameterError` when there are no samples.
    """
    if (loss_fn is None) != (weights is None):
        raise InvalidParameterError("score() takes loss_fn and weights together (or neither, for cross-entropy)")
    correct, total, loss = 0, 0, 0.0
    for index, (inputs, labels, *_) in enumerate(batches):
        if device is not None:
            inputs, labels = inputs.to(device), labels.to(device)
        logits = forward(inputs)
        if loss_fn is None:
            loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        else:
            loss += weights[index] * float(loss_fn(logits, labels))
        correct += (logits.argmax(1) == labels).sum().item()
        total += len(labels)
    if total == 0:
        raise InvalidParameterError("no samples to score: the batches were empty; pass at least one (inputs, labels) batch")
    return correct / total, (loss / total if loss_fn is None else loss)
