"""SAF and MESA: sharpness-aware training for (almost) free (Du, Zhou, Feng, Tan, Zhou, NeurIPS 2022,
arXiv 2205.14083; code AngusDujw/SAF).

Both replace SAM's second pass by a distillation term towards a "past" version of the network:

    L = CE(f_θ(x_i), y_i) + λ · τ² · KL(softmax(ŷ_i / τ) ‖ softmax(f_θ(x_i) / τ))

SAF: ŷ_i are sample i's logits recorded Ẽ epochs earlier (a per-sample ring buffer of Ẽ + 1 epochs).
MESA: ŷ_i come from an exponential moving average of the weights (one extra no-grad forward).

The term is active in epochs ``start <= epoch < end`` (0-based; the reference code tests
``kl_start_epoch < epoch < kl_end_epoch``). Paper defaults: SAF λ = 0.3 (code: 0.16), τ = 5, Ẽ = 3
(code ``minus_epoch`` 3; Ẽ = 2 also used), E_start = 5 (code) or about 30 % of training;
MESA λ = 0.8, τ = 5, EMA decay 0.9998.
"""

from __future__ import annotations

import copy
import math

import torch

from analogsam.distributed import broadcast_buffers
from analogsam.errors import InvalidParameterError
from analogsam.scoring import model_output

from ._common import kl_div_logits
from .base import TrainingMethod


def _default_start(epochs: int | None, minimum: int = 0) -> int:
    # The paper turns the term on after ~30 % of training (the code's fixed default is epoch 5).
    start = 5 if epochs is None else math.ceil(0.3 * epochs)
    return max(start, minimum)


def _check_window(h: dict, start_key: str, end_key: str, epochs: int | None = None) -> None:
    """The term's epochs ``start <= epoch < end`` must exist in a run of ``epochs`` (each key alone is
    checked by its declaration)."""
    if epochs is not None and h[start_key] >= epochs:
        # Otherwise the run would silently be its base optimizer, bit for bit.
        raise InvalidParameterError(
            f"{start_key}={h[start_key]} (0-based) but training has only {epochs} epochs: the extra term would "
            f"never switch on. Train for more epochs or set a lower {start_key} (for SAF also saf_history <= "
            "saf_start, e.g. saf_history=1, saf_start=1)."
        )
    if h[end_key] is not None and h[end_key] <= h[start_key]:
        raise InvalidParameterError(
            f"{end_key} must be an integer epoch > {start_key} ({h[start_key]}), got {h[end_key]!r}"
        )


class SAFMethod(TrainingMethod):
    """``saf``: KL to each sample's own logits from ``saf_history`` epochs ago (SAF, Du et al. 2022).

    Memory: a float32 buffer of shape ``(num_samples, num_classes, saf_history + 1)``, i.e.
    4 · N · C · (Ẽ + 1) bytes, on the model's device (Fashion-MNIST, Ẽ = 3: 60000 · 10 · 4 · 4 B = 9.6 MB;
    ImageNet: 1.28 M · 1000 · 4 · 4 B = 20 GB, the reason the authors keep it in host memory), plus an
    int32 ``(num_samples, saf_history + 1)`` record of which epoch each slot holds, so that a sample with no
    logits from exactly Ẽ epochs ago (not drawn that epoch) gets no KL term instead of a stale or zero one.
    The training loop must pass the samples' dataset indices to ``train_step``. Cost: ≈ 1× SGD.

    A sequence model's per-sample output (T, V) is buffered whole, ``(num_samples, T, V, saf_history + 1)``
    (T times the memory), and its KL term is averaged over tokens (padding positions included: they are
    the network's outputs too); the buffer takes its shape from the first batch, so every batch
    must have the same sequence length.

    Data-parallel training: each replica fills only the rows of its own shard (a fixed share of the
    training set, :func:`analogsam.distributed.shard_indices`), so the KL term of a sample uses the
    logits that sample's own replica recorded; the gradients of the full loss are averaged.
    """

    @classmethod
    def resolve_hparams(cls, hparams, *, epochs):
        h = dict(hparams)
        if h["saf_start"] is None:
            h["saf_start"] = _default_start(epochs, minimum=h["saf_history"])
        _check_window(h, "saf_start", "saf_end", epochs)
        return h

    def __init__(self, name, model, *, num_samples=None, num_classes=None, **kwargs):
        super().__init__(name, model, **kwargs)
        if num_samples is None or num_samples < 1:
            raise InvalidParameterError(
                "saf needs num_samples (the training set size) for its per-sample logit buffer; "
                "pass build_method('saf', model, num_samples=len(train_set), ...)"
            )
        self.num_samples = int(num_samples)
        self.num_classes = num_classes
        self.logits_buffer: torch.Tensor | None = None
        self.recorded_epoch: torch.Tensor | None = None
        if num_classes is not None:
            self._allocate(int(num_classes), next(model.parameters()).device)

    def _allocate(self, num_classes: int | tuple, device) -> None:
        slots = self.hparams["saf_history"] + 1
        shape = tuple(num_classes) if isinstance(num_classes, (tuple, list, torch.Size)) else (int(num_classes),)
        self.num_classes = shape[-1]
        self.logits_buffer = torch.zeros(self.num_samples, *shape, slots, device=device)
        self.recorded_epoch = torch.full((self.num_samples, slots), -1, dtype=torch.int32, device=device)

    def active(self, epoch: int | None = None) -> bool:
        epoch = self.epoch if epoch is None else epoch
        h = self.hparams
        return epoch >= h["saf_start"] and (h["saf_end"] is None or epoch < h["saf_end"])

    def reference_logits(self, indices: torch.Tensor, epoch: int | None = None):
        """(logits recorded ``saf_history`` epochs before ``epoch``, mask of samples that have them)."""
        epoch = self.epoch if epoch is None else epoch
        past = epoch - self.hparams["saf_history"]
        if past < 0 or self.logits_buffer is None:  # nothing recorded that long ago (-1 marks empty slots)
            return None, torch.zeros(len(indices), dtype=torch.bool, device=indices.device)
        slot = past % (self.hparams["saf_history"] + 1)
        valid = self.recorded_epoch[indices, slot] == past
        return self.logits_buffer[indices, ..., slot], valid

    def _step(self, inputs, targets, indices):
        if indices is None:
            raise InvalidParameterError(
                "saf needs the dataset index of every sample in the batch (train_step's indices)"
            )
        h = self.hparams
        self.optimizer.zero_grad(set_to_none=True)
        logits = self._forward(inputs)
        self._fit_buffer(logits)
        indices = indices.to(self.logits_buffer.device, torch.long)
        task_loss = self._task_loss(logits, targets)
        loss = task_loss
        if h["saf_lambda"] > 0 and self.active():
            reference, valid = self.reference_logits(indices)
            if bool(valid.any()):
                if not bool(valid.all()):  # only samples with logits from exactly Ẽ epochs ago
                    reference, logits_now = reference[valid], logits[valid]
                else:
                    logits_now = logits
                kl = kl_div_logits(reference, logits_now, h["saf_tau"])
                loss = task_loss + h["saf_lambda"] * h["saf_tau"] ** 2 * kl
        self._backward_and_step(loss)
        # Record after the step succeeded, so a failed step leaves the buffer as it was.
        slot = self.epoch % (h["saf_history"] + 1)
        self.logits_buffer[indices, ..., slot] = logits.detach().to(self.logits_buffer.dtype)
        self.recorded_epoch[indices, slot] = self.epoch
        return task_loss, logits

    def _fit_buffer(self, logits: torch.Tensor) -> None:
        """Allocate the buffer for the per-sample output shape of ``logits`` (a sequence model's (T, V)
        rather than the (num_classes,) allocated up front) while nothing is recorded in it."""
        shape = tuple(logits.shape[1:])
        if self.logits_buffer is not None and tuple(self.logits_buffer.shape[1:-1]) == shape:
            return
        if self.recorded_epoch is not None and bool((self.recorded_epoch >= 0).any()):
            raise InvalidParameterError(
                f"saf buffers each sample's output of shape {tuple(self.logits_buffer.shape[1:-1])}, but this batch's "
                f"is {shape}; give every batch the same sequence length (pad to one length)"
            )
        self._allocate(shape, logits.device)

    def state_dict(self):
        state = super().state_dict()
        state.update(logits_buffer=self.logits_buffer, recorded_epoch=self.recorded_epoch)
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.logits_buffer, self.recorded_epoch = state["logits_buffer"], state["recorded_epoch"]


class MESAMethod(TrainingMethod):
    """``mesa``: KL to the outputs of an exponential moving average of the weights (MESA, Du et al. 2022).
    Memory: one copy of the model. Cost: one extra no-grad forward while active, plus the EMA
    update every step (≈ 1.15× SGD in the paper).

    The EMA model runs in eval mode and averages the BatchNorm buffers too, as timm's ``ModelEmaV2`` in
    the reference code. With ``mesa_ema_warmup`` (default) the decay is min(decay, (1 + n) / (10 + n))
    after n updates (TensorFlow's ExponentialMovingAverage ``num_updates``): with 0.9998 and no warm-up the
    EMA needs ~5000 steps to forget the random initialisation, longer than a whole short run. Set it to
    False for the reference code's plain EMA. The trained model (not the EMA) is what the loop keeps;
    ``ema_model`` is available for evaluation.

    Data-parallel training: the EMA is a function of the averaged (hence equal) weights and of rank 0's
    BatchNorm buffers, broadcast before each update, so it stays identical on every replica.
    """

    @classmethod
    def resolve_hparams(cls, hparams, *, epochs):
        h = dict(hparams)
        if h["mesa_start"] is None:
            h["mesa_start"] = _default_start(epochs)
        _check_window(h, "mesa_start", "mesa_end", epochs)
        return h

    def __init__(self, name, model, **kwargs):
        super().__init__(name, model, **kwargs)
        self.ema_model = copy.deepcopy(model).eval()
        for p in self.ema_model.parameters():
            p.requires_grad_(False)
        self.ema_updates = 0
        self._pairs = list(zip(self.ema_model.state_dict().values(), model.state_dict().values()))
        self._float_pairs = [(e, m) for e, m in self._pairs if e.is_floating_point()]
        self._other_pairs = [(e, m) for e, m in self._pairs if not e.is_floating_point()]

    def active(self, epoch: int | None = None) -> bool:
        epoch = self.epoch if epoch is None else epoch
        h = self.hparams
        return epoch >= h["mesa_start"] and (h["mesa_end"] is None or epoch < h["mesa_end"])

    def current_decay(self) -> float:
        decay = self.hparams["mesa_decay"]
        if self.hparams["mesa_ema_warmup"]:
            decay = min(decay, (1 + self.ema_updates) / (10 + self.ema_updates))
        return decay

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema ← d · ema + (1 − d) · θ for parameters and float buffers; integer buffers are copied."""
        weight = 1.0 - self.current_decay()
        ema, live = zip(*self._float_pairs) if self._float_pairs else ((), ())
        torch._foreach_lerp_(list(ema), list(live), weight)
        for e, m in self._other_pairs:
            e.copy_(m)
        self.ema_updates += 1

    def _step(self, inputs, targets, indices):
        h = self.hparams
        use_kl = h["mesa_lambda"] > 0 and self.active()
        if use_kl:
            with torch.no_grad():
                reference = model_output(self.ema_model(inputs), self.output_fn)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self._forward(inputs)
        task_loss = self._task_loss(logits, targets)
        loss = task_loss
        if use_kl:
            loss = task_loss + h["mesa_lambda"] * h["mesa_tau"] ** 2 * kl_div_logits(reference, logits, h["mesa_tau"])
        self._backward_and_step(loss)
        if self.replicas is not None:
            # The weights are equal on every replica after the averaged step, the BatchNorm running
            # statistics are not (each replica's own batches): take rank 0's, as DDP's next forward
            # would, so the EMA model stays identical on every replica.
            broadcast_buffers(self.model)
        self.update_ema()
        return task_loss, logits

    def state_dict(self):
        state = super().state_dict()
        state.update(ema_model=self.ema_model.state_dict(), ema_updates=self.ema_updates)
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.ema_model.load_state_dict(state["ema_model"])
        self.ema_updates = int(state["ema_updates"])
