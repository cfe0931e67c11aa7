"""One tile's analog matrix-vector product, batched: ``ForwardBackwardPassIOManaged::forwardVector``.

:class:`Tile` replays one C++ ``InferenceTile`` of aihwkit (``src/rpucuda/rpu_forward_backward_pass.cpp``)
for a batch of vectors, in the C++ order of operations with the same float32 roundings, drawing
every random number from the engine's counter-based generator (:mod:`~analogsam.hardware.fast.noise`; a tile call's
numbers come as a :class:`.noise.Stream`, addressed by the global index of each input vector and
element, so they do not depend on the batch or the chunks): noise management (NONE, ABS_MAX, MAX, CONSTANT,
with ``nm_thres``), DAC (``rint(x*scale/res)*res``, optionally stochastic, clipped to
``inp_bound``), input noise and asymmetry, the product, IR drop, output-referred weight noise
(ADDITIVE_CONSTANT, PCM_READ), output asymmetry and noise, ADC (``rint``) and ``out_bound``
clipping, ``out_scale``, and iterative bound management (a vector whose output saturates is
recomputed, with fresh noise, at half the input scale until it fits or ``max_bm_factor`` or
``max_bm_res / inp_res`` is exceeded); then the digital periphery of ``InferenceTile`` (input
range, mapping scales, drift compensation, learned out scales, digital bias). Its settings come as an :class:`IOSpec`, its state through
:class:`.aihwkit_adapter.TileReader`; nothing here imports aihwkit. Its products are
:class:`.products.Weights`' (the kernel backend), a convolution's patches :mod:`.patches`'.

Where they apply (abs-max or max noise management with deterministic DAC and ADC rounding: every
shipped preset), the element-wise steps around the matrix product run as compiled loops
(:mod:`.kernels`): for a convolution, one pass per image computes every patch's noise-management
maximum (a separable sliding-window maximum, exact) and writes the quantized patches in
``F.unfold``'s layout; one pass over the product adds the output noise (generated in the kernel,
the same numbers the torch operations draw), applies the ADC, the bound test and the periphery. They are bit-identical to the
torch operations kept for the other settings. Images are processed in chunks that keep the
patches in cache between the DAC pass and the product, in buffers reused from chunk to chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from analogsam.hardware.fast import noise as rng
from analogsam.hardware.fast import periphery
from analogsam.hardware.fast.aihwkit_adapter import TileReader
from analogsam.hardware.fast.patches import Patches, window_max
from analogsam.hardware.fast.products import Weights

__all__ = ["CHUNK_ELEMENTS", "IOSpec", "Tile", "TileState", "Weights", "Workspace", "chunk_elements", "sync_tiles"]

# A processing chunk holds about this many (unfolded) input values, 8 MB of float32: large
# enough that per-call overheads vanish, small enough to stay in cache between the DAC kernel
# and the product (benchmarks/bench_evaluate.py --internals measures the choice).
#: Input values per processing chunk on the CPU (:func:`chunk_elements`).
CHUNK_ELEMENTS = 1 << 21
# On a GPU there is no cache to stay in: a chunk 16 times larger (128 MB of float32) fills the
# device with fewer kernel launches and fewer waits for the bound-management tests.
GPU_CHUNK_ELEMENTS = 1 << 25


def chunk_elements(device: torch.device) -> int:
    """Input values per processing chunk on ``device`` (read at each call, so the benchmark of the
    chunk size can change :data:`CHUNK_ELEMENTS`)."""
    return CHUNK_ELEMENTS if device.type == "cpu" else GPU_CHUNK_ELEMENTS


def _load_kernels():
    """The module of compiled kernels, imported on first use (it imports numba)."""
    from analogsam.hardware.fast import kernels as _kernels

    return _kernels


class Workspace:
    """Scratch buffers shared by the tiles of one engine, reused from chunk to chunk.

    The DAC output of a chunk (8 MB) and its output noise are consumed before the next chunk
    starts; allocating them afresh each time costs page faults and cold caches."""

    def __init__(self):
        self._buffers: dict[str, Tensor] = {}

    def get(self, key: str, shape) -> Tensor:
        """A float32 tensor of ``shape`` (contents undefined), valid until the next ``get(key)``."""
        n = torch.Size(shape).numel()  # (np.prod costs microseconds per call)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < n:
            buf = self._buffers[key] = torch.empty(n, dtype=torch.float32)
        return buf[:n].view(shape)


def _on(t: Tensor | None, device: torch.device) -> Tensor | None:
    """``t`` on ``device`` (the same tensor where it is there already; None stays None)."""
    return None if t is None else t.to(device)


def _f32(value) -> float:
    """``value`` rounded to float32, as the C++ tile stores it."""
    return float(np.float32(value))


@dataclass(frozen=True)
class IOSpec:
    """The forward IO settings of one C++ tile, as the tile uses them (float32 values)."""

    perfect: bool
    nm: str  # "none" | "abs_max" | "max" | "constant"
    nm_thres: float
    bm: bool  # iterative bound management
    bm_test_negative_bound: bool
    max_bm_factor: int
    max_bm_res: float
    inp_bound: float
    inp_res: float  # DAC step in input units (aihwkit's 1/steps already times 2*inp_bound); <= 0: off
    inp_sto_round: bool
    inp_noise: float
    inp_asymmetry: float
    out_bound: float
    out_res: float  # ADC step in output units (times 2*out_bound); <= 0: off
    out_sto_round: bool
    out_noise: float
    out_asymmetry: float
    out_scale: float  # forward.out_scale times the tile's fwd_alpha (float32 product)
    w_noise: float
    w_noise_type: str  # "none" | "additive_constant" | "pcm_read"
    ir_drop: float = 0.0
    ir_drop_g_ratio: float = 0.0  # C++ ir_drop_Gw_div_gmax

    def reductions(self) -> list[float]:
        """The input-scale reductions tried by bound management, in order (``[1.0]`` without it)."""
        if not self.bm:
            return [1.0]
        out, red = [], 1.0
        limit = np.float32(self.max_bm_res) / np.float32(self.inp_res) if self.inp_res > 0 else None
        while True:
            out.append(red)
            if int(red) > self.max_bm_factor or (limit is not None and np.float32(red) > limit):
                return out
            red *= 2.0


# --------------------------------------------------------------------------------------------
# The analog MVM of one tile: ForwardBackwardPassIOManaged<float>::forwardVector, batched
# --------------------------------------------------------------------------------------------


def _discretize(v: Tensor, res: float, sto_round: bool, stream: rng.Stream, site: int) -> Tensor:
    """``getDiscretizedValueSR``: ``rint(v/res [+ U - 0.5]) * res`` in place (``res <= 0``: no-op);
    ``U`` from ``stream`` at draw site ``site``."""
    if res <= 0:
        return v
    v.div_(res)
    if sto_round:
        v.add_(stream.uniform(v, site).sub_(0.5))
    return v.round_().mul_(res)  # torch.round is round-half-to-even, like rintf


def _vectors(t: Tensor) -> Tensor:
    """``t`` with its vectors along dim 0: rows as they are, columns (B, K, L) as (B, L, K)."""
    return t.transpose(1, 2) if t.dim() == 3 else t


def _inp_clip_is_noop(spec: IOSpec) -> bool:
    """Whether clipping the DAC output to ``inp_bound`` can never change a value: with abs-max
    noise management every scaled input is at most 1 + 1 ulp, which the DAC rounds to a level
    not above ``inp_bound``."""
    if spec.inp_bound == float("inf"):
        return True
    if spec.nm != "abs_max" or spec.nm_thres > 0 or spec.inp_res <= 0 or spec.inp_sto_round:
        return False
    one_up = np.nextafter(np.float32(1.0), np.float32(2.0))
    res = np.float32(spec.inp_res)
    top = np.float32(np.rint(np.float32(one_up / res))) * res
    return bool(top <= np.float32(spec.inp_bound))


def _bound_failed(y: Tensor, bound: float, test_negative: bool) -> Tensor:
    """Vectors (outputs along dim 1) that fail aihwkit's bound test, judged before clipping.

    The C++ loop sets ``passed = false`` at an output above ``bound`` and
    ``passed = !bm_test_negative_bound`` at one below ``-bound``, so with the negative test off
    the last saturated output of the vector decides.
    """
    if test_negative:
        return y.abs().amax(1) > bound  # (faster than (y > b) | (y < -b) reduced with any)
    pos = y > bound
    neg = y < -bound
    viol = pos | neg
    shape = [1] * y.dim()
    shape[1] = -1
    last = (viol * torch.arange(1, y.shape[1] + 1, device=y.device).view(shape)).amax(1)
    failed = last > 0
    if failed.any():
        idx = (last - 1).clamp(min=0).unsqueeze(1)
        failed &= ~neg.gather(1, idx).squeeze(1)
    return failed


class Tile:
    """One C++ ``InferenceTile``: its IO spec, current weights and digital periphery.

    Vectors are laid out either as rows, ``x`` of shape (M, K) giving (M, N), or as columns,
    ``x`` of shape (B, K, L) giving (B, N, L) (unfolded convolution patches); in both layouts the
    vector elements run along dim 1 of the input and the outputs along dim 1 of the result.
    """

    def __init__(
        self,
        reader: TileReader,
        spec: IOSpec,
        name: str,
        fused: bool = True,
        workspace: Workspace | None = None,
        device: torch.device | None = None,
    ):
        """``device``: where the weights and periphery live and the forward runs (None: the CPU);
        the compiled kernels (``fused``) are CPU code, refused elsewhere."""
        self.device = torch.device("cpu") if device is None else torch.device(device)
        if fused and self.device.type != "cpu":
            raise ValueError(f"tile {name}: the fused kernels run on the CPU only; pass fused=False on {self.device}")
        self.reader = reader
        self.tile = reader.tile  # the aihwkit tile
        self.spec = spec
        self.name = name
        self.in_size = reader.in_size
        self.out_size = reader.out_size
        self.analog_bias = reader.analog_bias
        self.reductions = spec.reductions()
        self._inp_clip_is_noop = _inp_clip_is_noop(spec)
        # The fused kernels cover abs-max / max noise management with deterministic DAC and ADC
        # rounding (every shipped preset); other settings take the torch operations.
        kernels = _load_kernels() if fused and not spec.perfect else None
        self._dac_kernels = (
            kernels if (spec.nm in ("abs_max", "max") and spec.inp_res > 0 and not spec.inp_sto_round) else None
        )
        self._adc_kernels = kernels if spec.out_res > 0 and not spec.out_sto_round else None
        # the kernels' float32 scalars (read by other kernels of the same arithmetic, .grouped):
        # noise-management threshold, DAC step, input bound; output noise, ADC step, output bound,
        # bound test of negative outputs, out_scale
        self.dac_scalars = (np.float32(spec.nm_thres), np.float32(spec.inp_res), np.float32(spec.inp_bound))
        self.index = 0  # the tile's place in the engine (part of its random numbers' addresses)
        self.adc_scalars = (
            np.float32(spec.out_noise),
            np.float32(spec.out_res),
            np.float32(spec.out_bound),
            spec.bm_test_negative_bound,
            np.float32(spec.out_scale),
        )
        self.workspace = workspace or Workspace()
        self.weights: Weights | None = None
        self.chain_products = False  # set by a grouped layer's kernel (.grouped): Weights(chain=True)
        self.post = None
        self._identity_post = None
        self.compensation = periphery.DriftCompensation()
        self.alpha = None

    @property
    def fused_dac(self) -> bool:
        """Whether the DAC side runs in the compiled kernels (noise management and quantization)."""
        return self._dac_kernels is not None

    @property
    def fused_adc(self) -> bool:
        """Whether the ADC side runs in the compiled kernels (noise, quantization, periphery)."""
        return self._adc_kernels is not None

    # -- state ---------------------------------------------------------------------------
    def sync(self, source: rng.NoiseSource) -> None:
        """Read the tile's current weights and periphery; recompute the drift compensation, its
        read-outs drawing from ``source`` (see :meth:`analogsam.hardware.fast.FastAnalogForward.sync`;
        :func:`sync_tiles` of this tile alone)."""
        sync_tiles([self], source)

    def _read(self) -> None:
        """The first half of :meth:`sync`: the current weights and periphery, without alpha."""
        reader = self.reader
        self.weights = Weights(reader.weights(), self.device, chain=self.chain_products)
        input_range = reader.input_range()
        # the clipping bound of the inputs, read once here, on the CPU (a read on a GPU waits for it)
        self._input_bound = None if input_range is None else abs(input_range.item())
        self.input_range = _on(input_range, self.device)
        # TileWithPeriphery.post_forward: x_output * (input_range * mapping_scales)
        scale = self.input_range
        ms = _on(reader.mapping_scales(), self.device)
        if ms is not None:
            scale = ms.clone() if scale is None else scale * ms
        self.post_scale = scale
        self.out_scaling = _on(reader.out_scaling(), self.device)
        self.bias = _on(reader.digital_bias(), self.device)

    def _set_alpha(self, alpha: Tensor | None) -> None:
        """The second half of :meth:`sync`: the drift compensation factor, and the periphery of
        the ADC kernels."""
        self.alpha = alpha
        self.post = None
        if self._adc_kernels is not None:
            self.post = periphery.kernel_arguments(
                self.out_size, self.post_scale, self.alpha, self.out_scaling, self.bias
            )

    # -- the raw tile: ForwardBackwardPassIOManaged<float>::forwardVector, batched ---------
    def mvm(self, x: Tensor, weights: Weights, gen: rng.Stream, post=None) -> Tensor:
        """The raw C++ tile forward of vectors ``x`` (rows (M, K) or columns (B, K, L)), its random
        numbers from ``gen`` (whose first vector is ``x``'s first); with
        ``post`` (only with the ADC kernels) the periphery is applied too."""
        return self._mvm(x, [(None, weights, gen, post)])[0]

    def _mvm(self, x: Tensor, passes) -> list[Tensor]:
        """:meth:`mvm` of the same vectors ``x`` for each ``(state, weights, stream, post)`` of
        ``passes`` (``state``: a :class:`TileState` loaded before its pass, for the periphery of
        bound-management reruns; None: the tile's current one), one result each. Rows go in
        chunks; the DAC kernel quantizes each chunk once for every pass (it does not depend on
        the weights; its buffer is only read by the passes, input noise going to a copy), so
        each result equals the one-pass call's. Several passes: rows only."""
        spec = self.spec
        x = x.to(torch.float32).contiguous()
        cols = x.dim() == 3
        outs = [
            torch.empty(
                (x.shape[0], w.n, x.shape[2]) if cols else (x.shape[0], w.n), dtype=torch.float32, device=x.device
            )
            for _, w, _, _ in passes
        ]
        if spec.perfect:
            return [self._perfect(x, w, out) for (_, w, _, _), out in zip(passes, outs)]
        if cols:
            ((_, weights, gen, post),) = passes
            self._mvm_chunk(x, weights, outs[0], gen, post)
            return outs
        rows = max(256, chunk_elements(x.device) // max(x.shape[1], 1))
        last = len(passes) - 1
        for start in range(0, x.shape[0], rows):
            stop = min(x.shape[0], start + rows)
            xc = x[start:stop]
            dac = self._rows_dac(xc) if self._dac_kernels is not None else None
            rows_of = lambda mask: xc[mask]  # noqa: E731,B023 (called at once)
            for i, ((state, weights, gen, post), out) in enumerate(zip(passes, outs)):
                self._use(state)
                if dac is None:
                    self._mvm_chunk(xc, weights, out[start:stop], gen.shifted(start), post)
                    continue
                xq, scale, zero = dac
                xs = xq.clone() if spec.inp_noise > 0 and i < last else xq  # (input noise is added in place)
                self.complete(xs, scale, zero, rows_of, weights, out[start:stop], gen.shifted(start), post)
        return outs

    def _use(self, state: TileState | None) -> None:
        """Load ``state`` (None: keep the current one)."""
        if state is not None:
            self.load(state)

    def _perfect(self, x: Tensor, weights: Weights, out: Tensor) -> Tensor:
        """The perfect forward: the plain product, times ``out_scale``."""
        weights.matmul(x, out)
        if self.spec.out_scale != 1.0:
            out.mul_(self.spec.out_scale)
        return out

    def _mvm_chunk(self, x: Tensor, weights: Weights, out: Tensor, gen, post) -> None:
        """Vectors given explicitly, rows (M, K) or columns (B, K, L), with the torch DAC."""
        self.run(
            self.nm_values(x),
            lambda s: self._dac_torch(x * s.unsqueeze(1), gen),
            lambda mask: _vectors(x)[mask],
            weights,
            out,
            gen,
            post,
        )

    def _rows_dac(self, x: Tensor) -> tuple:
        """The DAC kernel on row vectors ``x`` (M, K): (quantized rows in the shared ``"dac"``
        buffer, their noise-management scales (M,), the short-cut vectors or None)."""
        scale = torch.empty(x.shape[0], dtype=torch.float32)
        nonpos = torch.empty(x.shape[0], dtype=torch.bool)
        xq = self.workspace.get("dac", x.shape)
        zeros = self._dac_kernels.rows_dac(
            x.numpy(), self.spec.nm == "max", *self.dac_scalars, scale.numpy(), nonpos.numpy(), xq.numpy()
        )
        return xq, scale, self._zero_mask(nonpos, zeros)

    def nm_values(self, x: Tensor) -> Tensor | None:
        """computeNoiseManagement for each vector of ``x`` (elements along dim 1); None: no NM."""
        # (x.abs().amax is much faster than aminmax along a non-inner dim)
        return self._noise_management(
            lambda signed: x.amax(1) if signed else x.abs().amax(1), (x.shape[0],) + tuple(x.shape[2:]), x.device
        )

    def _noise_management(self, maxima, shape, device) -> Tensor | None:
        """computeNoiseManagement for vectors whose maximum of ``x`` (``maxima(True)``) or of
        ``|x|`` (``maxima(False)``) is given; ``shape``: the vectors'. None: no NM."""
        spec = self.spec
        if spec.nm == "constant":
            return torch.full(shape, spec.nm_thres if spec.nm_thres > 0 else 1.0, dtype=torch.float32, device=device)
        if spec.nm not in ("abs_max", "max"):
            return None
        nms = maxima(spec.nm == "max")
        if spec.nm_thres > 0:
            nms = torch.clamp(nms, max=spec.nm_thres)
        return nms

    def run(self, nms: Tensor | None, dac, rows_of, weights: Weights, out: Tensor, gen, post=None) -> None:
        """forwardVector for a batch of vectors, writing ``out`` (outputs along dim 1), with
        torch operations.

        ``nms``: the noise-management value of each vector (None without NM); ``dac(s)``
        returns the DAC output of the input vectors times ``s`` (one value per vector), a new
        tensor; ``rows_of(mask)`` returns the raw input vectors selected by ``mask`` as rows
        (M', K), for bound management.
        """
        zero = None
        if nms is not None:
            positive = nms > 0
            # scale = 1 / nm_scale where nm_scale > 0, else the vector is not nm-scaled
            s0 = torch.where(positive, torch.reciprocal(nms), torch.ones_like(nms))
            zero = self._zero_mask(~positive)
        else:
            vec_shape = (out.shape[0],) + tuple(out.shape[2:])
            s0 = torch.ones(vec_shape, dtype=torch.float32, device=out.device)
        self.complete(dac(s0), s0, zero, rows_of, weights, out, gen, post)

    def _zero_mask(self, nonpositive: Tensor, count: int | None = None) -> Tensor | None:
        """The vectors that take forwardVector's short cut (a non-positive noise-management
        value and no input noise: the output is exactly zero, no noise drawn), or None."""
        if self.spec.inp_noise > 0 or count == 0:
            return None
        return nonpositive if count or bool(nonpositive.any()) else None

    def complete(
        self, xq: Tensor, s0: Tensor, zero: Tensor | None, rows_of, weights: Weights, out: Tensor, gen, post=None
    ) -> None:
        """forwardVector from the DAC output ``xq`` of every vector at its noise-management
        scale ``s0`` (the first bound-management round: its reduction is 1), writing ``out``;
        ``zero``: the short-cut vectors; ``rows_of``: see :meth:`run`; ``post``: see
        :meth:`mvm` (the kernel applies it to the first round, here it is applied to the
        vectors that replace those results)."""
        failed = self._one_pass(xq, s0, weights, gen, out, post)
        if failed is not None and len(self.reductions) > 1:
            if zero is not None:
                failed &= ~zero
            if bool(failed.any()):
                # bound management: recompute the saturated vectors at reduced input scale
                yr = self._rerun(rows_of(failed), s0[failed], weights, gen.selected(failed))
                if post is not None:
                    self._periphery(yr, (-1,))
                _vectors(out)[failed] = yr
        if zero is not None:
            if post is None:
                out.masked_fill_(zero.unsqueeze(1), 0.0)
            else:  # an exactly zero output, through the periphery
                _vectors(out)[zero] = self._periphery(torch.zeros(1, out.shape[1], device=out.device), (-1,))

    def _rerun(self, x: Tensor, s0: Tensor, weights: Weights, gen) -> Tensor:
        """Bound-management rounds 2, 3, ... for rows ``x`` that saturated in round 1."""
        out = None
        idx = None
        xa, sa = x, s0
        last = len(self.reductions) - 1
        for r in range(1, last + 1):
            s = sa / self.reductions[r]
            y = torch.empty(xa.shape[0], weights.n, dtype=torch.float32, device=x.device)
            gr = gen.at_round(r)  # each round's numbers are fresh (its own draw sites)
            failed = self._one_pass(self._dac_rows(xa, s, gr), s, weights, gr, y)
            if out is None:
                out = y
            else:
                out.index_copy_(0, idx, y)
            if r == last or failed is None or not bool(failed.any()):
                break
            sel = failed.nonzero().squeeze(1)
            idx = sel if idx is None else idx.index_select(0, sel)
            xa = xa.index_select(0, sel)
            sa = sa.index_select(0, sel)
            gen = gen.subset(sel)
        return out

    def _dac_torch(self, xs: Tensor, gen) -> Tensor:
        """prepareInput's DAC and bound on input vectors already times their scale, in place."""
        spec = self.spec
        _discretize(xs, spec.inp_res, spec.inp_sto_round, gen, rng.INPUT_ROUNDING)
        if not self._inp_clip_is_noop:
            xs.clamp_(-spec.inp_bound, spec.inp_bound)
        return xs

    def _dac_rows(self, x: Tensor, s: Tensor, gen) -> Tensor:
        """The DAC output of row vectors ``x`` (M, K) times their scales ``s`` (M,)."""
        if self._dac_kernels is None:
            return self._dac_torch(x * s.unsqueeze(1), gen)
        out = torch.empty_like(x)
        self._dac_kernels.scaled_rows_dac(x.numpy(), s.numpy(), *self.dac_scalars[1:], out.numpy())
        return out

    def _one_pass(self, xs: Tensor, s: Tensor, weights: Weights, gen, y: Tensor, post=None) -> Tensor | None:
        """computeAnalogMV (ONE_PASS) into ``y`` for the DAC output ``xs`` of the input vectors
        times their scale ``s`` (``xs`` is modified in place): the rest of prepareInput (noise,
        asymmetry), gemv, non-idealities, finalizeOutput (noise, ADC, bound), then the final
        ``out_scale / scale``. Returns the vectors that failed the bound test (None without
        bound management)."""
        spec = self.spec
        # --- prepareInput (after the DAC) ---
        if spec.inp_noise > 0:
            noise = gen.normal(xs, rng.INPUT_NOISE)
            xs.add_(noise.mul_(spec.inp_noise))
        if spec.inp_asymmetry != 0:
            a = _f32(np.float32(1.0) - np.float32(spec.inp_asymmetry))
            xs = torch.where(xs < 0, xs * a, xs)
        # --- gemv ---
        weights.matmul(xs, y)
        # --- non-idealities (applyNonIdealities): IR drop, then output-referred weight noise ---
        if spec.ir_drop > 0:
            self._ir_drop(xs, weights, y)
        if spec.w_noise > 0 and spec.w_noise_type == "additive_constant":
            std = torch.linalg.vector_norm(xs, dim=1).mul_(spec.w_noise)
            noise = gen.normal(y, rng.WEIGHT_NOISE)
            y.add_(noise.mul_(std.unsqueeze(1)))
        elif spec.w_noise > 0 and spec.w_noise_type == "pcm_read":
            std = weights.abs_matmul(xs * xs).sqrt_().mul_(spec.w_noise)
            noise = gen.normal(y, rng.WEIGHT_NOISE)
            y.add_(noise.mul_(std))
        return self._finalize(y, s, gen, post)

    def _ir_drop(self, xs: Tensor, weights: Weights, y: Tensor) -> None:
        """applyIrDrop: y_i -= c(a_i) * ir_drop * sum_j w_ij x_j (1 - (1 - j/n)^2), with the
        total current a_i = n / g_ratio * sum_j |w_ij| |x_j| and c(a) = a (a (0.05 a - 0.2) + 0.5);
        input 0 is the farthest from the output."""
        spec = self.spec
        n_in = xs.shape[1]
        shape = [1] * xs.dim()
        shape[1] = -1
        a_scale = _f32(np.float32(n_in) / np.float32(spec.ir_drop_g_ratio))
        a = weights.abs_matmul(xs.abs()).mul_(a_scale)
        c = a * (a * (a * 0.05 - 0.2) + 0.5)
        j = torch.arange(n_in, dtype=torch.float32, device=xs.device)
        p = 1.0 - j / float(n_in)
        x_ir = xs * (1.0 - p * p).view(shape)
        tmp = torch.empty_like(y)
        weights.matmul(x_ir, tmp)
        y.sub_(c.mul_(tmp.mul_(spec.ir_drop)))

    def _finalize(self, y: Tensor, s: Tensor, gen, post=None) -> Tensor | None:
        spec = self.spec
        # --- finalizeOutput ---
        if spec.out_asymmetry > 0:
            a = _f32(np.float32(1.0) - np.float32(spec.out_asymmetry))
            y.copy_(torch.where(y < 0, y * a, y))
        if self._adc_kernels is not None:
            return self._finalize_fused(y, s, gen, post)
        if spec.out_noise > 0:
            noise = gen.normal(y, rng.OUTPUT_NOISE)
            y.add_(noise, alpha=spec.out_noise)
        _discretize(y, spec.out_res, spec.out_sto_round, gen, rng.OUTPUT_ROUNDING)
        failed = None
        if spec.out_bound != float("inf"):
            if spec.bm:
                failed = _bound_failed(y, spec.out_bound, spec.bm_test_negative_bound)
            y.clamp_(-spec.out_bound, spec.out_bound)
        # --- final scaling by out_scale / scale (a Python scalar over a tensor would be
        # reciprocal-times-scalar in torch, so divide tensor by tensor) ---
        factor = torch.reciprocal(s) if spec.out_scale == 1.0 else torch.full_like(s, spec.out_scale) / s
        y.mul_(factor.unsqueeze(1))
        return failed

    def _no_post(self, n: int) -> tuple:
        """Periphery arrays that leave every output as it is."""
        if self._identity_post is None or len(self._identity_post[0]) != n:
            self._identity_post = (np.ones(n, np.float32),) * 3 + (np.full(n, -0.0, np.float32),)
        return self._identity_post

    def _finalize_fused(self, y: Tensor, s: Tensor, gen, post=None) -> Tensor | None:
        """:meth:`_finalize` after the output asymmetry, and the periphery ``post`` if given,
        in one kernel pass over ``y``; the kernel generates the same noise the torch path draws."""
        spec = self.spec
        failed = torch.empty(s.shape, dtype=torch.bool)
        key = np.uint64(gen.site(rng.OUTPUT_NOISE))
        if y.dim() == 3:
            adc, where = self._adc_kernels.adc_cols, gen.base
        else:
            adc, where = self._adc_kernels.adc_rows, gen.vector_ids(y.shape[0], y.device).numpy()
        sigma, res, bound, test_negative, out_scale = self.adc_scalars
        count = adc(
            y.numpy(),
            rng.table(),
            key,
            where,
            sigma,
            res,
            bound,
            test_negative,
            s.numpy(),
            out_scale,
            *(post or self._no_post(y.shape[1])),
            failed.numpy(),
        )
        return failed if spec.bm and count else None

    # -- the tile module ---------------------------------------------------------------------
    def forward(self, x: Tensor, gen: rng.Stream, cols: bool = False) -> Tensor:
        """``InferenceTile.forward`` in eval mode: input range, raw tile, mapping scales, drift
        compensation, learned out scales, digital bias (:meth:`forward_shared` with the current
        state alone).

        Rows: ``x`` (..., in_size). Columns (``cols``): ``x`` (B, in_size, L), result (B, N, L),
        the periphery applied along dim 1 (as aihwkit's indexed convolution does).
        """
        return self.forward_shared(x, [(None, gen)], cols)[0]

    def _input_ranged(self, x: Tensor) -> Tensor:
        """``TileWithPeriphery.pre_forward`` in eval mode: inputs clipped to the input range and
        divided by it (element-wise); refuses a tile that was never synced."""
        if self.weights is None:
            raise RuntimeError("FastAnalogForward.sync(generator) must be called before the forward")
        if self.input_range is None:
            return x
        ir = self._input_bound
        return torch.clamp(x, min=-ir, max=ir) / self.input_range

    def _periphery(self, y: Tensor, view) -> Tensor:
        """The digital post-processing of InferenceTile on the raw outputs ``y`` (in place: ``y``
        is this engine's own buffer), outputs along ``view``'s -1 axis."""
        return periphery.apply(y, view, self.post_scale, self.alpha, self.out_scaling, self.bias)

    def forward_patches(self, img: Tensor, geometry, gen, out: Tensor | None = None) -> Tensor:
        """The tile module forward of every convolution patch of ``img`` (b, C, H, W), the
        vectors of ``F.unfold`` (elements ordered (C, kh, kw)): quantized straight from the
        image by the DAC kernel, or, with the torch operations, read through a strided view of
        the padded image; the noise-management maximum of each patch is a sliding-window
        maximum over the image. Result (b, N, oh*ow), periphery applied
        (:meth:`forward_patches_shared` with the current state alone)."""
        return self.forward_patches_shared(img, geometry, [(None, gen)], [out])[0]

    def _conv_dac(self, pv: Patches) -> tuple:
        """The DAC kernel on every patch of ``pv``: (quantized patches (b, K, L) in the shared
        ``"dac"`` buffer, their noise-management scales (b, L), the short-cut vectors or None)."""
        b, L = pv.b, pv.L
        (kh, kw), (dh, dw), (ph, pw), (sh, sw) = pv.geometry
        scale = torch.empty(b, L, dtype=torch.float32)
        nonpos = torch.empty(b, L, dtype=torch.bool)
        xq = self.workspace.get("dac", (b, pv.k, L))
        zeros = self._dac_kernels.conv_dac(
            pv.img.numpy(),
            kh,
            kw,
            dh,
            dw,
            ph,
            pw,
            sh,
            sw,
            self.spec.nm == "max",
            *self.dac_scalars,
            scale.view(b, pv.oh, pv.ow).numpy(),
            nonpos.view(b, pv.oh, pv.ow).numpy(),
            xq.numpy(),
        )
        return xq, scale, self._zero_mask(nonpos, zeros)

    # -- many states of this tile on the same inputs (repeats stacked in one pass) --------------
    def state(self) -> TileState:
        """What :meth:`sync` read and computed: restored by :meth:`load`."""
        return TileState(*(getattr(self, name) for name in TileState._fields))

    def load(self, state: TileState) -> None:
        """Make ``state`` (from :meth:`state`) the tile's current weights and periphery."""
        for name, value in zip(TileState._fields, state):
            setattr(self, name, value)

    def forward_patches_shared(self, img: Tensor, geometry, slots, outs) -> list[Tensor]:
        """The patch forward of the same images ``img`` for each ``(state, stream)`` of ``slots``
        (``state``: a :class:`TileState` from :meth:`state`, loaded for its pass; None: the
        current one), into the matching tensor of ``outs`` (None: a new one); returns the
        outputs. The input range and the DAC (noise management and quantization, which do not
        depend on the weights) are computed once, where every state has the same input range
        and the DAC kernel applies (otherwise state by state); each state's product, noise and
        ADC then take their numbers from its own stream, so each output is the one a pass of that
        state alone gives (:meth:`forward_patches` is the one-state call)."""
        if len(slots) > 1 and not self._shares_dac(slots):
            return [self.forward_patches_shared(img, geometry, [slot], [out])[0] for slot, out in zip(slots, outs)]
        spec = self.spec
        self._use(slots[0][0])
        pv = Patches(self._input_ranged(img).to(torch.float32).contiguous(), geometry)  # (commutes with unfolding)
        b, k, L = pv.b, pv.k, pv.L
        outs = [
            torch.empty(b, self.weights.n, L, dtype=torch.float32, device=pv.img.device) if out is None else out
            for out in outs
        ]
        if self._dac_kernels is not None and not spec.perfect:
            xq, scale, zero = self._conv_dac(pv)
            last = len(slots) - 1
            for i, ((state, gen), out) in enumerate(zip(slots, outs)):
                self._use(state)
                xs = xq.clone() if spec.inp_noise > 0 and i < last else xq  # (input noise is added in place)
                self.complete(xs, scale, zero, pv.rows_of, self.weights, out, gen, self.post)
                if self.post is None:
                    self._periphery(out, (-1, 1))
            return outs
        ((_, gen),), (out,) = slots, outs  # (one state: see _shares_dac)
        if spec.perfect:
            self._perfect(pv.patches().reshape(b, k, L), self.weights, out)
        else:
            (kh, kw), (dh, dw), _, (sh, sw) = geometry
            c, oh, ow = pv.c, pv.oh, pv.ow
            xp = pv.padded()
            view = pv.patches(xp)
            nms = self._noise_management(  # (the padding zeros count, as in unfold)
                # (reshape: a 1x1 kernel with a stride leaves the maxima a strided view, not a copy)
                lambda signed: window_max(xp if signed else xp.abs(), (kh, kw), (dh, dw), (sh, sw), (oh, ow)).reshape(
                    b, L
                ),
                (b, L),
                pv.img.device,
            )

            def dac(s):
                buf = torch.empty((b, c, kh, kw, oh, ow), dtype=torch.float32, device=pv.img.device)
                torch.mul(view, s.view(b, 1, 1, 1, oh, ow), out=buf)
                return self._dac_torch(buf.view(b, k, L), gen)

            self.run(nms, dac, pv.rows_of, self.weights, out, gen, self.post)
        return [out if self.post is not None else self._periphery(out, (-1, 1))]

    def _shares_dac(self, slots) -> bool:
        """Whether the states of ``slots`` can share one DAC of their inputs: the DAC kernel
        applies and every state has the same input range."""
        first = slots[0][0]
        return (
            self._dac_kernels is not None
            and not self.spec.perfect
            and all(_same_tensor(state.input_range, first.input_range) for state, _ in slots)
        )

    def forward_shared(self, x: Tensor, slots, cols: bool = False) -> list[Tensor]:
        """The tile module forward of the same inputs ``x`` for each ``(state, stream)`` of
        ``slots`` (``state`` as in :meth:`forward_patches_shared`); rows ``x`` (..., in_size), or
        columns (``cols``, one state): (B, in_size, L) giving (B, N, L), the periphery along dim
        1. The input range and the row chunks' DAC are computed once (as in
        :meth:`forward_patches_shared`); each result is the one a pass of that state alone gives
        (:meth:`forward` is the one-state call)."""
        if len(slots) > 1 and (cols or not self._shares_dac(slots)):
            return [self.forward_shared(x, [slot], cols)[0] for slot in slots]
        self._use(slots[0][0])
        x = self._input_ranged(x)
        if cols:
            x2 = x
        else:
            lead = x.shape[:-1]
            x2 = x.reshape(-1, x.shape[-1])
        if self.analog_bias:
            ones = torch.ones((x2.shape[0], 1) + tuple(x2.shape[2:]), dtype=x2.dtype, device=x2.device)
            x2 = torch.cat([x2, ones], 1)
        passes = []
        for state, gen in slots:
            current = self if state is None else state
            passes.append((state, current.weights, gen, current.post))
        outs = self._mvm(x2, passes)
        results = []
        for (state, _), y in zip(slots, outs):
            self._use(state)
            if self.post is None:
                y = self._periphery(y, (-1, 1) if cols else (-1,))
            results.append(y if cols else y.view(*lead, self.out_size))
        return results


def sync_tiles(tiles: list[Tile], source: rng.NoiseSource) -> None:
    """:meth:`Tile.sync` of every tile of ``tiles``, their drift-compensation read-outs batched
    (:func:`.periphery.compensate`); every number as tile by tile."""
    for tile in tiles:
        tile._read()
    for tile, alpha in zip(tiles, periphery.compensate(tiles, source)):
        tile._set_alpha(alpha)


class TileState(NamedTuple):
    """One synced state of a :class:`Tile` (a programming drifted to one time): its weights and
    digital periphery, as :meth:`Tile.sync` leaves them."""

    weights: Weights | None
    input_range: Tensor | None
    post_scale: Tensor | None
    out_scaling: Tensor | None
    bias: Tensor | None
    alpha: Tensor | None
    post: tuple | None


def _same_tensor(a: Tensor | None, b: Tensor | None) -> bool:
    """Both None, or equal tensors."""
    if a is None or b is None:
        return a is b
    return a is b or torch.equal(a, b)
