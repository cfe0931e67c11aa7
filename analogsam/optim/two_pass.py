"""SAM, ASAM and SAMSON: one two-pass algorithm with three perturbation scalings.

All three take the gradient g at w, move to w + ε with

    ε = ρ · T ⊙ (T ⊙ g) / ‖T ⊙ g‖₂          (one norm over all parameters)

take the gradient there, return to w and let the base optimizer step with that second gradient.

=========  =====================================  ================================================
optimizer  scale T for a weight tensor w          paper
=========  =====================================  ================================================
SAM        1                                      Foret et al., ICLR 2021, arXiv 2010.01412, eq. 2
ASAM       ``|w| + η``                            Kwon et al., ICML 2021, arXiv 2102.11600
SAMSON     ``(|w| + η) / ‖w‖_p`` (whole tensor)   Mordido et al., arXiv 2211.11561
=========  =====================================  ================================================

Which tensors T scales is ASAM's and SAMSON's ``scope`` (declared in
:mod:`analogsam.optim.hyperparameters`), one of two conventions found in the sources:

- ``scope="weights"`` (the default): only layer weights are scaled; everything else (biases,
  normalisation parameters) gets T = 1 and is still perturbed, by ρ·g/‖T⊙g‖. This is the ASAM
  authors' code (SamsungLabs/ASAM, ``asam.py``: ``if 'weight' in n: t_w = |w| + eta``), which also
  catches BatchNorm's γ; we give γ T = 1, since normalisation stays digital on an analog accelerator.
- ``scope="all"``: every parameter, biases and normalisation parameters too, is scaled by T:
  davda54/sam's ``SAM(adaptive=True)`` and ``pytorch_optimizer.SAM(adaptive=True)`` (both scale by |w|
  with η = 0; here η stays the ``eta`` hyperparameter, pass ``eta=0`` for their exact rule).

An optimizer sees tensors, not names, so a param group may say ``adaptive=True/False``, and that flag
decides for its tensors; without it the scope decides: under ``"weights"`` a tensor with ``dim() > 1`` is
a weight and a 1-d tensor (bias, BatchNorm γ/β) is not, under ``"all"`` every tensor is scaled.
:func:`analogsam.optim.adaptive_param_groups` builds the groups from a model by layer type and scope.

The API follows davda54/sam::

    optimizer = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    loss_fn(model(x), y).backward()
    optimizer.first_step(zero_grad=True)
    with frozen_batchnorm_stats(model):          # BN running stats must not see w + ε
        loss_fn(model(x), y).backward()
    optimizer.second_step(zero_grad=True)

or ``optimizer.step(closure)`` with a closure that does forward and backward. Schedulers attach to
``optimizer.base_optimizer`` (``param_groups`` are shared, so attaching to ``optimizer`` works too).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from analogsam.errors import InvalidParameterError

from ._common import NonFiniteError, adaptive_param_groups, frozen_batchnorm_stats, global_grad_norm
from .base import TrainingMethod, base_optimizer_class
from .hyperparameters import ETA, METHODS, NORM_ORDER, RHO, SCOPE


class TwoPassOptimizer(torch.optim.Optimizer):
    """What every two-pass method (SAM, ASAM, SAMSON, SAQ) shares: :meth:`step` calls the closure around
    ``first_step`` / ``second_step`` (restoring the weights if the second pass fails), and the
    checkpointed state is the base optimizer's. Subclasses define ``first_step``, ``second_step``,
    ``restore`` and ``_has_gradient`` (whether the first gradient is already there)."""

    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """One full step. ``closure`` does forward + backward (no zero_grad) and returns the loss.

        As in davda54/sam the first gradient is expected to be computed already; if no parameter has a
        gradient yet, the closure is called once first to compute it. Returns the first-pass loss when
        this method computed it, else ``None``. BatchNorm running statistics are the closure's business
        (wrap its second call in :func:`frozen_batchnorm_stats`, or use :func:`~analogsam.optim.build_method`).
        """
        if closure is None:
            raise InvalidParameterError(
                f"{type(self).__name__} needs a closure that does forward and backward; "
                "or call first_step()/second_step() yourself"
            )
        closure = torch.enable_grad()(closure)
        loss = None
        if not self._has_gradient():
            loss = closure()
        self.first_step(zero_grad=True)
        try:
            closure()
        except BaseException:
            self.restore()
            raise
        self.second_step(zero_grad=False)
        return loss

    # The perturbation is scratch; what must survive a checkpoint is the base optimizer's state.
    def state_dict(self):
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


class SAM(TwoPassOptimizer):
    """Sharpness-Aware Minimization (Foret et al., ICLR 2021, arXiv 2010.01412, eq. 2 (p = 2), Alg. 1).

    ε = ρ · g / ‖g‖₂ with one norm over all parameters; the base optimizer steps with ∇L(w + ε).

    Args:
        params: parameters or param groups (a group may override ``rho``).
        base_optimizer: a torch optimizer class, e.g. ``torch.optim.SGD`` or ``torch.optim.AdamW``.
        rho: the neighbourhood radius ρ, the L2 norm of ε. Paper: 0.05 on CIFAR-10, 0.1 on CIFAR-100
            (davda54/sam WRN-16-8 CIFAR-10: ρ = 0.05).
        **base_kwargs: passed to ``base_optimizer`` (``lr``, ``momentum``, ``weight_decay``, ...).

    ``state_dict()`` is the base optimizer's (momentum buffers etc.): the perturbation is scratch.
    A non-finite gradient raises :class:`NonFiniteError` naming the step (``step_count + 1``), before
    any weight is written; in :meth:`second_step` the weights are first restored to w.
    """

    _extra_defaults: dict = {}

    def __init__(
        self,
        params,
        base_optimizer: Callable[..., torch.optim.Optimizer],
        rho: float = METHODS["sam"]["rho"].default,
        **base_kwargs,
    ):
        rho = RHO.check(rho)
        if isinstance(base_optimizer, torch.optim.Optimizer):
            raise InvalidParameterError(
                "base_optimizer must be an optimizer class such as torch.optim.SGD, "
                "not an instance (davda54/sam convention)"
            )
        defaults = dict(rho=rho, **self._extra_defaults, **base_kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        # One list of groups for both, so lr schedulers and group edits reach the base optimizer.
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.step_count = 0

    # -- the scaling T: None means T = 1 -------------------------------------------------------------
    def _scale(self, p: torch.Tensor, group: dict) -> torch.Tensor | None:
        return None

    def _params_with_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    yield group, p

    @torch.no_grad()
    def perturbation(self) -> dict[torch.Tensor, torch.Tensor]:
        """ε for every parameter with a gradient, from the current gradients (does not move the weights)."""
        groups = []  # (group, params, T ⊙ g, T or None per param)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                scales = [self._scale(p, group) for p in params]
                scaled = [p.grad if t is None else p.grad * t for p, t in zip(params, scales)]
                groups.append((group, params, scaled, scales))
        if not groups:
            raise RuntimeError(f"{type(self).__name__}.first_step() needs gradients: call loss.backward() first")
        # One L2 norm over all parameters (foreach: one kernel per group, not per tensor).
        norm = torch.linalg.vector_norm(torch.stack([n for _, _, tg, _ in groups for n in torch._foreach_norm(tg)]))
        if not torch.isfinite(norm):
            raise NonFiniteError(
                f"step {self.step_count + 1}: non-finite gradient (first pass of "
                f"{type(self).__name__}); no weight was changed by this step",
                step=self.step_count + 1,
            )
        eps = {}
        for group, params, scaled, scales in groups:
            e = torch._foreach_mul(scaled, group["rho"] / (norm + 1e-12))
            for p, e_p, t in zip(params, e, scales):
                eps[p] = e_p if t is None else e_p.mul_(t)
        return eps

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """Move every parameter to w + ε (ε from the current gradients); remember w."""
        eps = self.perturbation()
        params, saved = list(eps), []
        for p, e in eps.items():
            state = self.state[p]
            if "old_p" not in state or state["old_p"].shape != p.shape:
                state["old_p"] = torch.empty_like(p)
            state["e_w"] = e
            state["perturbed"] = True
            saved.append(state["old_p"])
        # Restore from a copy rather than subtracting ε, so w comes back bit-exact.
        torch._foreach_copy_(saved, params)
        torch._foreach_add_(params, list(eps.values()))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        """Put back the weights saved by :meth:`first_step` (a no-op when they are back already)."""
        params, saved = [], []
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state and state.get("perturbed"):
                    params.append(p)
                    saved.append(state["old_p"])
                    state["perturbed"] = False
        if params:
            torch._foreach_copy_(params, saved)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = True) -> None:
        """Return to w and let the base optimizer step with the gradient taken at w + ε."""
        finite = bool(torch.isfinite(global_grad_norm(p for _, p in self._params_with_grad())))
        self.restore()
        if not finite:
            raise NonFiniteError(
                f"step {self.step_count + 1}: non-finite gradient (second pass of "
                f"{type(self).__name__}, at w + ε); weights restored to w, no update made",
                step=self.step_count + 1,
            )
        self.base_optimizer.step()
        self.step_count += 1
        if zero_grad:
            self.zero_grad()

    def _has_gradient(self) -> bool:
        return any(True for _ in self._params_with_grad())


class ASAM(SAM):
    """Adaptive SAM (Kwon et al., ICML 2021, arXiv 2102.11600; SamsungLabs/ASAM).

    ε = ρ · T² ⊙ g / ‖T ⊙ g‖₂ with T_w = |w| + η for the scaled tensors, T = 1 for the others.

    Args:
        rho: ρ. Paper: 0.5 on CIFAR-10 (the default), 1.0 on CIFAR-100; davda54/sam WRN-16-8 used 2.0.
        eta: η, keeps T away from 0 for zero weights. Paper: 0.01 (the example script's ``--eta``
            defaults to 0.0, a known trap).
        scope: which tensors are scaled when their param group has no ``adaptive`` flag: ``"weights"``
            (tensors with ``dim() > 1``; biases and normalisation parameters T = 1: the authors' code)
            or ``"all"`` (every tensor: davda54/sam, pytorch_optimizer); see the module docstring.
    """

    _extra_defaults = {"eta": ETA.default, "adaptive": None}

    def __init__(
        self,
        params,
        base_optimizer,
        rho: float = METHODS["asam"]["rho"].default,
        eta: float = ETA.default,
        scope: str = SCOPE.default,
        **base_kwargs,
    ):
        eta = ETA.check(eta)
        # An attribute, not a group default: param groups (and so checkpoints) stay as they were.
        self.scope = SCOPE.check(scope)
        self._extra_defaults = {**self._extra_defaults, "eta": eta}
        super().__init__(params, base_optimizer, rho=rho, **base_kwargs)

    def _is_weight(self, p: torch.Tensor, group: dict) -> bool:
        flag = group.get("adaptive")
        if flag is not None:
            return bool(flag)
        return True if self.scope == "all" else p.dim() > 1

    def _scale(self, p, group):
        if not self._is_weight(p, group):
            return None
        return p.abs().add_(group["eta"])


class SAMSON(ASAM):
    """SAM scaled by outlier normalisation (Mordido, Henwood, Chandar, Leduc-Primeau, arXiv 2211.11561).

    ε = ρ · T ⊙ (T ⊙ g) / ‖T ⊙ g‖₂ with T_w = (|w| + η) / ‖w‖_p, the norm over the whole tensor
    (p = ∞: the layer's largest |w|), for the tensors the scope scales (``"weights"``: the layer
    weights, T = 1 for biases and normalisation parameters; ``"all"``: every tensor, a bias by its own
    ‖b‖_p). Normalising by the layer's range makes the perturbation relative to what the analog tile
    can represent.

    Args:
        rho: ρ. Default 0.2, the value in the authors' follow-up code (the paper's class default is 0.5).
        eta: η. Paper: 0.01.
        p: the norm order, ``float('inf')`` (paper default) or 2 (the other variant studied).
        scope: as for :class:`ASAM`.
    """

    def __init__(
        self,
        params,
        base_optimizer,
        rho: float = METHODS["samson"]["rho"].default,
        eta: float = ETA.default,
        p: float | str = NORM_ORDER.default,
        scope: str = SCOPE.default,
        **base_kwargs,
    ):
        p = float(NORM_ORDER.check(p))  # "inf" -> inf
        self._extra_defaults = {"eta": eta, "adaptive": None, "p": p}
        super().__init__(params, base_optimizer, rho=rho, eta=eta, scope=scope, **base_kwargs)

    def _scale(self, w, group):
        if not self._is_weight(w, group):
            return None
        norm = torch.linalg.vector_norm(w, ord=group["p"]).clamp_min(1e-12)
        return w.abs().add_(group["eta"]).div_(norm)


# -- the training-method layer -----------------------------------------------------------------------


class SharpnessAwareMethod(TrainingMethod):
    """``sam``, ``asam``, ``samson``: two forward/backward passes per step; the second (at w + ε) runs with
    BatchNorm running statistics frozen. ASAM/SAMSON with ``scope="weights"`` scale the crossbar weights
    (:func:`analogsam.models.roles.crossbar_weights`: Linear/Conv weights, attention projections,
    recurrent gate matrices), not biases, normalisation parameters or embedding tables; with
    ``scope="all"`` every trainable parameter.

    Data-parallel training: the first pass stays on each replica (its own ε), the second pass's
    gradient is averaged over the replicas before the base optimizer steps."""

    OPTIMIZERS = {"sam": SAM, "asam": ASAM, "samson": SAMSON}

    def _make_optimizer(self, base, lr, momentum, weight_decay):
        cls, base_kwargs = base_optimizer_class(base)
        extra = {k: (float(v) if k == "p" else v) for k, v in self.hparams.items() if k in ("rho", "eta", "p", "scope")}
        params = adaptive_param_groups(self.model, extra["scope"]) if self.name != "sam" else self.model.parameters()
        self.sam = self.OPTIMIZERS[self.name](params, cls, **extra, **base_kwargs(lr, momentum, weight_decay))
        return self.sam.base_optimizer

    def _step(self, inputs, targets, indices):
        return two_pass_step(self, self.sam, inputs, targets, self._task_loss, "loss at w + ε")


def two_pass_step(method: TrainingMethod, optimizer: TwoPassOptimizer, inputs, targets, ascent_loss, perturbed: str):
    """One training step of a two-pass optimizer (SAM's family, SAQ) inside ``method``'s loop: the
    gradient of ``ascent_loss`` at the current point, ``first_step`` (ε), the task loss's gradient at
    the perturbed point with the normalisation statistics frozen, ``second_step`` (the base optimizer
    at the restored point; on a failure in between the point is restored first). ``perturbed`` names
    the perturbed loss in a non-finite error. Returns the first pass's loss and logits."""
    optimizer.zero_grad(set_to_none=True)
    # Data-parallel: each replica perturbs with its own batch's gradient (the m-sharpness of Foret et
    # al. 2021, arXiv 2010.01412, sec. 4, m = the replica's batch); only the gradient at w + ε is averaged.
    with method._local_gradients():
        logits = method._forward(inputs)
        loss = ascent_loss(logits, targets)
        method._check_loss(loss)
        loss.backward()
    optimizer.step_count = method.step_count  # so the optimizer's own errors name the loop's step
    optimizer.first_step(zero_grad=True)
    try:
        with frozen_batchnorm_stats(method.model):
            loss_perturbed = method._task_loss(method._forward(inputs), targets)
        method._check_loss(loss_perturbed, perturbed)
        loss_perturbed.backward()
    except BaseException:
        optimizer.restore()
        raise
    optimizer.second_step(zero_grad=True)
    return loss, logits
