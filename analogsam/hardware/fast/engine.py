"""A fast, seeded replay of aihwkit 1.1.0's analog forward pass for evaluation.

aihwkit's C++ ``InferenceTile`` (``InferenceRPUConfig``) computes each input vector on its own
(``RPUAbstract::forwardMatrix`` loops ``ForwardBackwardPassIOManaged::forwardVector``), and draws
its forward noise from its own clock-seeded generator that Python cannot seed. That makes a
Monte-Carlo sweep slow and not reproducible. :class:`FastAnalogForward` re-implements the same
arithmetic in batched torch operations and draws every random number from a ``torch.Generator``:

* programming and drift stay aihwkit's (``program_analog_weights`` / ``drift_analog_weights`` run
  in Python on torch's generator); :meth:`FastAnalogForward.sync` reads each tile's current
  weights and digital periphery and recomputes the drift-compensation factor through this
  engine's own (seeded) forward;
* the forward follows ``src/rpucuda/rpu_forward_backward_pass.cpp`` (aihwkit 1.1.0), per input
  vector: noise management (NONE, ABS_MAX, MAX, CONSTANT, with ``nm_thres``), DAC
  (``rint(x*scale/res)*res``, optionally stochastic, clipped to ``inp_bound``), input noise and
  asymmetry, the MVM, IR drop, output-referred weight noise (ADDITIVE_CONSTANT, PCM_READ), output
  asymmetry and noise, ADC (``rint``) and ``out_bound`` clipping, ``out_scale``, and iterative
  bound management (a vector whose output saturates is recomputed, with fresh noise, at half the
  input scale until it fits or ``max_bm_res / inp_res`` is exceeded); then the digital periphery
  of ``InferenceTile`` (input ranges, mapping scales from ``weight_scaling_omega``, drift
  compensation, learned out scales, digital or analog bias) and the layer structure (Linear,
  Conv2d through the same unfolding, tiles split along inputs and outputs, partial sums added
  in digital);
* the IO parameters are read back from the C++ tile (``get_meta_parameters().forward_io``), i.e.
  what the tile really uses (DAC/ADC steps already converted to ``res * 2 * bound``), not the
  Python ``rpu_config`` which may have been edited after conversion without effect.

Settings it does not reproduce are refused by :func:`unsupported_reason`, never approximated.

With every noise source off the result equals aihwkit's up to the summation order of the float32
dot products (OpenBLAS ``sgemv`` there, numpy's OpenBLAS ``sgemm`` here, a relative difference
of ~1e-7):
the ADC then gives the same level except when a pre-ADC value lies within that distance of a
rounding boundary, which moves one output by one ADC step about once per million outputs
(LeNet-5 on 2000 Fashion-MNIST images: 8 of 9.4M conv-1 outputs, 8 of 3.2M conv-2 outputs; the
logits of 1 image in 2000 differ, by at most 0.0016). Every other operation is done in the C++
order with the same float32 roundings.

Where they apply (abs-max or max noise management with deterministic DAC and ADC rounding: every
shipped preset), the element-wise steps around the matrix product run as compiled loops
(:mod:`analogsam.hardware.fast.kernels`): for a convolution, one pass per image computes every patch's
noise-management maximum (a separable sliding-window maximum, exact) and writes the quantized
patches in ``F.unfold``'s layout; one pass over the product adds the output noise (drawn by
torch from the same generator), applies the ADC, the bound test and the periphery. They are
bit-identical to the torch operations kept for the other settings. Images are processed in
chunks that keep the patches in cache between the DAC pass and the product, in buffers reused
from chunk to chunk.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analogsam.errors import AnalogsamError

__all__ = ["FastAnalogForward", "FastPathUnsupported", "unsupported_reason", "IOSpec"]

# A processing chunk holds about this many (unfolded) input values, 8 MB of float32: large
# enough that per-call overheads vanish, small enough to stay in cache between the DAC kernel
# and the product (ResNet-20, 1 thread: 2^16 / 2^18 / 2^20 / 2^21 / 2^22 / 2^23 cost
# 1.9 / 1.35 / 1.06 / 1.0 / 0.97 / 0.95 times 2^21, within the noise of a shared machine).
_CHUNK_ELEMENTS = 1 << 21


# Empty noise arrays tell the ADC kernels that there is no output noise.
_NO_NOISE = {d: torch.empty((0,) * d, dtype=torch.float32) for d in (2, 3)}


def _load_kernels():
    """The module of compiled kernels, imported on first use (it imports numba)."""
    from analogsam.hardware.fast import kernels as _kernels

    return _kernels


class _Workspace:
    """Scratch buffers shared by the tiles of one engine, reused from chunk to chunk.

    The DAC output of a chunk (8 MB) and its output noise are consumed before the next chunk
    starts; allocating them afresh each time costs page faults and cold caches (ResNet-20 on
    500 images: 1.98 s -> 1.78 s, system time 0.15 s -> 0.08 s, 1 thread)."""

    def __init__(self):
        self._buffers: dict[str, Tensor] = {}

    def get(self, key: str, shape) -> Tensor:
        """A float32 tensor of ``shape`` (contents undefined), valid until the next ``get(key)``."""
        n = int(np.prod(shape))
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < n:
            buf = self._buffers[key] = torch.empty(n, dtype=torch.float32)
        return buf[:n].view(shape)


class FastPathUnsupported(AnalogsamError, ValueError):
    """The model holds a layer or a setting that the fast path does not reproduce."""


def _f32(value) -> float:
    """``value`` rounded to float32, as the C++ tile stores it."""
    return float(np.float32(value))


# --------------------------------------------------------------------------------------------
# The IO parameters of one C++ tile
# --------------------------------------------------------------------------------------------

_NM = {"None": "none", "AbsMax": "abs_max", "Max": "max", "Constant": "constant"}
_WN = {"None": "none", "AdditiveConstant": "additive_constant", "PCMRead": "pcm_read"}


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


def _enum_name(value) -> str:
    return getattr(value, "name", str(value))


def _io_spec(tile) -> tuple[Optional[IOSpec], Optional[str]]:
    """``(spec, None)`` for a tile the fast path reproduces, else ``(None, reason)``."""
    try:
        io = tile.tile.get_meta_parameters().forward_io
        extra = tile.tile.dump_extra()
    except Exception as exc:  # pragma: no cover - not a C++ RPU tile
        return None, f"cannot read the C++ tile's forward parameters ({exc})"

    perfect = bool(io.is_perfect) or _enum_name(io.mv_type) == "Ideal"
    fwd_alpha = float(extra.get("rpu.fwd_alpha", [1.0])[0])
    out_scale = _f32(np.float32(io.out_scale) * np.float32(fwd_alpha))
    nm_name = _enum_name(io.noise_management)
    bm_name = _enum_name(io.bound_management)
    wn_name = _enum_name(io.w_noise_type)
    if not perfect:
        if _enum_name(io.mv_type) != "OnePass":
            return None, f"forward.mv_type {_enum_name(io.mv_type)} (only ONE_PASS is reproduced)"
        if nm_name not in _NM:
            return None, f"forward.noise_management {nm_name} (reproduced: NONE, ABS_MAX, MAX, CONSTANT)"
        if bm_name not in ("None", "Iterative"):
            return None, f"forward.bound_management {bm_name} (reproduced: NONE, ITERATIVE)"
        if io.out_noise_std > 0 or extra.get("rpu.fb_pass.fwd.out_noise_values"):
            return None, "forward.out_noise_std > 0 (per-output noise levels drawn inside the C++ tile)"
        if io.out_nonlinearity > 0 or extra.get("rpu.fb_pass.fwd.out_nonlinearity"):
            return None, "forward.out_nonlinearity > 0 (S-shaped output non-linearity)"
        if io.r_series > 0:
            return None, "forward.r_series > 0 (series resistance)"
        if io.v_offset_std > 0 or extra.get("rpu.fb_pass.fwd.v_offset"):
            return None, "forward.v_offset_std > 0 (voltage offsets)"
        if wn_name not in _WN:
            return None, f"forward.w_noise_type {wn_name}"
    spec = IOSpec(
        perfect=perfect,
        nm=_NM.get(nm_name, "none"),
        nm_thres=float(io.nm_thres),
        bm=bm_name == "Iterative",
        bm_test_negative_bound=bool(io.bm_test_negative_bound),
        max_bm_factor=int(io.max_bm_factor),
        max_bm_res=float(io.max_bm_res),
        inp_bound=float(io.inp_bound),
        inp_res=float(io.inp_res),
        inp_sto_round=bool(io.inp_sto_round),
        inp_noise=float(io.inp_noise),
        inp_asymmetry=float(io.inp_asymmetry),
        out_bound=float(io.out_bound),
        out_res=float(io.out_res),
        out_sto_round=bool(io.out_sto_round),
        out_noise=float(io.out_noise),
        out_asymmetry=float(io.out_asymmetry),
        out_scale=out_scale,
        w_noise=float(io.w_noise),
        w_noise_type=_WN.get(wn_name, "none"),
        ir_drop=float(io.ir_drop),
        ir_drop_g_ratio=float(io.ir_drop_g_ratio),
    )
    return spec, None


# --------------------------------------------------------------------------------------------
# The analog MVM of one tile: ForwardBackwardPassIOManaged<float>::forwardVector, batched
# --------------------------------------------------------------------------------------------


def _discretize(v: Tensor, res: float, sto_round: bool, gen) -> Tensor:
    """``getDiscretizedValueSR``: ``rint(v/res [+ U - 0.5]) * res`` in place (``res <= 0``: no-op)."""
    if res <= 0:
        return v
    v.div_(res)
    if sto_round:
        u = torch.rand(v.shape, generator=gen, dtype=v.dtype, device=v.device)
        v.add_(u.sub_(0.5))
    return v.round_().mul_(res)  # torch.round is round-half-to-even, like rintf


def _window_max(m: Tensor, kernel, dilation, stride, out_hw) -> Tensor:
    """max over (C, kh, kw) of every convolution window of ``m`` (b, C, H, W), already padded:
    (b, oh, ow). Separable: the maximum over channels first, then running maxima along W and H."""
    (kh, kw), (dh, dw), (sh, sw), (oh, ow) = kernel, dilation, stride, out_hw
    m = m.amax(1, keepdim=True) if m.shape[1] > 1 else m
    r = None
    for j in range(kw):
        sl = m[..., j * dw: j * dw + sw * (ow - 1) + 1: sw]
        r = sl if r is None else torch.maximum(r, sl)
    c = None
    for i in range(kh):
        sl = r[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, :]
        c = sl if c is None else torch.maximum(c, sl)
    return c[:, 0]


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


class _Tile:
    """One C++ ``InferenceTile``: its IO spec, current weights and digital periphery.

    Vectors are laid out either as rows, ``x`` of shape (M, K) giving (M, N), or as columns,
    ``x`` of shape (B, K, L) giving (B, N, L) (unfolded convolution patches); in both layouts the
    vector elements run along dim 1 of the input and the outputs along dim 1 of the result.
    """

    def __init__(self, tile, spec: IOSpec, name: str, fused: bool = True,
                 workspace: Optional[_Workspace] = None):
        self.tile = tile
        self.spec = spec
        self.name = name
        self.in_size = int(tile.in_size)
        self.out_size = int(tile.out_size)
        self.analog_bias = bool(tile.analog_bias)
        self.reductions = spec.reductions()
        self._inp_clip_is_noop = _inp_clip_is_noop(spec)
        # The fused kernels cover abs-max / max noise management with deterministic DAC and ADC
        # rounding (every shipped preset); other settings take the torch operations.
        kernels = _load_kernels() if fused and not spec.perfect else None
        self._dac_kernels = kernels if (spec.nm in ("abs_max", "max") and spec.inp_res > 0
                                        and not spec.inp_sto_round) else None
        self._adc_kernels = kernels if spec.out_res > 0 and not spec.out_sto_round else None
        # the kernels' float32 scalars: noise-management threshold, DAC step, input bound; output
        # noise, ADC step, output bound, bound test of negative outputs, out_scale
        self._dac_args = (np.float32(spec.nm_thres), np.float32(spec.inp_res), np.float32(spec.inp_bound))
        self._adc_args = (np.float32(spec.out_noise), np.float32(spec.out_res), np.float32(spec.out_bound),
                          spec.bm_test_negative_bound, np.float32(spec.out_scale))
        self.workspace = workspace or _Workspace()
        self.weights: Optional[_Weights] = None
        self.post = None
        self._identity_post = None
        self._baseline_key = None
        self._baseline = None
        self.alpha = None

    # -- state ---------------------------------------------------------------------------
    def sync(self, gen, baseline_gen=None) -> None:
        tile = self.tile
        self.weights = _Weights(tile.tile.get_weights())

        self.input_range = None
        if getattr(tile, "input_range", None) is not None:
            self.input_range = tile.input_range.detach().clone().float()

        # TileWithPeriphery.post_forward: x_output * (input_range * mapping_scales)
        scale = self.input_range
        ms = tile.mapping_scales
        if ms is not None:
            ms = ms.detach().float().view(-1)
            scale = ms.clone() if scale is None else scale * ms
        self.post_scale = scale
        osa = getattr(tile, "out_scaling_alpha", None)
        self.out_scaling = None if osa is None else osa.detach().float().view(-1).clone()
        self.bias = tile.bias.detach().float().clone() if tile.digital_bias else None
        self.alpha = self._drift_alpha(gen, gen if baseline_gen is None else baseline_gen)
        self.post = None
        if self._adc_kernels is not None:
            # the periphery per output for the ADC kernels; identities (x * 1 and x + -0.0
            # return x exactly) stand for the steps this tile does not have
            n = self.out_size
            self.post = tuple(
                np.ascontiguousarray(torch.broadcast_to(t.reshape(-1), (n,)).numpy()) if t is not None
                else np.full(n, identity, np.float32)
                for t, identity in ((self.post_scale, 1.0), (self.alpha, 1.0),
                                    (self.out_scaling, 1.0), (self.bias, -0.0)))

    def _drift_alpha(self, gen, baseline_gen) -> Optional[Tensor]:
        """The drift-compensation factor as aihwkit computes it, read out through this engine."""
        comp = getattr(self.tile.rpu_config, "drift_compensation", None)
        if comp is None:
            return None
        programmed = getattr(self.tile, "programmed_weights", None)
        if programmed is None:
            # never programmed: aihwkit multiplies by its initial alpha (1)
            return torch.as_tensor(self.tile.alpha).detach().float().clone()
        readout = comp.get_readout_tensor(self.tile.tile.get_x_size()).detach().to(torch.float32)
        if self._baseline_key is not programmed:
            # InferenceTileWithPeriphery.program_weights -> compensation.init_baseline(tile):
            # one read-out of the programmed weights (one noise draw per programming).
            if _exact_reference(comp):
                out = readout @ self.tile.reference_combined_weights.T
            else:
                out = self.mvm(readout, _Weights(programmed), baseline_gen)
            self._baseline = comp.readout(out)
            self._baseline_key = programmed
        current = self.mvm(readout, self.weights, gen)
        return torch.as_tensor(comp.apply(current, self._baseline)).detach().float()

    # -- the raw tile: ForwardBackwardPassIOManaged<float>::forwardVector, batched ---------
    def mvm(self, x: Tensor, weights: "_Weights", gen, post=None) -> Tensor:
        """The raw C++ tile forward of vectors ``x`` (rows (M, K) or columns (B, K, L)); with
        ``post`` (:attr:`post`, only with the ADC kernels) the periphery is applied too."""
        spec = self.spec
        x = x.to(torch.float32).contiguous()
        cols = x.dim() == 3
        out_shape = (x.shape[0], weights.n, x.shape[2]) if cols else (x.shape[0], weights.n)
        out = torch.empty(out_shape, dtype=torch.float32, device=x.device)
        if spec.perfect:
            weights.matmul(x, out)
            if spec.out_scale != 1.0:
                out.mul_(spec.out_scale)
            return out
        if cols:
            self._mvm_chunk(x, weights, out, gen, post)
            return out
        rows = max(256, _CHUNK_ELEMENTS // max(x.shape[1], 1))
        for start in range(0, x.shape[0], rows):
            stop = min(x.shape[0], start + rows)
            self._mvm_chunk(x[start:stop], weights, out[start:stop], gen, post)
        return out

    def _mvm_chunk(self, x: Tensor, weights: "_Weights", out: Tensor, gen, post) -> None:
        """Vectors given explicitly: rows (M, K) or columns (B, K, L)."""
        if x.dim() == 3:
            rows_of = lambda mask: x.transpose(1, 2)[mask]  # noqa: E731
        else:
            rows_of = lambda mask: x[mask]  # noqa: E731
        kernels = self._dac_kernels
        if kernels is None or x.dim() == 3:
            self.run(self.nm_values(x), lambda s: self._dac_torch(x * s.unsqueeze(1), gen), rows_of,
                     weights, out, gen, post)
            return
        scale = torch.empty(x.shape[0], dtype=torch.float32)
        nonpos = torch.empty(x.shape[0], dtype=torch.bool)
        xq = self.workspace.get("dac", x.shape)
        zeros = kernels.rows_dac(x.numpy(), self.spec.nm == "max", *self._dac_args, scale.numpy(),
                                 nonpos.numpy(), xq.numpy())
        self.complete(xq, scale, self._zero_mask(nonpos, zeros), rows_of, weights, out, gen, post)

    def nm_values(self, x: Tensor) -> Optional[Tensor]:
        """computeNoiseManagement for each vector of ``x`` (elements along dim 1); None: no NM."""
        spec = self.spec
        if spec.nm == "abs_max":
            nms = x.abs().amax(1)  # (much faster than aminmax along a non-inner dim)
        elif spec.nm == "max":
            nms = x.amax(1)
        elif spec.nm == "constant":
            shape = (x.shape[0],) + tuple(x.shape[2:])
            return torch.full(shape, spec.nm_thres if spec.nm_thres > 0 else 1.0,
                              dtype=torch.float32, device=x.device)
        else:
            return None
        if spec.nm_thres > 0:
            nms = torch.clamp(nms, max=spec.nm_thres)
        return nms

    def run(self, nms: Optional[Tensor], dac, rows_of, weights: "_Weights", out: Tensor,
            gen, post=None) -> None:
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

    def _zero_mask(self, nonpositive: Tensor, count: Optional[int] = None) -> Optional[Tensor]:
        """The vectors that take forwardVector's short cut (a non-positive noise-management
        value and no input noise: the output is exactly zero, no noise drawn), or None."""
        if self.spec.inp_noise > 0 or count == 0:
            return None
        return nonpositive if count or bool(nonpositive.any()) else None

    def complete(self, xq: Tensor, s0: Tensor, zero: Optional[Tensor], rows_of, weights: "_Weights",
                 out: Tensor, gen, post=None) -> None:
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
                yr = self._rerun(rows_of(failed), s0[failed], weights, gen)
                if post is not None:
                    self._periphery(yr, (-1,))
                if out.dim() == 3:
                    out.transpose(1, 2)[failed] = yr
                else:
                    out[failed] = yr
        if zero is not None:
            if post is None:
                out.masked_fill_(zero.unsqueeze(1), 0.0)
            else:  # an exactly zero output, through the periphery
                z = self._periphery(torch.zeros(1, out.shape[1]), (-1,))
                if out.dim() == 3:
                    out.transpose(1, 2)[zero] = z
                else:
                    out[zero] = z

    def _rerun(self, x: Tensor, s0: Tensor, weights: "_Weights", gen) -> Tensor:
        """Bound-management rounds 2, 3, ... for rows ``x`` that saturated in round 1."""
        out = None
        idx = None
        xa, sa = x, s0
        last = len(self.reductions) - 1
        for r in range(1, last + 1):
            s = sa / self.reductions[r]
            y = torch.empty(xa.shape[0], weights.n, dtype=torch.float32, device=x.device)
            failed = self._one_pass(self._dac_rows(xa, s, gen), s, weights, gen, y)
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
        return out

    def _dac_torch(self, xs: Tensor, gen) -> Tensor:
        """prepareInput's DAC and bound on input vectors already times their scale, in place."""
        spec = self.spec
        _discretize(xs, spec.inp_res, spec.inp_sto_round, gen)
        if not self._inp_clip_is_noop:
            xs.clamp_(-spec.inp_bound, spec.inp_bound)
        return xs

    def _dac_rows(self, x: Tensor, s: Tensor, gen) -> Tensor:
        """The DAC output of row vectors ``x`` (M, K) times their scales ``s`` (M,)."""
        if self._dac_kernels is None:
            return self._dac_torch(x * s.unsqueeze(1), gen)
        out = torch.empty_like(x)
        self._dac_kernels.scaled_rows_dac(x.numpy(), s.numpy(), *self._dac_args[1:], out.numpy())
        return out

    def _one_pass(self, xs: Tensor, s: Tensor, weights: "_Weights", gen,
                  y: Tensor, post=None) -> Optional[Tensor]:
        """computeAnalogMV (ONE_PASS) into ``y`` for the DAC output ``xs`` of the input vectors
        times their scale ``s`` (``xs`` is modified in place): the rest of prepareInput (noise,
        asymmetry), gemv, non-idealities, finalizeOutput (noise, ADC, bound), then the final
        ``out_scale / scale``. Returns the vectors that failed the bound test (None without
        bound management)."""
        spec = self.spec
        # --- prepareInput (after the DAC) ---
        if spec.inp_noise > 0:
            noise = torch.randn(xs.shape, generator=gen, dtype=xs.dtype, device=xs.device)
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
            noise = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
            y.add_(noise.mul_(std.unsqueeze(1)))
        elif spec.w_noise > 0 and spec.w_noise_type == "pcm_read":
            std = weights.abs_matmul(xs * xs).sqrt_().mul_(spec.w_noise)
            noise = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
            y.add_(noise.mul_(std))
        return self._finalize(y, s, gen, post)

    def _ir_drop(self, xs: Tensor, weights: "_Weights", y: Tensor) -> None:
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

    def _finalize(self, y: Tensor, s: Tensor, gen, post=None) -> Optional[Tensor]:
        spec = self.spec
        # --- finalizeOutput ---
        if spec.out_asymmetry > 0:
            a = _f32(np.float32(1.0) - np.float32(spec.out_asymmetry))
            y.copy_(torch.where(y < 0, y * a, y))
        if self._adc_kernels is not None:
            return self._finalize_fused(y, s, gen, post)
        if spec.out_noise > 0:
            noise = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
            y.add_(noise, alpha=spec.out_noise)
        _discretize(y, spec.out_res, spec.out_sto_round, gen)
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

    def _finalize_fused(self, y: Tensor, s: Tensor, gen, post=None) -> Optional[Tensor]:
        """:meth:`_finalize` after the output asymmetry, and the periphery ``post`` if given,
        in one kernel pass over ``y``; the noise is drawn exactly as the torch path draws it."""
        spec = self.spec
        noise = (torch.randn(y.shape, generator=gen, out=self.workspace.get("noise", y.shape))
                 if spec.out_noise > 0 else _NO_NOISE[y.dim()])
        failed = torch.empty(s.shape, dtype=torch.bool)
        adc = self._adc_kernels.adc_cols if y.dim() == 3 else self._adc_kernels.adc_rows
        sigma, res, bound, test_negative, out_scale = self._adc_args
        count = adc(y.numpy(), noise.numpy(), sigma, res, bound, test_negative, s.numpy(), out_scale,
                    *(post or self._no_post(y.shape[1])), failed.numpy())
        return failed if spec.bm and count else None

    # -- the tile module ---------------------------------------------------------------------
    def forward(self, x: Tensor, gen, cols: bool = False) -> Tensor:
        """``InferenceTile.forward`` in eval mode: input range, raw tile, mapping scales, drift
        compensation, learned out scales, digital bias.

        Rows: ``x`` (..., in_size). Columns (``cols``): ``x`` (B, in_size, L), result (B, N, L),
        the periphery applied along dim 1 (as aihwkit's indexed convolution does).
        """
        if self.weights is None:
            raise RuntimeError("FastAnalogForward.sync(generator) must be called before the forward")
        if cols:
            x2 = x
        else:
            lead = x.shape[:-1]
            x2 = x.reshape(-1, x.shape[-1])
        if self.input_range is not None:
            ir = abs(self.input_range.item())
            x2 = torch.clamp(x2, min=-ir, max=ir) / self.input_range
        if self.analog_bias:
            ones = torch.ones((x2.shape[0], 1) + tuple(x2.shape[2:]), dtype=x2.dtype, device=x2.device)
            x2 = torch.cat([x2, ones], 1)
        y = self.mvm(x2, self.weights, gen, self.post)
        if self.post is None:
            y = self._periphery(y, (-1, 1) if cols else (-1,))
        return y if cols else y.view(*lead, self.out_size)

    def _periphery(self, y: Tensor, view) -> Tensor:
        """The digital post-processing of InferenceTile, in aihwkit's order of operations
        (in place: ``y`` is this engine's own buffer)."""
        if self.post_scale is not None:
            y.mul_(self.post_scale.view(*view))
        if self.alpha is not None:
            y.mul_(self.alpha.view(*view) if self.alpha.dim() else self.alpha)
        if self.out_scaling is not None:
            y.mul_(self.out_scaling.view(*view))
        if self.bias is not None:
            y.add_(self.bias.view(*view))
        return y


    def forward_patches(self, img: Tensor, geometry, gen, out: Optional[Tensor] = None) -> Tensor:
        """The tile module forward of every convolution patch of ``img`` (b, C, H, W), the
        vectors of ``F.unfold`` (elements ordered (C, kh, kw)): quantized straight from the
        image by the DAC kernel, or, with the torch operations, read through a strided view of
        the padded image; the noise-management maximum of each patch is a sliding-window
        maximum over the image. Result (b, N, oh*ow), periphery applied."""
        if self.weights is None:
            raise RuntimeError("FastAnalogForward.sync(generator) must be called before the forward")
        spec = self.spec
        (kh, kw), (dh, dw), (ph, pw), (sh, sw) = geometry
        if self.input_range is not None:  # element-wise, so it commutes with unfolding
            ir = abs(self.input_range.item())
            img = torch.clamp(img, min=-ir, max=ir) / self.input_range
        img = img.to(torch.float32).contiguous()
        b, c, h, w = img.shape
        oh, ow = _conv_out_hw(h, w, geometry)
        k, L = c * kh * kw, oh * ow

        def padded():
            return F.pad(img, (pw, pw, ph, ph)) if (ph or pw) else img

        def patches(xp=None):
            """The patches as a strided view (b, c, kh, kw, oh, ow) of the padded images."""
            xp = padded() if xp is None else xp
            st = xp.stride()
            return xp.as_strided((b, c, kh, kw, oh, ow),
                                 (st[0], st[1], dh * st[2], dw * st[3], sh * st[2], sw * st[3]))

        def rows_of(mask):
            return patches().permute(0, 4, 5, 1, 2, 3)[mask.view(b, oh, ow)].reshape(-1, k)

        if out is None:
            out = torch.empty(b, self.weights.n, L, dtype=torch.float32, device=img.device)
        kernels = self._dac_kernels
        if spec.perfect:
            self.weights.matmul(patches().reshape(b, k, L), out)
            if spec.out_scale != 1.0:
                out.mul_(spec.out_scale)
        elif kernels is not None:
            scale = torch.empty(b, L, dtype=torch.float32)
            nonpos = torch.empty(b, L, dtype=torch.bool)
            xq = self.workspace.get("dac", (b, k, L))
            zeros = kernels.conv_dac(img.numpy(), kh, kw, dh, dw, ph, pw, sh, sw, spec.nm == "max",
                                     *self._dac_args, scale.view(b, oh, ow).numpy(),
                                     nonpos.view(b, oh, ow).numpy(), xq.numpy())
            self.complete(xq, scale, self._zero_mask(nonpos, zeros), rows_of, self.weights, out, gen,
                          self.post)
        else:
            xp = padded()
            view = patches(xp)
            if spec.nm in ("abs_max", "max"):
                m = xp.abs() if spec.nm == "abs_max" else xp  # padding zeros count, as in unfold
                nms = _window_max(m, (kh, kw), (dh, dw), (sh, sw), (oh, ow)).view(b, L)
                if spec.nm_thres > 0:
                    nms = torch.clamp(nms, max=spec.nm_thres)
            elif spec.nm == "constant":
                nms = torch.full((b, L), spec.nm_thres if spec.nm_thres > 0 else 1.0,
                                 dtype=torch.float32, device=img.device)
            else:
                nms = None

            def dac(s):
                buf = torch.empty((b, c, kh, kw, oh, ow), dtype=torch.float32, device=img.device)
                torch.mul(view, s.view(b, 1, 1, 1, oh, ow), out=buf)
                return self._dac_torch(buf.view(b, k, L), gen)

            self.run(nms, dac, rows_of, self.weights, out, gen, self.post)
        return out if self.post is not None else self._periphery(out, (-1, 1))


class _Weights:
    """A tile's weight matrix (d_size, x_size) in the layouts the products need."""

    def __init__(self, w):
        self.w = torch.as_tensor(w).detach().to(torch.float32).contiguous()
        self.n = self.w.shape[0]
        self._wt = None
        self._abs = None
        self._abs_t = None

    @property
    def wt(self) -> Tensor:
        if self._wt is None:
            self._wt = self.w.t().contiguous()
        return self._wt

    def matmul(self, x: Tensor, out: Tensor) -> Tensor:
        """``W x`` for columns (B, K, L) -> (B, N, L), ``x W^T`` for rows (M, K) -> (M, N).

        Through numpy's OpenBLAS where the operands are contiguous: on the tile shapes of
        ResNet-20 it takes 0.64-0.87 of the time of torch's MKL (AMD Zen 4, 1 thread; MKL
        does not use its fastest kernels on AMD processors). Its threads follow torch's
        (:class:`_threads`)."""
        if x.is_contiguous() and out.is_contiguous():
            if x.dim() == 3:
                np.matmul(self.w.numpy(), x.numpy(), out=out.numpy())
            else:
                np.matmul(x.numpy(), self.wt.numpy(), out=out.numpy())
            return out
        if x.dim() == 3:
            return torch.matmul(self.w, x, out=out)
        return torch.matmul(x, self.wt, out=out)

    def abs_matmul(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            if self._abs is None:
                self._abs = self.w.abs()
            return torch.matmul(self._abs, x)
        if self._abs_t is None:
            self._abs_t = self.wt.abs()
        return x @ self._abs_t


def _exact_reference(comp) -> bool:
    from aihwkit.inference.compensation.drift import GlobalDriftCompensationWithExactReference

    return isinstance(comp, GlobalDriftCompensationWithExactReference)


# --------------------------------------------------------------------------------------------
# Layers: the replacements of aihwkit's analog layers in the shadow network
# --------------------------------------------------------------------------------------------


class _TileModule(nn.Module):
    """An ``InferenceTile`` or a ``TileModuleArray`` (tiles split along inputs and outputs)."""

    def __init__(self, engine: "FastAnalogForward", analog_module, name: str):
        super().__init__()
        from aihwkit.simulator.tiles.array import TileModuleArray

        self.engine = [engine]  # a list, so the engine is not registered as a submodule
        if isinstance(analog_module, TileModuleArray):
            self.in_sizes = list(analog_module.in_sizes)
            self.grid = [[engine._add_tile(t, f"{name}.array.{i}.{j}") for j, t in enumerate(row)]
                         for i, row in enumerate(analog_module.array)]
            self.array_bias = analog_module.bias
        else:
            self.in_sizes = None
            self.grid = [[engine._add_tile(analog_module, name)]]
            self.array_bias = None

    def forward(self, x: Tensor, cols: bool = False) -> Tensor:
        """Rows (..., K) -> (..., N); columns (B, K, L) -> (B, N, L)."""
        gen = self.engine[0]._gen
        if self.in_sizes is None:
            return self.grid[0][0].forward(x, gen, cols)
        dim = 1 if cols else x.dim() - 1
        if len(self.grid) * len(self.grid[0]) == 1:
            result = self.grid[0][0].forward(x, gen, cols)
        else:  # TileModuleArray.forward: outputs concatenated, input splits summed in order
            result = None
            for idx, (xs, row) in enumerate(zip(torch.split(x, self.in_sizes, dim=dim), self.grid)):
                part = torch.cat([t.forward(xs, gen, cols) for t in row], dim)
                result = part if idx == 0 else result.add_(part)
        if self.array_bias is not None:
            result = result + self.array_bias.detach().view((-1, 1) if cols else (-1,))
        return result


def _conv_out_hw(h: int, w: int, geometry) -> tuple[int, int]:
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = geometry
    return ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


class _ConvExec:
    """A 2-D analog convolution computed image chunk by image chunk.

    ``rows``: ``[(c0, c1, [tiles])]``, the input-channel range of each tile row and its tiles
    (outputs concatenated); rows are summed in order, then ``bias`` (digital) is added. With
    ``fused`` the tiles read patches from a strided view of the image (no unfold copy);
    otherwise (tiles split inside a kernel, or an analog bias column) the patches are unfolded
    like aihwkit does and split along the patch elements (``in_sizes``).
    """

    def __init__(self, engine, geometry, out_channels, rows, bias, in_sizes=None):
        self.engine = engine
        self.geometry = geometry
        self.out_channels = out_channels
        self.rows = rows
        self.bias = bias
        self.in_sizes = in_sizes  # unfold path: patch-element split sizes of the tile rows
        self.fused = in_sizes is None

    def __call__(self, x: Tensor) -> Tensor:
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        n, c, h, w = x.shape
        (kh, kw) = self.geometry[0]
        oh, ow = _conv_out_hw(h, w, self.geometry)
        step = max(1, _CHUNK_ELEMENTS // max(c * kh * kw * oh * ow, 1))
        out = torch.empty(n, self.out_channels, oh * ow, dtype=torch.float32, device=x.device)
        for start in range(0, n, step):
            self._chunk(x[start:start + step], out[start:start + step])
        out = out.view(n, self.out_channels, oh, ow)
        return out[0] if unbatched else out

    def _chunk(self, x: Tensor, out: Tensor) -> None:
        gen = self.engine._gen
        if self.fused and len(self.rows) == 1 and len(self.rows[0][2]) == 1 and self.bias is None:
            self.rows[0][2][0].forward_patches(x, self.geometry, gen, out=out)  # one tile: in place
            return
        if self.fused:
            parts = []
            for c0, c1, tiles in self.rows:
                sub = x if len(self.rows) == 1 else x[:, c0:c1]
                outs = [t.forward_patches(sub, self.geometry, gen) for t in tiles]
                parts.append(outs[0] if len(outs) == 1 else torch.cat(outs, 1))
        else:
            (kh, kw), (dh, dw), (ph, pw), (sh, sw) = self.geometry
            patches = F.unfold(x, kernel_size=(kh, kw), dilation=(dh, dw), padding=(ph, pw),
                               stride=(sh, sw))
            splits = torch.split(patches, self.in_sizes, dim=1) if len(self.rows) > 1 else [patches]
            parts = []
            for p, (_, _, tiles) in zip(splits, self.rows):
                outs = [t.forward(p, gen, cols=True) for t in tiles]
                parts.append(outs[0] if len(outs) == 1 else torch.cat(outs, 1))
        result = parts[0]
        for part in parts[1:]:
            result = result.add_(part)
        if self.bias is not None:
            result = result.add_(self.bias.detach().view(-1, 1))
        out.copy_(result)


def _conv_exec(engine, layer, name: str, grid_of, in_sizes_kind: str) -> _ConvExec:
    """Build the executor of an AnalogConv2d (``in_sizes_kind`` "elements": a TileModuleArray's
    split of the patch elements) or an AnalogConv2dMapped ("channels")."""
    geometry = (tuple(layer.kernel_size), tuple(layer.dilation), tuple(layer.padding),
                tuple(layer.stride))
    kk = layer.kernel_size[0] * layer.kernel_size[1]
    grid, in_sizes, bias = grid_of
    tiles = [[engine._add_tile(t, f"{name}.{i}.{j}") for j, t in enumerate(row)]
             for i, row in enumerate(grid)]
    if in_sizes_kind == "channels":
        channels = list(in_sizes)
    elif all(size % kk == 0 for size in in_sizes):
        channels = [size // kk for size in in_sizes]
    else:
        channels = None
    analog_bias = any(t.analog_bias for row in tiles for t in row)
    bounds, start = [], 0
    for size in (channels or in_sizes):
        bounds.append((start, start + size))
        start += size
    rows = [(c0, c1, row) for (c0, c1), row in zip(bounds, tiles)]
    if channels is not None and not analog_bias:
        return _ConvExec(engine, geometry, layer.out_channels, rows, bias)
    return _ConvExec(engine, geometry, layer.out_channels, rows, bias, in_sizes=list(in_sizes))


class _FastLinear(nn.Module):
    def __init__(self, engine, layer, name):
        super().__init__()
        self.tiles = _TileModule(engine, layer.analog_module, name + ".analog_module")

    def forward(self, x: Tensor) -> Tensor:
        return self.tiles(x)


class _FastConv2d(nn.Module):
    """``AnalogConv2d`` (its CPU path unfolds the input, then runs the tile module)."""

    def __init__(self, engine, layer, name):
        super().__init__()
        from aihwkit.simulator.tiles.array import TileModuleArray

        mod = layer.analog_module
        if isinstance(mod, TileModuleArray):
            grid_of = ([list(row) for row in mod.array], list(mod.in_sizes), mod.bias)
            label = name + ".analog_module.array"
        else:
            grid_of = ([[mod]], [layer.in_features], None)
            label = name + ".analog_module"
        self.exec = _conv_exec(engine, layer, label, grid_of, "elements")

    def forward(self, x: Tensor) -> Tensor:
        return self.exec(x)


class _FastConv2dMapped(nn.Module):
    """``AnalogConv2dMapped``: input channels split over tile rows; digital bias."""

    def __init__(self, engine, layer, name):
        super().__init__()
        grid_of = ([list(row) for row in layer.array], list(layer.in_sizes), layer.bias)
        self.exec = _conv_exec(engine, layer, name + ".array", grid_of, "channels")

    def forward(self, x: Tensor) -> Tensor:
        return self.exec(x)


# --------------------------------------------------------------------------------------------
# Structure analysis
# --------------------------------------------------------------------------------------------


def _layer_kind(module) -> Optional[str]:
    """'linear' | 'conv2d' | 'conv2d_mapped' for supported analog layers, 'other' for other
    analog layers, None for modules that are not analog layers."""
    from aihwkit.nn.modules.base import AnalogLayerBase
    from aihwkit.nn.modules.container import AnalogContainerBase
    from aihwkit.nn.modules.conv import AnalogConv2d
    from aihwkit.nn.modules.conv_mapped import AnalogConv2dMapped
    from aihwkit.nn.modules.linear import AnalogLinear

    if type(module) is AnalogConv2dMapped:
        return "conv2d_mapped"
    if isinstance(module, AnalogConv2d) and type(module) is AnalogConv2d:
        return "conv2d"
    if isinstance(module, AnalogLinear) and type(module).forward is AnalogLinear.forward:
        return "linear"
    if isinstance(module, AnalogContainerBase):
        return None
    if isinstance(module, AnalogLayerBase) and any(True for _ in _own_tiles(module)):
        return "other"
    return None


def _is_tile(module) -> bool:
    return hasattr(module, "tile") and hasattr(module, "rpu_config")


def _own_tiles(module):
    for m in module.modules():
        if _is_tile(m):
            yield m


def _layer_tiles(kind: str, layer) -> tuple[list, Optional[str]]:
    """The tiles of a supported layer, or a reason why its tile module is not reproduced."""
    from aihwkit.simulator.tiles.array import TileModuleArray
    from aihwkit.simulator.tiles.inference import InferenceTile

    if kind == "conv2d_mapped":
        tiles = [t for row in layer.array for t in row]
    else:
        mod = layer.analog_module
        if type(mod) is TileModuleArray:
            tiles = [t for row in mod.array for t in row]
        elif type(mod) is InferenceTile:
            tiles = [mod]
        else:
            return [], f"tile module {type(mod).__name__} (only C++ InferenceTile / TileModuleArray of them)"
    for t in tiles:
        if type(t) is not InferenceTile:
            return [], (f"tile {type(t).__name__} (only aihwkit's C++ InferenceTile, i.e. "
                        "InferenceRPUConfig, is reproduced)")
    return tiles, None


def _tile_reason(tile, kind: str) -> Optional[str]:
    """Why a C++ InferenceTile cannot be replayed, or None."""
    from aihwkit.inference.compensation.base import BaseDriftCompensation
    from aihwkit.simulator.parameters.enums import WeightModifierType

    if tile.in_trans or tile.out_trans:
        return "transposed tile inputs/outputs"
    _, reason = _io_spec(tile)
    if reason:
        return reason
    cfg = tile.rpu_config
    modifier = getattr(cfg, "modifier", None)
    if (modifier is not None and modifier.type != WeightModifierType.NONE
            and getattr(modifier, "enable_during_test", False)):
        return "modifier.enable_during_test (weight modifier drawn by the C++ tile in eval mode)"
    comp = getattr(cfg, "drift_compensation", None)
    if comp is not None:
        if not isinstance(comp, BaseDriftCompensation):
            return f"drift compensation {type(comp).__name__}"
        if not _exact_reference(comp) and type(comp).init_baseline is not BaseDriftCompensation.init_baseline:
            return f"drift compensation {type(comp).__name__} (custom init_baseline)"
    if kind == "conv2d_mapped":
        if getattr(tile, "out_scaling_alpha", None) is not None:
            return "learned out scaling on AnalogConv2dMapped (aihwkit applies it along the image width)"
        from aihwkit.inference.compensation.drift import PerColumnDriftCompensation

        if isinstance(comp, PerColumnDriftCompensation):
            return "per-column drift compensation on AnalogConv2dMapped"
    if getattr(cfg, "pre_post", None) is not None and hasattr(cfg.pre_post, "periph_quant"):
        if cfg.pre_post.periph_quant.n_bits > 0:
            return "quantized periphery (pre_post.periph_quant)"
    return None


def _walk_reasons(model: nn.Module) -> Optional[str]:
    covered = set()
    for name, module in model.named_modules():
        kind = _layer_kind(module)
        if kind is None:
            continue
        label = name or type(model).__name__
        if kind == "other":
            return (f"layer '{label}' ({type(module).__name__}): only AnalogLinear, AnalogConv2d and "
                    "AnalogConv2dMapped are reproduced")
        tiles, reason = _layer_tiles(kind, module)
        if reason:
            return f"layer '{label}' ({type(module).__name__}): {reason}"
        for t in tiles:
            reason = _tile_reason(t, kind)
            if reason:
                return f"layer '{label}' ({type(module).__name__}): {reason}"
            covered.add(id(t))
    for name, module in model.named_modules():
        if _is_tile(module) and id(module) not in covered:
            return f"analog tile '{name}' ({type(module).__name__}) outside a supported analog layer"
    return None


def unsupported_reason(analog_model: nn.Module) -> Optional[str]:
    """None if :class:`FastAnalogForward` reproduces every analog tile of ``analog_model``; else a
    short string naming the first layer and the setting it does not reproduce."""
    if not isinstance(analog_model, nn.Module):
        return f"not a torch.nn.Module: {type(analog_model).__name__}"
    return _walk_reasons(analog_model)


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


_BLAS = None


def _numpy_blas():
    """threadpoolctl's handle on the BLAS libraries loaded in this process (numpy's OpenBLAS)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController().select(user_api="blas")
    return _BLAS


class _threads:
    """Context manager: torch intra-op threads set to ``n`` (None: unchanged), and the BLAS
    threads of the products (:meth:`_Weights.matmul`) set to torch's."""

    def __init__(self, n: Optional[int]):
        self.n = n
        self.old = None
        self.blas = None

    def __enter__(self):
        if self.n is not None and self.n != torch.get_num_threads():
            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)
        self.blas = _numpy_blas().limit(limits=torch.get_num_threads())

    def __exit__(self, *exc):
        self.blas.restore_original_limits()
        if self.old is not None:
            torch.set_num_threads(self.old)
            self.old = None


class FastAnalogForward:
    """Seeded, batched replay of an aihwkit analog model's eval-mode forward.

    Usage::

        engine = FastAnalogForward(analog_model)      # once per converted model
        analog_model.program_analog_weights()           # aihwkit, on torch's generator
        analog_model.drift_analog_weights(t)
        engine.sync(generator)                          # read weights, recompute drift compensation
        logits = engine(x)                              # forward noise from the same generator

    Digital layers (BatchNorm, pooling, activations, ...) run as the model's own modules; only the
    analog layers are replaced, in a shallow copy of the module tree, so ``analog_model`` itself
    is never modified. Same generator state and same batches give bit-identical outputs.
    """

    def __init__(self, analog_model: nn.Module, *, threads: Optional[int] = None, fused: bool = True):
        """``threads``: torch intra-op threads for :meth:`sync` and the forward (restored
        afterwards); None keeps the caller's setting. The fast path issues many short parallel
        operations, so on a machine whose cores are busy with other jobs one thread can be several
        times faster than two (OpenMP barrier waits).

        ``fused``: run the DAC and ADC sides through the compiled kernels of
        :mod:`analogsam.hardware.fast.kernels` where they apply (bit-identical, faster); False runs the torch
        operations only."""
        reason = unsupported_reason(analog_model)
        if reason:
            raise FastPathUnsupported(reason)
        self.model = analog_model
        self.threads = threads
        self.fused = fused
        self._tiles: list[_Tile] = []
        self._workspace = _Workspace()
        self._gen: Optional[torch.Generator] = None
        self._synced = False
        self.network = self._shadow(analog_model, "")

    def _add_tile(self, tile, name: str) -> _Tile:
        spec, reason = _io_spec(tile)
        if reason:  # pragma: no cover - checked in unsupported_reason
            raise FastPathUnsupported(f"{name}: {reason}")
        t = _Tile(tile, spec, name, self.fused, self._workspace)
        self._tiles.append(t)
        return t

    def _shadow(self, module: nn.Module, name: str) -> nn.Module:
        kind = _layer_kind(module)
        if kind == "linear":
            return _FastLinear(self, module, name)
        if kind == "conv2d":
            return _FastConv2d(self, module, name)
        if kind == "conv2d_mapped":
            return _FastConv2dMapped(self, module, name)
        if not any(_layer_kind(m) for m in module.modules()):
            return module  # purely digital: run the original module
        new = copy.copy(module)
        new._modules = {
            key: (None if child is None else self._shadow(child, f"{name}.{key}" if name else key))
            for key, child in module._modules.items()
        }
        return new

    @property
    def tiles(self) -> list[_Tile]:
        return list(self._tiles)

    @torch.no_grad()
    def sync(self, generator: Optional[torch.Generator] = None, *,
             baseline_generator: Optional[torch.Generator] = None) -> None:
        """Read every tile's current (programmed, drifted) weights and periphery, and recompute the
        drift-compensation factors through this engine's forward, drawing from ``generator``;
        later forwards draw from it too.

        aihwkit reads the compensation baseline out once per programming (in
        ``program_analog_weights``) and the current value at every ``drift_analog_weights``;
        alpha = baseline / current. Here the baseline read-out happens at the first sync that
        sees a new programming (``tile.programmed_weights`` changed), drawn from
        ``baseline_generator`` if given, else from ``generator``. So that a repeat's numbers do
        not depend on which time point is evaluated first, call ``sync`` right after
        ``program_analog_weights()`` with a generator of that programming, or pass
        ``baseline_generator``. (After a programming without a drift aihwkit keeps its previous
        alpha, or 1; the fast path computes alpha for the current weights instead, ~1.)
        """
        if generator is None:
            generator = torch.default_generator
        self._gen = generator
        with _threads(self.threads):
            for tile in self._tiles:
                tile.sync(generator, baseline_generator)
        self._synced = True

    @torch.no_grad()
    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Eval-mode forward of the whole network; forward noise from ``generator`` (default: the
        one given to :meth:`sync`)."""
        if not self._synced:
            raise RuntimeError("call FastAnalogForward.sync(generator) after programming/drifting "
                               "and before the forward")
        if self.model.training:
            raise RuntimeError("the analog model is in training mode; call analog_model.eval() first "
                               "(the fast path reproduces aihwkit's eval-mode forward)")
        if generator is not None:
            self._gen = generator
        with _threads(self.threads):
            return self.network(x.to(torch.float32))
