"""One name per training method: ``build_method(name, model, ...)`` and the command-line flags for it.

The names, hyperparameters, defaults and ranges are declared in :mod:`.hyperparameters`; this module
maps each name to its class, validates a call against the declarations and builds the method.
"""

from __future__ import annotations

import argparse
import difflib
import warnings
from typing import Any

from torch import nn

from analogsam.errors import InvalidParameterError

from .adversarial import AdversarialMethod
from .base import StandardMethod, TrainingMethod
from .device_sam import DeviceSharpnessMethod
from .hyperparameters import (
    BASE_OPTIMIZERS,
    DEFAULT_LR,
    METHODS,
    OPTIMIZER_NAMES,
    TRAINING_SETTINGS,
    add_flag,
    method_flags,
)
from .noise import NoiseInjectionMethod, RWPMethod
from .saf import MESAMethod, SAFMethod
from .saq import SAQMethod
from .two_pass import SharpnessAwareMethod

__all__ = [
    "DEFAULT_LR",
    "OPTIMIZER_NAMES",
    "HyperparameterError",
    "build_method",
    "resolve_hyperparameters",
    "hyperparameter_defaults",
    "add_optimizer_arguments",
    "method_kwargs_from_args",
]

_CLASSES: dict[str, type[TrainingMethod]] = {
    "sgd": StandardMethod,
    "adamw": StandardMethod,
    "sam": SharpnessAwareMethod,
    "asam": SharpnessAwareMethod,
    "samson": SharpnessAwareMethod,
    "adversarial": AdversarialMethod,
    "saf": SAFMethod,
    "mesa": MESAMethod,
    "noise": NoiseInjectionMethod,
    "rwp": RWPMethod,
    "device-sam": DeviceSharpnessMethod,
    "saq": SAQMethod,
}
assert tuple(_CLASSES) == OPTIMIZER_NAMES


class HyperparameterError(InvalidParameterError):
    """An unknown or invalid hyperparameter (both a ValueError and a TypeError, like a bad keyword)."""


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower()
    if key in METHODS:
        return key
    # two suggestions: names as close as 'sam' and 'saq' tie for a typo such as 'sma'
    near = difflib.get_close_matches(key, OPTIMIZER_NAMES, n=2, cutoff=0.5)
    hint = f" Did you mean {' or '.join(map(repr, near))}?" if near else ""
    raise InvalidParameterError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZER_NAMES)}.{hint}")


def hyperparameter_defaults(name: str) -> dict[str, Any]:
    """The method-specific hyperparameters of ``name`` and their defaults (``None``: resolved per run)."""
    return METHODS[_canonical_name(name)].defaults()


def resolve_hyperparameters(
    name: str,
    *,
    lr: float | None = None,
    momentum: float = TRAINING_SETTINGS["momentum"].default,
    weight_decay: float = TRAINING_SETTINGS["weight_decay"].default,
    base: str | None = None,
    epochs: int | None = None,
    **hparams,
) -> tuple[str, dict]:
    """``(canonical name, every hyperparameter resolved and checked)``, without building anything.

    Takes :func:`build_method`'s arguments; raises what it raises."""
    key = _canonical_name(name)
    spec = METHODS[key]
    unknown = sorted(set(hparams) - {hp.name for hp in spec.hyperparameters})
    if unknown:
        valid = ", ".join(hp.name for hp in spec.hyperparameters) or "none besides lr, momentum, weight_decay, base"
        raise HyperparameterError(
            f"optimizer {key!r} takes no hyperparameter {', '.join(map(repr, unknown))}; its hyperparameters: {valid}"
        )
    settings = TRAINING_SETTINGS
    base = settings["base"].check(base)
    if key in BASE_OPTIMIZERS:
        if base not in (None, key):
            raise InvalidParameterError(f"optimizer {key!r} is its own base optimizer; got base={base!r}")
        base = key
    elif base is None:
        base = "sgd"
    lr = DEFAULT_LR[base] if lr is None else settings["lr"].check(lr)
    momentum = settings["momentum"].check(momentum)
    weight_decay = settings["weight_decay"].check(weight_decay)
    if epochs is not None:
        epochs = settings["epochs"].check(epochs)
    owner = f"optimizer {key!r}"
    resolved = {
        hp.name: hp.check(hp.default if hparams.get(hp.name) is None else hparams[hp.name], owner)
        for hp in spec.hyperparameters
    }
    resolved = _CLASSES[key].resolve_hparams(resolved, epochs=epochs)
    return key, {"base": base, "lr": lr, "momentum": momentum, "weight_decay": weight_decay, **resolved}


def build_method(
    name: str,
    model: nn.Module,
    *,
    lr: float | None = None,
    momentum: float = TRAINING_SETTINGS["momentum"].default,
    weight_decay: float = TRAINING_SETTINGS["weight_decay"].default,
    base: str | None = None,
    num_samples: int | None = None,
    num_classes: int | None = None,
    epochs: int | None = None,
    output_fn=None,
    loss_fn=None,
    **hparams,
) -> TrainingMethod:
    """The training method ``name`` for ``model``.

    Args:
        name: one of :data:`OPTIMIZER_NAMES`.
        lr, momentum, weight_decay: the base optimizer's settings. ``lr`` defaults to 0.05 with SGD and
            0.001 with AdamW; with AdamW, ``momentum`` is β₁.
        base: ``"sgd"`` or ``"adamw"``, the base optimizer of every method but ``sgd``/``adamw``
            themselves (default ``"sgd"``).
        num_samples, num_classes: the training set's size and class count (SAF's per-sample buffer).
        epochs: the run's length (SAF/MESA start their term after 30 % of it unless told otherwise).
        output_fn: picks the prediction from the model's output (see :func:`analogsam.scoring.model_output`).
        loss_fn: the batch-mean task loss (default cross-entropy; see :func:`analogsam.scoring.task_loss`).
        **hparams: the method's own hyperparameters (see :func:`hyperparameter_defaults` and
            :data:`~analogsam.optim.hyperparameters.METHODS`); ``None`` means the default.

    Raises:
        InvalidParameterError: unknown ``name`` (with the nearest valid one), a wrong type or an
            out-of-range value, naming the parameter (a ValueError).
        HyperparameterError: a hyperparameter ``name`` does not take (a ValueError and a TypeError).
    """
    key, full = resolve_hyperparameters(
        name, lr=lr, momentum=momentum, weight_decay=weight_decay, base=base, epochs=epochs, **hparams
    )
    return _CLASSES[key](
        key,
        model,
        base=full["base"],
        lr=full["lr"],
        momentum=full["momentum"],
        weight_decay=full["weight_decay"],
        hparams=full,
        num_samples=num_samples,
        num_classes=num_classes,
        output_fn=output_fn,
        loss_fn=loss_fn,
    )


# -- command line ----------------------------------------------------------------------------------

_BASE_SETTINGS = ("lr", "momentum", "weight_decay", "base")


def add_optimizer_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--optimizer``, the base optimizer's flags and every method's hyperparameter flags.

    Method flags default to ``None``, meaning the chosen method's own default (see each help text)."""
    group = parser.add_argument_group(
        "optimizer", "training method and its hyperparameters; a method's flags are ignored by the others"
    )
    group.add_argument(
        "--optimizer",
        default="sgd",
        choices=OPTIMIZER_NAMES,
        metavar="NAME",
        help=f"training method, one of: {', '.join(OPTIMIZER_NAMES)} (default: sgd)",
    )
    for name in _BASE_SETTINGS:
        hp = TRAINING_SETTINGS[name]
        add_flag(group, hp, default=hp.default)
    for hp, users, defaults in method_flags():
        add_flag(group, hp, used_by=", ".join(users), default_text=defaults)


def method_kwargs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``build_method`` keyword arguments from parsed arguments: the base optimizer's settings plus the
    flags that apply to ``args.optimizer``. Unset flags are left out (the method's defaults apply); a flag
    set for another method is ignored with a warning."""
    name = _canonical_name(getattr(args, "optimizer", "sgd"))
    valid = {hp.name for hp in METHODS[name].hyperparameters}
    base = getattr(args, "base", None)
    resolved_base = name if name in BASE_OPTIMIZERS else (base or "sgd")
    lr = getattr(args, "lr", None)
    kwargs: dict[str, Any] = {
        "lr": DEFAULT_LR[resolved_base] if lr is None else lr,
        "momentum": getattr(args, "momentum", TRAINING_SETTINGS["momentum"].default),
        "weight_decay": getattr(args, "weight_decay", TRAINING_SETTINGS["weight_decay"].default),
    }
    if base is not None:
        if name in BASE_OPTIMIZERS and base != name:
            raise InvalidParameterError(
                f"--base-optimizer {base} contradicts --optimizer {name}; leave --base-optimizer out for sgd and adamw"
            )
        kwargs["base"] = base
    ignored = []
    for hp, users, _ in method_flags():
        value = getattr(args, hp.name, None)
        if value is None:
            continue
        if hp.name in valid:
            kwargs[hp.name] = value
        else:
            ignored.append(f"{hp.option} (used by {', '.join(users)})")
    if ignored:
        warnings.warn(f"--optimizer {name} ignores {'; '.join(ignored)}", stacklevel=2)
    return kwargs
