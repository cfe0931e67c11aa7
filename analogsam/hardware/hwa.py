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
   ``weight_scaling_omega``; 0: α = 1);
4. output-referred weight noise (``io.w_noise``: ``additive-constant`` σ·‖x‖₂, ``pcm-read``
   σ·sqrt(Σ|w|x²)), output noise (``io.out_noise``), ADC: round to steps of
   2·out_bound/(2^adc_bits − 2), clip to ±out_bound; iterative bound management recomputes a vector
   that saturated with half the input scale (fresh noise), as the C++ tile does;
5. times α and the input scale, the tiles' outputs summed, the bias added digitally.

The result enters the graph as ``y_digital + (y_tile − y_digital).detach()`` with ``y_digital`` the
product of the DAC-rounded inputs (straight through the rounding) and the weights: the forward value
is the tile's, the gradient the digital one, as in aihwkit.

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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analogsam.errors import AnalogsamError
from analogsam.hardware import presets as devices
from analogsam.robustness.roles import is_convertible

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

    def describe(self) -> dict:
        return asdict(self)


def training_tile_model(preset: str | devices.Preset, overrides: dict | None = None) -> TrainingTileModel:
    """The :class:`TrainingTileModel` of ``preset`` (a name, a TOML path or a loaded preset).

    Raises :class:`HardwareAwareError` naming a setting this forward cannot train through."""
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
    )


# -- the straight-through pieces ---------------------------------------------------------------------------


def _round_to(v: Tensor, step: float) -> Tensor:
    return v if step <= 0 else torch.round(v / step) * step


class _ClipToRange(torch.autograd.Function):
    """clamp(x, −r, r) with aihwkit's input-range gradient (``InputRangeForward``): x's gradient
    passes unchanged; r's is the clipped inputs' output gradients (pushing r out where they would
    grow), relative to r, plus ``decay·r`` while at least 95% of the inputs are inside the range."""

    @staticmethod
    def forward(ctx, x: Tensor, r: Tensor) -> Tensor:
        ctx.save_for_backward(x, r)
        return torch.minimum(torch.maximum(x, -r), r)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, r = ctx.saved_tensors
        g = (grad * (x >= r)).clamp(max=0.0).sum() - (grad * (x <= -r)).clamp(min=0.0).sum()
        g = g * r
        if (x.abs() < r).float().mean() > INPUT_MIN_PERCENTAGE:
            g = g + RANGE_DECAY * r
        return grad, g.reshape(r.shape)


# -- one layer ----------------------------------------------------------------------------------------------


def _blocks(n: int, size: int) -> list[slice]:
    size = n if size <= 0 else size
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _alpha(w: Tensor, model: TrainingTileModel) -> Tensor:
    """The tile's weight scale α: W / α is what the conductances hold (max |W/α| = omega)."""
    if model.omega <= 0:
        return torch.ones(w.shape[0], 1, dtype=w.dtype, device=w.device)
    m = w.abs().amax(1, keepdim=True) if model.columnwise else w.abs().amax().expand(w.shape[0], 1)
    return (m / model.omega).clamp_min(1e-12)


def _tile_outputs(x: Tensor, w: Tensor, model: TrainingTileModel) -> Tensor:
    """The tile's output for normalised inputs ``x`` (M, K) in [−1, 1] (already DAC-rounded) and its
    normalised weights ``w`` (N, K): noise, ADC and bounds, with iterative bound management. No graph."""
    y = x @ w.t()
    out = _noisy_adc(y, x, w, model)
    if not (model.bound_management and math.isfinite(model.out_bound)):
        return out.clamp(-model.out_bound, model.out_bound)
    failed = out.abs().amax(1) > model.out_bound if out.numel() else torch.zeros(0, dtype=torch.bool)
    reduction = 1.0
    idx = failed.nonzero().squeeze(1)
    limit = MAX_BM_RES / model.dac_step * 2.0 if model.dac_step > 0 else math.inf  # (aihwkit's res is half the step)
    while idx.numel() and reduction * 2 <= MAX_BM_FACTOR and reduction * 2 <= limit:
        reduction *= 2.0
        xr = _round_to(x[idx] / reduction, model.dac_step)  # the DAC at the reduced input scale
        yr = _noisy_adc(xr @ w.t(), xr, w, model)
        still = yr.abs().amax(1) > model.out_bound
        out[idx] = yr.clamp(-model.out_bound, model.out_bound) * reduction
        idx = idx[still]
    return out.clamp(-model.out_bound * reduction, model.out_bound * reduction)


def _noisy_adc(y: Tensor, x: Tensor, w: Tensor, model: TrainingTileModel) -> Tensor:
    if model.w_noise > 0:
        if model.w_noise_type == "additive-constant":
            std = x.norm(dim=1, keepdim=True) * model.w_noise
        else:  # pcm-read
            std = ((x * x) @ w.abs().t()).sqrt() * model.w_noise
        y = y + torch.randn_like(y) * std
    if model.out_noise > 0:
        y = y + torch.randn_like(y) * model.out_noise
    y = _round_to(y, model.adc_step)
    # (bound management decides on the unclipped values; the caller clips)
    return y


def _layer_matmul(x: Tensor, weight: Tensor, ranges: Tensor | None, model: TrainingTileModel) -> Tensor:
    """``x @ weight.T`` (x: (M, K), weight: (N, K)) as the tiles compute it, straight through."""
    outs = []
    for r_i, rows in enumerate(_blocks(weight.shape[1], model.rows)):
        xb = x[:, rows]
        if model.learned_ranges:
            r = ranges[r_i].abs()
            scale = r.detach().expand(xb.shape[0], 1)
            xn = _ClipToRange.apply(xb, r) / r.detach()
        else:
            scale = xb.detach().abs().amax(1, keepdim=True).clamp_min(1e-12)  # abs-max noise management
            xn = xb / scale
        xq = xn + (_round_to(xn.detach(), model.dac_step).clamp(-1.0, 1.0) - xn).detach()  # DAC, straight through
        parts = []
        for cols in _blocks(weight.shape[0], model.cols):
            wb = weight[cols, rows]
            y_digital = xq @ wb.t()
            with torch.no_grad():
                alpha = _alpha(wb, model)
                y_tile = _tile_outputs(xq.detach(), wb / alpha, model) * alpha.t()
            parts.append(y_digital + (y_tile - y_digital).detach())
        outs.append(torch.cat(parts, 1) * scale)
    return outs[0] if len(outs) == 1 else torch.stack(outs).sum(0)


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


def _flatten_inputs(module: nn.Module, x: Tensor) -> tuple[Tensor, callable]:
    """The layer's input vectors (M, K) and how to fold the (M, N) outputs back."""
    if isinstance(module, nn.Linear):
        lead = x.shape[:-1]
        return x.reshape(-1, x.shape[-1]), lambda y: y.reshape(*lead, y.shape[-1])
    if isinstance(module, nn.Conv2d) or isinstance(module, nn.Conv1d):
        one_d = isinstance(module, nn.Conv1d)
        img = x.unsqueeze(2) if one_d else x
        k = (1, *module.kernel_size) if one_d else module.kernel_size
        dil = (1, *module.dilation) if one_d else module.dilation
        pad = (0, *module.padding) if one_d else module.padding
        st = (1, *module.stride) if one_d else module.stride
        if module.padding_mode != "zeros":
            raise HardwareAwareError(f"hardware-aware training supports zero padding only, not {module.padding_mode!r}")
        cols = F.unfold(img, k, dilation=dil, padding=pad, stride=st)  # (B, K, L)
        b, kk, length = cols.shape
        oh = (img.shape[2] + 2 * pad[0] - dil[0] * (k[0] - 1) - 1) // st[0] + 1
        ow = length // oh

        def fold(y):
            y = y.reshape(b, length, -1).transpose(1, 2).reshape(b, -1, oh, ow)
            return y.squeeze(2) if one_d else y

        return cols.transpose(1, 2).reshape(-1, kk), fold
    raise HardwareAwareError(
        f"hardware-aware training has no training forward for {type(module).__name__} "
        "(Linear, Conv1d and Conv2d are supported)"
    )


def _hwa_forward(module: nn.Module, x: Tensor) -> Tensor:
    model: TrainingTileModel = module.hwa_model
    if not module.training:  # eval: the digital layer (the test metric of an epoch, as in aihwkit's HWA)
        return module.hwa_digital_forward(x)
    groups = getattr(module, "groups", 1)
    if groups != 1:
        raise HardwareAwareError(
            f"hardware-aware training of grouped convolutions (groups={groups}) is not supported yet; "
            "train this network without --hardware-aware"
        )
    vectors, fold = _flatten_inputs(module, x)
    weight = module.weight.reshape(module.weight.shape[0], -1)
    ranges = None
    if model.learned_ranges:
        _init_ranges(module, vectors.detach(), model)
        ranges = getattr(module, RANGE_ATTRIBUTE)
    y = _layer_matmul(vectors, weight, ranges, model)
    if module.bias is not None:
        y = y + module.bias
    return fold(y)


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
            del module.hwa_digital_forward, module.hwa_model
            if hasattr(module, RANGE_ATTRIBUTE):
                delattr(module, RANGE_ATTRIBUTE)
                delattr(module, "hwa_range_batches")
    return ranges
