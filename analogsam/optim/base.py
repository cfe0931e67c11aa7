"""The training-method interface the training loop calls, and plain SGD/AdamW behind it."""

from __future__ import annotations

import abc
import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from analogsam.scoring import model_output
from analogsam.validation import check_choice

from ._common import global_grad_norm, non_finite
from .hyperparameters import BASE_OPTIMIZERS


def base_optimizer_class(base: str) -> tuple[type[torch.optim.Optimizer], Any]:
    """The torch class for ``base`` and a function mapping (lr, momentum, weight_decay) to its kwargs."""
    base = check_choice("base optimizer", base, BASE_OPTIMIZERS)
    if base == "sgd":
        return torch.optim.SGD, lambda lr, momentum, wd: dict(lr=lr, momentum=momentum, weight_decay=wd)
    # momentum is AdamW's β₁ (0.9 is both SGD's usual momentum and AdamW's default β₁).
    return torch.optim.AdamW, lambda lr, momentum, wd: dict(lr=lr, betas=(momentum, 0.999), weight_decay=wd)


def make_base_optimizer(base: str, params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    cls, kwargs = base_optimizer_class(base)
    return cls(params, **kwargs(lr, momentum, weight_decay))


class TrainingMethod(abc.ABC):
    """One training step of one optimizer, whatever it needs (extra passes, buffers, EMA models).

    Attributes:
        name: the optimizer's name (one of ``OPTIMIZER_NAMES``).
        hparams: every resolved hyperparameter, JSON-serialisable; ``build_method(name, model, **hparams)``
            rebuilds the same method.
        optimizer: the torch optimizer an LR scheduler attaches to (the base optimizer for the SAM family).
        model: the trained module.
        output_fn: picks the prediction from the model's output (None: a tensor, a tuple's first
            element, a dict's ``logits``; :func:`analogsam.scoring.model_output`).
        loss_fn: the batch-mean task loss of (prediction, targets); cross-entropy by default
            (training passes :func:`analogsam.scoring.task_loss` of its metric).
        step_count: completed steps.
        replicas: ``None``, or the ``DistributedDataParallel`` wrapping ``model`` in data-parallel
            training (set by :meth:`distribute`).

    The loop calls ``begin_epoch(e)`` (0-based), ``train_step(x, y, indices)`` per batch with the model in
    train mode, and ``end_epoch(e)``. ``train_step`` returns the detached task loss and
    prediction (logits) of the unperturbed forward pass (noise injection: of its noisy forward, its only one), and
    raises :class:`~analogsam.optim.NonFiniteError` naming the step if a loss or gradient is not finite, before any
    weight of that step is written.

    Data-parallel training (:meth:`distribute`): every forward of ``_forward`` runs through the
    ``DistributedDataParallel`` wrapper, so a backward averages the gradients over the replicas, except
    inside ``_local_gradients()`` (DDP's ``no_sync``), where each replica keeps its own: the SAM family's
    first pass, whose gradient sets this replica's perturbation.
    """

    replicas: nn.Module | None = None

    def __init__(
        self,
        name: str,
        model: nn.Module,
        *,
        base: str = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        hparams: dict | None = None,
        num_samples: int | None = None,
        num_classes: int | None = None,
        output_fn=None,
        loss_fn=None,
    ):
        self.name = name
        self.model = model
        self.output_fn = output_fn
        self.loss_fn = F.cross_entropy if loss_fn is None else loss_fn
        self.hparams = dict(hparams or {})
        self.step_count = 0
        self.epoch = 0
        self.optimizer = self._make_optimizer(base, lr, momentum, weight_decay)

    def _make_optimizer(self, base, lr, momentum, weight_decay) -> torch.optim.Optimizer:
        return make_base_optimizer(base, self.model.parameters(), lr, momentum, weight_decay)

    @classmethod
    def resolve_hparams(cls, hparams: dict, *, epochs: int | None) -> dict:
        """Fill defaults that depend on the run (e.g. SAF's start epoch) and check what involves several
        hyperparameters; each one alone is already checked against its declaration
        (:mod:`.hyperparameters`)."""
        return dict(hparams)

    # -- the loop's interface ---------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def train_step(
        self, inputs: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss, logits = self._step(inputs, targets, indices)
        self.step_count += 1
        return loss.detach(), logits.detach()

    def end_epoch(self, epoch: int) -> None:
        """A hook at the end of each epoch (SAF rotates its logit buffer here); nothing by default."""

    @abc.abstractmethod
    def _step(self, inputs, targets, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """One update; returns (task loss, logits) at the unperturbed weights."""

    # -- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume: the optimizer state plus the method's own buffers."""
        return {"optimizer": self.optimizer.state_dict(), "step_count": self.step_count, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = int(state.get("step_count", 0))
        self.epoch = int(state.get("epoch", 0))

    # -- data-parallel training ---------------------------------------------------------------------
    def distribute(self, replicas: nn.Module) -> None:
        """Train as one of several replicas: ``replicas`` is a ``DistributedDataParallel`` of ``self.model``
        (:func:`analogsam.distributed.wrap`)."""
        if getattr(replicas, "module", None) is not self.model:
            raise TypeError("distribute() takes the DistributedDataParallel that wraps this method's model")
        self.replicas = replicas

    def _local_gradients(self):
        """Within the block, backward passes leave the gradients on this replica (DDP ``no_sync``);
        the next backward outside it averages what has accumulated."""
        return self.replicas.no_sync() if self.replicas is not None else contextlib.nullcontext()

    # -- helpers --------------------------------------------------------------------------------------
    @property
    def _step_number(self) -> int:
        return self.step_count + 1

    def _forward(self, inputs, params: dict | None = None) -> torch.Tensor:
        """The prediction tensor of the model on ``inputs`` (at ``params`` instead of its own
        parameters when given, through ``torch.func.functional_call``); through the DDP wrapper in
        data-parallel training, so the backward of what it returns averages the gradients."""
        # (the DDP wrapper names the model's tensors "module.<name>")
        net, prefix = (self.model, "") if self.replicas is None else (self.replicas, "module.")
        if params is None:
            output = net(inputs)
        else:
            output = functional_call(net, {prefix + k: v for k, v in params.items()}, (inputs,))
        return model_output(output, self.output_fn)

    def _task_loss(self, logits, targets):
        return self.loss_fn(logits, targets)

    def _check_loss(self, loss: torch.Tensor, what: str = "loss") -> None:
        if not bool(torch.isfinite(loss)):
            raise non_finite(what, self._step_number, loss.detach(), where=f"{self.name}, epoch {self.epoch}")

    def _check_grads(self, where: str = "") -> None:
        norm = global_grad_norm(self.model.parameters())
        if not bool(torch.isfinite(norm)):
            raise non_finite(
                "gradient", self._step_number, where=f"{self.name}{', ' + where if where else ''}, epoch {self.epoch}"
            )

    def _backward_and_step(self, loss: torch.Tensor) -> None:
        self._check_loss(loss)
        loss.backward()
        self._check_grads()
        self.optimizer.step()

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"{type(self).__name__}({self.name!r}, {shown})"


class StandardMethod(TrainingMethod):
    """Plain empirical risk minimisation with the base optimizer (SGD with momentum, or AdamW)."""

    def _step(self, inputs, targets, indices):
        self.optimizer.zero_grad(set_to_none=True)
        logits = self._forward(inputs)
        loss = self._task_loss(logits, targets)
        self._backward_and_step(loss)
        return loss, logits
