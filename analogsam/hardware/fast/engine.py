"""FastAnalogForward: a seeded, batched replay of an aihwkit analog model's eval-mode forward.

It ties the package together: :mod:`.support` decides whether the model is reproduced,
:mod:`.aihwkit_adapter` reads each tile, :mod:`.tile` replays it, :mod:`.layers` runs the analog
layers in a shallow copy of the network, reading the current state's noise and any stacked pass
from the :class:`.context.ForwardContext` they were built with (never the engine's attributes),
:mod:`.threads` sets the threads. The contract (what is
exact, how it is seeded) is in the package docstring, :mod:`analogsam.hardware.fast`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from analogsam.device import resolve_device
from analogsam.hardware.fast import aihwkit_adapter as aihwkit
from analogsam.hardware.fast.context import ForwardContext
from analogsam.hardware.fast.grouped import fused_grouped
from analogsam.hardware.fast.layers import FastConv2d, FastLinear
from analogsam.hardware.fast.noise import NoiseSource, seed_of
from analogsam.hardware.fast.stacked import EngineState, StackedPass
from analogsam.hardware.fast.support import FastPathUnsupported, io_spec, unsupported_reason
from analogsam.hardware.fast.threads import engine_threads
from analogsam.hardware.fast.tile import Tile, Workspace, sync_tiles

__all__ = ["FastAnalogForward"]


class FastAnalogForward:
    """Seeded, batched replay of an aihwkit analog model's eval-mode forward.

    Usage::

        engine = FastAnalogForward(analog_model)      # once per converted model
        analog_model.program_analog_weights()           # aihwkit, on torch's generator
        analog_model.drift_analog_weights(t)
        engine.sync(generator)                          # read weights, recompute drift compensation
        logits = engine(x)                              # forward noise from a seed drawn from it

    Digital layers (BatchNorm, pooling, activations, ...) run as the model's own modules; only the
    analog layers are replaced, in a shallow copy of the module tree, so ``analog_model`` itself
    is never modified. The same generator state at :meth:`sync` and the same inputs in the same
    order give bit-identical outputs, whatever the batches they come in (the random numbers are
    addressed by the samples' indices since the sync: :mod:`~analogsam.hardware.fast.noise`).

    On a CUDA ``device`` the forward runs on the GPU: each tile's weights and periphery are copied
    there at :meth:`sync`, the digital modules are copies moved there, inputs are moved there by
    ``__call__``, and the generators must be CUDA generators. Programming and drift stay
    aihwkit's, on the CPU (its wheels have no CUDA build). The engine's own generator draws the same
    numbers on every device for the same seed; CUDA sums in another order, so the outputs equal
    the CPU's up to the summation order, noise on or off.
    """

    def __init__(self, analog_model: nn.Module, *, threads: int | None = None, fused: bool = True, device=None):
        """``threads``: torch intra-op threads for :meth:`sync` and the forward (restored
        afterwards); None keeps the caller's setting. The fast path issues many short parallel
        operations, so on a machine whose cores are busy with other jobs one thread can be several
        times faster than two (OpenMP barrier waits).

        ``fused``: run the DAC and ADC sides through the compiled kernels of
        :mod:`analogsam.hardware.fast.kernels` where they apply (bit-identical, faster); False runs the torch
        operations only. The kernels are CPU code: on CUDA the torch operations run.

        ``device``: where the forward runs, anything :func:`analogsam.device.resolve_device` takes;
        None: the CPU."""
        reason = unsupported_reason(analog_model)
        if reason:
            raise FastPathUnsupported(reason)
        self.model = analog_model
        self.threads = threads
        self.device = torch.device("cpu") if device is None else resolve_device(device)
        self.fused = fused and self.device.type == "cpu"
        self._tiles: list[Tile] = []
        self._workspace = Workspace()
        # what the analog layers read during a forward (the current state's noise, a stacked pass)
        self.context = ForwardContext(self.device)
        self._synced = False
        self.network = self._shadow(analog_model, "")

    def _add_tile(self, tile, name: str) -> Tile:
        io, reason = aihwkit.read_forward_io(tile)
        if reason:  # pragma: no cover - checked in unsupported_reason
            raise FastPathUnsupported(f"{name}: {reason}")
        t = Tile(aihwkit.TileReader(tile), io_spec(io), name, self.fused, self._workspace, device=self.device)
        t.index = len(self._tiles)  # its place in an EngineState
        self._tiles.append(t)
        return t

    def _shadow(self, module: nn.Module, name: str) -> nn.Module:
        kind = aihwkit.layer_kind(module)
        if kind == "linear":
            return FastLinear(self.context, self._add_tile, module, name)
        if kind in ("conv1d", "conv2d", "conv1d_mapped", "conv2d_mapped"):
            return FastConv2d(self.context, self._add_tile, module, name, kind)
        on_cpu = self.device.type == "cpu"
        if not any(aihwkit.layer_kind(m) for m in module.modules()):
            # purely digital: run the original module (on another device, a copy moved there, so
            # that analog_model keeps running on the CPU)
            return module if on_cpu else copy.deepcopy(module).to(self.device)
        new = copy.copy(module)
        if not on_cpu:  # the container's own tensors (e.g. a position embedding), not the original's
            new._parameters = {
                k: None if p is None else nn.Parameter(p.detach().to(self.device), p.requires_grad)
                for k, p in module._parameters.items()
            }
            new._buffers = {k: None if b is None else b.to(self.device) for k, b in module._buffers.items()}
        new._modules = {
            key: (None if child is None else self._shadow(child, f"{name}.{key}" if name else key))
            for key, child in module._modules.items()
        }
        return fused_grouped(self.context, new)  # a grouped convolution: all its tiles in one kernel pass

    @property
    def tiles(self) -> list[Tile]:
        return list(self._tiles)

    @torch.no_grad()
    def sync(
        self, generator: torch.Generator | None = None, *, baseline_generator: torch.Generator | None = None
    ) -> None:
        """Read every tile's current (programmed, drifted) weights and periphery, and recompute the
        drift-compensation factors through this engine's forward. The read-outs and every later
        forward take their random numbers from the engine's counter-based generator (:mod:`~analogsam.hardware.fast.noise`)
        under the seed of ``generator`` (its ``initial_seed()``: a CPU and a CUDA generator seeded
        alike give the same numbers; None: a seed drawn from torch's default generator), the
        forwards addressed by the index of each sample since this sync.

        aihwkit reads the compensation baseline out once per programming (in
        ``program_analog_weights``) and the current value at every ``drift_analog_weights``;
        alpha = baseline / current. Here the baseline read-out happens at the first sync that
        sees a new programming (``tile.programmed_weights`` changed), under the seed of
        ``baseline_generator`` if given, else one derived from the forward's seed. So that a repeat's numbers do
        not depend on which time point is evaluated first, call ``sync`` right after
        ``program_analog_weights()`` with a generator of that programming, or pass
        ``baseline_generator``. (After a programming without a drift aihwkit keeps its previous
        alpha, or 1; the fast path computes alpha for the current weights instead, ~1.)
        """
        for name, gen in (("generator", generator), ("baseline_generator", baseline_generator)):
            if gen is not None and gen.device.type != self.device.type:
                raise ValueError(
                    f"FastAnalogForward.sync: {name} is a {gen.device} generator but the engine "
                    f"runs on {self.device}; pass torch.Generator(device={str(self.device)!r})"
                )
        self.context.noise = source = NoiseSource(seed_of(generator), baseline_generator)
        with engine_threads(self.threads), _full_float32(self.device):
            sync_tiles(self._tiles, source)  # (the drift-compensation read-outs batched across tiles)
        self._synced = True

    @torch.no_grad()
    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Eval-mode forward of the whole network; its random numbers under the seed drawn at
        :meth:`sync`, addressed by each sample's index among the samples read since (``x``'s first
        dimension holds the samples); given a ``generator``, under its seed (samples counted from 0)."""
        if not self._synced:
            raise RuntimeError(
                "call FastAnalogForward.sync(generator) after programming/drifting and before the forward"
            )
        if self.model.training:
            raise RuntimeError(
                "the analog model is in training mode; call analog_model.eval() first "
                "(the fast path reproduces aihwkit's eval-mode forward)"
            )
        if generator is not None:
            self.context.noise = NoiseSource(seed_of(generator), self.context.noise.baseline_generator)
        x = x.to(self.device)
        source = self.context.noise
        source.begin()
        with engine_threads(self.threads), _full_float32(self.device):
            # aihwkit computes in float32; token ids (for an Embedding) stay integers.
            out = self.network(x.to(torch.float32) if x.is_floating_point() else x)
        source.end(_samples(x))
        return out

    # -- many states in one pass ------------------------------------------------------------
    def capture(self) -> EngineState:
        """The state the last :meth:`sync` left (every tile's weights and periphery) and its
        noise, for :meth:`forward_stacked`. The noise is shared, not copied: a stacked forward
        counts its samples after those the engine's forwards read, as the engine's own forward would."""
        if not self._synced:
            raise RuntimeError("call FastAnalogForward.sync(generator) before capture()")
        return EngineState(tuple(tile.state() for tile in self._tiles), self.context.noise)

    @torch.no_grad()
    def forward_stacked(self, x: Tensor, states: Sequence[EngineState], *, batched: bool | None = None):
        """The forward of the same inputs ``x`` (N, ...) under each of ``states`` (from
        :meth:`capture`), in one pass: the result's first dimension holds the R*N outputs, block k
        (rows k*N to (k+1)*N) those of ``states[k]``, with its noise. Each block equals
        ``__call__`` of ``x`` after the sync that captured that state, up to the summation order
        of the digital layers (see :mod:`.stacked`). The engine's current state is kept.

        ``batched``: True runs the R*N samples through every layer at once (what fills a GPU);
        False runs the network state by state, the first analog layer computing every state's
        outputs from one quantization (bit-identical to one by one; what pays on a CPU); None
        (default): batched on a GPU, state by state on the CPU. A model output that is a dict,
        tuple or list has its tensors joined along their first dimension."""
        states = list(states)
        if not states:
            raise ValueError("forward_stacked() needs at least one captured state")
        if self.model.training:
            raise RuntimeError(
                "the analog model is in training mode; call analog_model.eval() first "
                "(the fast path reproduces aihwkit's eval-mode forward)"
            )
        current = self.capture()
        x = x.to(self.device)
        x = x.to(torch.float32) if x.is_floating_point() else x
        if batched is None:
            batched = self.device.type != "cpu"
        per_state = x.shape[0]
        if batched:
            x = x.repeat(len(states), *([1] * (x.dim() - 1)))
        self.context.stack = stack = StackedPass(states, x, per_state, batched=batched)
        sources = list({id(state.noise): state.noise for state in states}.values())
        for source in sources:
            source.begin()
        try:
            with engine_threads(self.threads), _full_float32(self.device):
                if batched:
                    out = self.network(x)
                else:
                    outputs = []
                    for k in range(len(states)):
                        self.context.noise = stack.begin(k, self._tiles)
                        outputs.append(self.network(x))
                    out = _joined(outputs)
            for source in sources:
                source.end(per_state)
            return out
        finally:
            self.context.stack = None
            for tile, state in zip(self._tiles, current.tiles):
                tile.load(state)
            self.context.noise = current.noise


def _samples(x: Tensor) -> int:
    """The samples of a network input (its first dimension)."""
    return x.shape[0] if x.dim() else 1


def _joined(outputs: list):
    """The outputs of the state-by-state runs as one stacked output: tensors concatenated along
    their first dimension; dicts (HuggingFace-style outputs included), tuples and lists joined
    entry by entry; anything else as the first run's (equal in every run, e.g. None)."""
    first = outputs[0]
    if isinstance(first, Tensor):
        return torch.cat(outputs)
    if isinstance(first, dict):
        joined = {key: _joined([out[key] for out in outputs]) for key in first}
        try:
            return type(first)(**joined)
        except TypeError:
            return joined
    if isinstance(first, (tuple, list)):
        joined = [_joined(list(parts)) for parts in zip(*outputs)]
        return type(first)(*joined) if hasattr(first, "_fields") else type(first)(joined)
    return first


@contextlib.contextmanager
def _full_float32(device: torch.device):
    """On CUDA, float32 products and convolutions in full float32, not TF32 (cuDNN's default allows
    TF32, whose 10-bit mantissa would move ADC levels); the previous settings are restored."""
    if device.type != "cuda":
        yield
        return
    # torch >= 2.9 sets TF32 per backend through fp32_precision (reading the legacy allow_tf32
    # flags raises once the new settings were used); older versions only have allow_tf32.
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        settings = [
            (torch.backends.cuda.matmul, "fp32_precision", "ieee"),
            (torch.backends.cudnn.conv, "fp32_precision", "ieee"),
        ]
    else:  # pragma: no cover - torch < 2.9
        settings = [(torch.backends.cuda.matmul, "allow_tf32", False), (torch.backends.cudnn, "allow_tf32", False)]
    old = [getattr(owner, name) for owner, name, _ in settings]
    for owner, name, value in settings:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for (owner, name, _), value in zip(settings, old):
            setattr(owner, name, value)
