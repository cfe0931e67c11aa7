"""One name per training method: ``build_method(name, model, ...)`` and the command-line flags for it."""

from __future__ import annotations

import argparse
import difflib
import math
import warnings
from dataclasses import dataclass
from typing import Any

from torch import nn

from analogsam.errors import InvalidParameterError

from .adversarial import ATTACK_GRADIENTS, AdversarialMethod
from .base import BASE_OPTIMIZERS, StandardMethod, TrainingMethod
from .noise import NoiseInjectionMethod, RWPMethod
from .saf import MESAMethod, SAFMethod
from .two_pass import SharpnessAwareMethod

OPTIMIZER_NAMES = ("sgd", "adamw", "sam", "asam", "samson", "adversarial", "saf", "mesa", "noise", "rwp")

# name -> (method class, hyperparameter defaults)
_REGISTRY: dict[str, tuple[type[TrainingMethod], dict[str, Any]]] = {
    "sgd": (StandardMethod, {}),
    "adamw": (StandardMethod, {}),
    **{n: (SharpnessAwareMethod, SharpnessAwareMethod.DEFAULTS_BY_NAME[n]) for n in ("sam", "asam", "samson")},
    "adversarial": (AdversarialMethod, AdversarialMethod.DEFAULTS),
    "saf": (SAFMethod, SAFMethod.DEFAULTS),
    "mesa": (MESAMethod, MESAMethod.DEFAULTS),
    "noise": (NoiseInjectionMethod, NoiseInjectionMethod.DEFAULTS),
    "rwp": (RWPMethod, RWPMethod.DEFAULTS),
}
assert tuple(_REGISTRY) == OPTIMIZER_NAMES

# 0.1 (the CIFAR ResNet value) made LeNet-5 on Fashion-MNIST collapse to chance with momentum 0.9;
# 0.05 trains it reliably (measured).
DEFAULT_LR = {"sgd": 0.05, "adamw": 1e-3}


class HyperparameterError(InvalidParameterError):
    """An unknown or invalid hyperparameter (both a ValueError and a TypeError, like a bad keyword)."""


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower()
    if key in _REGISTRY:
        return key
    near = difflib.get_close_matches(key, OPTIMIZER_NAMES, n=1, cutoff=0.5)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZER_NAMES)}.{hint}")


def hyperparameter_defaults(name: str) -> dict[str, Any]:
    """The method-specific hyperparameters of ``name`` and their defaults (``None``: resolved per run)."""
    return dict(_REGISTRY[_canonical_name(name)][1])


def build_method(name: str, model: nn.Module, *, lr: float | None = None, momentum: float = 0.9,
                 weight_decay: float = 5e-4, base: str | None = None, num_samples: int | None = None,
                 num_classes: int | None = None, epochs: int | None = None, **hparams) -> TrainingMethod:
    """The training method ``name`` for ``model``.

    Args:
        name: one of :data:`OPTIMIZER_NAMES`.
        lr, momentum, weight_decay: the base optimizer's settings. ``lr`` defaults to 0.05 with SGD and
            0.001 with AdamW; with AdamW, ``momentum`` is β₁.
        base: ``"sgd"`` or ``"adamw"``, the base optimizer of every method but ``sgd``/``adamw``
            themselves (default ``"sgd"``).
        num_samples, num_classes: the training set's size and class count (SAF's per-sample buffer).
        epochs: the run's length (SAF/MESA start their term after 30 % of it unless told otherwise).
        **hparams: the method's own hyperparameters (see :func:`hyperparameter_defaults`); ``None`` means
            the default.

    Raises:
        ValueError: unknown ``name`` (with the nearest valid one) or an out-of-range value.
        HyperparameterError: a hyperparameter ``name`` does not take (a ValueError and a TypeError).
    """
    key = _canonical_name(name)
    cls, defaults = _REGISTRY[key]
    unknown = sorted(set(hparams) - set(defaults))
    if unknown:
        valid = ", ".join(defaults) or "none besides lr, momentum, weight_decay, base"
        raise HyperparameterError(f"optimizer {key!r} takes no hyperparameter {', '.join(map(repr, unknown))}; "
                                  f"its hyperparameters: {valid}")
    if key in BASE_OPTIMIZERS:
        if base not in (None, key):
            raise ValueError(f"optimizer {key!r} is its own base optimizer; got base={base!r}")
        base = key
    elif base is None:
        base = "sgd"
    elif base not in BASE_OPTIMIZERS:
        raise ValueError(f"base must be one of {BASE_OPTIMIZERS}, got {base!r}")
    lr = DEFAULT_LR[base] if lr is None else float(lr)
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not 0.0 <= float(momentum) < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if not (float(weight_decay) >= 0 and math.isfinite(float(weight_decay))):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")

    resolved = dict(defaults)
    resolved.update({k: v for k, v in hparams.items() if v is not None})
    resolved = cls.resolve_hparams(resolved, epochs=epochs)
    full = {"base": base, "lr": lr, "momentum": float(momentum), "weight_decay": float(weight_decay), **resolved}
    return cls(key, model, base=base, lr=lr, momentum=float(momentum), weight_decay=float(weight_decay),
               hparams=full, num_samples=num_samples, num_classes=num_classes)


# -- command line ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Flag:
    dest: str
    type: Any
    help: str
    metavar: str | None = None
    choices: tuple | None = None

    @property
    def option(self) -> str:
        return "--" + self.dest.replace("_", "-")

    @property
    def applies_to(self) -> tuple[str, ...]:
        return tuple(n for n in OPTIMIZER_NAMES if self.dest in _REGISTRY[n][1])


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


_FLAGS = (
    _Flag("rho", _float, "SAM/ASAM/SAMSON neighbourhood radius ρ: the L2 norm of the perturbation in the "
          "(scaled) weight space, dimensionless (default: 0.05 sam, 0.5 asam, 0.2 samson)", "RHO"),
    _Flag("eta", _float, "ASAM/SAMSON offset η in T_w = |w| + η, in weight units (default: 0.01)", "ETA"),
    _Flag("p", _float, "SAMSON norm order p of the per-layer normalisation ‖w‖_p: 'inf' (layer max |w|) "
          "or 2 (default: inf)", "P"),
    _Flag("beta", _float, "adversarial: weight β of the KL robustness term (default: 0.25; 0 = base "
          "optimizer)", "BETA"),
    _Flag("zeta_attack", _float, "adversarial: attack budget ζ, relative to |θ|: the attack stays in "
          "θ ± ζ·|θ| (default: 0.1)", "ZETA"),
    _Flag("attack_steps", int, "adversarial: number N of sign-gradient ascent steps; a step costs about N+2 "
          "forward/backward passes (default: 10)", "N"),
    _Flag("zeta_init", _float, "adversarial: std of the attack's random start, relative to |θ| "
          "(default: 0.001)", "ZETA"),
    _Flag("attack_gradient", str, "adversarial: 'through' differentiates the KL through the attack "
          "(dθ*/dθ = 1 + sign(θ)c, paper); 'constant' treats θ* as a constant, one backward cheaper "
          "(default: through)", None, ATTACK_GRADIENTS),
    _Flag("zeta_forward", _float, "adversarial: std of the multiplicative weight noise in the task-loss "
          "forward, relative to |θ| (default: 0, off)", "ZETA"),
    _Flag("saf_lambda", _float, "SAF: weight λ of the KL term to past logits (default: 0.3)", "LAMBDA"),
    _Flag("saf_tau", _float, "SAF: softmax temperature τ of the KL term (default: 5)", "TAU"),
    _Flag("saf_history", int, "SAF: Ẽ, how many epochs back the reference logits are; the buffer holds "
          "num_samples x num_classes x (Ẽ+1) float32 (default: 3)", "EPOCHS"),
    _Flag("saf_start", int, "SAF: first epoch (0-based) with the KL term (default: 30%% of --epochs, at "
          "least --saf-history; 5 if the run length is unknown)", "EPOCH"),
    _Flag("saf_end", int, "SAF: epoch (0-based) from which the KL term is off again (default: never)", "EPOCH"),
    _Flag("mesa_lambda", _float, "MESA: weight λ of the KL term to the EMA model (default: 0.8)", "LAMBDA"),
    _Flag("mesa_tau", _float, "MESA: softmax temperature τ of the KL term (default: 5)", "TAU"),
    _Flag("mesa_decay", _float, "MESA: decay of the exponential moving average of the weights, per step "
          "(default: 0.9998)", "DECAY"),
    _Flag("mesa_start", int, "MESA: first epoch (0-based) with the KL term (default: 30%% of --epochs; 5 if "
          "the run length is unknown)", "EPOCH"),
    _Flag("mesa_end", int, "MESA: epoch (0-based) from which the KL term is off again (default: never)", "EPOCH"),
    _Flag("mesa_ema_warmup", None, "MESA: warm the EMA decay up as min(decay, (1+n)/(10+n)) after n steps "
          "(default: on; --no-mesa-ema-warmup for the reference code's plain EMA)"),
    _Flag("noise_additive", _float, "noise: std of the additive Gaussian weight noise, relative to each "
          "layer's max |w| (default: 0.0175)", "SIGMA"),
    _Flag("noise_multiplicative", _float, "noise: std of the multiplicative Gaussian weight noise, relative "
          "to |w| (default: 0)", "SIGMA"),
    _Flag("rwp_gamma", _float, "RWP: per-filter noise std, relative to the filter's L2 norm (default: 0.01)",
          "GAMMA"),
    _Flag("rwp_alpha", _float, "RWP: weight α of the perturbed loss in α·L(w+ε) + (1-α)·L(w), in [0, 1] "
          "(default: 0.5)", "ALPHA"),
)
assert {f.dest for f in _FLAGS} == {k for _, d in _REGISTRY.values() for k in d}


def add_optimizer_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--optimizer``, the base optimizer's flags and every method's hyperparameter flags.

    Method flags default to ``None``, meaning the chosen method's own default (see each help text)."""
    group = parser.add_argument_group(
        "optimizer", "training method and its hyperparameters; a method's flags are ignored by the others")
    group.add_argument("--optimizer", default="sgd", choices=OPTIMIZER_NAMES, metavar="NAME",
                       help=f"training method, one of: {', '.join(OPTIMIZER_NAMES)} (default: sgd)")
    group.add_argument("--lr", type=_float, default=None, metavar="LR",
                       help="base learning rate per step (default: 0.05 with SGD, 0.001 with AdamW)")
    group.add_argument("--momentum", type=_float, default=0.9, metavar="M",
                       help="SGD momentum, or AdamW's beta1 (default: 0.9)")
    group.add_argument("--weight-decay", type=_float, default=5e-4, metavar="WD",
                       help="L2 weight decay (SGD) or decoupled weight decay (AdamW) coefficient (default: 5e-4)")
    group.add_argument("--base-optimizer", choices=BASE_OPTIMIZERS, default=None,
                       help="base optimizer that sam/asam/samson/adversarial/saf/mesa/noise/rwp step with "
                            "(default: sgd)")
    for flag in _FLAGS:
        if flag.type is None:
            group.add_argument(flag.option, dest=flag.dest, action=argparse.BooleanOptionalAction,
                               default=None, help=flag.help)
        else:
            group.add_argument(flag.option, dest=flag.dest, type=flag.type, default=None, metavar=flag.metavar,
                               choices=flag.choices, help=flag.help)


def method_kwargs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``build_method`` keyword arguments from parsed arguments: the base optimizer's settings plus the
    flags that apply to ``args.optimizer``. Unset flags are left out (the method's defaults apply); a flag
    set for another method is ignored with a warning."""
    name = _canonical_name(getattr(args, "optimizer", "sgd"))
    valid = _REGISTRY[name][1]
    base = getattr(args, "base_optimizer", None)
    resolved_base = name if name in BASE_OPTIMIZERS else (base or "sgd")
    lr = getattr(args, "lr", None)
    kwargs: dict[str, Any] = {
        "lr": DEFAULT_LR[resolved_base] if lr is None else lr,
        "momentum": getattr(args, "momentum", 0.9),
        "weight_decay": getattr(args, "weight_decay", 5e-4),
    }
    if base is not None:
        if name in BASE_OPTIMIZERS and base != name:
            raise ValueError(f"--base-optimizer {base} contradicts --optimizer {name}")
        kwargs["base"] = base
    ignored = []
    for flag in _FLAGS:
        value = getattr(args, flag.dest, None)
        if value is None:
            continue
        if flag.dest in valid:
            kwargs[flag.dest] = value
        else:
            ignored.append(f"{flag.option} (used by {', '.join(flag.applies_to)})")
    if ignored:
        warnings.warn(f"--optimizer {name} ignores {'; '.join(ignored)}", stacklevel=2)
    return kwargs
