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
Activation-memory faults are not modelled (the study puts its faults in the weight memory).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.robustness._random import make_generator
from analogsam.robustness.perturbations import BIT_FAULT_KINDS, bit_fault_words, check_bit_positions
from analogsam.validation import check_choice, check_real

from .liq import quantized_layers

__all__ = [
    "CODE_ENCODINGS",
    "BIT_FAULT_KINDS",
    "encode_codes",
    "decode_words",
    "inject_code_faults",
    "code_faulted_copy",
]

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
    layers = quantized_layers(model)
    if not layers:
        raise InvalidParameterError(
            "inject_code_faults needs a quantized model (analogsam.quantization.quantize_model, or train with "
            "--quantize wKaK); for a full-precision one use analogsam.robustness.inject_bit_flips"
        )
    if not all(bool(layer.clips_initialized) for _, layer in layers):
        raise InvalidParameterError(
            "inject_code_faults: the quantizers' clips are set at the first forward; run the model on a batch "
            "(or load a trained checkpoint) before injecting faults"
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
