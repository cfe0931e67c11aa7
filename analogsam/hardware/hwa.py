"""Hardware-aware training (HWA): a device preset's training-time tile model as a torch forward.

Rasch et al., Nat. Commun. 14:5282 (2023), arXiv 2302.08469, train through the tile model: in
training mode every analog layer of aihwkit computes its product the way the tile will (DAC, the
product with the tile-normalised weights, weight and output noise, ADC, bound management) while the
gradient is the digital one (aihwkit's backward pass is an ideal transposed product and its update
an outer product of the inputs and the output gradients). aihwkit keeps those weights behind an
``AnalogContext`` placeholder, so no two-pass optimizer can perturb them. Here, as in IBM's
aihwkit-lightning, the layer keeps its ordinary ``weight`` and ``bias`` and only its ``forward`` is
replaced, so every optimizer of :mod:`analogsam.optim` (SAM, ASAM, SAMSON, ...) composes with it.

The forward of one layer, per tile (``tile.rows`` inputs x ``tile.cols`` outputs, as aihwkit splits
a layer), for an input vector x (a row of a Linear's input, a patch of a convolution):

1. input range (presets with ``io.input_range_calibration = true``): x is clipped to ±r and
   divided by r, r a per-tile parameter learned as aihwkit learns it (initialised from the first
   100 batches as the running mean of 3·std(x), then by its gradient: the clipped inputs' output
   gradients, relative to r, plus ``decay·r`` while fewer than 5% of the inputs clip;
   ``aihwkit.simulator.tiles.inference_torch.InputRangeForward``); otherwise noise management
   (``abs-max``: x / max|x| per vector, undone after the ADC);
2. DAC: round to steps of 2/(2^dac_bits − 2), clip to [−1, 1];
3. the product with W / α, α = max |W| of the tile (of each column with
   ``mapping.weight_scaling_columnwise``) over ``mapping.weight_scaling`` (aihwkit's
   ``weight_scaling_omega``; 0: α = 1), recomputed at every step (``remap``, the default: aihwkit's
   ``WeightRemapParameter``, aihwkit-lightning) or kept from the first step (``remap=False``: aihwkit's
   default ``InferenceRPUConfig``, whose tile weights then grow past the conductance range);
4. output-referred weight noise (``io.w_noise``: ``additive-constant`` σ·‖x‖₂, ``pcm-read``
   σ·sqrt(Σ|w|x²)), output noise (``io.out_noise``), ADC: round to steps of
   2·out_bound/(2^adc_bits − 2), clip to ±out_bound; iterative bound management recomputes a vector
   that saturated with half the input scale (fresh noise), as the C++ tile does;
5. times α and the input scale, the tiles' outputs summed, the bias added digitally.

Steps 1-4 are the fast engine's replay of the C++ tile (:class:`analogsam.hardware.fast.tile.Tile`,
tested against aihwkit's tiles; its compiled DAC and ADC kernels; a convolution whose tiles each hold
whole input channels, as one tile does and as ResNet-20's 576-input layers split over 512-row tiles do
(2 x 32 channels), reads each tile's patches straight from its channels of the image; a split that cuts
a kernel unfolds them), run without a graph, its noise from the engine's counter-based generator
(:mod:`analogsam.hardware.fast.noise`) under a seed drawn from torch's at every call. The layer's
output is that tile output and its gradient the digital layer's at the same input and weights
(``_TileProduct``: ``aten.convolution_backward`` or the two products of a Linear), so no digital
forward is computed: aihwkit's backward is an ideal transposed product and its update an outer product
of the inputs and the output gradients. ``zero_saturated_gradients`` adds aihwkit's C++ tiles' rule of
zeroing the gradient behind a saturated read-out (off by default, see :class:`TrainingTileModel`).

A quantized layer (:mod:`analogsam.quantization`, ``train(quantize=..., hardware_aware=...)``) puts its
quantized weights Q(w) on the tiles and feeds them its quantized activations Q(x) (its
``quantized_operands``), as the converted network will; the gradient goes on through its quantizers.

Settings with no training-time meaning (documented, ignored here): the ``noise`` section (programming
noise, drift and read noise over time act when the network is programmed, after training; aihwkit's
HWA forward has none of them), ``compensation`` (drift compensation, eval mode only) and
``mapping.digital_bias`` (the bias is digital either way). Settings this forward cannot train
through are refused by name: ``io.ir_drop`` > 0 and the noise managements ``max`` and
``average-abs-max``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analogsam.errors import AnalogsamError
from analogsam.hardware import presets as devices
from analogsam.models.roles import is_convertible

__all__ = [
    "HardwareAwareError",
    "TrainingTileModel",
    "attach_hardware_aware",
    "detach_hardware_aware",
    "input_ranges",
    "training_tile_model",
]

#: aihwkit's ``InputRangeParameter`` defaults, which its HWA training uses.
INIT_FROM_DATA = 100
INIT_STD_ALPHA = 3.0
INIT_VALUE = 3.0
RANGE_DECAY = 0.001
INPUT_MIN_PERCENTAGE = 0.95
#: aihwkit's ``IOParameters`` bound-management limits (``max_bm_factor``, ``max_bm_res``).
MAX_BM_FACTOR = 1000
MAX_BM_RES = 0.25
#: aihwkit's C++ tiles zero the gradient of a read-out at or beyond this fraction of out_bound
#: (``RPUCudaSimulatorTileWrapper.get_forward_out_bound``).
SATURATION = 0.999
_NONE_SATURATED = torch.zeros((), dtype=torch.bool)

#: Where the learned input ranges are kept on a layer (a parameter, so every optimizer trains it).
RANGE_ATTRIBUTE = "hwa_input_range"


class HardwareAwareError(AnalogsamError, ValueError):
    """A preset setting that hardware-aware training cannot train through."""


def _step(bits: int, full_range: float) -> float:
    """A signed converter's step over ``[-full_range/2, full_range/2]`` (aihwkit: res = 1/(2^bits − 2)
    of the range); 0 bits: no rounding."""
    return 0.0 if bits == 0 else full_range / (2**bits - 2)


@dataclass(frozen=True)
class TrainingTileModel:
    """The training-time settings of a preset's tiles (see the module docstring)."""

    preset: str
    rows: int  # inputs per tile (0: no limit)
    cols: int  # outputs per tile (0: no limit)
    dac_step: float  # in units of the normalised input ([-1, 1]); 0: no DAC rounding
    adc_step: float  # in units of the tile's output; 0: no ADC rounding
    out_bound: float
    out_noise: float
    w_noise: float
    w_noise_type: str  # "none" | "additive-constant" | "pcm-read"
    learned_ranges: bool  # True: learned input ranges (noise management none); False: abs-max
    bound_management: bool
    omega: float  # mapping.weight_scaling (0: the weights as they are)
    columnwise: bool
    #: True: α follows the weights at every step (aihwkit's WeightRemapParameter ``LAYERWISE``/
    #: ``CHANNELWISE_SYMMETRIC`` after each update, aihwkit-lightning); False: α fixed when training starts, as aihwkit's
    #: default InferenceRPUConfig (remap NONE) keeps the mapping of the conversion while the weights grow
    remap: bool = True
    #: True: aihwkit's C++ tiles' rule (``handle_output_bound``): an output whose tile read-out is at 0.999
    #: out_bound or beyond passes no gradient back to the layer's inputs (the layer's own weights are
    #: updated with the whole output gradient, as aihwkit's ``AnalogFunction`` updates them). aihwkit tests
    #: the read-out *after* noise management's rescaling and bound management (y_tile · max|x|, in units of
    #: the tile's normalised weights), so it also zeroes outputs that never saturated; with α fixed
    #: (``remap=False``) the tile weights grow past 1 during training and most read-outs pass the test
    #: (docs/hwa-conformance: this rule is why aihwkit's fixed-scale HWA trains its first layers slowly).
    #: False (default): every output passes its gradient straight through.
    zero_saturated_gradients: bool = False

    def describe(self) -> dict:
        return asdict(self)


def training_tile_model(
    preset: str | dict | devices.Preset,
    overrides: dict | None = None,
    *,
    remap: bool = True,
    zero_saturated_gradients: bool = False,
) -> TrainingTileModel:
    """The :class:`TrainingTileModel` of ``preset`` (a name, a TOML path or a loaded preset; or a dict
    ``{"preset": ..., "remap": bool}``, as ``train(hardware_aware=...)`` takes it).

    ``remap`` (default True): the weight scale α follows the weights; ``zero_saturated_gradients``
    (default False): aihwkit's gradient rule at saturated read-outs (see :class:`TrainingTileModel`).
    Raises :class:`HardwareAwareError` naming a setting this forward cannot train through."""
    if isinstance(preset, dict):
        unknown = sorted(set(preset) - {"preset", "remap", "zero_saturated_gradients"})
        if unknown or "preset" not in preset:
            raise HardwareAwareError(
                "hardware_aware as a dict takes 'preset' (required), 'remap' and 'zero_saturated_gradients', "
                f"got {sorted(preset)}"
            )
        remap = bool(preset.get("remap", remap))
        zero_saturated_gradients = bool(preset.get("zero_saturated_gradients", zero_saturated_gradients))
        preset = preset["preset"]
    p = devices.load(preset, overrides=overrides)
    io, tile, mapping = p.values["io"], p.values["tile"], p.values["mapping"]
    where = f"preset {p.name!r}"
    if io["ir_drop"] > 0:
        raise HardwareAwareError(
            f"{where}: io.ir_drop = {io['ir_drop']} cannot be trained through (the training forward has no IR-drop "
            "model); train with --set io.ir_drop=0, and evaluate on the preset as it is"
        )
    calibrated = bool(io["input_range_calibration"])
    nm = io["noise_management"]
    if not calibrated and nm != "abs-max":
        raise HardwareAwareError(
            f"{where}: io.noise_management = {nm!r} cannot be trained through; hardware-aware training supports "
            "'abs-max' or learned input ranges (io.input_range_calibration = true with noise_management 'none')"
        )
    if calibrated and nm != "none":
        raise HardwareAwareError(
            f"{where}: learned input ranges need io.noise_management = 'none', got {nm!r}; "
            "--set io.noise_management=none"
        )
    return TrainingTileModel(
        preset=p.name,
        rows=int(tile["rows"]),
        cols=int(tile["cols"]),
        dac_step=_step(io["dac_bits"], 2.0),
        adc_step=_step(io["adc_bits"], 2.0 * io["out_bound"]) if math.isfinite(io["out_bound"]) else 0.0,
        out_bound=float(io["out_bound"]),
        out_noise=float(io["out_noise"]),
        w_noise=float(io["w_noise"]) if io["w_noise_type"] != "none" else 0.0,
        w_noise_type=io["w_noise_type"],
        learned_ranges=calibrated,
        bound_management=io["bound_management"] == "iterative",
        omega=float(mapping["weight_scaling"]),
        columnwise=bool(mapping["weight_scaling_columnwise"]),
        remap=remap,
        zero_saturated_gradients=zero_saturated_gradients,
    )


# -- the straight-through pieces ---------------------------------------------------------------------------


class _ClipToRange(torch.autograd.Function):
    """clamp(x, −r, r) with aihwkit's input-range gradients: x's gradient passes where x is inside the
    range (clamp's own gradient); r's is ``InputRangeForward``'s: the clipped inputs' output gradients
    (pushing r out where they would grow), relative to r, plus ``decay·r`` while more than 95% of the
    inputs are inside the range.

    For a convolution whose tiles hold whole channels ``x`` is the image (its channels of one tile), as
    in aihwkit's indexed convolution (its CUDA path), not the unfolded patches of its CPU path: each
    pixel's gradient is summed over the patches that hold it before it is clipped at 0, and the 95%
    counts pixels, not patch elements. Where a split cuts kernels, ``x`` is the unfolded patches."""

    @staticmethod
    def forward(ctx, x: Tensor, r: Tensor) -> Tensor:
        ctx.save_for_backward(x, r)
        return torch.minimum(torch.maximum(x, -r), r)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, r = ctx.saved_tensors
        g = (grad * (x >= r)).clamp(max=0.0).sum() - (grad * (x <= -r)).clamp(min=0.0).sum()
        g = g * r
        inside = x.abs() < r
        if inside.float().mean() > INPUT_MIN_PERCENTAGE:
            g = g + RANGE_DECAY * r
        return grad * inside, g.reshape(r.shape)


class _TileProduct(torch.autograd.Function):
    """The layer's output is the tiles' (computed without a graph); its gradient is the digital
    layer's at the same input and weights (aihwkit's backward is the ideal transposed product and its
    update the outer product of the inputs and the output gradients). With ``saturated`` (aihwkit's C++
    tiles' rule, ``TileWithPeriphery.post_forward``/``pre_backward``, ``handle_output_bound``): the
    gradient passed back to the inputs is zero behind every output whose tile read-out reached
    0.999·out_bound, while the layer's own weights and digital bias are updated with the whole output
    gradient (aihwkit's ``AnalogFunction.backward`` hands the unmasked ``grad_output`` to the tile's
    update). For a convolution the products are ``aten.convolution_backward`` (what ``F.conv2d``'s own
    backward runs); no digital forward is computed."""

    @staticmethod
    def forward(ctx, x, weight, bias, y_tile, conv, saturated):
        ctx.save_for_backward(x, weight, saturated)
        ctx.conv = conv
        ctx.has_bias = bias is not None
        return y_tile

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, saturated = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gb = None
        if need_b and ctx.has_bias:  # the digital bias: the full gradient, summed over all but the outputs
            gb = grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.conv is None else grad.sum([0, *range(2, grad.dim())])
        g = grad.masked_fill(saturated, 0.0) if saturated is not None else grad  # what goes back to x
        if ctx.conv is None:  # Linear: y = x Wᵀ + b
            gx = (g @ weight) if need_x else None
            gw = (grad.reshape(-1, grad.shape[-1]).t() @ x.reshape(-1, x.shape[-1])) if need_w else None
            return gx, gw, gb, None, None, None
        stride, padding, dilation = ctx.conv

        def products(g, mask):
            return torch.ops.aten.convolution_backward(
                g, x, weight, None, stride, padding, dilation, False, [0] * len(stride), 1, mask
            )

        if saturated is None:
            gx, gw, _ = products(grad, [need_x, need_w, False])
        else:
            gx = products(g, [need_x, False, False])[0] if need_x else None
            gw = products(grad, [False, need_w, False])[1] if need_w else None
        return gx, gw, gb, None, None, None


class _TileBlock(torch.autograd.Function):
    """One tile's output ``y_tile`` of a layer split over several (computed without a graph) as a
    function of its block of inputs ``v`` (M, rows) and weights ``w`` (cols, rows): the gradients of
    the digital product ``v wᵀ``, the inputs' with the saturated outputs' gradients zeroed (see
    ``_TileProduct``); no digital product is computed in the forward."""

    @staticmethod
    def forward(ctx, v, w, y_tile, saturated):
        ctx.save_for_backward(v, w, saturated)
        return y_tile

    @staticmethod
    def backward(ctx, grad):
        v, w, saturated = ctx.saved_tensors
        need_v, need_w = ctx.needs_input_grad[:2]
        g = grad.masked_fill(saturated, 0.0) if saturated.dim() else grad
        return (g @ w) if need_v else None, (grad.t() @ v) if need_w else None, None, None


# -- one layer ----------------------------------------------------------------------------------------------


def _blocks(n: int, size: int) -> list[slice]:
    """The tiles' slices of ``n`` inputs or outputs at most ``size`` each, split evenly as aihwkit's
    ``TileModuleArray.get_split_sizes`` does (400 inputs on 256-row tiles: 200 + 200)."""
    if size <= 0:
        return [slice(0, n)]
    count = (n + size - 1) // size
    base, extra = divmod(n, count)
    bounds = [0]
    for i in range(count):
        bounds.append(bounds[-1] + base + (i < extra))
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def _alpha(w: Tensor, model: TrainingTileModel) -> Tensor:
    """The tile's weight scale α (N, 1): W / α is what the conductances hold (max |W/α| = omega)."""
    if model.omega <= 0:
        return torch.ones(w.shape[0], 1, dtype=w.dtype, device=w.device)
    m = w.abs().amax(1, keepdim=True) if model.columnwise else w.abs().amax().expand(w.shape[0], 1)
    return (m / model.omega).clamp_min(1e-12)


def _io_spec(model: TrainingTileModel):
    """The fast engine's :class:`~analogsam.hardware.fast.tile.IOSpec` of these tiles (aihwkit's
    ``IOParameters`` defaults for everything a preset does not set)."""
    from analogsam.hardware.fast.tile import IOSpec

    return IOSpec(
        perfect=False,
        nm="none" if model.learned_ranges else "abs_max",
        nm_thres=0.0,
        bm=model.bound_management,
        bm_test_negative_bound=True,
        max_bm_factor=MAX_BM_FACTOR,
        max_bm_res=MAX_BM_RES,
        inp_bound=1.0,
        inp_res=model.dac_step if model.dac_step > 0 else -1.0,
        inp_sto_round=False,
        inp_noise=0.0,
        inp_asymmetry=0.0,
        out_bound=model.out_bound,
        out_res=model.adc_step if model.adc_step > 0 else -1.0,
        out_sto_round=False,
        out_noise=model.out_noise,
        out_asymmetry=0.0,
        out_scale=1.0,
        w_noise=model.w_noise,
        w_noise_type=model.w_noise_type.replace("-", "_"),
    )


class _Tiles:
    """The analog tiles of one layer's training forward: the fast engine's replay of the C++ tile
    (:class:`analogsam.hardware.fast.tile.Tile`: noise management, DAC, product, weight and output
    noise, ADC, iterative bound management, fused kernels on the CPU), fed the current weights at
    every call. Its noise is the engine's counter-based generator's, addressed by (a seed drawn from
    torch's generator at every call, the tile, the element): ``torch.manual_seed`` fixes a training
    run, and a number does not depend on the batch's chunking or the thread count."""

    def __init__(self, model: TrainingTileModel, out_size: int, in_size: int, device):
        from types import SimpleNamespace

        self._args = (model, out_size, in_size, device)

        from analogsam.hardware.fast.tile import Tile

        self.model = model
        self.rows = _blocks(in_size, model.rows)
        self.cols = _blocks(out_size, model.cols)
        spec = _io_spec(model)
        fused = torch.device(device).type == "cpu"
        self.tiles = {
            (i, j): Tile(
                SimpleNamespace(tile=None, in_size=r.stop - r.start, out_size=c.stop - c.start, analog_bias=False),
                spec,
                f"hwa-{i}-{j}",
                fused=fused,
                device=device,
            )
            for i, r in enumerate(self.rows)
            for j, c in enumerate(self.cols)
        }
        for number, tile in enumerate(self.tiles.values()):
            tile.index = number  # (part of its random numbers' addresses)
        self.fixed_alpha: dict | None = None  # {(i, j): α} when the model does not remap
        # the ADC kernel's identities (x * 1, x + -0.0) for each column block, made once
        self._identities = [
            (np.ones(c.stop - c.start, np.float32), np.full(c.stop - c.start, -0.0, np.float32)) for c in self.cols
        ]
        self._channels: dict = {}  # a convolution's channel blocks, by its geometry (see channels())

    def alpha(self, i: int, j: int, wb: Tensor) -> Tensor:
        """Tile (i, j)'s weight scale: from its current weights ``wb``, or, without remapping, from the
        weights it saw first (the mapping of the conversion, kept while training moves the weights)."""
        if self.model.remap:
            return _alpha(wb, self.model)
        if self.fixed_alpha is None:
            self.fixed_alpha = {}
        if (i, j) not in self.fixed_alpha:
            self.fixed_alpha[(i, j)] = _alpha(wb, self.model).clone()
        return self.fixed_alpha[(i, j)].to(wb.device, wb.dtype)

    def __deepcopy__(self, memo):
        """A fresh set of tiles (a deep copy of the layer, e.g. MESA's EMA model, gets its own; the
        tiles hold compiled kernels, which cannot be copied, and no other state)."""
        copy = _Tiles(*self._args)
        copy.fixed_alpha = None if self.fixed_alpha is None else {k: v.clone() for k, v in self.fixed_alpha.items()}
        return copy

    def _set(self, i: int, j: int, weight: Tensor, ranges: Tensor | None, bias: Tensor | None, fuse: bool):
        """Tile (i, j) for this call: the current weights over α, and its digital periphery (the input
        range, divided out before the tile and multiplied back after it, α, and the digital bias on the
        tiles of the first row block); with ``fuse`` (and the compiled ADC kernel) the periphery is
        applied in the ADC kernel's own pass over the outputs (``Tile.post``), in the order of
        ``Tile._periphery``."""
        from analogsam.hardware.fast.tile import Weights

        tile = self.tiles[(i, j)]
        cols = self.cols[j]
        w = weight[cols, self.rows[i]].detach().float()
        alpha = self.alpha(i, j, w)
        tile.weights = Weights(w / alpha, w.device)
        r = None if ranges is None else ranges[i].detach().abs().float().reshape(1)
        tile.input_range, tile._input_bound = r, (None if r is None else float(r))
        tile.post_scale = alpha.view(-1) if r is None else alpha.view(-1) * r
        tile.bias = None if bias is None or i > 0 else bias[cols].detach().float()
        tile.alpha = tile.out_scaling = tile.post = None
        if fuse and tile._adc_kernels is not None:
            ones, minus_zero = self._identities[j]
            scale = np.ascontiguousarray(tile.post_scale.numpy())
            shift = minus_zero if tile.bias is None else np.ascontiguousarray(tile.bias.numpy())
            tile.post = (scale, ones, ones, shift)
        return tile

    @torch.no_grad()
    def __call__(self, x: Tensor, weight: Tensor, ranges: Tensor | None, bias: Tensor | None = None, parts=False):
        """The tiles' output (M, N) for input vectors ``x`` (M, K) and weights (N, K), no graph, plus
        ``bias``, and where each tile's read-out saturated (M, N) (a union over the tiles of a row).
        With ``parts``: {(i, j): (output, saturated)} per tile instead, without the bias."""
        noise = _noise_source()
        x = x.detach().float()
        # the raw read-outs are needed for the saturation test and for the parts (kept apart from the bias)
        raw = parts or self.model.zero_saturated_gradients
        total, saturated, per_tile = None, None, {}
        bound = SATURATION * self.model.out_bound
        for i, rows in enumerate(self.rows):
            xb = x[:, rows]
            if ranges is not None:
                r = float(ranges[i].abs())
                xb = xb.clamp(-r, r) / r
            xb = xb.contiguous()
            outs, sats = [], []
            for j in range(len(self.cols)):
                tile = self._set(i, j, weight, ranges, None if raw else bias, fuse=not raw)
                y = tile.mvm(xb, tile.weights, noise.stream(tile.index, 0, 0), tile.post)
                if raw:  # the raw read-out, as aihwkit's post_forward tests it (only where that rule is asked for)
                    sats.append(y.abs() >= bound if self.model.zero_saturated_gradients else _NONE_SATURATED)
                    y = y * tile.post_scale.view(1, -1)
                elif tile.post is None:
                    y = tile._periphery(y, (-1,))
                outs.append(y)
                per_tile[(i, j)] = (y.to(weight.dtype), sats[-1] if raw else _NONE_SATURATED)
            y = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
            total = y if total is None else total + y  # (not in place: the first block's is in per_tile)
            if raw:
                sat = torch.cat(sats, 1) if len(sats) > 1 and sats[0].dim() else sats[0]
                saturated = sat if saturated is None else saturated | sat
        if parts:
            return per_tile
        if raw and bias is not None:
            total = total + bias.detach().float()
        return total.to(weight.dtype), (saturated if raw else _NONE_SATURATED)

    @torch.no_grad()
    def patches(self, img: Tensor, weight: Tensor, ranges: Tensor | None, bias: Tensor | None, geometry, channels):
        """The tiles' output (b, N, L) plus ``bias`` for every convolution patch of ``img`` (b, C, H, W),
        each tile's patches quantized straight from its channels of the image (the fast engine's
        ``Tile.forward_patches``; no unfolded copy): ``channels[i]`` are the input channels of row block
        i, which holds their whole kernels (a split aligned with ``F.unfold``'s (C, kh, kw) order). With
        one tile, also where its read-out saturated (see ``__call__``)."""
        noise = _noise_source()
        img = img.detach().float()
        test = self.model.zero_saturated_gradients and len(self.tiles) == 1  # the read-out's saturation
        total = None
        for i, chans in enumerate(channels):  # the row blocks' outputs summed in order, as aihwkit's
            part = img if len(channels) == 1 else img[:, chans]
            outs = []
            for j in range(len(self.cols)):
                tile = self._set(i, j, weight, ranges, None if test else bias, fuse=not test)
                outs.append(tile.forward_patches(part, geometry, noise.stream(tile.index, 0, 0)))
            y = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
            total = y if total is None else total.add_(y)
        if not test:
            return total.to(weight.dtype), _NONE_SATURATED
        # one tile: the read-out before the periphery's scales at the bound, |y| >= bound * scale
        threshold = (SATURATION * self.model.out_bound) * self.tiles[(0, 0)].post_scale.view(1, -1, 1)
        saturated = total.abs() >= threshold
        if bias is not None:
            total = total + bias.detach().float().view(1, -1, 1)
        return total.to(weight.dtype), saturated

    def channels(self, module: nn.Module) -> list[slice] | None:
        """The input channels of each row block of a convolution's tiles, where every block holds
        whole kernels (one tile always does; ResNet-20's 576 = 64 x 9 inputs on 512-row tiles split as
        2 x 32 channels); None where a block cuts a kernel (its patches must be unfolded)."""
        if isinstance(module, nn.Linear):
            return None
        kernel = _geometry(module)[0]
        if kernel not in self._channels:
            area = math.prod(kernel)
            aligned = not any(r.start % area or r.stop % area for r in self.rows)
            self._channels[kernel] = [slice(r.start // area, r.stop // area) for r in self.rows] if aligned else None
        return self._channels[kernel]


def _noise_source():
    """The noise of one training forward of a layer: the engine's counter-based generator under a
    seed drawn from torch's default generator (one draw per call, so ``torch.manual_seed`` fixes
    every number of a training run)."""
    from analogsam.hardware.fast import noise

    return noise.NoiseSource(int(torch.randint(0, 2**62, (1,))))


def _init_ranges(module: nn.Module, x: Tensor, model: TrainingTileModel) -> None:
    """aihwkit's ``init_from_data``: over the first batches, r = running mean of 3·std(x) per tile."""
    ranges, seen = getattr(module, RANGE_ATTRIBUTE), module.hwa_range_batches
    if int(seen) >= INIT_FROM_DATA:
        return
    with torch.no_grad():
        for i, rows in enumerate(_blocks(x.shape[1], model.rows)):
            std = x[:, rows].std()
            if std > 0:
                ranges[i] = (ranges[i] * seen + INIT_STD_ALPHA * std) / (seen + 1)
        ranges.abs_()
        seen.add_(1)


def _geometry(module: nn.Module):
    """(kernel, dilation, padding, stride) of a Conv1d/Conv2d as 2-d tuples (a Conv1d is 1 x k)."""
    if isinstance(module, nn.Conv1d):
        return (1, *module.kernel_size), (1, *module.dilation), (0, *module.padding), (1, *module.stride)
    return module.kernel_size, module.dilation, module.padding, module.stride


def _vectors(module: nn.Module, x: Tensor) -> tuple[Tensor, callable]:
    """The layer's input vectors as rows (M, K) (a convolution's patches in ``F.unfold``'s order, the
    order of aihwkit's tile rows) and how to fold the (M, N) outputs back to the layer's output shape."""
    if isinstance(module, nn.Linear):
        lead = x.shape[:-1]
        return x.reshape(-1, x.shape[-1]), lambda y: y.reshape(*lead, y.shape[-1])
    one_d = isinstance(module, nn.Conv1d)
    img = x.unsqueeze(2) if one_d else x
    k, dil, pad, st = _geometry(module)
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        raise HardwareAwareError(
            f"hardware-aware training supports explicit zero padding only, not padding={module.padding!r}, "
            f"padding_mode={module.padding_mode!r}"
        )
    cols = F.unfold(img, k, dilation=dil, padding=pad, stride=st)  # (B, K, L)
    b, kk, length = cols.shape
    oh = (img.shape[2] + 2 * pad[0] - dil[0] * (k[0] - 1) - 1) // st[0] + 1
    ow = length // oh

    def fold(y):
        y = y.reshape(b, length, -1).transpose(1, 2).reshape(b, -1, oh, ow)
        return y.squeeze(2) if one_d else y

    return cols.transpose(1, 2).reshape(-1, kk), fold


def _out_hw(module: nn.Module, x: Tensor) -> tuple:
    """A convolution's output length (Conv1d) or height and width (Conv2d) for input ``x``."""
    k, dil, pad, st = _geometry(module)
    sizes = (1, x.shape[-1]) if isinstance(module, nn.Conv1d) else x.shape[-2:]
    out = [(n + 2 * p - d * (kk - 1) - 1) // s + 1 for n, kk, d, p, s in zip(sizes, k, dil, pad, st)]
    return (out[1],) if isinstance(module, nn.Conv1d) else tuple(out)


def _hwa_forward(module: nn.Module, x: Tensor) -> Tensor:
    """The layer's training forward: the tiles' output in the forward, the digital gradient."""
    if not module.training:  # eval: the digital layer (the test metric of an epoch, as in aihwkit's HWA)
        return module.hwa_digital_forward(x)
    model: TrainingTileModel = module.hwa_model
    quantized = getattr(module, "quantized_operands", None)  # a quantized layer (analogsam.quantization)
    if quantized is not None:  # the tiles hold Q(w) and read Q(x), the gradient going through the quantizers
        x, w = quantized(x)
    else:
        w = module.weight
    weight = w.reshape(w.shape[0], -1)
    tiles = module.hwa_tiles
    linear = isinstance(module, nn.Linear)
    channels = tiles.channels(module)  # None: a Linear, or a convolution whose patches must be unfolded
    # each tile's product on the input vectors, with its own saturation (aihwkit's gradient rule), or
    # with its own input range on vectors that cut kernels
    per_tile = len(tiles.tiles) > 1 and (
        model.zero_saturated_gradients or (model.learned_ranges and channels is None and not linear)
    )
    vectors, fold = None, None
    initialising = model.learned_ranges and int(module.hwa_range_batches) < INIT_FROM_DATA
    if channels is None or initialising or per_tile:
        with torch.no_grad():
            vectors, fold = _vectors(module, x.detach())
    ranges = None
    if model.learned_ranges:
        _init_ranges(module, vectors, model)
        ranges = getattr(module, RANGE_ATTRIBUTE)
    if ranges is None:
        x_in = x
    elif len(tiles.rows) == 1:  # one range for every input: clip the layer's input itself
        x_in = _ClipToRange.apply(x, ranges[0].abs())
    elif linear:  # a range per block of inputs
        x_in = torch.cat([_ClipToRange.apply(x[..., rows], ranges[i].abs()) for i, rows in enumerate(tiles.rows)], -1)
    elif channels is not None:  # a range per block of whole channels: clip the image's channels (unfolding commutes)
        x_in = torch.cat([_ClipToRange.apply(x[:, c], ranges[i].abs()) for i, c in enumerate(channels)], 1)
    else:  # a range per block of rows cutting kernels: clip the input vectors block by block
        v, _ = _vectors(module, x)
        x_in = torch.cat([_ClipToRange.apply(v[:, rows], ranges[i].abs()) for i, rows in enumerate(tiles.rows)], 1)
    if per_tile:  # the input vectors as they enter the tiles (clipped), with their graph
        v = x_in if ranges is not None and channels is None and not linear else _vectors(module, x_in)[0]
        parts = tiles(vectors, weight, ranges, parts=True)
        cols_out = []
        for j, cols in enumerate(tiles.cols):
            y_j = None
            for i, rows in enumerate(tiles.rows):
                y_tile, sat = parts[(i, j)]
                y_ij = _TileBlock.apply(v[:, rows], weight[cols, rows], y_tile, sat)
                y_j = y_ij if y_j is None else y_j + y_ij
            cols_out.append(y_j)
        y = torch.cat(cols_out, 1) if len(cols_out) > 1 else cols_out[0]
        if module.bias is not None:
            y = y + module.bias
        return fold(y)
    if channels is None:  # (the tiles add the digital bias)
        y_tile, saturated = tiles(vectors, weight, ranges, module.bias)
        y_tile = fold(y_tile)
        saturated = fold(saturated) if saturated.dim() else saturated
    else:  # the patches straight from the image, tile by tile (no unfolded copy)
        img = x.unsqueeze(2) if isinstance(module, nn.Conv1d) else x
        y, sat = tiles.patches(img, weight, ranges, module.bias, _geometry(module), channels)
        shape = (y.shape[0], y.shape[1], *_out_hw(module, x))
        y_tile, saturated = y.view(shape), (sat.view(shape) if sat.dim() else sat)
    saturated = saturated if model.zero_saturated_gradients and bool(saturated.any()) else None
    if linear:
        return _TileProduct.apply(x_in, w, module.bias, y_tile, None, saturated)
    k, dil, pad, st = _geometry(module)
    one_d = isinstance(module, nn.Conv1d)
    conv = (list(st[1:]), list(pad[1:]), list(dil[1:])) if one_d else (list(st), list(pad), list(dil))
    return _TileProduct.apply(x_in, w, module.bias, y_tile, conv, saturated)


def attach_hardware_aware(model: nn.Module, preset, overrides: dict | None = None) -> TrainingTileModel:
    """Give every convertible layer of ``model`` the preset's training-time forward, in place.

    The weights stay the layer's own parameters; with learned input ranges each layer gains a
    parameter ``hwa_input_range`` (one value per tile of its input dimension) and a buffer counting the
    batches it was initialised from. In eval mode the layers compute digitally. Returns the tile model.
    """
    tile_model = preset if isinstance(preset, TrainingTileModel) else training_tile_model(preset, overrides)
    for name, module in model.named_modules():
        if not is_convertible(module) or hasattr(module, "hwa_model"):
            continue
        if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) or getattr(module, "groups", 1) != 1:
            raise HardwareAwareError(
                f"layer {name or '<root>'} ({type(module).__name__}"
                f"{', groups=' + str(module.groups) if getattr(module, 'groups', 1) != 1 else ''}) has no "
                "hardware-aware training forward; HWA supports Linear, Conv1d and Conv2d with groups=1"
            )
        module.hwa_model = tile_model
        module.hwa_digital_forward = module.forward
        module.hwa_tiles = _Tiles(tile_model, module.weight.shape[0], module.weight[0].numel(), module.weight.device)
        if tile_model.learned_ranges:
            fan_in = module.weight[0].numel()
            tiles = len(_blocks(fan_in, tile_model.rows))
            w = module.weight
            module.register_parameter(
                RANGE_ATTRIBUTE, nn.Parameter(torch.full((tiles,), INIT_VALUE, dtype=w.dtype, device=w.device))
            )
            module.register_buffer("hwa_range_batches", torch.zeros((), dtype=torch.long, device=w.device))
        module.forward = _hwa_forward.__get__(module)
    return tile_model


def input_ranges(model: nn.Module) -> dict[str, list[float]]:
    """{layer name: its learned input ranges, one per tile} (empty without learned ranges)."""
    return {
        name: [abs(float(v)) for v in getattr(m, RANGE_ATTRIBUTE).detach().cpu()]
        for name, m in model.named_modules()
        if hasattr(m, RANGE_ATTRIBUTE)
    }


def detach_hardware_aware(model: nn.Module) -> dict[str, list[float]]:
    """Undo :func:`attach_hardware_aware` in place; returns the learned input ranges."""
    ranges = input_ranges(model)
    for _, module in model.named_modules():
        if hasattr(module, "hwa_model"):
            module.forward = module.hwa_digital_forward
            del module.hwa_digital_forward, module.hwa_model, module.hwa_tiles
            if hasattr(module, RANGE_ATTRIBUTE):
                delattr(module, RANGE_ATTRIBUTE)
                delattr(module, "hwa_range_batches")
    return ranges
