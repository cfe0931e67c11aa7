"""Parameter roles: which layers go onto analog tiles, which stay digital, which tensors are crossbar weights.

The one answer to these questions for the whole package: the optimizers (which tensors ASAM and
SAMSON scale, which ones noise injection and the adversarial attack perturb), the robustness probes
(which tensors the adaptive-sharpness metric scales, which ones weight noise and faults hit) and the
conversion to aihwkit (which layers become tiles, which may stay digital) all read it from here.

- **Convertible layers** (:data:`CONVERTIBLE_LAYERS`): ``Linear`` and ``Conv1d/2d/3d``, the layer
  types aihwkit 1.1.0's ``convert_to_analog`` maps onto analog tiles.
- **Rewritten layers** (:data:`REWRITTEN_WEIGHTS`): ``MultiheadAttention`` and the recurrent layers
  (``LSTM``, ``GRU``, ``RNN``), whose weight matrices ``analogsam.hardware.mapping`` moves into
  ``Linear`` children before conversion (attention's Q, K, V and output projections; every gate's
  input and hidden matrices and the LSTM projection).
- **Digital by design** (:data:`DIGITAL_LAYERS`): normalisation layers (:data:`NORM_LAYERS`) and
  ``PReLU``, whose parameters the digital periphery of an analog accelerator applies, and the lookup
  tables ``Embedding`` / ``EmbeddingBag`` (:data:`LOOKUP_LAYERS`: a row read from memory, not a
  matrix-vector product). Any other layer that holds parameters is neither: ``convert`` judges its
  parameters by use on a sample batch (:mod:`analogsam.hardware.usage`), keeps those used
  element-wise digital, and refuses the layer by name otherwise.
- **Crossbar weights** (:func:`crossbar_weights`): the ``weight`` with more than one dimension of
  every layer that is not digital by design, and the named matrices of the rewritten layers
  (``in_proj_weight`` or ``q/k/v_proj_weight``; ``weight_ih_l*``, ``weight_hh_l*``, ``weight_hr_l*``);
  in a model that ``convert`` accepts, exactly the matrices on analog tiles (layers kept digital
  knowingly with ``allow_digital`` aside). Biases are not (aihwkit 1.1.0 keeps them digital,
  ``mapping.digital_bias = True``), nor are BatchNorm's γ, β, attention's ``bias_k``/``bias_v`` or
  an embedding table.

**The scope of the adaptive scaling.** Two conventions exist for which tensors ASAM's T = |w| + η
scales, and :func:`adaptive_param_groups` / :func:`adaptive_scales` take either as ``scope``:
``"weights"`` (the default, today's behaviour) scales the crossbar weights and gives every other
tensor T = 1, so it is still perturbed, by ρ·g/‖T⊙g‖, as the ASAM authors' code (SamsungLabs/ASAM,
``'weight' in name``) does; ``"all"`` scales every trainable parameter, biases and normalisation
parameters too, as davda54/sam's ``SAM(adaptive=True)`` and ``pytorch_optimizer.SAM(adaptive=True)``
do (both with η = 0; here η stays the ``eta`` hyperparameter). With weights at |w| ≈ 0.05 and biases
at T = 1, ‖T⊙g‖ under ``"weights"`` is dominated by the bias gradients, so the ascent step moves mostly
the (digital) biases: the two scopes train measurably different networks (issue 15).

**The BatchNorm γ decision.** ASAM's T = |w| + η (Kwon et al., ICML 2021, arXiv 2102.11600) is
applied by the authors' code (SamsungLabs/ASAM) to every parameter whose name contains ``weight``,
BatchNorm's γ included; davda54/sam's ASAM scales every parameter. analogsam scales the crossbar
weights only, in the optimizers *and* in the adaptive-sharpness metric: they are what the hardware
programs and perturbs, while γ stays digital and sees no device noise. One function,
:func:`adaptive_scales`, gives the metric its T, and :func:`adaptive_param_groups` (built on the same
:func:`crossbar_weights`) tells the optimizers which tensors to scale, so on a network with BatchNorm
(ResNet-20) the metric measures the quantity ASAM minimises. (Until this module existed the metric
scaled every tensor named ``weight``; the two rules agree on networks whose only tensors named
``weight`` are Linear/Conv weights, such as the MLP and LeNet-5 of the pinned numbers.)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from analogsam.errors import InvalidParameterError
from analogsam.validation import check_choice

#: Layer types aihwkit's ``convert_to_analog`` maps onto analog tiles.
CONVERTIBLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

#: Normalisation layers: digital on an analog accelerator, so their parameters are neither mapped to
#: conductances nor perturbed by an attack, weight noise or the adaptive scaling.
NORM_LAYERS = (_NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)

#: Lookup tables: a stored row is read out, no matrix-vector product happens, so they stay digital.
LOOKUP_LAYERS = (nn.Embedding, nn.EmbeddingBag)

#: Layers with parameters that legitimately stay digital (applied by the periphery): normalisation,
#: PReLU and lookup tables.
DIGITAL_LAYERS = NORM_LAYERS + (nn.PReLU,) + LOOKUP_LAYERS

#: Layers that ``analogsam.hardware.mapping`` rewrites onto Linear tiles, and the name prefixes of
#: their parameters that become those tiles' weights (everything else they hold stays digital).
REWRITTEN_WEIGHTS = (
    (nn.MultiheadAttention, ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")),
    (nn.RNNBase, ("weight_ih_l", "weight_hh_l", "weight_hr_l")),
)

#: What a probe may perturb: ``"all"`` trainable parameters or the crossbar ``"weights"``.
PARAMETER_SETS = ("all", "weights")

#: Which tensors ASAM's T = |w| + η scales: the crossbar ``"weights"`` (T = 1 for the rest) or
#: ``"all"`` trainable parameters; the choices of the ``scope`` hyperparameter
#: (:data:`analogsam.optim.hyperparameters.ADAPTIVE_SCOPES`, which this layer cannot import).
ADAPTIVE_SCOPES = ("weights", "all")


def is_convertible(module: nn.Module) -> bool:
    return isinstance(module, CONVERTIBLE_LAYERS)


def is_norm_layer(module: nn.Module) -> bool:
    return isinstance(module, NORM_LAYERS)


def is_digital_by_design(module: nn.Module) -> bool:
    return isinstance(module, DIGITAL_LAYERS)


def _unique(named: Iterable[tuple[str, nn.Parameter]], *, trainable: bool) -> list[tuple[str, nn.Parameter]]:
    """``named`` without repeats of a shared tensor (and, if ``trainable``, without frozen ones)."""
    seen, out = set(), []
    for name, p in named:
        if (p.requires_grad or not trainable) and id(p) not in seen:
            seen.add(id(p))
            out.append((name, p))
    return out


def is_crossbar_weight(module: nn.Module, name: str, p: torch.Tensor) -> bool:
    """Whether ``module``'s own parameter ``name`` is a matrix on analog tiles (see the module docstring)."""
    if is_digital_by_design(module):
        return False
    for layer_types, prefixes in REWRITTEN_WEIGHTS:
        if isinstance(module, layer_types):
            return name.startswith(prefixes)
    return name == "weight" and p.dim() > 1


def _own_parameters(model: nn.Module, keep) -> list[tuple[str, nn.Parameter]]:
    """``(full name, parameter)`` of the parameters for which ``keep(module, name, p)``, in module order."""
    found = []
    for module_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if keep(module, p_name, p):
                found.append((f"{module_name}.{p_name}" if module_name else p_name, p))
    return found


def crossbar_weights(model: nn.Module, *, trainable: bool = True) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the crossbar weights (:func:`is_crossbar_weight`): the ``weight``
    (dim > 1) of every layer that is not digital by design and the weight matrices of attention and
    recurrent layers, in module order. ``trainable=False`` keeps frozen ones too (they still sit on a
    tile, so faults and weight noise reach them)."""
    return _unique(_own_parameters(model, is_crossbar_weight), trainable=trainable)


def non_norm_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every trainable parameter outside normalisation layers (weights and biases)."""
    return _unique(_own_parameters(model, lambda module, name, p: not is_norm_layer(module)), trainable=True)


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every parameter with ``requires_grad``: the Θ of SAM, ASAM and Büchel et al."""
    return _unique(model.named_parameters(), trainable=True)


def select_parameters(model: nn.Module, parameters: str = "all") -> list[tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` pairs a probe perturbs.

    ``"all"``: every trainable parameter (:func:`trainable_parameters`). ``"weights"``: the crossbar
    weights, frozen ones included (:func:`crossbar_weights`); biases, normalisation layers and other
    digital parameters are left out.
    """
    check_choice("parameters", parameters, PARAMETER_SETS)
    named = trainable_parameters(model) if parameters == "all" else crossbar_weights(model, trainable=False)
    if not named:
        hint = " (pass parameters='all')" if parameters == "weights" else ""
        raise InvalidParameterError(f"the model has no parameters to perturb for parameters={parameters!r}{hint}")
    return named


def check_scope(scope: str) -> str:
    """``scope`` if it is one of :data:`ADAPTIVE_SCOPES`, else :class:`InvalidParameterError`."""
    return check_choice("scope", scope, ADAPTIVE_SCOPES)


def adaptive_param_groups(model: nn.Module, scope: str = "weights") -> list[dict]:
    """Param groups for ASAM/SAMSON. ``scope="weights"``: two groups, the crossbar weights
    (``adaptive=True``, scaled by T_w) and everything else (biases, normalisation parameters:
    ``adaptive=False``, T = 1). ``scope="all"``: one group, every trainable parameter ``adaptive=True``."""
    all_params = [p for _, p in trainable_parameters(model)]
    if check_scope(scope) == "all":
        return [{"params": all_params, "adaptive": True}] if all_params else []
    weights = {id(p) for _, p in crossbar_weights(model)}
    groups = [
        {"params": [p for p in all_params if id(p) in weights], "adaptive": True},
        {"params": [p for p in all_params if id(p) not in weights], "adaptive": False},
    ]
    return [g for g in groups if g["params"]]


@torch.no_grad()
def adaptive_scales(
    model: nn.Module, params: Iterable[torch.Tensor], eta: float, scope: str = "weights"
) -> list[torch.Tensor]:
    """ASAM's T for each of ``params``: |w| + η for a crossbar weight of ``model``, 1 for anything else
    (``scope="weights"``), or |w| + η for every tensor (``scope="all"``): the rule of
    :func:`adaptive_param_groups` for the same scope (see the module docstring for BatchNorm's γ)."""
    if check_scope(scope) == "all":
        return [p.detach().abs() + eta for p in params]
    weights = {id(p) for _, p in crossbar_weights(model, trainable=False)}
    return [p.detach().abs() + eta if id(p) in weights else torch.ones_like(p) for p in params]
