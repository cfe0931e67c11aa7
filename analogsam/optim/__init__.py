"""Sharpness-aware and noise-robust optimizers, each usable three ways.

As torch optimizers (davda54/sam convention): :class:`SAM`, :class:`ASAM`, :class:`SAMSON` wrap a base
optimizer class and expose ``first_step()``/``second_step()``/``step(closure)`` and ``.base_optimizer``.

As training methods, one name each (:data:`OPTIMIZER_NAMES`), called uniformly by the training loop::

    method = build_method("samson", model, lr=0.05, rho=0.2, epochs=10, num_samples=60000, num_classes=10)
    for epoch in range(10):
        method.begin_epoch(epoch)
        for x, y, idx in batches:
            loss, logits = method.train_step(x, y, idx)
        method.end_epoch(epoch)

Every method's hyperparameters (and the common training settings) are declared once, as data, in
:mod:`analogsam.optim.hyperparameters` (:data:`METHODS`, :data:`TRAINING_SETTINGS`): default, type,
allowed range, unit and meaning; the validation, the command-line flags (:func:`add_optimizer_arguments`,
:func:`method_kwargs_from_args`) and the README's table are generated from them.

=============  ========================================================  ===================================
name           method                                                    paper
=============  ========================================================  ===================================
sgd, adamw     the base optimizer alone
sam            two-pass, ε = ρ g/‖g‖                                     Foret et al. 2021, 2010.01412
asam           two-pass, ε scaled by |w| + η                             Kwon et al. 2021, 2102.11600
samson         two-pass, ε scaled by (|w| + η)/‖w‖_p                     Mordido et al. 2022, 2211.11561
adversarial    KL to outputs at a PGA attack within θ ± ζ|θ|             Büchel et al. 2022, 2106.05009
saf            KL to the sample's logits from Ẽ epochs ago               Du et al. 2022, 2205.14083
mesa           KL to an EMA model's outputs                              Du et al. 2022, 2205.14083
noise          forward/backward at Gaussian-noisy weights                Rasch et al. 2023, 2302.08469
rwp            α L(w + ε) + (1 − α) L(w), filter-wise random ε           Li et al. 2022, 2211.11489
saq            two-pass, ε = ρ g/‖g‖ added to Q(w) after quantization    Liu et al. 2021, 2111.12273
=============  ========================================================  ===================================

Every method raises :class:`NonFiniteError` (a ``FloatingPointError``) naming the step when a loss or
gradient is NaN/inf, before writing any weight; every extra pass at perturbed weights leaves BatchNorm
running statistics alone (:func:`frozen_batchnorm_stats`).
"""

from ._common import (
    NonFiniteError,
    adaptive_param_groups,
    frozen_batchnorm_stats,
    kl_div_logits,
    non_norm_parameters,
    weight_parameters,
)
from .adversarial import AdversarialMethod, AttackResult, parameter_attack
from .base import StandardMethod, TrainingMethod
from .device_sam import DeviceSAM
from .hyperparameters import METHODS, OPTIMIZER_NAMES, TRAINING_SETTINGS, Hyperparameter, MethodSpec
from .methods import (
    HyperparameterError,
    add_optimizer_arguments,
    build_method,
    hyperparameter_defaults,
    method_kwargs_from_args,
    resolve_hyperparameters,
)
from .noise import NoiseInjectionMethod, RWPMethod, filter_wise_noise, injection_noise
from .saf import MESAMethod, SAFMethod
from .saq import SAQ, SAQMethod
from .two_pass import ASAM, SAM, SAMSON, SharpnessAwareMethod

__all__ = [
    "ASAM",
    "SAM",
    "SAMSON",
    "NonFiniteError",
    "OPTIMIZER_NAMES",
    "TrainingMethod",
    "build_method",
    "add_optimizer_arguments",
    "method_kwargs_from_args",
    "hyperparameter_defaults",
    "HyperparameterError",
    "resolve_hyperparameters",
    "METHODS",
    "TRAINING_SETTINGS",
    "Hyperparameter",
    "MethodSpec",
    "frozen_batchnorm_stats",
    "adaptive_param_groups",
    "weight_parameters",
    "non_norm_parameters",
    "kl_div_logits",
    "parameter_attack",
    "AttackResult",
    "injection_noise",
    "filter_wise_noise",
    "StandardMethod",
    "SharpnessAwareMethod",
    "AdversarialMethod",
    "SAFMethod",
    "MESAMethod",
    "NoiseInjectionMethod",
    "RWPMethod",
    "SAQ",
    "SAQMethod",
    "DeviceSAM",
]
