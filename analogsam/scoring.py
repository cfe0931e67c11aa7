"""The one score loop, what a model's output means, and the metrics it can be scored by.

Three things every consumer of a model's output shares, so that training, the optimizers' extra
terms, the Monte-Carlo evaluation and the robustness probes read an output the same way:

- :func:`model_output`: the prediction tensor in whatever a model returns: a tensor, a tuple or
  list (its first element), a dict or a HuggingFace-style output object (its ``logits``), or what
  a user's ``output_fn`` picks.
- :class:`Metric`: a metric declared as data: its name, whether higher is better, a per-batch
  accumulator of exact sums (``(sum, count)`` for a mean) so that batches of any sizes aggregate to
  the number one big batch gives, the loss training uses with it, and its label for reports.
  :func:`resolve_metric` turns a name (``"accuracy"``, ``"top5"``, ``"cross_entropy"``,
  ``"perplexity"``, ``"mse"``, ``"r2"``), a :class:`Metric` or a user callable into one.
- :func:`score`: the metric and the mean loss of any forward callable over batches. A forward
  callable is anything that maps inputs to an output: a ``torch.nn.Module``, an analog model, the
  fast engine. It is the loop of the training loop (test and validation metric per epoch), of the
  evaluation (digital value and every analog forward) and of the probes (clean and perturbed).

Shapes. Classification metrics take class scores with the classes in the last dimension: logits
``(B, C)`` against integer targets ``(B,)``, or a sequence model's ``(B, T, V)`` against ``(B, T)``
(every token counts once; targets equal to the metric's ``ignore_index``, PyTorch's -100 by
default, are padding and count nowhere). Regression metrics take predictions of the targets' shape
(``(B, 1)`` against ``(B,)`` too).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from analogsam.errors import InvalidParameterError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OutputFn = Callable[[object], torch.Tensor]

#: PyTorch's default ``ignore_index`` of cross-entropy: targets with this value are padding.
PAD_INDEX = -100

__all__ = [
    "CLASSIFICATION",
    "METRIC_NAMES",
    "Metric",
    "PAD_INDEX",
    "REGRESSION",
    "Score",
    "accuracy",
    "cross_entropy",
    "mean_squared_error",
    "model_output",
    "perplexity",
    "r_squared",
    "resolve_metric",
    "score",
    "sequence_cross_entropy",
    "task_loss",
    "top_k",
]

#: The two tasks a metric belongs to; the task decides the training loss (:func:`task_loss`).
CLASSIFICATION, REGRESSION = "classification", "regression"


# --- model outputs -------------------------------------------------------------------------------


def model_output(output, output_fn: OutputFn | None = None) -> torch.Tensor:
    """The prediction tensor in a model's ``output``.

    ``output_fn(output)`` when given; else the output itself if it is a tensor, its ``"logits"`` if
    it is a dict (HuggingFace's ``ModelOutput`` is one), its ``.logits`` attribute (an output
    object), or the first element of a tuple or list (e.g. an RNN's ``(output, state)``), taken by
    the same rules. Anything else raises a one-line
    :class:`~analogsam.errors.InvalidParameterError` that says to pass ``output_fn``.
    """
    if output_fn is not None:
        picked = output_fn(output)
        if not isinstance(picked, torch.Tensor):
            raise InvalidParameterError(
                f"output_fn returned a {type(picked).__name__}, not a tensor; make it return "
                "the prediction tensor (e.g. lambda out: out['logits'])"
            )
        return picked
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if "logits" in output:
            return model_output(output["logits"])
        raise InvalidParameterError(
            f"the model returned a dict without 'logits' (keys: {', '.join(map(str, output))}); "
            "pass output_fn= to pick the prediction, e.g. output_fn=lambda out: out['scores']"
        )
    if hasattr(output, "logits"):
        return model_output(output.logits)
    if isinstance(output, (tuple, list)) and output:
        return model_output(output[0])
    raise InvalidParameterError(
        f"cannot take a prediction from a model output of type {type(output).__name__}; "
        "return a tensor, a tuple, a dict with 'logits', or pass output_fn="
    )


# --- metrics -------------------------------------------------------------------------------------


def _ratio(sums: Sequence[float]) -> float:
    return sums[0] / sums[1]


@dataclass(frozen=True)
class Metric:
    """A metric as data.

    Attributes:
        name: the ``metric`` column of result rows and the suffix of training's log columns.
        higher_is_better: the direction reports and "best" markings follow.
        batch_sums: ``(predictions, targets) -> tuple of sums`` of one batch; the sums of all batches
            add up (a mean's ``(sum, count)``), so any batching gives the value of one big batch.
        finish: the value from the added-up sums (default: sum / count).
        label: how reports name it, e.g. ``"top-5 accuracy"``.
        percent: reports show it as a percentage (accuracies).
        task: ``"classification"`` (trained with cross-entropy) or ``"regression"`` (trained with
            mean squared error); see :func:`task_loss`.
        ignore_index: the padding target of classification metrics (never counted).
    """

    name: str
    higher_is_better: bool
    batch_sums: Callable[[torch.Tensor, torch.Tensor], tuple]
    finish: Callable[[Sequence[float]], float] = _ratio
    label: str = ""
    percent: bool = False
    task: str = CLASSIFICATION
    ignore_index: int = PAD_INDEX

    @property
    def description(self) -> str:
        """``"perplexity (lower is better)"``: the label reports put on the metric's axis."""
        unit = " %" if self.percent else ""
        return f"{self.label or self.name}{unit} ({'higher' if self.higher_is_better else 'lower'} is better)"

    def format(self, value: float | None) -> str:
        """The value as reports print it: a percentage with two decimals, or four significant digits."""
        if value is None:
            return "—"
        return f"{100 * value:.2f}" if self.percent else f"{value:.4g}"

    def value(self, predictions: torch.Tensor, targets: torch.Tensor) -> float:
        """The metric of one batch."""
        return self.finish(self.batch_sums(predictions, targets))


def _classes_and_targets(metric: str, predictions: torch.Tensor, targets: torch.Tensor, ignore_index: int):
    """Class scores flattened to ``(N, C)`` and targets to ``(N,)``, with the mask of non-padding targets."""
    if (
        predictions.ndim < 2
        or tuple(predictions.shape[:-1]) != tuple(targets.shape)
        or targets.is_floating_point()
        or targets.is_complex()
    ):
        raise InvalidParameterError(
            f"metric {metric!r} needs class scores (B, C) or (B, T, V) with integer targets (B,) or (B, T), got "
            f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} ({targets.dtype}); "
            "for regression outputs use metric='mse' or 'r2', or pass output_fn= to pick the logits"
        )
    flat, labels = predictions.reshape(-1, predictions.shape[-1]), targets.reshape(-1)
    return flat, labels, labels != ignore_index


def _correct_in_top(metric: str, k: int, ignore_index: int):
    def batch_sums(predictions, targets):
        flat, labels, keep = _classes_and_targets(metric, predictions, targets, ignore_index)
        if k == 1:
            # argmax of the class dimension: for (B, C) logits the comparison of the original loop
            hit = flat.argmax(-1) == labels
        else:
            if k > flat.shape[-1]:
                raise InvalidParameterError(
                    f"metric {metric!r} needs at least {k} classes, the output has {flat.shape[-1]}; choose a smaller k"
                )
            hit = (flat.topk(k, dim=-1).indices == labels.unsqueeze(-1)).any(-1)
        if predictions.ndim == 2 and ignore_index == PAD_INDEX and not bool((~keep).any()):
            return int(hit.sum().item()), len(targets)
        return int((hit & keep).sum().item()), int(keep.sum().item())

    return batch_sums


def _token_cross_entropy(metric: str, ignore_index: int):
    def batch_sums(predictions, targets):
        flat, labels, keep = _classes_and_targets(metric, predictions, targets, ignore_index)
        total = nn.functional.cross_entropy(flat.double(), labels, ignore_index=ignore_index, reduction="sum")
        return float(total.item()), int(keep.sum().item())

    return batch_sums


def _regression_pair(metric: str, predictions: torch.Tensor, targets: torch.Tensor):
    if predictions.ndim == targets.ndim + 1 and predictions.shape[-1] == 1:
        predictions = predictions.squeeze(-1)  # a (B, 1) head against (B,) targets
    if tuple(predictions.shape) != tuple(targets.shape):
        raise InvalidParameterError(
            f"metric {metric!r} needs predictions of the targets' shape, got {tuple(predictions.shape)} and "
            f"{tuple(targets.shape)}; for class scores use metric='accuracy', 'cross_entropy' or 'perplexity'"
        )
    return predictions.double(), targets.double()


def _squared_error_sums(predictions, targets):
    p, y = _regression_pair("mse", predictions, targets)
    return float(((p - y) ** 2).sum().item()), y.numel()


def _r2_sums(predictions, targets):
    p, y = _regression_pair("r2", predictions, targets)
    return float(((p - y) ** 2).sum().item()), float(y.sum().item()), float((y * y).sum().item()), y.numel()


def _r2_finish(sums: Sequence[float]) -> float:
    # R² = 1 − SSE / SST with SST = Σy² − (Σy)²/n, from sums that add over batches exactly.
    sse, sum_y, sum_y2, n = sums
    sst = sum_y2 - sum_y * sum_y / n
    return 1.0 - sse / sst if sst > 0 else math.nan  # constant targets: R² is undefined


def _check_ignore_index(ignore_index) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise InvalidParameterError(
            f"ignore_index must be an integer target value (the padding token), got {ignore_index!r}"
        )
    return ignore_index


def accuracy(ignore_index: int = PAD_INDEX) -> Metric:
    """Top-1 accuracy: the fraction of samples (tokens) whose largest score is the target."""
    return top_k(1, ignore_index)


def top_k(k: int, ignore_index: int = PAD_INDEX) -> Metric:
    """Top-k accuracy: the fraction of samples (tokens) whose target is among the k largest scores."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidParameterError(f"top-k accuracy needs an integer k >= 1, got k={k!r}; e.g. metric='top5'")
    ignore_index = _check_ignore_index(ignore_index)
    name = "accuracy" if k == 1 else f"top{k}"
    return Metric(
        name,
        True,
        _correct_in_top(name, k, ignore_index),
        label="accuracy" if k == 1 else f"top-{k} accuracy",
        percent=True,
        ignore_index=ignore_index,
    )


def cross_entropy(ignore_index: int = PAD_INDEX) -> Metric:
    """Mean cross-entropy (nats) per sample, or per token of a sequence model, padding left out."""
    ignore_index = _check_ignore_index(ignore_index)
    return Metric(
        "cross_entropy",
        False,
        _token_cross_entropy("cross_entropy", ignore_index),
        label="cross-entropy",
        ignore_index=ignore_index,
    )


def perplexity(ignore_index: int = PAD_INDEX) -> Metric:
    """Token-level perplexity exp(mean cross-entropy) over every non-padding token (a language
    model's standard number); logits (B, T, V) against targets (B, T), or (B, V) against (B,)."""
    ignore_index = _check_ignore_index(ignore_index)
    token_ce = _token_cross_entropy("perplexity", ignore_index)

    def batch_sums(predictions, targets):
        if predictions.ndim < 2:
            raise InvalidParameterError(
                f"metric 'perplexity' needs logits (B, V) or (B, T, V), got an output of "
                f"shape {tuple(predictions.shape)}; use metric='mse' or 'r2' for "
                "regression outputs"
            )
        return token_ce(predictions, targets)

    return Metric(
        "perplexity",
        False,
        batch_sums,
        finish=lambda s: math.exp(s[0] / s[1]),
        label="perplexity",
        ignore_index=ignore_index,
    )


def mean_squared_error() -> Metric:
    """Mean squared error over every predicted value (regression)."""
    return Metric("mse", False, _squared_error_sums, label="mean squared error", task=REGRESSION)


def r_squared() -> Metric:
    """Coefficient of determination R² = 1 − SSE/SST over every predicted value, from exact sums
    (SSE, Σy, Σy², n), pooled over all outputs of a multi-output regression; NaN for constant targets."""
    return Metric("r2", True, _r2_sums, finish=_r2_finish, label="R²", task=REGRESSION)


_NAMED: dict[str, Callable[[], Metric]] = {
    "accuracy": accuracy,
    "top1": accuracy,
    "cross_entropy": cross_entropy,
    "loss": cross_entropy,
    "perplexity": perplexity,
    "ppl": perplexity,
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
    "r2": r_squared,
}
#: The metric names :func:`resolve_metric` (and ``--metric``) accept, besides ``topK`` for any k.
METRIC_NAMES = ("accuracy", "top5", "cross_entropy", "perplexity", "mse", "r2")


def _user_metric(fn: Callable) -> Metric:
    name = getattr(fn, "__name__", type(fn).__name__)

    def batch_sums(predictions, targets):
        pair = fn(predictions, targets)
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise InvalidParameterError(
                f"metric {name!r} returned {pair!r}; a metric callable must return a (sum, count) pair of one batch"
            )
        return tuple(float(v) for v in pair)

    return Metric(name, True, batch_sums, label=name)


def resolve_metric(metric=None) -> Metric:
    """A :class:`Metric` from a name, a Metric, or a callable ``(predictions, targets) -> (sum, count)``.

    Names: ``"accuracy"`` (the default, also ``None``), ``"top5"`` (``"topK"``/``"top-K"`` for any K),
    ``"cross_entropy"`` (``"loss"``), ``"perplexity"``, ``"mse"``, ``"r2"``. A callable's value is
    Σ sums / Σ counts over the batches, higher is better and trained with cross-entropy; build a
    :class:`Metric` yourself to say otherwise. An unknown name or a bad k raises a one-line
    :class:`~analogsam.errors.InvalidParameterError`.
    """
    if metric is None:
        return accuracy()
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        key = metric.strip().lower().replace("-", "_")
        if key in _NAMED:
            return _NAMED[key]()
        found = re.fullmatch(r"top_?(\w+)", key)
        if found:
            if not found.group(1).isdigit():
                raise InvalidParameterError(
                    f"metric {metric!r} needs a number for k, e.g. 'top5' (or pass analogsam.scoring.top_k(5))"
                )
            return top_k(int(found.group(1)))
        raise InvalidParameterError(
            f"unknown metric {metric!r}; choose one of {', '.join(METRIC_NAMES)} (or topK "
            "for any K), a Metric, or a callable returning (sum, count)"
        )
    if callable(metric):
        return _user_metric(metric)
    raise InvalidParameterError(f"metric must be a name such as 'accuracy', a Metric or a callable, got {metric!r}")


# --- losses --------------------------------------------------------------------------------------


def sequence_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = PAD_INDEX, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy with the classes in the last dimension: (B, C) logits against (B,) targets,
    exactly ``nn.functional.cross_entropy``; (B, T, V) against (B, T) per token, padding left out."""
    if logits.ndim > 2:
        logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    return nn.functional.cross_entropy(logits, targets, ignore_index=ignore_index, reduction=reduction)


def _mse(predictions: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    if predictions.ndim == targets.ndim + 1 and predictions.shape[-1] == 1:
        predictions = predictions.squeeze(-1)
    return nn.functional.mse_loss(predictions, targets.to(predictions.dtype), reduction=reduction)


def task_loss(metric=None) -> LossFn:
    """The batch-mean training loss that goes with ``metric``: cross-entropy (per token for
    sequences, padding left out) for classification metrics, mean squared error for regression
    metrics (``"mse"``, ``"r2"``). Training minimises it; :func:`score` reports its mean."""
    metric = resolve_metric(metric)
    if metric.task == REGRESSION:
        return _mse
    if metric.ignore_index == PAD_INDEX:
        return sequence_cross_entropy
    return lambda logits, targets: sequence_cross_entropy(logits, targets, metric.ignore_index)


def _loss_sums(metric: Metric, predictions: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
    """(summed loss, count) of one batch: the training loss's per-sample (per-token) sum."""
    if metric.task == REGRESSION:
        return float(_mse(predictions, targets, reduction="sum").item()), targets.numel()
    if predictions.ndim == 2 and metric.ignore_index == PAD_INDEX:
        # The original loop's arithmetic, kept so that its numbers stay bit for bit.
        return nn.functional.cross_entropy(predictions, targets, reduction="sum").item(), len(targets)
    total = sequence_cross_entropy(predictions, targets, metric.ignore_index, reduction="sum")
    return total.item(), int((targets != metric.ignore_index).sum().item())


# --- the loop ------------------------------------------------------------------------------------


class Score(NamedTuple):
    """What :func:`score` measures: the metric's value and the mean loss (unpacks as a pair)."""

    value: float
    loss: float


@torch.no_grad()
def score(
    forward: Callable[[torch.Tensor], object],
    batches: Iterable,
    *,
    metric=None,
    output_fn: OutputFn | None = None,
    loss_fn: LossFn | None = None,
    weights: Sequence[float] | None = None,
    device: str | torch.device | None = None,
) -> Score:
    """(metric value, mean loss) of ``forward`` over ``(inputs, targets, ...)`` batches (extra items ignored).

    ``metric``: what :func:`resolve_metric` takes (top-1 accuracy by default); its per-batch sums
    are added over all batches and finished once, so the value does not depend on the batching.
    ``output_fn``: picks the prediction from the forward's output (see :func:`model_output`).

    The loss is per sample (per token of a sequence):

    - by default the metric's training loss (:func:`task_loss`: cross-entropy, or squared error for
      regression metrics) summed over every sample and divided by their number;
    - with ``loss_fn`` (a batch-mean loss such as ``nn.functional.cross_entropy``) and ``weights``
      (each batch's share of the samples), Σ_b w_b · loss_fn(prediction_b, y_b): the same mean,
      accumulated the way the robustness probes accumulate their losses and gradients, so their
      clean and perturbed losses add up identically.

    ``device``: where to move each batch first (None: leave it). Gradients are off; the caller sets
    eval/train mode. Raises :class:`~analogsam.errors.InvalidParameterError` when there are no samples.
    """
    if (loss_fn is None) != (weights is None):
        raise InvalidParameterError("score() takes loss_fn and weights together (or neither, for the metric's loss)")
    metric = resolve_metric(metric)
    sums: list | None = None
    loss, loss_count = 0.0, 0
    for index, (inputs, labels, *_) in enumerate(batches):
        if device is not None:
            inputs, labels = inputs.to(device), labels.to(device)
        predictions = model_output(forward(inputs), output_fn)
        batch = metric.batch_sums(predictions, labels)  # first: it says what a wrong shape means
        if loss_fn is None:
            batch_loss, count = _loss_sums(metric, predictions, labels)
            loss += batch_loss
            loss_count += count
        else:
            loss += weights[index] * float(loss_fn(predictions, labels))
        sums = list(batch) if sums is None else [a + b for a, b in zip(sums, batch)]
    if sums is None or sums[-1] == 0:
        raise InvalidParameterError(
            "no samples to score: the batches were empty (or all padding); pass at least one (inputs, targets) batch"
        )
    return Score(metric.finish(sums), loss / loss_count if loss_fn is None else loss)
