"""Weight noise and hardware fault injection on a digital model's weights.

Three perturbations of the weights, each with a curve of accuracy against its strength:

- **Gaussian weight noise** (:func:`gaussian_weight_noise`, the package's one draw of it, used by
  :func:`perturb_weights`, :func:`weight_noise`, :func:`weight_noise_curve`, the average-sharpness
  metric and the noise-injection optimizer):
  relative w + |w|·η·N(0, 1), the test protocol of Büchel, Faber & Muir (ICLR 2022,
  arXiv 2106.05009: η ∈ {0.1, …, 0.7}, 100 draws, mean/std/min), or additive
  w + η·max|W_layer|·N(0, 1), noise proportional to each layer's weight range as a device's
  programming noise is to g_max (Joshi et al., Nature Communications 2020).
- **Stuck-at faults** (:func:`inject_stuck_at`): a fraction of the devices stuck at g_max or at 0.
- **Bit flips** (:func:`inject_bit_flips`): memory faults in k-bit quantized weights, as in the study
  of faults in activation-sparse quantized networks (arXiv 2406.10528), where sharper minima lost
  more accuracy and sharpness-aware-quantized (SAQ, Liu et al., arXiv 2111.12273) networks kept more.

**Which parameters.** By default (``parameters="weights"``) only the crossbar weights are perturbed
(:func:`analogsam.models.roles.crossbar_weights`): the matrices that go onto analog tiles, the
``weight`` of Linear and Conv1d/2d/3d layers, attention's projections and the recurrent layers' gate
matrices.
Biases stay digital in aihwkit 1.1.0 (``mapping.digital_bias = True``), and BatchNorm runs digitally,
so neither sees device noise or device faults. Büchel et al. perturb every parameter Θ;
``parameters="all"`` reproduces that.

**Composing with analog evaluation.** Faults act on the digital weights *before* conversion:
:func:`faulted_copy` returns a faulted deep copy, and converting, programming and drifting that copy
(``analogsam.convert`` and ``analogsam.evaluate``) evaluates faults and device non-idealities over
time together.

Accuracies are fractions in [0, 1]. The curves measure top-1 accuracy unless ``metric=`` names
another metric of :mod:`analogsam.scoring` (e.g. ``"perplexity"`` for a language model), and take
the prediction from the model's output by :func:`analogsam.scoring.model_output` (or ``output_fn``). Randomness comes from ``seed`` (a fresh ``torch.Generator``)
or an explicit ``generator``; the curves give draw d the same random numbers at every level
(common random numbers), so a curve is smooth, faults at a lower rate are a subset of those at a
higher rate, and two models of the same architecture see the same noise.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.models.roles import PARAMETER_SETS, select_parameters
from analogsam.robustness._autograd import preserved, restoring
from analogsam.robustness._batches import batch_weights, model_device, resolve_loss, sample_count, take_batches
from analogsam.robustness._random import derived_seed, make_generator, standard_normal, uniform
from analogsam.scoring import resolve_metric, score
from analogsam.statistics import mean_std_stderr
from analogsam.validation import check_choice, check_int, check_levels, check_real

__all__ = [
    "RobustnessCurve",
    "gaussian_weight_noise",
    "perturb_weights",
    "weight_noise",
    "weight_noise_curve",
    "inject_stuck_at",
    "inject_bit_flips",
    "bit_fault_words",
    "check_bit_positions",
    "quantize_symmetric",
    "faulted_copy",
    "fault_curve",
]

NOISE_MODES = ("relative", "additive")
FAULT_KINDS = ("stuck-at", "bit-flip")
ENCODINGS = ("twos-complement", "sign-magnitude")
#: Faults of one bit cell of a weight memory (:func:`bit_fault_words`).
BIT_FAULT_KINDS = ("bit-flip", "stuck-at-0", "stuck-at-1", "stuck-at")
STUCK_SIGNS = ("random", "keep")


# --- Gaussian weight noise ---------------------------------------------------------------------


@torch.no_grad()
def gaussian_weight_noise(
    w: torch.Tensor,
    *,
    relative: float = 0.0,
    additive: float = 0.0,
    absolute: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The one Gaussian weight-noise draw of the package: ε = σ_rel·|w|⊙N + σ_add·max|w|·N + σ_abs·N.

    - ``relative``: σ·|w| elementwise, the magnitude-proportional mismatch of Büchel, Faber & Muir
      (ICLR 2022, arXiv 2106.05009) and the multiplicative noise of hardware-aware training;
    - ``additive``: σ·max|w| with the max over the whole tensor (one layer), noise proportional to the
      layer's weight range as a device's programming noise is to g_max (Joshi et al., Nat. Commun.
      2020; aihwkit's ``forward.w_noise``, Rasch et al. 2023);
    - ``absolute``: σ, the same for every weight.

    One standard normal of ``w``'s shape is drawn, always (also when every σ is 0, so a stream of
    draws does not depend on the levels), from ``generator`` (:func:`._random.standard_normal`: on the
    generator's device; ``None``: torch's global generator of ``w``'s device). With one σ non-zero ε
    is that scale times the draw; with several, the draw times the standard deviation of their sum,
    √Σσ², since the terms are independent Gaussians. Returns ε; ``w`` is not changed.
    """
    noise = standard_normal(w, generator)
    w = w.detach()
    terms = [t for t in (relative, additive, absolute) if t != 0.0]
    if len(terms) > 1:
        variance = (w.abs() * relative).square_().add_((additive * w.abs().max()) ** 2)
        return noise.mul_(variance.add_(absolute**2).sqrt_())
    if relative != 0.0:
        return relative * w.abs() * noise
    if absolute != 0.0:
        return absolute * noise
    return noise.mul_(additive * w.abs().max())


def _add_noise_(params, eta: float, mode: str, generator: torch.Generator) -> None:
    with torch.no_grad():
        for p in params:
            p.add_(gaussian_weight_noise(p, **{mode: eta}, generator=generator))


def _noise_args(eta, mode, parameters):
    eta = check_real("eta", eta, 0.0)
    check_choice("mode", mode, NOISE_MODES)
    check_choice("parameters", parameters, PARAMETER_SETS)
    return eta


@contextlib.contextmanager
def weight_noise(
    model: nn.Module,
    eta: float,
    *,
    mode: str = "relative",
    parameters: str = "weights",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
):
    """Perturb ``model``'s weights in place for the ``with`` block; restored bit-exactly on exit.

    ``mode="relative"``: w ← w + |w|·η·N(0, 1) elementwise (Büchel et al. 2022's test noise).
    ``mode="additive"``: w ← w + η·max|W|·N(0, 1), max over each weight tensor (one per layer).
    Train/eval mode is left as it is.
    """
    eta = _noise_args(eta, mode, parameters)
    params = [p for _, p in select_parameters(model, parameters)]
    with preserved(model, eval_mode=False):
        _add_noise_(params, eta, mode, make_generator(seed, generator))
        yield model


def perturb_weights(
    model: nn.Module,
    eta: float,
    *,
    mode: str = "relative",
    parameters: str = "weights",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> nn.Module:
    """A copy of ``model`` with Gaussian weight noise (see :func:`weight_noise` for the modes).

    Returns a deep copy and leaves ``model`` alone, unless ``inplace=True``.
    """
    eta = _noise_args(eta, mode, parameters)
    target = model if inplace else copy.deepcopy(model)
    params = [p for _, p in select_parameters(target, parameters)]
    _add_noise_(params, eta, mode, make_generator(seed, generator))
    return target


# --- stuck-at faults ---------------------------------------------------------------------------


def _stuck_probabilities(stuck_values) -> float:
    """P(stuck at ±w_max | stuck) from ``"max"``, ``"zero"`` or a mapping of probabilities."""
    if isinstance(stuck_values, str):
        check_choice("stuck_values", stuck_values, ("max", "zero"))
        return 1.0 if stuck_values == "max" else 0.0
    if not isinstance(stuck_values, Mapping) or not stuck_values or set(stuck_values) - {"max", "zero"}:
        raise InvalidParameterError(
            "stuck_values must be 'max', 'zero' or a mapping like {'max': 0.5, 'zero': 0.5} "
            f"with keys 'max' and/or 'zero'; got {stuck_values!r}"
        )
    p_max = check_real("stuck_values['max']", stuck_values.get("max", 0.0), 0.0, 1.0)
    p_zero = check_real("stuck_values['zero']", stuck_values.get("zero", 0.0), 0.0, 1.0)
    if abs(p_max + p_zero - 1.0) > 1e-9:
        raise InvalidParameterError(f"stuck_values probabilities must sum to 1, got {p_max} + {p_zero}")
    return p_max


def _stuck_at_(params, rate, p_max, sign, generator) -> dict:
    counts = {"n_weights": 0, "n_stuck": 0, "n_stuck_max": 0, "n_stuck_zero": 0}
    with torch.no_grad():
        for p in params:
            # Three uniform draws per weight whatever the settings, so a given seed gives nested
            # fault sets across rates and the same faulty devices whatever stuck_values says.
            u_fault, u_kind, u_sign = (uniform(p, generator) for _ in range(3))
            w_max = p.abs().max()
            stuck = u_fault < rate
            at_max = stuck & (u_kind < p_max)
            at_zero = stuck & ~at_max
            if sign == "keep":
                signs = torch.where(p < 0, -1.0, 1.0).to(p.dtype)
            else:
                signs = torch.where(u_sign < 0.5, -1.0, 1.0).to(p.dtype)
            p.copy_(torch.where(at_max, signs * w_max, p))
            p.masked_fill_(at_zero, 0.0)
            counts["n_weights"] += p.numel()
            counts["n_stuck"] += int(stuck.sum())
            counts["n_stuck_max"] += int(at_max.sum())
            counts["n_stuck_zero"] += int(at_zero.sum())
    return counts


def inject_stuck_at(
    model: nn.Module,
    rate: float,
    *,
    stuck_values: str | Mapping[str, float] | None = None,
    sign: str = "random",
    parameters: str = "weights",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> dict:
    """Make a fraction ``rate`` of the weights stuck, **in place**; returns the fault counts.

    Device model: a weight is a differential pair of conductances, w ∝ G⁺ − G⁻, and the largest
    |w| of each weight tensor (w_max, per layer) maps to g_max (aihwkit's ``weight_scaling_omega``
    rescaling). Each weight is faulty independently with probability ``rate``. A faulty weight is

    - stuck at **±w_max** (one device of the pair stuck at g_max and dominating the pair) with
      probability ``stuck_values["max"]``. Its sign is that of the device stuck: ``sign="random"``
      (default) picks G⁺ or G⁻ with equal odds, i.e. ±w_max at random; ``sign="keep"`` keeps the
      original weight's sign (the programmed device is the one stuck on; w = 0 counts as +);
    - stuck at **0** (the device stuck at g_min ≈ 0, no current) with probability
      ``stuck_values["zero"]``.

    ``stuck_values`` defaults to ``{"max": 0.5, "zero": 0.5}``; ``"max"`` or ``"zero"`` means all
    faults of that kind. ``rate=0`` changes nothing; ``rate=1`` sets every weight to exactly the
    stated value. Returns ``{"n_weights", "n_stuck", "n_stuck_max", "n_stuck_zero"}``.
    """
    rate = check_real("rate", rate, 0.0, 1.0)
    p_max = _stuck_probabilities({"max": 0.5, "zero": 0.5} if stuck_values is None else stuck_values)
    check_choice("sign", sign, STUCK_SIGNS)
    params = [p for _, p in select_parameters(model, parameters)]
    return _stuck_at_(params, rate, p_max, sign, make_generator(seed, generator))


# --- bit flips ---------------------------------------------------------------------------------


def quantize_symmetric(weight: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, float]:
    """Symmetric per-tensor k-bit quantization: integer codes q and scale s with w ≈ q·s.

    s = max|w| / (2^(k−1) − 1) and q = round(w/s) in [−(2^(k−1) − 1), 2^(k−1) − 1] (int64). An
    all-zero tensor gets s = 0 and q = 0.
    """
    bits = check_int("bits", bits, low=2, high=16)
    q_max = 2 ** (bits - 1) - 1
    w_max = float(weight.detach().abs().max()) if weight.numel() else 0.0
    if w_max == 0.0:
        return torch.zeros(weight.shape, dtype=torch.int64, device=weight.device), 0.0
    scale = w_max / q_max
    codes = torch.round(weight.detach().double() / scale).clamp_(-q_max, q_max).to(torch.int64)
    return codes, scale


def _encode(codes: torch.Tensor, bits: int, encoding: str) -> torch.Tensor:
    """Signed codes to the k-bit words stored in memory (as non-negative int64)."""
    if encoding == "twos-complement":
        return codes & (2**bits - 1)
    return torch.where(codes < 0, 2 ** (bits - 1), 0) | codes.abs()


def _decode(words: torch.Tensor, bits: int, encoding: str) -> torch.Tensor:
    if encoding == "twos-complement":
        return torch.where(words >= 2 ** (bits - 1), words - 2**bits, words)
    magnitude = words & (2 ** (bits - 1) - 1)
    return torch.where(words >= 2 ** (bits - 1), -magnitude, magnitude)


def check_bit_positions(positions, bits: int) -> tuple[int, ...] | None:
    """``positions`` (bit indices, 0 = least significant) checked against a ``bits``-bit word; None: all."""
    if positions is None:
        return None
    if isinstance(positions, int):
        positions = (positions,)
    checked = tuple(sorted({check_int("bit position", b, low=0, high=bits - 1) for b in positions}))
    if not checked:
        raise InvalidParameterError("bit positions is empty: leave it out for every bit, or name bits such as 7")
    return checked


def bit_fault_words(
    words: torch.Tensor,
    bits: int,
    rate: float,
    generator: torch.Generator,
    *,
    kind: str = "bit-flip",
    positions: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor, int]:
    """Memory faults in ``bits``-bit ``words`` (non-negative int64): (faulted words, faulty cells).

    Each bit cell is faulty independently with probability ``rate``; one uniform draw per bit of every
    word, whatever the rate, kind or positions, so a seed gives nested fault sets across rates and
    the same faulty cells whatever else is asked. ``positions`` keeps the faults of those bits only
    (0 = least significant). ``kind``: ``"bit-flip"`` inverts a faulty bit; ``"stuck-at-0"`` /
    ``"stuck-at-1"`` force it to 0 / 1; ``"stuck-at"`` forces it to 0 or 1 with equal odds (one
    more draw per bit). A stuck cell that already held its stuck value is counted but changes nothing.
    """
    check_choice("kind", kind, BIT_FAULT_KINDS)
    faulty = torch.zeros_like(words)
    for b in range(bits):
        hit = (uniform(words, generator) < rate).to(torch.int64)
        if positions is None or b in positions:
            faulty |= hit << b
    n_faulty = sum(int(((faulty >> b) & 1).sum()) for b in range(bits))
    if kind == "bit-flip":
        return words ^ faulty, n_faulty
    if kind == "stuck-at-0":
        return words & ~faulty, n_faulty
    if kind == "stuck-at-1":
        return words | faulty, n_faulty
    ones = torch.zeros_like(words)
    for b in range(bits):
        ones |= (uniform(words, generator) < 0.5).to(torch.int64) << b
    return (words & ~faulty) | (faulty & ones), n_faulty


def _bit_flips_(params, rate, bits, encoding, generator) -> dict:
    counts = {"n_weights": 0, "n_bits": 0, "n_flipped": 0}
    with torch.no_grad():
        for p in params:
            codes, scale = quantize_symmetric(p, bits)
            words, flipped = bit_fault_words(_encode(codes, bits, encoding), bits, rate, generator)
            p.copy_((_decode(words, bits, encoding).double() * scale).to(p.dtype))
            counts["n_weights"] += p.numel()
            counts["n_bits"] += p.numel() * bits
            counts["n_flipped"] += flipped
    counts["fraction_flipped"] = counts["n_flipped"] / counts["n_bits"]
    return counts


def inject_bit_flips(
    model: nn.Module,
    rate: float,
    bits: int = 8,
    *,
    encoding: str = "twos-complement",
    parameters: str = "weights",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> dict:
    """Memory bit flips in k-bit quantized weights, **in place**; returns the flip counts.

    Each weight tensor (one per layer) is quantized symmetrically to ``bits`` bits
    (:func:`quantize_symmetric`), stored as a k-bit word, each bit flipped independently with
    probability ``rate``, and dequantized back. ``encoding="twos-complement"`` (default, how int8
    weights sit in memory) makes a flipped top bit a jump of 2^(k−1) levels, and a word can decode
    to −2^(k−1), one level beyond −w_max; ``"sign-magnitude"`` makes it a sign change. Faults in
    the weight memory as studied for activation-sparse quantized networks (arXiv 2406.10528).

    ``rate=0`` is quantization only. Returns ``{"n_weights", "n_bits", "n_flipped",
    "fraction_flipped"}``; the flipped fraction is Binomial(n_bits, rate)/n_bits.
    """
    rate = check_real("rate", rate, 0.0, 1.0)
    bits = check_int("bits", bits, low=2, high=16)
    check_choice("encoding", encoding, ENCODINGS)
    params = [p for _, p in select_parameters(model, parameters)]
    return _bit_flips_(params, rate, bits, encoding, make_generator(seed, generator))


def faulted_copy(
    model: nn.Module,
    stuck_at_rate: float = 0.0,
    bit_flip_rate: float = 0.0,
    bits: int = 8,
    seed: int = 0,
    *,
    stuck_values: str | Mapping[str, float] | None = None,
    sign: str = "random",
    encoding: str = "twos-complement",
    parameters: str = "weights",
) -> nn.Module:
    """A deep copy of ``model`` with bit flips and then stuck-at faults; ``model`` is untouched.

    Meant to go before conversion: ``analogsam.convert(faulted_copy(model, stuck_at_rate=0.01), ...)``
    then programs and drifts the faulted weights, so one evaluation covers faults and time. Bit
    flips model the digital weight memory the weights are programmed from, so they come first;
    stuck devices override whatever was programmed into them, so they come last. Quantization
    happens only when ``bit_flip_rate > 0`` (call :func:`inject_bit_flips` with rate 0 on a copy
    for the quantization-only baseline). The two faults draw from independent streams of ``seed``.
    """
    stuck_at_rate = check_real("stuck_at_rate", stuck_at_rate, 0.0, 1.0)
    bit_flip_rate = check_real("bit_flip_rate", bit_flip_rate, 0.0, 1.0)
    seed = check_int("seed", seed, low=0)
    faulted = copy.deepcopy(model)
    if bit_flip_rate > 0:
        inject_bit_flips(
            faulted, bit_flip_rate, bits, encoding=encoding, parameters=parameters, seed=derived_seed(seed, 2)
        )
    if stuck_at_rate > 0:
        inject_stuck_at(
            faulted,
            stuck_at_rate,
            stuck_values=stuck_values,
            sign=sign,
            parameters=parameters,
            seed=derived_seed(seed, 1),
        )
    return faulted


# --- robustness curves -------------------------------------------------------------------------


@dataclass(frozen=True)
class RobustnessCurve:
    """Accuracy (or ``metric``) against a perturbation strength, over random draws.

    ``rows``: one per (level, draw): ``{level_name: level, "draw", <metric>, "loss"}`` (``<metric>`` is
    ``"accuracy"`` by default). ``summary``: one per level: ``{level_name, "n", "mean", "std", "min",
    "max", "mean_drop"}``, std with ddof=1 (nan for one draw), ``mean_drop`` how much worse the mean
    is than the clean value: ``clean_accuracy − mean``, or ``mean − clean_accuracy`` for a metric
    where lower is better (perplexity), so a positive drop is a loss either way.
    ``clean_accuracy`` is the unperturbed value of the metric.
    ``level_name`` is ``"eta"`` for weight noise and ``"rate"`` for faults.
    """

    kind: str
    level_name: str
    rows: list = field(default_factory=list)
    summary: list = field(default_factory=list)
    clean_accuracy: float = float("nan")
    clean_loss: float = float("nan")
    settings: dict = field(default_factory=dict)
    metric: str = "accuracy"

    def to_dict(self) -> dict:
        return asdict(self)


def _curve(
    model,
    batches,
    levels,
    level_name,
    kind,
    apply_,
    *,
    draws,
    loss_fn,
    num_batches,
    parameters,
    seed,
    settings,
    metric=None,
    output_fn=None,
) -> RobustnessCurve:
    """Evaluate ``apply_(params, level, generator)`` at every level and draw, restoring in between."""
    draws = check_int("draws", draws, low=1)
    seed = check_int("seed", seed, low=0)
    metric = resolve_metric(metric)
    loss_fn = resolve_loss(loss_fn, metric)
    measured = {"loss_fn": loss_fn, "metric": metric, "output_fn": output_fn}
    rows, summary = [], []
    with preserved(model):
        data = take_batches(batches, num_batches, model_device(model))
        weights = batch_weights(data)
        params = [p for _, p in select_parameters(model, parameters)]
        clean_value, clean_loss = score(model, data, weights=weights, **measured)
        for level in levels:
            values = []
            for draw in range(draws):
                generator = torch.Generator().manual_seed(derived_seed(seed, draw))
                with restoring(params):
                    apply_(params, level, generator)
                    value, loss = score(model, data, weights=weights, **measured)
                rows.append({level_name: level, "draw": draw, metric.name: value, "loss": loss})
                values.append(value)
            mean, std, _ = mean_std_stderr(values)
            drop = clean_value - mean if metric.higher_is_better else mean - clean_value
            summary.append(
                {
                    level_name: level,
                    "n": draws,
                    "mean": mean,
                    "std": std,
                    "min": min(values),
                    "max": max(values),
                    "mean_drop": drop,
                }
            )
    settings = {
        **settings,
        "draws": draws,
        "seed": seed,
        "parameters": parameters,
        "num_batches": len(data),
        "n_samples": sample_count(data),
    }
    return RobustnessCurve(kind, level_name, rows, summary, clean_value, clean_loss, settings, metric.name)


def weight_noise_curve(
    model: nn.Module,
    batches,
    etas=(0.0, 0.1, 0.2, 0.3, 0.5, 0.7),
    *,
    draws: int = 10,
    mode: str = "relative",
    parameters: str = "weights",
    loss_fn=None,
    num_batches: int | None = None,
    seed: int = 0,
    metric=None,
    output_fn=None,
) -> RobustnessCurve:
    """Accuracy (or ``metric``) under Gaussian weight noise at each η, over ``draws`` draws (model
    restored after); ``output_fn`` picks the prediction from the model's output.

    Büchel et al. (ICLR 2022)'s protocol is ``mode="relative"``, η ∈ {0.1, 0.2, 0.3, 0.5, 0.7},
    ``draws=100``, reporting mean, std and min (the ``summary``). ``mode="additive"`` uses
    w + η·max|W_layer|·N(0, 1); useful η there are a few percent. The summary's std is the spread of
    accuracy over noise draws; the standard error of its mean is std/√draws.
    """
    levels = check_levels("etas", etas)
    check_choice("mode", mode, NOISE_MODES)

    def apply_(params, eta, generator):
        _add_noise_(params, eta, mode, generator)

    return _curve(
        model,
        batches,
        levels,
        "eta",
        f"weight-noise-{mode}",
        apply_,
        draws=draws,
        loss_fn=loss_fn,
        num_batches=num_batches,
        parameters=parameters,
        seed=seed,
        settings={"mode": mode},
        metric=metric,
        output_fn=output_fn,
    )


def fault_curve(
    model: nn.Module,
    batches,
    rates=(0.0, 0.001, 0.01, 0.05),
    kind: str = "stuck-at",
    *,
    draws: int = 5,
    bits: int = 8,
    encoding: str = "twos-complement",
    stuck_values: str | Mapping[str, float] | None = None,
    sign: str = "random",
    parameters: str = "weights",
    loss_fn=None,
    num_batches: int | None = None,
    seed: int = 0,
    metric=None,
    output_fn=None,
) -> RobustnessCurve:
    """Accuracy (or ``metric``) against the fault rate for ``kind="stuck-at"`` or ``"bit-flip"`` faults;
    ``output_fn`` picks the prediction from the model's output.

    Uses :func:`inject_stuck_at` / :func:`inject_bit_flips` with their settings. For bit flips the
    rate-0 level is the quantized model (its ``mean_drop`` is the quantization loss) while
    ``clean_accuracy`` is the unquantized one. Draw d uses the same random numbers at every rate,
    so the faults at a lower rate are a subset of those at a higher one.
    """
    check_choice("kind", kind, FAULT_KINDS)
    levels = check_levels("rates", rates, 0.0, 1.0)
    if kind == "stuck-at":
        p_max = _stuck_probabilities({"max": 0.5, "zero": 0.5} if stuck_values is None else stuck_values)
        check_choice("sign", sign, STUCK_SIGNS)
        settings = {"p_max": p_max, "sign": sign}

        def apply_(params, rate, generator):
            _stuck_at_(params, rate, p_max, sign, generator)
    else:
        bits = check_int("bits", bits, low=2, high=16)
        check_choice("encoding", encoding, ENCODINGS)
        settings = {"bits": bits, "encoding": encoding}

        def apply_(params, rate, generator):
            _bit_flips_(params, rate, bits, encoding, generator)

    return _curve(
        model,
        batches,
        levels,
        "rate",
        kind,
        apply_,
        draws=draws,
        loss_fn=loss_fn,
        num_batches=num_batches,
        parameters=parameters,
        seed=seed,
        settings=settings,
        metric=metric,
        output_fn=output_fn,
    )
