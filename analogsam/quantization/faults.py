"""Memory faults in a quantized network's weight memory, on its integer codes.

The study of faults in activation-sparse quantized networks (Malhotra & Gupta, arXiv 2406.10528)
puts bit flips and stuck-at faults in the memory that holds the k-bit weights. Here that memory holds
each quantized layer's LIQ level indices n in [0, 2^k − 1] (:func:`analogsam.quantization.liq.weight_codes`;
w = c_w·(2n/(2^k − 1) − 1)) as k-bit words in one of three formats (``encoding``):

- ``"offset-binary"`` (default): the word is n itself, what LIQ's rounding produces. Flipping bit b
  moves the weight by 2^b levels (2^(b+1)·c_w/(2^k − 1)); the top bit moves it by about c_w;
- ``"twos-complement"``: the word is the two's complement of the signed index n − 2^(k−1) (offset
  binary with the top bit inverted): bit flips move the weight exactly as in offset binary, stuck-at
  faults of the top bit differ (stuck-at-0 makes a weight non-negative instead of negative);
- ``"sign-magnitude"``: a sign bit and the (k−1)-bit index j of the odd magnitude 2j + 1 of
  2n − (2^k − 1); a flipped sign bit negates the weight.

The faults themselves (which bit cells, flipped or stuck at 0/1, nested across rates, seeded) are
:func:`analogsam.robustness.perturbations.bit_fault_words`, shared with the full-precision model's
:func:`~analogsam.robustness.perturbations.inject_bit_flips`. Layers left in full precision (the
first and last, when they are spared) and biases are not in the k-bit memory and are not faulted.

Activation memory (:func:`inject_activation_faults`): the buffer that holds a quantized layer's
input, as the a-bit codes its activation quantizer produces (unsigned after ReLU: the level index
n = round(L·clamp(x/c_a, 0, 1)), x = c_a·n/L; a signed input, the image entering the first layer, on
the weights' grid and its offset-binary index). Its faulty cells are fixed per element position of
one sample (the buffer holds one input at a time, so every sample meets the same faulty cells), drawn
once per layer at its first faulted forward with the same :func:`bit_fault_words`, and act on every
input: a flipped cell inverts the stored bit, a stuck cell forces it. The fault paper's abstract ties
its faults to "perturbations in the weight values" (its study's faults are in the weight memory);
activation faults are offered for the comparison it does not make.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.robustness._random import derived_seed, make_generator
from analogsam.robustness.perturbations import BIT_FAULT_KINDS, bit_fault_words, check_bit_positions
from analogsam.validation import check_choice, check_real

from .liq import quantized_layers, weight_codes, weights_from_codes

__all__ = [
    "CODE_ENCODINGS",
    "BIT_FAULT_KINDS",
    "encode_codes",
    "decode_words",
    "inject_code_faults",
    "code_faulted_copy",
    "FAULT_LOCATIONS",
    "ActivationFaults",
    "inject_activation_faults",
    "activation_faulted_copy",
    "faulted_copy",
]

#: Where a quantized network's memory faults can be: its weight memory or its activation memory.
FAULT_LOCATIONS = ("weight", "activation")

#: How a k-bit weight code is stored as a word of bits.
CODE_ENCODINGS = ("offset-binary", "twos-complement", "sign-magnitude")


def encode_codes(codes: torch.Tensor, bits: int, encoding: str = "offset-binary") -> torch.Tensor:
    """Level indices n in [0, 2^k − 1] to the k-bit words the memory stores (int64)."""
    check_choice("encoding", encoding, CODE_ENCODINGS)
    if encoding == "offset-binary":
        return codes.clone()
    if encoding == "twos-complement":
        return codes ^ (1 << (bits - 1))
    odd = 2 * codes - (2**bits - 1)  # the signed odd multiple of c_w/L
    return torch.where(odd < 0, 1 << (bits - 1), 0) | ((odd.abs() - 1) // 2)


def decode_words(words: torch.Tensor, bits: int, encoding: str = "offset-binary") -> torch.Tensor:
    """The inverse of :func:`encode_codes` for every k-bit word (each decodes to a valid level)."""
    check_choice("encoding", encoding, CODE_ENCODINGS)
    if encoding == "offset-binary":
        return words.clone()
    if encoding == "twos-complement":
        return words ^ (1 << (bits - 1))
    magnitude = 2 * (words & ((1 << (bits - 1)) - 1)) + 1
    odd = torch.where(words >> (bits - 1) == 1, -magnitude, magnitude)
    return (odd + 2**bits - 1) // 2


@torch.no_grad()
def _ready_quantized_layers(model: nn.Module, caller: str, hint: str, *, sep: str = ";") -> list:
    """``model``'s quantized layers, raising for a model without any or whose clips are not yet set."""
    layers = quantized_layers(model)
    if not layers:
        raise InvalidParameterError(
            f"{caller} needs a quantized model (analogsam.quantization.quantize_model, or train with "
            f"--quantize wKaK){sep} {hint}"
        )
    if not all(bool(layer.clips_initialized) for _, layer in layers):
        raise InvalidParameterError(
            f"{caller}: the quantizers' clips are set at the first forward; run the model on a batch "
            "(or load a trained checkpoint) before injecting faults"
        )
    return layers


def inject_code_faults(
    model: nn.Module,
    rate: float,
    *,
    kind: str = "bit-flip",
    encoding: str = "offset-binary",
    positions=None,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> dict:
    """Faults in the weight memory of ``model``'s quantized layers, **in place**; returns the counts.

    Every bit cell of every stored weight word is faulty with probability ``rate`` (``kind``: one of
    ``"bit-flip"``, ``"stuck-at-0"``, ``"stuck-at-1"``, ``"stuck-at"`` (0 or 1 with equal odds)),
    optionally only at bit ``positions`` (0 = least significant). The faulted words are decoded and
    written back as latent weights on the quantization grid, so the model's forward uses exactly the
    faulted codes. Returns ``{"n_weights", "n_bits", "n_faulty", "n_changed_weights", "fraction_faulty"}``.
    """
    rate = check_real("rate", rate, 0.0, 1.0)
    check_choice("kind", kind, BIT_FAULT_KINDS)
    check_choice("encoding", encoding, CODE_ENCODINGS)
    layers = _ready_quantized_layers(
        model,
        "inject_code_faults",
        "for a full-precision one use analogsam.robustness.inject_bit_flips",
    )
    generator = make_generator(seed, generator)
    counts = {"n_weights": 0, "n_bits": 0, "n_faulty": 0, "n_changed_weights": 0}
    for _, layer in layers:
        bits = layer.weight_bits
        where = check_bit_positions(positions, bits)
        codes = layer.codes()
        words, n_faulty = bit_fault_words(
            encode_codes(codes, bits, encoding), bits, rate, generator, kind=kind, positions=where
        )
        faulted = decode_words(words, bits, encoding)
        layer.set_codes(faulted)
        counts["n_weights"] += codes.numel()
        counts["n_bits"] += codes.numel() * bits
        counts["n_faulty"] += n_faulty
        counts["n_changed_weights"] += int((faulted != codes).sum())
    counts["fraction_faulty"] = counts["n_faulty"] / counts["n_bits"]
    return counts


def code_faulted_copy(model: nn.Module, rate: float, **kwargs) -> nn.Module:
    """A deep copy of ``model`` with :func:`inject_code_faults` (same arguments); ``model`` is untouched."""
    faulted = copy.deepcopy(model)
    inject_code_faults(faulted, rate, **kwargs)
    return faulted


# -- activation memory ------------------------------------------------------------------------------------


class ActivationFaults:
    """The faulty cells of one layer's activation memory, applied to its input codes (a forward pre-hook).

    Per bit cell of every a-bit word of one sample's input: ``stuck`` (forced to ``value``) or
    ``flipped``. They are drawn at the first call, when the input's shape is known, from ``seed``:
    the same draws as :func:`bit_fault_words` on words of that shape (its result on all-zero and
    on all-one words tells, per bit, flipped / stuck at 0 / stuck at 1 / intact)."""

    def __init__(self, rate: float, kind: str, bits: int, signed: bool, positions, seed: int):
        self.rate, self.kind, self.bits, self.signed, self.positions, self.seed = (
            rate,
            kind,
            bits,
            signed,
            positions,
            seed,
        )
        self.masks: tuple[torch.Tensor, torch.Tensor] | None = None
        self.n_faulty = 0

    def _draw(self, shape: torch.Size) -> None:
        full = (1 << self.bits) - 1
        zeros = torch.zeros(shape, dtype=torch.int64)
        on_zeros, self.n_faulty = bit_fault_words(
            zeros, self.bits, self.rate, make_generator(self.seed), kind=self.kind, positions=self.positions
        )
        on_ones, _ = bit_fault_words(
            zeros + full, self.bits, self.rate, make_generator(self.seed), kind=self.kind, positions=self.positions
        )
        self.masks = (on_zeros, on_ones)

    def codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Stored codes (int64, any batch) as the faulty memory returns them."""
        if self.masks is None:
            self._draw(codes.shape[1:])
        if self.masks[0].device != codes.device:  # moved once, not at every forward
            self.masks = tuple(m.to(codes.device) for m in self.masks)
        f0, f1 = self.masks
        full = (1 << self.bits) - 1
        # per bit: f0=0,f1=1 intact; f0=1,f1=0 flipped; f0=f1=1 stuck at 1; f0=f1=0 stuck at 0
        return ((codes & f1 & ~f0) | (~codes & f0 & ~f1) | (f0 & f1)) & full

    @torch.no_grad()
    def __call__(self, layer, inputs):
        (x,) = inputs
        clip = layer.activation_clip.detach().abs()
        levels = 2**self.bits - 1
        if self.signed:
            return (weights_from_codes(self.codes(weight_codes(x, self.bits, clip)), self.bits, clip).to(x.dtype),)
        codes = torch.round(torch.clamp(x.double() / float(clip), 0.0, 1.0) * levels).to(torch.int64)
        return ((self.codes(codes).double() / levels * float(clip)).to(x.dtype),)


@torch.no_grad()
def inject_activation_faults(
    model: nn.Module,
    rate: float,
    *,
    kind: str = "bit-flip",
    positions=None,
    layers=None,
    seed: int = 0,
) -> dict:
    """Faults in the activation memory of ``model``'s quantized layers, **in place** (module docstring).

    Every bit cell of the a-bit input buffer of every quantized layer (or of the layers named in
    ``layers``) is faulty with probability ``rate``; ``kind`` and ``positions`` as
    :func:`inject_code_faults`; layer i's cells are drawn from ``derived_seed(seed, i)``. The faults act
    from the next forward on, on the codes of every input: a faulted value is again on the layer's
    activation grid, so its quantizer passes it unchanged. Returns ``{"layers": [names]}``; each
    layer's :class:`ActivationFaults` (its ``n_faulty`` cells once drawn) is in its ``activation_faults``."""
    rate = check_real("rate", rate, 0.0, 1.0)
    check_choice("kind", kind, BIT_FAULT_KINDS)
    found = _ready_quantized_layers(
        model,
        "inject_activation_faults",
        "its activation memory holds the quantized layers' input codes",
        sep=":",
    )
    if layers is not None:
        unknown = set(layers) - {n for n, _ in found}
        if unknown:
            raise InvalidParameterError(
                f"inject_activation_faults: layers {sorted(unknown)} are not quantized layers of the model; "
                f"choose from {[n for n, _ in found]}"
            )
    faulted = []
    for i, (name, layer) in enumerate(found):
        if layers is not None and name not in layers:
            continue
        if getattr(layer, "activation_faults", None) is not None:
            raise InvalidParameterError(f"inject_activation_faults: layer {name!r} has activation faults already")
        bits = layer.activation_bits
        faults = ActivationFaults(
            rate, kind, bits, bool(layer.activation_signed), check_bit_positions(positions, bits), derived_seed(seed, i)
        )
        layer.activation_faults = faults
        layer.register_forward_pre_hook(faults)
        faulted.append(name)
    return {"layers": faulted}


def activation_faulted_copy(model: nn.Module, rate: float, **kwargs) -> nn.Module:
    """A deep copy of ``model`` with :func:`inject_activation_faults` (same arguments); ``model`` is untouched."""
    faulted = copy.deepcopy(model)
    inject_activation_faults(faulted, rate, **kwargs)
    return faulted


def faulted_copy(model: nn.Module, rate: float, *, location: str = "weight", kind: str = "bit-flip", seed: int = 0,
                 encoding: str = "offset-binary", positions=None) -> nn.Module:  # fmt: skip
    """A copy of ``model`` with faults in its weight memory (:func:`code_faulted_copy`, in ``encoding``)
    or its activation memory (:func:`activation_faulted_copy`, unsigned codes / offset binary)."""
    check_choice("location", location, FAULT_LOCATIONS)
    if location == "weight":
        return code_faulted_copy(model, rate, kind=kind, encoding=encoding, positions=positions, seed=seed)
    return activation_faulted_copy(model, rate, kind=kind, positions=positions, seed=seed)
