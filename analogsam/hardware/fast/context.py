"""What the analog layers of one engine read while a forward runs, passed to them explicitly.

The engine's copy of the network is an ordinary module tree (digital modules run as they are), so
its analog layers cannot take extra arguments from the engine's call. Each is handed, when it is
built, the engine's one :class:`ForwardContext`: the noise of the state the forward runs
(:class:`.noise.NoiseSource`, set by :meth:`FastAnalogForward.sync
<analogsam.hardware.fast.FastAnalogForward.sync>` and by a stacked forward for each state), the
stacked pass in progress (:class:`.stacked.StackedPass`, or None) and the device. The layers read
these and never write them: a layer that runs several states (a batched stacked pass) passes each
state's noise down its own calls.
"""

from __future__ import annotations

import torch

from analogsam.hardware.fast.noise import NoiseSource

__all__ = ["ForwardContext"]


class ForwardContext:
    """The engine's state that its analog layers read during a forward (see the module docstring)."""

    __slots__ = ("device", "noise", "stack")

    def __init__(self, device: torch.device):
        self.device = device
        self.noise: NoiseSource | None = None  # the current state's forward noise (set by sync)
        self.stack = None  # the StackedPass of a forward_stacked in progress, else None
