"""The settings objects of :func:`analogsam.evaluation.evaluate`: how its measurements are laid out
over engines and forward passes (:class:`PassLayout`), and what its rows say about the network
(:class:`RunLabels`). Each field is declared with its constraint (:mod:`analogsam.validation`) and
checked when the object is made, so a settings object that exists is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analogsam.evaluation.backends import BACKENDS, check_backend_device
from analogsam.validation import Interval, Options, OrNone, Settings, setting

__all__ = ["PassLayout", "RunLabels"]


@dataclass(frozen=True)
class PassLayout(Settings):
    """Where and how the analog forwards run; the numbers do not depend on it beyond what
    ``backend`` and ``device`` say (:func:`~analogsam.evaluation.evaluate`).

    ``backend``: ``"auto"`` (the seeded fast engine where it replays the tiles, else aihwkit),
    ``"fast"`` or ``"aihwkit"`` (:func:`analogsam.evaluation.backends.make_backend`). ``device``:
    ``"auto"`` (CUDA when torch sees a GPU, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
    ``torch.device``; ``backend="aihwkit"`` on an explicit GPU is refused here. ``batch_size``:
    samples per analog forward call. ``repeats_per_pass``: ``None``, one forward pass per (repeat,
    t); P, P repeats at every time in one stacked forward (the same numbers on the CPU, up to
    summation order on a GPU).
    """

    backend: str = setting("auto", Options(BACKENDS), "engine of the analog forward")
    device: Any = "auto"  # checked with the backend below: a name or a torch.device
    batch_size: int = setting(2000, Interval(int, 1), "samples per analog forward call")
    repeats_per_pass: int | None = setting(
        None, OrNone(Interval(int, 1), "one repeat per pass"), "repeats measured in one stacked forward"
    )

    def __post_init__(self):
        super().__post_init__()
        check_backend_device(self.backend, self.device)  # refused now, before any work

    @property
    def target(self):
        """The ``torch.device`` the forwards run on."""
        return check_backend_device(self.backend, self.device)


@dataclass(frozen=True)
class RunLabels(Settings):
    """What the rows say about the network measured, where it is a module rather than a
    :class:`~analogsam.training.TrainedRun` (which carries its own): its ``optimizer``, the
    ``train_seed`` it was trained with (for a network of a seed group it also enters each repeat's
    seed, so the networks of a group never share a noise draw) and any further columns ``info``
    (``{"model": ..., "dataset": ...}``)."""

    optimizer: str | None = None
    train_seed: int | None = setting(
        None, OrNone(Interval(int, 0), "the run's own"), "seed the network was trained with"
    )
    info: dict | None = None
