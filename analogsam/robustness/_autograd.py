"""The loss on fixed batches as a function of the weights: values, gradients, Hessian-vector products,
and temporary moves of the weights that always come back bit-exactly."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel


def dot(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(xs, ys)))


def norm(xs: Sequence[torch.Tensor]) -> float:
    return math.sqrt(dot(xs, xs))


@contextlib.contextmanager
def preserved(model: nn.Module, *, eval_mode: bool = True):
    """Put ``model`` in eval mode and restore its weights, buffers and modes bit-exactly on exit."""
    tensors = list(model.parameters()) + list(model.buffers())
    modes = [(m, m.training) for m in model.modules()]
    with restoring(tensors):
        if eval_mode:
            model.eval()
        try:
            yield model
        finally:
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


def mean_loss(model: nn.Module, batches, weights, loss_fn) -> float:
    """Σ_b w_b · loss_fn(model(x_b), y_b): the per-sample mean when ``weights`` are the batch shares.

    Any scalar loss works here (no accuracy is taken), e.g. a quadratic form returned by the model.
    """
    with torch.no_grad():
        return float(sum(w * float(loss_fn(model(x), y)) for (x, y), w in zip(batches, weights)))


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
        # The fused attention kernels (flash, memory-efficient) have no second derivative; the math
        # one computes the same attention and can be differentiated twice.
        with sdpa_kernel(SDPBackend.MATH):
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
