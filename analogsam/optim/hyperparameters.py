"""Every training setting and method hyperparameter as data: name, type, default, allowed values, unit.

Like the preset knobs of :mod:`analogsam.hardware.presets.schema`, the declarations here are the one
place a default or a range is written. From them come

- validation: :meth:`Hyperparameter.check`, used by :func:`analogsam.optim.build_method`,
  :func:`analogsam.train` and the torch optimizers ``SAM``/``ASAM``/``SAMSON``;
- the defaults: :func:`analogsam.optim.hyperparameter_defaults`, ``train()``'s signature;
- the command-line flags and their ``--help`` text: :func:`add_flag`;
- the README's optimizer table: :func:`optimizer_table_markdown`.

A default of ``None`` is resolved per run (e.g. SAF's start epoch from the run's length) and its
``default_text`` says how; ``None`` passed for a hyperparameter means "the default".

This module is plain data and imports neither torch nor a method, so every layer may read it.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from typing import Any

from analogsam.validation import Boolean, Constraint, Interval, Options, Text, check


@dataclass(frozen=True)
class Hyperparameter:
    """One setting: its constraint (:mod:`analogsam.validation`), default, unit and meaning.

    ``None`` passed for a setting whose default is ``None`` means "the default" (resolved later).
    """

    name: str
    constraint: Constraint
    default: Any
    meaning: str
    unit: str = ""
    symbol: str = ""  # the paper's symbol, for the README table
    default_text: str = ""  # how a None default is resolved
    metavar: str | None = None
    flag: str | None = None  # the command-line option, if not --name-with-dashes

    @property
    def type(self) -> type:
        return self.constraint.type

    @property
    def choices(self) -> tuple | None:
        return self.constraint.values if isinstance(self.constraint, Options) else None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def with_default(self, default: Any) -> Hyperparameter:
        """The same setting with another default (e.g. ρ per method)."""
        return replace(self, default=default)

    def allowed(self) -> str:
        """The allowed values in words, for errors, ``--help`` and the README."""
        return self.constraint.describe()

    def default_in_words(self) -> str:
        if self.default is None:
            return self.default_text or "none"
        if self.type is bool:
            return "on" if self.default else "off"
        return _number(self.default) if isinstance(self.default, (int, float)) else str(self.default)

    def check(self, value: Any, owner: str = "") -> Any:
        """``value`` in its canonical type, or :class:`~analogsam.errors.InvalidParameterError` naming this setting
        (:func:`analogsam.validation.check`). ``None`` passes only where the default is ``None``."""
        if value is None and self.default is None:
            return None
        return check(f"{self.name} of {owner}" if owner else self.name, value, self.constraint)


def _number(value: float) -> str:
    return "inf" if value == math.inf else f"{value:g}"


def _float(
    name, default, meaning, unit="", *, low=0.0, high=None, low_open=False, high_open=False, infinite=False, **kw
) -> Hyperparameter:
    bounds = Interval(float, low, high, low_open, high_open, infinite)
    return Hyperparameter(name, bounds, default, meaning, unit, **kw)


def _int(name, default, meaning, unit="", *, low=1, **kw) -> Hyperparameter:
    return Hyperparameter(name, Interval(int, low), default, meaning, unit, **kw)


def _choice(name, default, meaning, choices, **kw) -> Hyperparameter:
    return Hyperparameter(name, Options(tuple(choices)), default, meaning, **kw)


def _switch(name, default, meaning, **kw) -> Hyperparameter:
    return Hyperparameter(name, Boolean(), default, meaning, **kw)


def _epoch(name, default_text, meaning, *, low=0) -> Hyperparameter:
    return _int(name, None, meaning, "0-based epoch", low=low, default_text=default_text, metavar="EPOCH")


# -- the base optimizer and the training loop ---------------------------------------------------------

# 0.1 (the CIFAR ResNet value) made LeNet-5 on Fashion-MNIST collapse to chance with momentum 0.9;
# 0.05 trains it reliably (measured).
DEFAULT_LR = {"sgd": 0.05, "adamw": 1e-3}
BASE_OPTIMIZERS = tuple(DEFAULT_LR)
SCHEDULES = ("cosine", "constant")

#: The settings of the training loop that every method shares, by name. :meta hide-value:
TRAINING_SETTINGS: dict[str, Hyperparameter] = {
    hp.name: hp
    for hp in (
        _float(
            "lr",
            None,
            "base learning rate (the start of the cosine schedule)",
            "per step",
            low_open=True,
            default_text="0.05 with sgd, 0.001 with adamw",
            metavar="LR",
        ),
        _float("momentum", 0.9, "SGD momentum, or AdamW's β₁", high=1.0, high_open=True, metavar="M"),
        _float(
            "weight_decay",
            5e-4,
            "L2 weight decay (SGD) or decoupled weight decay (AdamW) coefficient",
            "per step, times lr",
            metavar="WD",
        ),
        _choice(
            "base",
            None,
            "base optimizer that every method but sgd/adamw steps with",
            BASE_OPTIMIZERS,
            default_text="sgd",
            flag="--base-optimizer",
        ),
        _int("epochs", 10, "passes over the training split", "epochs", metavar="N"),
        _int("batch_size", 128, "samples per training step", "samples", metavar="N"),
        _choice(
            "schedule",
            "cosine",
            "learning-rate schedule over all steps: cosine annealing to 0, or constant",
            SCHEDULES,
        ),
        _int(
            "seed",
            0,
            "seed of the weight initialisation, the batch order and the optimizer's own randomness",
            low=0,
            metavar="SEED",
        ),
    )
}


# -- each method's own hyperparameters ---------------------------------------------------------------

RHO = _float(
    "rho",
    0.05,
    "neighbourhood radius ρ: the L2 norm of the perturbation in the (scaled) weight space",
    "dimensionless",
    symbol="ρ",
    metavar="RHO",
)
ETA = _float("eta", 0.01, "offset η in T_w = |w| + η", "weight units", symbol="η", metavar="ETA")
#: Which tensors ASAM's and SAMSON's T scales (``"weights"``: the crossbar weights, T = 1 elsewhere;
#: ``"all"``: every trainable parameter). See :mod:`analogsam.optim.two_pass` for the two sources.
#: The default stays ``"weights"``, chosen from the robustness study (docs/robustness-study/report.md:
#: LeNet-5 / Fashion-MNIST, 3 training seeds x 10 programmings): drop from digital accuracy on PCM at
#: 1 y -1.38 +- 0.37 pp (weights) against -1.65 +- 0.49 (all), on RRAM at 1 d -1.99 +- 0.70 against
#: -2.31 +- 0.99: the intervals overlap, so "all" is not better and the authors' convention is kept
#: (a single-seed run had suggested the opposite, -2.07 against -1.22).
ADAPTIVE_SCOPES = ("weights", "all")
SCOPE = _choice(
    "scope",
    "weights",
    "which tensors T scales: 'weights' the layer (crossbar) weights "
    "only, T = 1 for biases and normalisation parameters (the ASAM authors' code, "
    "SamsungLabs/ASAM); 'all' every parameter, biases too (davda54/sam, pytorch_optimizer)",
    ADAPTIVE_SCOPES,
)
NORM_ORDER = _float(
    "p",
    "inf",
    "norm order p of the per-layer normalisation ‖w‖_p: inf (the layer's max |w|) or 2",
    low=1.0,
    infinite=True,
    symbol="p",
    metavar="P",
)


DEVICE_PRESET = Hyperparameter(
    "device_preset",
    Text(),
    "pcm",
    "the device preset (a name from `analogsam presets list` or a TOML path) whose programming noise, "
    "drift and read noise shape the neighbourhood T_w = σ_device(w)",
    metavar="PRESET",
)
DEVICE_TIME = _float(
    "device_time",
    86400.0,
    "time after programming at which σ_device is taken (rram-wan2022: 1, 86400 or 172800 only)",
    "s",
    symbol="t",
    low_open=True,
    metavar="SECONDS",
)


@dataclass(frozen=True)
class MethodSpec:
    """A training method: its name, what it does, its paper and its own hyperparameters."""

    name: str
    summary: str
    paper: str
    hyperparameters: tuple[Hyperparameter, ...] = ()

    def __getitem__(self, name: str) -> Hyperparameter:
        return next(hp for hp in self.hyperparameters if hp.name == name)

    def defaults(self) -> dict[str, Any]:
        return {hp.name: hp.default for hp in self.hyperparameters}


#: Every training method and its hyperparameters, by name. :meta hide-value:
METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("sgd", "SGD with momentum alone", "", ()),
        MethodSpec("adamw", "AdamW alone (decoupled weight decay)", "Loshchilov & Hutter, ICLR 2019, arXiv 1711.05101"),
        MethodSpec("sam", "two-pass, ε = ρ g/‖g‖", "Foret et al., ICLR 2021, arXiv 2010.01412", (RHO,)),
        MethodSpec(
            "asam",
            "two-pass, ε = ρ T²g/‖Tg‖, T = \\|w\\| + η on layer weights (`--scope all`: on every parameter)",
            "Kwon et al., ICML 2021, arXiv 2102.11600",
            (RHO.with_default(0.5), ETA, SCOPE),
        ),
        MethodSpec(
            "samson",
            "ASAM with T normalised by the layer's ‖w‖_p",
            "Mordido et al. 2022, arXiv 2211.11561",
            (RHO.with_default(0.2), ETA, NORM_ORDER, SCOPE),
        ),
        MethodSpec(
            "adversarial",
            "task loss + β·KL to the outputs at a sign-gradient attack within θ ± ζ\\|θ\\|",
            "Büchel et al., ICLR 2022, arXiv 2106.05009",
            (
                _float(
                    "beta",
                    0.25,
                    "weight β of the KL robustness term (0: the base optimizer)",
                    symbol="β",
                    metavar="BETA",
                ),
                _float(
                    "zeta_attack",
                    0.1,
                    "attack budget ζ: the attack stays in θ ± ζ·|θ|",
                    "relative to |θ|",
                    symbol="ζ",
                    metavar="ZETA",
                ),
                _int(
                    "attack_steps",
                    10,
                    "number N of sign-gradient ascent steps; a step costs about N+2 forward/backward passes",
                    "steps",
                    symbol="N",
                    metavar="N",
                ),
                _float(
                    "zeta_init",
                    0.001,
                    "std of the attack's random start",
                    "relative to |θ|",
                    symbol="ζ_init",
                    metavar="ZETA",
                ),
                _choice(
                    "attack_gradient",
                    "through",
                    "'through' differentiates the KL through "
                    "the attack (dθ*/dθ = 1 + sign(θ)c, paper); 'constant' treats θ* as a constant, "
                    "one backward cheaper",
                    ("through", "constant"),
                ),
                _float(
                    "zeta_forward",
                    0.0,
                    "std of the multiplicative weight noise in the task-loss forward (0: off)",
                    "relative to |θ|",
                    symbol="ζ_fwd",
                    metavar="ZETA",
                ),
            ),
        ),
        MethodSpec(
            "saf",
            "KL to each sample's logits from Ẽ epochs ago",
            "Du et al., NeurIPS 2022, arXiv 2205.14083",
            (
                _float("saf_lambda", 0.3, "weight λ of the KL term to past logits", symbol="λ", metavar="LAMBDA"),
                _float(
                    "saf_tau", 5.0, "softmax temperature τ of the KL term", symbol="τ", low_open=True, metavar="TAU"
                ),
                _int(
                    "saf_history",
                    3,
                    "Ẽ, how many epochs back the reference logits are; the buffer "
                    "holds num_samples × num_classes × (Ẽ+1) float32",
                    "epochs",
                    symbol="Ẽ",
                    metavar="EPOCHS",
                ),
                _epoch(
                    "saf_start",
                    "30% of the epochs, at least saf_history; 5 if the run length is unknown",
                    "first epoch with the KL term",
                ),
                _epoch("saf_end", "never", "epoch from which the KL term is off again", low=1),
            ),
        ),
        MethodSpec(
            "mesa",
            "KL to the outputs of an EMA of the weights",
            "Du et al., NeurIPS 2022, arXiv 2205.14083",
            (
                _float("mesa_lambda", 0.8, "weight λ of the KL term to the EMA model", symbol="λ", metavar="LAMBDA"),
                _float(
                    "mesa_tau", 5.0, "softmax temperature τ of the KL term", symbol="τ", low_open=True, metavar="TAU"
                ),
                _float(
                    "mesa_decay",
                    0.9998,
                    "decay of the exponential moving average of the weights",
                    "per step",
                    symbol="decay",
                    high=1.0,
                    high_open=True,
                    metavar="DECAY",
                ),
                _epoch(
                    "mesa_start", "30% of the epochs; 5 if the run length is unknown", "first epoch with the KL term"
                ),
                _epoch("mesa_end", "never", "epoch from which the KL term is off again", low=1),
                _switch(
                    "mesa_ema_warmup",
                    True,
                    "warm the EMA decay up as min(decay, (1+n)/(10+n)) after "
                    "n steps (off: the reference code's plain EMA)",
                    symbol="warm-up",
                ),
            ),
        ),
        MethodSpec(
            "noise",
            "forward/backward at Gaussian-noisy weights (hardware-aware training)",
            "Rasch et al., Nat. Commun. 2023, arXiv 2302.08469",
            (
                _float(
                    "noise_additive",
                    0.0175,
                    "std of the additive Gaussian weight noise",
                    "relative to the layer's max |w|",
                    symbol="σ_add",
                    metavar="SIGMA",
                ),
                _float(
                    "noise_multiplicative",
                    0.0,
                    "std of the multiplicative Gaussian weight noise",
                    "relative to |w|",
                    symbol="σ_mul",
                    metavar="SIGMA",
                ),
            ),
        ),
        MethodSpec(
            "rwp",
            "α L(w + ε) + (1 − α) L(w), filter-wise random ε",
            "Li et al. 2022, arXiv 2211.11489",
            (
                _float(
                    "rwp_gamma",
                    0.01,
                    "per-filter noise std γ",
                    "relative to the filter's L2 norm",
                    symbol="γ",
                    metavar="GAMMA",
                ),
                _float(
                    "rwp_alpha",
                    0.5,
                    "weight α of the perturbed loss in α·L(w+ε) + (1-α)·L(w)",
                    symbol="α",
                    high=1.0,
                    metavar="ALPHA",
                ),
            ),
        ),
        MethodSpec(
            "device-sam",
            "two-pass, ε = ρ T²g/‖Tg‖, T = σ_device(w) of the preset at time t on layer weights, T = 0 on digital ones",
            "device-shaped ASAM (this package; ASAM: Kwon et al., ICML 2021)",
            (RHO.with_default(6.0), DEVICE_PRESET, DEVICE_TIME),
        ),
    )
}

# SAQ (issue 22): added after the others so their order, and the README table's, is unchanged.
METHODS["saq"] = MethodSpec(
    "saq",
    "two-pass, ε = ρ g/‖g‖ added to the quantized weights Q(w) after quantization (`--quantize wKaK`)",
    "Liu, Cai & Zhuang 2021, arXiv 2111.12273",
    (
        RHO.with_default(0.1),
        _switch(
            "saq_norm_layers",
            True,
            "perturb normalisation γ/β too (ziplab/SAQ include_bn)",
            symbol="BN",
        ),
        _switch(
            "saq_activation_clips",
            True,
            "perturb the activation clipping values c_a too (ziplab/SAQ include_aclip)",
            symbol="c_a",
        ),
        _switch(
            "saq_weight_clips",
            False,
            "perturb the weight clipping values c_w too (ziplab/SAQ include_wclip)",
            symbol="c_w",
        ),
    ),
)

#: The training methods' names, in :data:`METHODS` order.
OPTIMIZER_NAMES = tuple(METHODS)


# -- generated: command-line flags and the README table ---------------------------------------------


def _float_argument(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def flag_help(hp: Hyperparameter, *, used_by: str = "", default_text: str | None = None) -> str:
    """``--help`` text: who uses it, meaning, unit, allowed values and default (``%`` escaped)."""
    unit = f"{hp.unit}, " if hp.unit else ""
    text = (
        f"{used_by + ': ' if used_by else ''}{hp.meaning}; {unit}{hp.allowed()} "
        f"(default: {hp.default_in_words() if default_text is None else default_text})"
    )
    return text.replace("%", "%%")


def add_flag(
    group, hp: Hyperparameter, *, default: Any = None, used_by: str = "", default_text: str | None = None
) -> None:
    """Add ``hp`` as a flag to an argparse parser or group; argparse checks the type, the API the range."""
    help_text = flag_help(hp, used_by=used_by, default_text=default_text)
    if hp.type is bool:
        group.add_argument(
            hp.option, dest=hp.name, action=argparse.BooleanOptionalAction, default=default, help=help_text
        )
        return
    kind = {float: _float_argument, int: int, str: str}[hp.type]
    group.add_argument(
        hp.option,
        dest=hp.name,
        type=kind,
        default=default,
        choices=hp.choices,
        metavar=None if hp.choices else hp.metavar,
        help=help_text,
    )


def method_flags() -> list[tuple[Hyperparameter, tuple[str, ...], str]]:
    """One flag per hyperparameter name: (declaration, methods using it, defaults in words)."""
    flags: dict[str, list] = {}
    for spec in METHODS.values():
        for hp in spec.hyperparameters:
            flags.setdefault(hp.name, [hp, [], []])
            flags[hp.name][1].append(spec.name)
            flags[hp.name][2].append(hp.default_in_words())
    result = []
    for hp, users, defaults in flags.values():
        text = defaults[0] if len(set(defaults)) == 1 else ", ".join(f"{d} {u}" for d, u in zip(defaults, users))
        result.append((hp, tuple(users), text))
    return result


def optimizer_table_markdown() -> str:
    """The README's table of training methods: name, method, paper, hyperparameters with defaults."""
    lines = ["| `--optimizer` | method | paper | hyperparameters (default) |", "|---|---|---|---|"]
    for spec in METHODS.values():
        if spec.hyperparameters:
            shown = ", ".join(_table_entry(hp) for hp in spec.hyperparameters)
        else:
            shown = f"`--lr` {DEFAULT_LR[spec.name]:g}"
        lines.append(f"| `{spec.name}` | {spec.summary} | {spec.paper} | {shown} |")
    return "\n".join(lines) + "\n"


def _table_entry(hp: Hyperparameter) -> str:
    default = hp.default_in_words() if hp.default is not None else f"({hp.default_in_words()})"
    return f"{hp.symbol} = {default} (`{hp.option}`)" if hp.symbol else f"`{hp.option}` {default}"
