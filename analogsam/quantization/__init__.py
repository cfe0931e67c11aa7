"""Quantized and activation-sparse networks: LIQ quantization-aware training, the L1 activation-sparsity
penalty and measurement, and memory faults on the integer weight codes.

- :mod:`.liq`: :func:`quantize_model` (``"w4a4"``), the quantized layers, their integer codes, and
  :func:`programmable_copy` (the quantized weights analog tiles are programmed with);
- :mod:`.sparsity`: :class:`ActivationL1` and :class:`ThresholdReLU` (Kurtz et al., ICML 2020) and
  :func:`activation_sparsity`;
- :mod:`.faults`: :func:`inject_code_faults`, bit flips and stuck-at faults in the k-bit weight memory;

Sharpness-aware quantization (SAQ) itself is an optimizer, :class:`analogsam.optim.saq.SAQ`, and the
sharpness it minimises is measured by :func:`analogsam.optim.saq.quantized_sharpness`.
"""

from .faults import (
    BIT_FAULT_KINDS,
    CODE_ENCODINGS,
    FAULT_LOCATIONS,
    ActivationFaults,
    activation_faulted_copy,
    code_faulted_copy,
    decode_words,
    encode_codes,
    faulted_copy,
    inject_activation_faults,
    inject_code_faults,
)
from .liq import (
    ActivationQuantizer,
    QuantizedLayer,
    initialize_clips,
    liq_activation,
    liq_weight,
    parse_quantize,
    programmable_copy,
    quantization_config,
    quantize_model,
    quantized_layers,
    weight_codes,
    weights_from_codes,
)
from .sparsity import (
    ActivationL1,
    ThresholdReLU,
    activation_modules,
    activation_sparsity,
    apply_activation_threshold,
    has_activation_modules,
)

__all__ = [
    "ActivationQuantizer",
    "QuantizedLayer",
    "initialize_clips",
    "liq_activation",
    "liq_weight",
    "parse_quantize",
    "programmable_copy",
    "quantization_config",
    "quantize_model",
    "quantized_layers",
    "weight_codes",
    "weights_from_codes",
    "BIT_FAULT_KINDS",
    "CODE_ENCODINGS",
    "code_faulted_copy",
    "decode_words",
    "encode_codes",
    "inject_code_faults",
    "FAULT_LOCATIONS",
    "ActivationFaults",
    "inject_activation_faults",
    "activation_faulted_copy",
    "faulted_copy",
    "ActivationL1",
    "activation_modules",
    "activation_sparsity",
    "has_activation_modules",
    "ThresholdReLU",
    "apply_activation_threshold",
]
