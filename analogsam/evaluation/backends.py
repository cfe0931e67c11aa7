"""The backend interface: what measures a converted network on simulated analog hardware.

A backend wraps one converted (aihwkit) network and does three things, in this order per repeat:

``program(seed)``
    Program the analog weights afresh: a new draw of programming noise, seeded by ``seed`` (the
    repeat's seed). Drift exponents are drawn here too.
``drift(t, seed)``
    Drift the programmed weights to ``t`` seconds after programming (from that same programming,
    not from the previous time point) and prepare the forward at ``t``. ``seed`` is the programming's
    seed again; the read noise of the drift and the forward noise at ``t`` are drawn from seeds
    derived from ``(seed, t)``, so the numbers at ``t`` do not depend on which other times are
    measured, or in which order.
``forward(x)``
    Logits of a batch ``x`` at the current time point, in eval mode.

plus ``name``, the label of the rows it measures (the ``backend`` column). A backend that can
measure many (repeat, time) states in one forward also implements ``capture()`` and
``forward_stacked(x, states)`` (:class:`StackingBackend`; the fast engine does); ``evaluate``'s
``repeats_per_pass`` uses them, and measures one state at a time on a backend without them. The Monte-Carlo protocol
(:func:`analogsam.evaluation.evaluate`) only calls these; everything a backend needs to reproduce
its numbers (which generator is seeded with what) lives here. A new engine (a GPU replay of the
tiles) or a runner that spreads repeats over machines plugs in here: it implements the three
methods with this seeding and :func:`make_backend` learns its name.

The seeding, identical for both backends of aihwkit 1.1.0 (programming and drift noise come from
torch's global generator, which aihwkit's Python code draws from):

* ``program(seed)``: ``torch.manual_seed(seed)``, then ``program_analog_weights()``;
* ``drift(t, seed)``: ``torch.manual_seed(derive_seed(seed, "drift", t))``, then
  ``drift_analog_weights(t)``.

:class:`FastBackend` programs and drifts every tile at once instead
(:mod:`analogsam.hardware.programming`: aihwkit's noise-model formulas on the concatenated
conductances, the same seeds, the same distributions, another realisation than the tile-by-tile
calls). The two backends differ in the forward. :class:`AihwkitBackend` runs aihwkit's C++ tiles, whose
forward noise (``out_noise``, and the drift-compensation read-out) comes from aihwkit's own
clock-seeded generator that Python cannot seed: its numbers are reproducible only without forward
noise. :class:`FastBackend` replays the same tile arithmetic with :mod:`analogsam.hardware.fast`,
drawing the forward noise at ``t`` from ``derive_seed(seed, "forward", t)`` and the
drift-compensation baseline of a programming from ``derive_seed(seed, "program")``: every number
is reproducible. Both reseed torch's global generator; callers that must keep their own random
stream fork it (``evaluate`` does).

On a CUDA device (``device=``), programming and drift stay aihwkit's, on the CPU (aihwkit's
wheels have no CUDA build; once per repeat and time, O(weights)), and only :class:`FastBackend`
runs: its forward and its drift-compensation read-outs on the GPU, drawn from CUDA generators
seeded with the same derived seeds. CUDA's generator gives other numbers than the CPU's for a
seed, so its rows are labelled ``fast-cuda``: with noise off they equal the CPU's up to summation
order, with noise on they have the same distribution. :class:`AihwkitBackend` runs on the CPU only:
asked for on CUDA it is refused; ``device="auto"`` chooses the CPU for it. Every backend's
``device`` attribute says where its forward takes its inputs.
"""

from __future__ import annotations

import warnings
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from analogsam.device import asks_for_accelerator, is_auto, resolve_device
from analogsam.errors import InvalidParameterError
from analogsam.evaluation.seeds import derive_seed
from analogsam.validation import check_choice

#: What ``backend=`` accepts: ``"auto"`` picks the fast engine where it replays the tiles, else aihwkit.
BACKENDS = ("auto", "fast", "aihwkit")


@runtime_checkable
class Backend(Protocol):
    """What :func:`analogsam.evaluation.evaluate` needs from a backend (see the module docstring)."""

    name: str

    def program(self, seed: int) -> None:
        """Program the analog weights afresh, seeded by ``seed``."""

    def drift(self, t: float, seed: int) -> None:
        """Drift the programmed weights to ``t`` s; draws seeded from ``(seed, t)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` at the current time point."""


@runtime_checkable
class StackingBackend(Backend, Protocol):
    """A backend that can also measure many (repeat, time) states in one forward
    (``evaluate(..., repeats_per_pass=P)``): after each ``drift(t, seed)``, ``capture()`` keeps the
    state it prepared; ``forward_stacked(x, states)`` returns the outputs of ``x`` under every one
    of ``states``, the samples of ``states[k]`` in rows ``k*len(x)`` to ``(k+1)*len(x)``, each
    drawing its noise as ``forward(x)`` right after that drift would."""

    def capture(self) -> object:
        """The state the last ``drift`` prepared."""

    def forward_stacked(self, x: torch.Tensor, states: list) -> torch.Tensor:
        """Outputs of ``x`` under each captured state, stacked along the first dimension."""


class BackendFallbackWarning(UserWarning):
    """``backend="auto"`` measures with aihwkit's tiles because the fast engine cannot replay them."""


class AihwkitBackend:
    """aihwkit's own tiles: programming, drift and the C++ forward (forward noise not seeded)."""

    name = "aihwkit"
    device = torch.device("cpu")

    def __init__(self, analog_model: nn.Module):
        self.analog = analog_model
        self._programmed = False

    def program(self, seed: int) -> None:
        torch.manual_seed(seed)  # programming noise and drift exponents are drawn from torch's generator
        self.analog.program_analog_weights()
        self._programmed = True

    def drift(self, t: float, seed: int) -> None:
        if not self._programmed:
            raise RuntimeError(f"{type(self).__name__}.drift() before program(): program the weights first")
        # A drift draws fresh read noise: each time point gets its own seed rather than whatever the
        # previous time point left in the stream.
        torch.manual_seed(derive_seed(seed, "drift", t))
        self.analog.drift_analog_weights(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.analog(x)


class FastBackend(AihwkitBackend):
    """aihwkit's programming and drift, then the fast engine's seeded replay of the tiles' forward
    on ``device`` (None: the CPU; on CUDA the rows say ``fast-cuda``)."""

    name = "fast"

    def __init__(self, analog_model: nn.Module, device: str | torch.device | None = None):
        from analogsam.hardware.fast import FastAnalogForward

        super().__init__(analog_model)
        self.device = torch.device("cpu") if device is None else resolve_device(device)
        if self.device.type != "cpu":
            self.name = f"fast-{self.device.type}"
        self.engine = FastAnalogForward(analog_model, device=self.device)
        self._baseline: torch.Generator | None = None

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def program(self, seed: int) -> None:
        from analogsam.hardware.programming import inference_tiles, program_tiles

        torch.manual_seed(seed)
        # every tile at once; the compensation read-outs are the engine's (at sync)
        program_tiles(inference_tiles(self.analog))
        self._programmed = True
        # The drift-compensation baseline belongs to the programming, not to the first time point.
        self._baseline = self._generator(derive_seed(seed, "program"))

    def drift(self, t: float, seed: int) -> None:
        from analogsam.hardware.programming import drift_tiles, inference_tiles

        if not self._programmed:
            raise RuntimeError(f"{type(self).__name__}.drift() before program(): program the weights first")
        torch.manual_seed(derive_seed(seed, "drift", t))
        drift_tiles(inference_tiles(self.analog), t)
        generator = self._generator(derive_seed(seed, "forward", t))
        self.engine.sync(generator, baseline_generator=self._baseline)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.engine(x)

    def capture(self):
        """The engine's state after the last drift (weights, periphery, forward generator)."""
        return self.engine.capture()

    def forward_stacked(self, x: torch.Tensor, states: list) -> torch.Tensor:
        """Logits of ``x`` under each captured state in one pass
        (:meth:`analogsam.hardware.fast.FastAnalogForward.forward_stacked`)."""
        return self.engine.forward_stacked(x, states)


def check_backend_device(backend: str, device: str | torch.device | None = None) -> torch.device:
    """Where ``backend`` computes when asked for ``device`` (None: the CPU; ``"auto"``: CUDA where
    torch sees a GPU, but the CPU for ``backend="aihwkit"``); ``"aihwkit"`` on an explicit GPU is
    refused in one line."""
    check_choice("backend", backend, BACKENDS)
    if device is None or (backend == "aihwkit" and is_auto(device)):
        return torch.device("cpu")
    device = resolve_device(device)
    if backend == "aihwkit" and device.type != "cpu":
        raise InvalidParameterError(
            f"backend='aihwkit' cannot run on {device}: aihwkit's wheels have no CUDA "
            "tiles (analogsam runs them on the CPU); pass backend='fast' or 'auto' "
            "(the fast engine on the GPU), or device='cpu'"
        )
    return device


def make_backend(analog_model: nn.Module, backend: str = "auto", device: str | torch.device | None = None) -> Backend:
    """The backend that measures ``analog_model`` (a network converted to aihwkit tiles) on ``device``.

    ``"fast"``: the fast engine, or :class:`~analogsam.hardware.fast.FastPathUnsupported` naming
    what it cannot replay; ``"aihwkit"``: aihwkit's tiles; ``"auto"``: the fast engine where it
    replays every tile (every shipped preset, on the aihwkit version it mirrors), otherwise aihwkit's
    tiles with a one-line :class:`BackendFallbackWarning` naming the reason (an aihwkit version the
    engine does not mirror, or a setting it does not reproduce), since those numbers are then not
    reproducible.

    ``device``: what :func:`analogsam.device.resolve_device` takes; None: the CPU. On an explicit
    CUDA device only the fast engine runs: ``"aihwkit"`` is refused, and ``"auto"`` raises
    :class:`~analogsam.hardware.fast.FastPathUnsupported` where the fast engine cannot replay the
    tiles (rather than measuring on the CPU). ``device="auto"`` runs the fast engine on CUDA where
    torch sees a GPU, and aihwkit's tiles where they are chosen on the CPU, as without a GPU.
    """
    # The engine is imported here, not with the module: reading results or times needs no engine,
    # and a version of the engine may load aihwkit's bindings when imported.
    from analogsam.hardware.fast import FastPathUnsupported, unsupported_reason

    resolved = check_backend_device(backend, device)
    if backend == "aihwkit":
        return AihwkitBackend(analog_model)
    reason = unsupported_reason(analog_model)
    if reason is None:
        return FastBackend(analog_model, resolved)
    if backend == "auto" and asks_for_accelerator(device, resolved):
        raise FastPathUnsupported(
            f"backend='auto' on {resolved} needs the fast engine, which cannot replay "
            f"this network's analog tiles: {reason}; pass device='cpu' to measure with "
            "aihwkit's C++ tiles"
        )
    if backend == "fast":
        raise FastPathUnsupported(
            f"backend='fast' cannot replay this network's analog tiles: {reason}; "
            "use backend='auto' or 'aihwkit' (aihwkit's C++ tiles)"
        )
    warnings.warn(
        f"backend='auto' measures with aihwkit's C++ tiles, whose forward noise is not seeded, "
        f"because the fast engine cannot replay them: {reason}",
        BackendFallbackWarning,
        stacklevel=2,
    )
    return AihwkitBackend(analog_model)
