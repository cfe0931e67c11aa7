"""Quantization-aware training with learnable clipping values (LIQ, the quantizer of SAQ).

The quantizer of Liu, Cai & Zhuang, "Sharpness-aware quantization for deep neural networks"
(arXiv 2111.12273; ziplab/SAQ, ``quan_models/LIQ.py``), chosen over LSQ (Esser et al., ICLR 2020)
because SAQ, the method the memory-fault study (arXiv 2406.10528) trains with, was defined, tuned
and published on it: its perturbation is taken on LIQ's quantized weights, and its defaults (ρ,
clip initialisation) are LIQ's. With L = 2^k − 1 and a straight-through estimator (STE) for the
rounding (its gradient is 1, Bengio et al. 2013):

- weights, signed: Q(w) = c_w · (2·round(L·(clamp(w/c_w, −1, 1) + 1)/2)/L − 1). The 2^k levels
  are odd multiples of c_w/L, symmetric about 0 with no zero level. The integer code of a weight
  is its level index n = round(L·(clamp(w/c_w, −1, 1) + 1)/2) in [0, 2^k − 1]
  (:func:`weight_codes`), stored as a k-bit unsigned word (offset binary; see
  :mod:`analogsam.quantization.faults` for the stored formats);
- activations, unsigned (after ReLU): Q(x) = c_a · round(L·clamp(x/c_a, 0, 1))/L. An input that is
  negative at the first forward (the image entering the first layer) gets the weights' signed grid
  instead: LIQ's unsigned clamp would cut every negative pixel to 0;
- c_w, c_a: learnable scalars (used as |c|, as the reference does), initialised at the first
  forward to 0.8·max|w| and 0.8·max|x| of that batch (the reference's rule). Unlike the reference,
  whether they were initialised is a buffer, so a loaded checkpoint keeps its trained clips.

The gradient reaching c through x/c and ·c with the STE is LIQ's learnable-clip gradient (the same
autograd expression as the reference, unscaled). Start quantization-aware training from a trained
full-precision model, as the reference does (its ``--pretrained``; here ``train(init_from=RUN)``):
measured on LeNet-5 / Fashion-MNIST at lr 0.05 from scratch, with the L1 activation penalty
(:mod:`.sparsity`) under a two-pass method (SAQ, SAM) the weight clips shrank through zero within ~20
steps and the network fell to chance (scaling the clips' gradients by LSQ's 1/√(N·L), Esser et al.
ICLR 2020, stopped that but froze the clips and cost ~10 points); from a trained full-precision start
(4 epochs, λ = 1e-4), SAQ w4a4 with the same penalty reached 83.5 % at 84.6 % zeros after 2 epochs at
lr 0.01, its weight clips 0.16-0.51 (the clips start at 0.8·max|w| of trained weights instead of
random ones, and the network is near a minimum, so the penalty's pull on them is not the largest
gradient they see). Every Linear and Conv1d/2d/3d layer of exactly those types
is quantized (a user module works as long as its crossbar layers are these), optionally sparing
the first and the last one (in registration order). A layer keeps its class's weight and bias, so
optimizers, checkpoints and the analog conversion (:func:`programmable_copy`) see ordinary tensors.
"""

from __future__ import annotations

import copy
import re

import torch
import torch.nn.functional as F
from torch import nn

from analogsam.errors import InvalidParameterError

__all__ = [
    "QuantizationSpec",
    "QuantizedLayer",
    "ActivationQuantizer",
    "parse_quantize",
    "quantize_model",
    "quantized_layers",
    "quantization_config",
    "programmable_copy",
    "weight_codes",
    "weights_from_codes",
    "initialize_clips",
    "liq_weight",
    "liq_activation",
]

BITS = (2, 16)
CLIP_INIT = 0.8  # the reference's initial clip, a fraction of the first batch's max |.|
_SPEC = re.compile(r"w(\d+)a(\d+)")


class QuantizationSpec(dict):
    """``{"weight_bits": k_w, "activation_bits": k_a, "first_last": bool, "layers": [...]}`` (plain data)."""


def parse_quantize(text, *, first_last: bool = True) -> dict:
    """``"w4a4"`` (or a spec dict) as ``{"weight_bits", "activation_bits", "first_last"}``.

    Raises :class:`InvalidParameterError` naming the value and the form it must take."""
    if isinstance(text, dict):
        spec = dict(text)
        spec.setdefault("first_last", first_last)
        for key in ("weight_bits", "activation_bits"):
            spec[key] = _check_bits(spec.get(key), f"quantize[{key!r}]")
        return spec
    match = _SPEC.fullmatch(str(text).strip().lower())
    if not match:
        raise InvalidParameterError(
            f"quantize must look like wKaK (weight and activation bits, e.g. w8a8 or w4a4), got {text!r}"
        )
    return {
        "weight_bits": _check_bits(int(match.group(1)), "weight bits of quantize"),
        "activation_bits": _check_bits(int(match.group(2)), "activation bits of quantize"),
        "first_last": bool(first_last),
    }


def _check_bits(value, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not BITS[0] <= value <= BITS[1]:
        raise InvalidParameterError(f"{label} must be an integer in [{BITS[0]}, {BITS[1]}], got {value!r}")
    return value


# -- the quantizer's arithmetic ----------------------------------------------------------------------


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward (the straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def liq_weight(w: torch.Tensor, bits: int, clip: torch.Tensor) -> torch.Tensor:
    """Q(w) = c·(2·round(L·(clamp(w/c, −1, 1) + 1)/2)/L − 1), L = 2^k − 1, STE for the rounding."""
    levels = 2**bits - 1
    x = (torch.clamp(w / clip, -1.0, 1.0) + 1.0) / 2.0
    return (2.0 * _round_ste(x * levels) / levels - 1.0) * clip


def liq_activation(x: torch.Tensor, bits: int, clip: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """Unsigned: c·round(L·clamp(x/c, 0, 1))/L; signed: the weights' grid on [−c, c]."""
    if signed:
        return liq_weight(x, bits, clip)
    levels = 2**bits - 1
    return _round_ste(torch.clamp(x / clip, 0.0, 1.0) * levels) / levels * clip


@torch.no_grad()
def weight_codes(w: torch.Tensor, bits: int, clip: torch.Tensor | float) -> torch.Tensor:
    """The level index n in [0, 2^k − 1] (int64) of every weight: what the weight memory stores."""
    levels = 2**bits - 1
    x = (torch.clamp(w.double() / float(clip), -1.0, 1.0) + 1.0) / 2.0
    return torch.round(x * levels).to(torch.int64)


@torch.no_grad()
def weights_from_codes(codes: torch.Tensor, bits: int, clip: torch.Tensor | float) -> torch.Tensor:
    """The weight values c·(2n/L − 1) of level indices n (float64)."""
    levels = 2**bits - 1
    return (2.0 * codes.double() / levels - 1.0) * float(clip)


# -- the layers ---------------------------------------------------------------------------------------


class QuantizedLayer:
    """What a Linear/Conv layer gains when quantized (mixed into a subclass of its own class).

    Parameters ``weight_clip`` and ``activation_clip`` (shape (1,)), buffers ``clips_initialized``
    and ``activation_signed``; attributes ``weight_bits``, ``activation_bits``.

    For sharpness-aware quantization (:class:`analogsam.optim.saq.SAQ`): with ``keep_quantized_grad``
    set, a forward keeps Q(w) in ``quantized_weight`` with its gradient retained; a tensor in
    ``saq_epsilon`` is added to Q(w) *after* quantization, so the latent weight does not move.
    """

    weight_bits: int
    activation_bits: int
    saq_epsilon: torch.Tensor | None = None
    keep_quantized_grad: bool = False
    quantized_weight: torch.Tensor | None = None

    def _setup_quantization(self, weight_bits: int, activation_bits: int) -> None:
        self.weight_bits, self.activation_bits = weight_bits, activation_bits
        device = self.weight.device
        self.weight_clip = nn.Parameter(torch.ones(1, device=device))
        self.activation_clip = nn.Parameter(torch.ones(1, device=device))
        self.register_buffer("clips_initialized", torch.zeros((), dtype=torch.bool, device=device))
        self.register_buffer("activation_signed", torch.zeros((), dtype=torch.bool, device=device))

    @torch.no_grad()
    def _initialize_clips(self, x: torch.Tensor) -> None:
        # (an all-zero tensor, e.g. a layer behind thresholded ReLUs that are all off at the first batch,
        # would give c = 0 and x/c = NaN: it gets c = 1 until training moves it)
        self.weight_clip.fill_(CLIP_INIT * float(self.weight.abs().max()) or 1.0)
        self.activation_clip.fill_(CLIP_INIT * float(x.abs().max()) or 1.0)
        self.activation_signed.fill_(bool((x < 0).any()))
        self.clips_initialized.fill_(True)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return liq_activation(x, self.activation_bits, self.activation_clip.abs(), bool(self.activation_signed))

    def quantize_weight(self) -> torch.Tensor:
        return liq_weight(self.weight, self.weight_bits, self.weight_clip.abs())

    @torch.no_grad()
    def codes(self) -> torch.Tensor:
        """The integer level indices n of this layer's weights (see :func:`weight_codes`)."""
        return weight_codes(self.weight, self.weight_bits, self.weight_clip.abs())

    @torch.no_grad()
    def set_codes(self, codes: torch.Tensor) -> None:
        """Make the latent weights the values of ``codes``, so a forward quantizes to exactly them."""
        self.weight.copy_(weights_from_codes(codes, self.weight_bits, self.weight_clip.abs()).to(self.weight.dtype))

    def quantized_operands(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q(x), Q(w)) of this forward, what the layer's product takes, digitally here or on the tiles of
        hardware-aware training (:mod:`analogsam.hardware.hwa`): the clips initialised at the first
        forward, Q(w) kept for SAQ with its ε added."""
        if not bool(self.clips_initialized):
            self._initialize_clips(x)
        w = self.quantize_weight()
        if self.keep_quantized_grad and w.requires_grad:
            w.retain_grad()
            self.quantized_weight = w
        if self.saq_epsilon is not None:
            w = w + self.saq_epsilon
        return self.quantize_input(x), w

    def forward(self, x):
        return self._product(*self.quantized_operands(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_bits={self.weight_bits}, activation_bits={self.activation_bits}"


class QuantizedLinear(QuantizedLayer, nn.Linear):
    def _product(self, x, w):
        return F.linear(x, w, self.bias)


class _QuantizedConv(QuantizedLayer):
    def _product(self, x, w):
        return self._conv_forward(x, w, self.bias)


class QuantizedConv1d(_QuantizedConv, nn.Conv1d):
    pass


class QuantizedConv2d(_QuantizedConv, nn.Conv2d):
    pass


class QuantizedConv3d(_QuantizedConv, nn.Conv3d):
    pass


_QUANTIZED = {
    nn.Linear: QuantizedLinear,
    nn.Conv1d: QuantizedConv1d,
    nn.Conv2d: QuantizedConv2d,
    nn.Conv3d: QuantizedConv3d,
}


def quantized_layers(model: nn.Module) -> list[tuple[str, QuantizedLayer]]:
    """The quantized layers of ``model``, by name, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantizedLayer)]


def quantize_model(model: nn.Module, quantize, *, first_last: bool = True) -> nn.Module:
    """Quantize ``model``'s Linear/Conv layers in place (LIQ, see the module docstring); returns it.

    ``quantize``: ``"w8a8"``-like text or a spec (:func:`parse_quantize`; a spec with ``"layers"``,
    as :func:`quantization_config` records it, quantizes exactly those layers). ``first_last=False``
    leaves the first and the last Linear/Conv layer (in registration order, which is the forward
    order of sequential models) in full precision. The clips are initialised at the first forward.
    """
    spec = parse_quantize(quantize, first_last=first_last)
    candidates = [(n, m) for n, m in model.named_modules() if type(m) in _QUANTIZED]
    if quantized_layers(model):
        raise InvalidParameterError("quantize_model: this model is quantized already")
    if not candidates:
        raise InvalidParameterError(
            f"quantize: {type(model).__name__} has no Linear or Conv1d/2d/3d layer to quantize "
            "(subclasses of them are not quantized); quantize a model built from these layers"
        )
    if spec.get("layers") is not None:
        wanted = set(spec["layers"])
        chosen = [(n, m) for n, m in candidates if n in wanted]
        missing = wanted - {n for n, _ in chosen}
        if missing:
            raise InvalidParameterError(
                f"quantize: the recorded quantized layers {sorted(missing)} are not Linear/Conv layers of "
                f"{type(model).__name__}; load the checkpoint into the module it was trained with"
            )
    else:
        chosen = candidates if spec["first_last"] else candidates[1:-1]
        if not chosen:
            raise InvalidParameterError(
                f"quantize: {type(model).__name__} has only {len(candidates)} Linear/Conv layer(s), all first or "
                "last; quantize the first and last layers too (--quantize-first-last)"
            )
    for _, module in chosen:
        module.__class__ = _QUANTIZED[type(module)]
        module._setup_quantization(spec["weight_bits"], spec["activation_bits"])
    return model


def quantization_config(model: nn.Module) -> dict | None:
    """The plain-data record of ``model``'s quantization (stored in a checkpoint's config), or None."""
    layers = quantized_layers(model)
    if not layers:
        return None
    first = layers[0][1]
    candidates = [n for n, m in model.named_modules() if type(m) in _QUANTIZED or isinstance(m, QuantizedLayer)]
    return {
        "method": "LIQ (ziplab/SAQ)",
        "weight_bits": first.weight_bits,
        "activation_bits": first.activation_bits,
        "first_last": candidates[0] == layers[0][0] and candidates[-1] == layers[-1][0],
        "layers": [n for n, _ in layers],
        "weight_format": "offset binary: level index n in [0, 2^k - 1], w = c_w (2n/(2^k - 1) - 1)",
    }


@torch.no_grad()
def initialize_clips(model: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """Initialise the clips of ``model``'s quantized layers now, with one training-mode forward of
    ``inputs`` (the rule of the first training forward: 0.8·max|.|), leaving every other buffer
    (BatchNorm statistics) as it was. Data-parallel training calls it on each replica's first batch
    before the replicas are synchronised, so that every replica gets rank 0's clips (the reference
    initialises each replica from its own batch and lets them differ); returns ``model``."""
    kept = {n: b.clone() for n, b in model.named_buffers() if not n.endswith(_QUANTIZER_BUFFERS)}
    was_training = model.training
    model.train()
    try:
        model(inputs)
    finally:
        model.train(was_training)
        for name, buffer in model.named_buffers():
            if name in kept:
                buffer.copy_(kept[name])
    return model


_QUANTIZER_BUFFERS = ("clips_initialized", "activation_signed")


# -- what analog hardware is programmed with ---------------------------------------------------------


class ActivationQuantizer(nn.Module):
    """The digital activation quantizer of a quantized layer, kept in front of its analog tile."""

    def __init__(self, bits: int, clip: float, signed: bool):
        super().__init__()
        self.bits, self.signed = bits, signed
        self.register_buffer("clip", torch.tensor(float(clip)))

    def forward(self, x):
        return liq_activation(x, self.bits, self.clip, self.signed)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, clip={float(self.clip):.4g}, signed={self.signed}"


@torch.no_grad()
def programmable_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose quantized layers are plain Linear/Conv layers holding Q(w), each
    behind an :class:`ActivationQuantizer`: what analog tiles are programmed with (the quantized
    weights) and fed (the quantized activations, before the tile's own DAC). A model without
    quantized layers is deep-copied unchanged."""
    # A forward's cached Q(w) (``quantized_weight``, kept for SAQ) is a graph tensor that deepcopy refuses
    # and the copy does not need: the copy gets None in its place, the original is left as it is.
    transient = {
        id(cached): None
        for _, layer in quantized_layers(model)
        for cached in (layer.quantized_weight, layer.saq_epsilon)
        if isinstance(cached, torch.Tensor) and not cached.is_leaf
    }
    copied = copy.deepcopy(model, transient)
    for name, layer in quantized_layers(copied):
        base = next(b for b, q in _QUANTIZED.items() if isinstance(layer, q))
        quantized_w = layer.quantize_weight().detach()
        front = ActivationQuantizer(
            layer.activation_bits, float(layer.activation_clip.abs()), bool(layer.activation_signed)
        )
        for attr in ("weight_clip", "activation_clip"):
            delattr(layer, attr)
        for attr in ("clips_initialized", "activation_signed"):
            delattr(layer, attr)
        layer.__class__ = base
        layer.weight.copy_(quantized_w)
        parent_name, _, child = name.rpartition(".")
        parent = copied.get_submodule(parent_name) if parent_name else copied
        setattr(parent, child, nn.Sequential(front, layer))
    return copied
