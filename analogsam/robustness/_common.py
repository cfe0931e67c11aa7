"""Plumbing shared by ``analogsam.robustness.sharpness``, ``analogsam.robustness.perturbations`` and ``analogsam.studies.flatness``.

Every probe in those modules takes any ``torch.nn.Module`` and any re-iterable of
``(inputs, labels)`` batches, works on the first ``num_batches`` of them in eval mode, and leaves
the model exactly as it found it (weights, buffers, train/eval flags).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from analogsam.validation import check_choice, check_int, check_levels, check_real  # noqa: F401

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: The layer types aihwkit's ``convert_to_analog`` maps onto analog tiles: their ``weight`` is what
#: sits in the crossbar. Biases stay digital by default in aihwkit 1.1.0 (``mapping.digital_bias``).
ANALOG_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

PARAMETER_SETS = ("all", "weights")


# --- randomness --------------------------------------------------------------------------------


def make_generator(seed: int | None = 0, generator: torch.Generator | None = None) -> torch.Generator:
    """The generator to draw from: ``generator`` if given, else a fresh one seeded with ``seed``.

    ``seed=None`` (and no generator) draws from torch's global generator, so ``torch.manual_seed``
    governs it.
    """
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    if seed is None:
        return torch.default_generator
    seed = check_int("seed", seed, low=0)
    return torch.Generator().manual_seed(seed)


def derived_seed(seed: int, *keys: int) -> int:
    """An independent 63-bit seed for sub-stream ``keys`` of ``seed`` (numpy's SeedSequence)."""
    state = np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def randn_like(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(p.shape, generator=generator, device=generator.device, dtype=p.dtype).to(p.device)


def rand_like(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(p.shape, generator=generator, device=generator.device, dtype=torch.float64).to(p.device)


# --- parameters --------------------------------------------------------------------------------


def select_parameters(model: nn.Module, parameters: str = "all") -> list[tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` pairs a probe perturbs.

    ``"all"``: every parameter with ``requires_grad`` (the Θ of SAM, ASAM and Büchel et al.).
    ``"weights"``: the ``weight`` of every Linear/Conv1d/2d/3d layer, i.e. the matrices aihwkit puts
    on analog tiles; biases, BatchNorm and embeddings are left out.
    """
    check_choice("parameters", parameters, PARAMETER_SETS)
    if parameters == "all":
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    else:
        named, seen = [], set()
        for module_name, module in model.named_modules():
            weight = getattr(module, "weight", None)
            if isinstance(module, ANALOG_LAYER_TYPES) and isinstance(weight, nn.Parameter):
                if id(weight) not in seen:
                    seen.add(id(weight))
                    named.append((f"{module_name}.weight" if module_name else "weight", weight))
    if not named:
        hint = " (pass parameters='all')" if parameters == "weights" else ""
        raise ValueError(f"the model has no parameters to perturb for parameters={parameters!r}{hint}")
    return named


def is_weight_name(name: str) -> bool:
    """ASAM's rule for which tensors get the scale |w| + η: parameters named ``weight``."""
    return name.rsplit(".", 1)[-1] == "weight"


def dot(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(xs, ys)))


def norm(xs: Sequence[torch.Tensor]) -> float:
    return math.sqrt(dot(xs, xs))


@contextlib.contextmanager
def preserved(model: nn.Module, *, eval_mode: bool = True):
    """Put ``model`` in eval mode and restore its weights, buffers and modes bit-exactly on exit."""
    tensors = list(model.parameters()) + list(model.buffers())
    saved = [t.detach().clone() for t in tensors]
    modes = [(m, m.training) for m in model.modules()]
    if eval_mode:
        model.eval()
    try:
        yield model
    finally:
        with torch.no_grad():
            for t, s in zip(tensors, saved):
                t.copy_(s)
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def restoring(params: Sequence[torch.Tensor]):
    """Restore ``params`` bit-exactly on exit, whatever the block did to them in place."""
    saved = [p.detach().clone() for p in params]
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


@contextlib.contextmanager
def shifted(params: Sequence[torch.Tensor], deltas: Sequence[torch.Tensor]):
    """Temporarily add ``deltas`` to ``params`` in place; the originals come back bit-exactly."""
    with restoring(params):
        with torch.no_grad():
            for p, d in zip(params, deltas):
                p.add_(d)
        yield


# --- batches -----------------------------------------------------------------------------------


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
    if isinstance(batches, (tuple, list)) and len(batches) == 2 and isinstance(batches[0], torch.Tensor) \
            and isinstance(batches[1], torch.Tensor) and batches[0].shape[:1] == batches[1].shape[:1] \
            and batches[1].ndim <= 1:
        raise ValueError("batches must be an iterable of (inputs, labels) pairs, not one pair; "
                         "wrap a single batch in a list: [(inputs, labels)]")
    taken = []
    for batch in batches:
        if num_batches is not None and len(taken) == num_batches:
            break
        try:
            inputs, labels = batch[0], batch[1]
        except (TypeError, IndexError, KeyError):
            raise ValueError(f"each batch must be an (inputs, labels) pair, got {type(batch).__name__}") from None
        taken.append((_to(inputs, device), _to(labels, device)))
    if not taken:
        raise ValueError("batches is empty: the probes need at least one (inputs, labels) batch")
    return taken


def batch_size(labels) -> int:
    if isinstance(labels, torch.Tensor) and labels.ndim >= 1:
        return int(labels.shape[0])
    try:
        return len(labels)
    except TypeError:
        return 1


def batch_weights(batches: Sequence[tuple]) -> list[float]:
    """Each batch's share of the samples, so the loss is a per-sample mean over all batches."""
    sizes = [batch_size(y) for _, y in batches]
    total = sum(sizes)
    return [s / total for s in sizes]


def resolve_loss(loss_fn: LossFn | None) -> LossFn:
    return nn.functional.cross_entropy if loss_fn is None else loss_fn


def mean_loss(model: nn.Module, batches, weights, loss_fn) -> float:
    with torch.no_grad():
        return float(sum(w * float(loss_fn(model(x), y)) for (x, y), w in zip(batches, weights)))


def loss_and_accuracy(model: nn.Module, batches, weights, loss_fn) -> tuple[float, float]:
    """Per-sample mean loss and top-1 accuracy (a fraction in [0, 1]) on ``batches``."""
    loss, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for (x, y), w in zip(batches, weights):
            out = model(x)
            loss += w * float(loss_fn(out, y))
            correct += int((out.argmax(dim=1) == y).sum())
            total += batch_size(y)
    return loss, correct / total


def loss_and_grads(model, batches, weights, loss_fn, params) -> tuple[float, list[torch.Tensor]]:
    """Mean loss and its gradient w.r.t. ``params`` (``.grad`` fields are left untouched)."""
    grads = [torch.zeros_like(p) for p in params]
    loss = 0.0
    for (x, y), w in zip(batches, weights):
        batch_loss = loss_fn(model(x), y) * w
        loss += float(batch_loss.detach())
        if not batch_loss.requires_grad:
            continue
        for acc, g in zip(grads, torch.autograd.grad(batch_loss, params, allow_unused=True)):
            if g is not None:
                acc.add_(g)
    return loss, grads


def hessian_vector_product(model, batches, weights, loss_fn, params, vector) -> list[torch.Tensor]:
    """H·v of the mean loss by double backward (Pearlmutter's trick, exact up to rounding)."""
    result = [torch.zeros_like(p) for p in params]
    for (x, y), w in zip(batches, weights):
        batch_loss = loss_fn(model(x), y) * w
        if not batch_loss.requires_grad:
            continue
        grads = torch.autograd.grad(batch_loss, params, create_graph=True, allow_unused=True)
        pairs = [(g, v) for g, v in zip(grads, vector) if g is not None]
        inner = sum((g * v).sum() for g, v in pairs)
        if not isinstance(inner, torch.Tensor) or not inner.requires_grad:
            continue  # the loss is linear in these parameters: H = 0 here
        for acc, hv in zip(result, torch.autograd.grad(inner, params, allow_unused=True)):
            if hv is not None:
                acc.add_(hv)
    return result


def mean_std_stderr(samples: Sequence[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation (ddof=1) and standard error of the mean; nan when n < 2."""
    arr = np.asarray(samples, dtype=float)
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, float("nan"), float("nan")
    std = float(arr.std(ddof=1))
    return mean, std, std / math.sqrt(arr.size)
