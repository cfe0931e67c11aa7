"""The memory-fault study (``analogsam study faults``): are activation-sparse quantized networks more
vulnerable to weight-memory faults, are they sharper, and does sharpness-aware quantization (SAQ)
recover what they lose? (Malhotra & Gupta, arXiv 2406.10528, issue 22.)

What it trains (:data:`FULL`), three training seeds each, LeNet-5 on a 20 000-image seeded subset
of Fashion-MNIST, SGD momentum 0.9, weight decay 5e-4, batch 128, cosine, in two stages as ziplab/SAQ
trains (its ``--pretrained``: quantization-aware training starts from a trained full-precision model):

- the starts: per seed, a full-precision LeNet-5, standard and activation-sparse (L1 penalty
  λ = 1e-4 on the ReLU outputs, :mod:`analogsam.quantization.sparsity`), 4 epochs at lr 0.05;
- from the start of its seed and activation kind (a paired comparison: SGD and SAQ of a seed begin
  at the same weights), 2 epochs at lr 0.01 (the reference's fine-tuning lr), the same λ:
  quantization-aware (LIQ, every layer, :mod:`analogsam.quantization.liq`, clips initialised from
  the trained weights) at w8a8 and w4a4, with SGD and with SAQ (ρ = 0.1, the reference's default):
  8 variants;
- for contrast, SAM (ρ = 0.05) from the same start in full precision, standard and sparse, quantized
  afterwards with LIQ's clip rule (0.8·max|.| of one calibration batch of 512 training images) at both
  widths.

Why so (measured on seed 0, one thread): trained from scratch, every sparse SAQ network collapsed to
chance (the previous version of this study: LIQ's weight clips shrank through zero within ~20 steps
under the L1 penalty and the two-pass step); from the trained start, sparse SAQ w4a4 reached 83.5 %
at 84.6 % zeros. λ = 1e-4 was chosen on the full-precision start (4 epochs on 20 000 images): 0,
2e-5, 5e-5, 1e-4 gave 85.8, 85.0, 84.7, 83.7 % accuracy at 53.8, 66.6, 71.6, 81.0 % zeros; the paper's
sparse networks are this sparse (its point is what high sparsity costs under faults).

What it measures on every network (the same 2 000 test images): the quantized network's digital
accuracy, its activation sparsity, its sharpness around the quantized weights
(:func:`analogsam.optim.saq.quantized_sharpness`, ρ = 0.05), and its accuracy under bit flips
and under stuck-at faults (each faulty bit stuck at 0 or 1 with equal odds) in the weight memory,
on the integer codes in offset binary (:func:`analogsam.quantization.inject_code_faults`), at bit
error rates from 1e-4 to 1e-1, three fault draws per rate (a first run to 1e-2 showed drops of at most
~3 points, so the range was widened). Draw d has the same seed for every
network and rate, so faults are nested across rates and two networks of the same width see the same
faulty cells. A network's accuracy at a rate is the mean over draws; the tables give the mean ± 95%
Student-t interval over the three training seeds, and Welch's test over seeds for each claim (for
SAQ against SGD also the paired test: they share the start). ``locations`` (``--fault-locations``)
adds or puts the faults in the activation memory instead (the a-bit input codes of every quantized
layer, :func:`analogsam.quantization.inject_activation_faults`); every fault row records its location.

Why this size: the machine this was built on has two cores shared by six people; the full study
must run in about 45 minutes at one thread (it ran in 33). LeNet-5 / Fashion-MNIST is the package's reference
problem; the subset and 4 + 2 epochs reach about 84-86 % (a converged LeNet-5 reaches ~90 %), enough
for the faults' effect to be measured against a working network, and the same for every variant.

Resumable: runs are reused from ``OUT/train/<variant>/seed-N`` (the starts: ``OUT/train/<kind>-fp/seed-N``) (:func:`analogsam.training.train_or_reuse`),
each network's measurements are a JSON file ``OUT/measure/<variant>/seed-N.json`` written when
finished, and the report is rewritten after every seed round (all variants of one seed), so an
interrupted run reports what it finished. The remaining wall time is measured and stated first.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from analogsam.errors import AnalogsamError
from analogsam.models import build_model, make_spec
from analogsam.optim import build_method
from analogsam.optim.saq import quantized_sharpness
from analogsam.quantization import (
    FAULT_LOCATIONS,
    activation_sparsity,
    faulted_copy,
    quantize_model,
)
from analogsam.robustness._random import derived_seed
from analogsam.statistics import confidence_interval, welch_t_test
from analogsam.storage import ensure_folder, read_json, write_json
from analogsam.studies.scaffold import (
    SeedStudySettings,
    check_study_folder,
    duration_text,
    finished,
    run_folder,
)
from analogsam.training import accuracy, train_or_reuse

__all__ = ["FaultStudySettings", "FULL", "QUICK", "Variant", "variants", "fault_study"]


class FaultStudyError(AnalogsamError, ValueError):
    """The study folder holds a fault study with other settings."""


@dataclass(frozen=True)
class FaultStudySettings(SeedStudySettings):
    """The study's recipe (:class:`~.scaffold.SeedStudySettings`: every variant's training from its
    start, 2 epochs at lr 0.01 on 20 000 training and 2 000 test images), its full-precision starts
    (``start_epochs`` at ``start_lr``), and its networks, faults and sharpness."""

    train_limit: int | None = 20_000
    test_limit: int | None = 2_000
    epochs: int = 2  # every variant, from its start
    lr: float = 0.01
    start_epochs: int = 4  # the full-precision starts
    start_lr: float = 0.05
    bits: tuple[int, ...] = (8, 4)
    sparsity_l1: float = 1e-4
    saq_rho: float = 0.1
    sam_rho: float = 0.05
    calibration_samples: int = 512
    kinds: tuple[str, ...] = ("bit-flip", "stuck-at")
    locations: tuple[str, ...] = ("weight",)  # "weight" and/or "activation" memory
    rates: tuple[float, ...] = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    draws: int = 3
    encoding: str = "offset-binary"
    fault_seed: int = 0
    sharpness_rho: float = 0.05
    sharpness_samples: int = 1000


#: The study as it is reported.
FULL = FaultStudySettings()
#: The same pipeline on a tiny problem (``--quick``).
QUICK = replace(
    FULL,
    train_limit=256,
    test_limit=200,
    start_epochs=1,
    epochs=1,
    seeds=(0, 1),
    rates=(1e-3, 1e-2),
    draws=2,
    calibration_samples=64,
    sharpness_samples=100,
)

REPORT = "report.md"


@dataclass(frozen=True)
class Variant:
    """One kind of network of the study."""

    label: str
    activations: str  # "standard" or "sparse"
    bits: int
    optimizer: str  # "sgd", "saq" (quantization-aware) or "sam" (full precision, quantized afterwards)

    @property
    def trained_as(self) -> str:
        """The label of the training run (the post-training-quantized variants share their FP run)."""
        return f"{self.activations}-fp-sam" if self.optimizer == "sam" else self.label

    @property
    def start(self) -> str:
        """The label of the full-precision run it starts from (one per activation kind and seed)."""
        return f"{self.activations}-fp"


def variants(settings: FaultStudySettings) -> list[Variant]:
    found = []
    for activations in ("standard", "sparse"):
        for bits in settings.bits:
            for optimizer in ("sgd", "saq", "sam"):
                name = "sam-ptq" if optimizer == "sam" else optimizer
                found.append(Variant(f"{activations}-w{bits}a{bits}-{name}", activations, bits, optimizer))
    return found


def _start_kwargs(activations: str, settings: FaultStudySettings) -> dict:
    """The full-precision start of ``activations`` ("standard" or "sparse"): SGD from scratch."""
    return {
        **settings.train_kwargs(),
        "epochs": settings.start_epochs,
        "lr": settings.start_lr,
        "optimizer": "sgd",
        "activation_l1": settings.sparsity_l1 if activations == "sparse" else 0.0,
    }


def _train_kwargs(variant: Variant, settings: FaultStudySettings, start: Path) -> dict:
    kwargs = {
        **settings.train_kwargs(),
        "model": None,
        "init_from": start,
        "optimizer": variant.optimizer,
        "activation_l1": settings.sparsity_l1 if variant.activations == "sparse" else 0.0,
    }
    if variant.optimizer == "saq":
        kwargs |= {"quantize": f"w{variant.bits}a{variant.bits}", "rho": settings.saq_rho}
    elif variant.optimizer == "sam":
        kwargs |= {"rho": settings.sam_rho}
    else:
        kwargs |= {"quantize": f"w{variant.bits}a{variant.bits}"}
    return kwargs


def _quantized_network(variant: Variant, run, data, settings: FaultStudySettings):
    """The network the faults act on: the QAT run's model, or the FP SAM model quantized with LIQ's
    clip rule on one calibration batch of training images."""
    if variant.optimizer != "sam":
        return run.model.eval()
    model = quantize_model(copy.deepcopy(run.model), f"w{variant.bits}a{variant.bits}").eval()
    x = data.train.x[: settings.calibration_samples]
    with torch.no_grad():
        model(x)
    return model


def _test_batches(data) -> list:
    return list(data.test.batches(1000))


def measure_network(model, test, settings: FaultStudySettings) -> dict:
    """Clean accuracy, sparsity, sharpness and the accuracy of every (kind, rate, draw)."""
    clean, _ = accuracy(model, test)
    x = torch.cat([b[0] for b in test])[: settings.sharpness_samples]
    y = torch.cat([b[1] for b in test])[: settings.sharpness_samples]
    sharp = quantized_sharpness(model, x, y, rho=settings.sharpness_rho)
    sparsity = activation_sparsity(model, test)
    faults = []
    for location in settings.locations:
        for kind in settings.kinds:
            for rate in settings.rates:
                for draw in range(settings.draws):
                    faulted = faulted_copy(
                        model,
                        rate,
                        location=location,
                        kind=kind,
                        encoding=settings.encoding,
                        seed=derived_seed(settings.fault_seed, draw),
                    )
                    value, _ = accuracy(faulted, test)
                    faults.append({"location": location, "kind": kind, "rate": rate, "draw": draw, "accuracy": value})
    return {
        "clean_accuracy": clean,
        "sparsity": sparsity["overall"],
        "sparsity_layers": sparsity["layers"],
        "sharpness": sharp["sharpness"],
        "loss": sharp["loss"],
        "faults": faults,
    }


# -- the up-front estimate ------------------------------------------------------------------------------


def _seconds_per_step(optimizer: str, quantize, settings: FaultStudySettings, data, steps: int = 3) -> float:
    torch.manual_seed(0)
    model = build_model(
        make_spec(
            settings.model, in_channels=data.in_channels, num_classes=data.num_classes, input_size=data.input_size
        )
    )
    if quantize:
        quantize_model(model, quantize)
    method = build_method(optimizer, model, lr=settings.lr)
    batches = list(data.train.batches(settings.batch_size, shuffle=True, seed=0, with_indices=True))
    model.train()
    method.train_step(*batches[0])  # warm-up (and the clips' first forward)
    start = time.perf_counter()
    for i in range(steps):
        method.train_step(*batches[(i + 1) % len(batches)])
    return (time.perf_counter() - start) / steps


def _estimate(out: Path, settings: FaultStudySettings, data, test) -> tuple[float, list[str]]:
    per_epoch = math.ceil(len(data.train) / settings.batch_size)
    steps = per_epoch * settings.epochs
    cost = {
        "sgd": _seconds_per_step("sgd", f"w{settings.bits[-1]}a{settings.bits[-1]}", settings, data),
        "saq": _seconds_per_step("saq", f"w{settings.bits[-1]}a{settings.bits[-1]}", settings, data),
        "sam": _seconds_per_step("sam", None, settings, data),
        "fp": _seconds_per_step("sgd", None, settings, data),
    }
    start = time.perf_counter()
    model = _quantized_network(
        Variant("x", "standard", settings.bits[-1], "sam"), _FakeRun(settings, data), data, settings
    )
    accuracy(model, test)
    one_eval = time.perf_counter() - start
    trains, measures, seen = 0.0, 0, set()
    for seed in settings.seeds:
        for activations in ("standard", "sparse"):
            if not finished(out, f"{activations}-fp", [seed]):
                trains += per_epoch * settings.start_epochs * cost["fp"]
        for v in variants(settings):
            key = (v.trained_as, seed)
            if key not in seen and not finished(out, v.trained_as, [seed]):
                trains += steps * cost[v.optimizer]
            seen.add(key)
            if not _measure_path(out, v, seed).exists():
                measures += 1
    per_network = len(settings.locations) * len(settings.kinds) * len(settings.rates) * settings.draws
    evals = measures * (1 + per_network) * one_eval
    lines = [
        f"training: {per_epoch * settings.start_epochs} steps per full-precision start at {cost['fp'] * 1e3:.0f} ms, "
        f"{steps} steps per run from it at {cost['sgd'] * 1e3:.0f} ms (SGD-QAT), {cost['saq'] * 1e3:.0f} ms (SAQ), "
        f"{cost['sam'] * 1e3:.0f} ms (SAM) per step: {trains:.0f} s",
        f"faults: {measures} network(s) x {per_network} faulted evaluations x {one_eval:.2f} s: {evals:.0f} s",
    ]
    return trains + evals, lines


class _FakeRun:
    """A fresh full-precision model standing in for a run, for timing one evaluation."""

    def __init__(self, settings, data):
        self.model = build_model(
            make_spec(
                settings.model, in_channels=data.in_channels, num_classes=data.num_classes, input_size=data.input_size
            )
        )


def _measure_path(out: Path, variant: Variant, seed: int) -> Path:
    return out / "measure" / variant.label / f"seed-{seed}.json"


# -- the study ---------------------------------------------------------------------------------------------


def fault_study(
    out,
    *,
    quick: bool = False,
    data_root=None,
    progress: bool = True,
    command: str | None = None,
    settings: FaultStudySettings | None = None,
) -> dict:
    """Train, measure and report the memory-fault study into ``out``; rerunning resumes it.

    Returns ``{"report", "measured", "trained"}`` (this call's new measurements and runs)."""
    settings = settings or (QUICK if quick else FULL)
    out = ensure_folder(out, "study folder")
    wanted = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
    if wanted["locations"] == ["weight"]:  # a weight-fault study keeps the key it had before locations
        del wanted["locations"]
    unknown = set(settings.locations) - set(FAULT_LOCATIONS)
    if unknown or not settings.locations:
        raise FaultStudyError(f"fault locations must be some of {', '.join(FAULT_LOCATIONS)}, got {settings.locations}")
    check_study_folder(out, wanted, FaultStudyError, "a fault study")
    started = time.time()
    data = settings.load_data(data_root)
    test = _test_batches(data)
    total, lines = _estimate(out, settings, data, test)
    all_variants = variants(settings)
    print(
        f"fault study in {out}: {len(all_variants)} variants x {len(settings.seeds)} training seeds; "
        f"expected wall time of the work left, measured on this machine just now: {duration_text(total)}",
        flush=True,
    )
    for line in lines:
        print(f"  {line}", flush=True)
    trained, measured, runs = [], [], {}
    for seed in settings.seeds:
        for i, variant in enumerate(all_variants, 1):
            path = _measure_path(out, variant, seed)
            if path.exists():
                continue
            clock = time.perf_counter()
            key = (variant.trained_as, seed)
            start = run_folder(out, variant.start, seed)
            if (variant.start, seed) not in runs:
                runs[(variant.start, seed)] = train_or_reuse(
                    start,
                    data=data,
                    seed=seed,
                    run_name=variant.start,
                    progress=progress,
                    **_start_kwargs(variant.activations, settings),
                )
                if not runs[(variant.start, seed)].reused:
                    trained.append((variant.start, seed))
            if key not in runs:
                run = train_or_reuse(
                    run_folder(out, variant.trained_as, seed),
                    data=data,
                    seed=seed,
                    run_name=variant.trained_as,
                    progress=progress,
                    **_train_kwargs(variant, settings, start),
                )
                runs[key] = run
                if not run.reused:
                    trained.append(key)
            network = _quantized_network(variant, runs[key], data, settings)
            result = {
                "variant": variant.label,
                "seed": seed,
                **asdict(variant),
                **measure_network(network, test, settings),
            }
            write_json(path, result)
            measured.append((variant.label, seed))
            print(
                f"[seed {seed}, {i}/{len(all_variants)}] {variant.label}: accuracy {result['clean_accuracy']:.2%}, "
                f"sparsity {result['sparsity']:.1%}, sharpness {result['sharpness']:.4f} "
                f"({time.perf_counter() - clock:.0f} s, {(time.time() - started) / 60:.1f} min so far)",
                flush=True,
            )
        report = write_report(out, settings, command, time.time() - started)
    report = write_report(out, settings, command, time.time() - started)
    print(f"finished in {time.time() - started:.0f} s; report: {report}", flush=True)
    return {"report": report, "measured": measured, "trained": trained}


# -- the report -----------------------------------------------------------------------------------------------


def load_measurements(out: Path, settings: FaultStudySettings) -> dict[str, list[dict]]:
    """{variant label: [one measurement per finished seed]}."""
    found = {}
    for v in variants(settings):
        rows = [read_json(_measure_path(out, v, s)) for s in settings.seeds]
        found[v.label] = [r for r in rows if r is not None]
    return found


def _faults(settings: FaultStudySettings) -> list[str]:
    """The report's fault labels: a kind ("bit-flip": in the weight memory) or "activation <kind>"."""
    return [kind if loc == "weight" else f"{loc} {kind}" for loc in settings.locations for kind in settings.kinds]


def _fault_accuracy(result: dict, fault: str, rate: float) -> float:
    """A network's accuracy at (fault label, rate): the mean over fault draws."""
    location, _, kind = fault.rpartition(" ")
    location = location or "weight"
    return float(
        np.mean(
            [
                f["accuracy"]
                for f in result["faults"]
                if f["kind"] == kind and f["rate"] == rate and f.get("location", "weight") == location
            ]
        )
    )


def _drop(result: dict, fault: str, rate: float) -> float:
    return result["clean_accuracy"] - _fault_accuracy(result, fault, rate)


def _ci_text(values, scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "–"
    mean = float(np.mean(values)) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f} (n=1)"
    low, high = confidence_interval(values)
    return f"{mean:.{digits}f} ± {(high - low) / 2 * scale:.{digits}f}"


def _p_text(a, b) -> str:
    p = welch_t_test(a, b)[2]
    return "–" if math.isnan(p) else f"{p:.3f}"


def _paired_p(rows_a: list[dict], rows_b: list[dict], value) -> str:
    """The paired t-test's two-sided p of value(a) − value(b) over the seeds both have (the variants of a
    seed start from the same full-precision run: the seed-to-seed spread of the start cancels)."""
    b_by_seed = {x["seed"]: value(x) for x in rows_b}
    pairs = [(value(x), b_by_seed[x["seed"]]) for x in rows_a if x["seed"] in b_by_seed]
    if len(pairs) < 2:
        return "paired –"
    differences = np.array([a - b for a, b in pairs])
    if np.all(differences == differences[0]):
        return "paired –"
    return f"paired {stats.ttest_rel(*zip(*pairs)).pvalue:.3f}"


def plot_accuracy_vs_rate(results: dict, settings: FaultStudySettings, path: Path) -> Path:
    """One panel per (kind, bits): mean accuracy over seeds (error bars: 95% CI) against the rate."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kinds, bits = _faults(settings), settings.bits
    fig = Figure(figsize=(5.2 * len(bits), 3.8 * len(kinds)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(kinds), len(bits), squeeze=False)
    styles = {"sgd": "-", "saq": "--", "sam": ":"}
    colors = {"standard": "tab:blue", "sparse": "tab:red"}
    for r, kind in enumerate(kinds):
        for c, b in enumerate(bits):
            ax = axes[r][c]
            for v in variants(settings):
                rows = results.get(v.label) or []
                if v.bits != b or not rows:
                    continue
                means, errs = [], []
                for rate in settings.rates:
                    values = [_fault_accuracy(x, kind, rate) for x in rows]
                    means.append(np.mean(values) * 100)
                    low, high = confidence_interval(values) if len(values) > 1 else (math.nan, math.nan)
                    errs.append((high - low) / 2 * 100 if len(values) > 1 else 0.0)
                ax.errorbar(
                    settings.rates,
                    means,
                    yerr=errs,
                    label=v.label,
                    linestyle=styles[v.optimizer],
                    color=colors[v.activations],
                    marker="o",
                    markersize=3,
                    capsize=2,
                )
            ax.set_xscale("log")
            ax.set_xlabel("bit error rate")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{kind}, w{b}a{b}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_report(out: Path, settings: FaultStudySettings, command: str | None, seconds: float) -> Path:
    results = load_measurements(out, settings)
    plot = plot_accuracy_vs_rate(results, settings, out / "accuracy_vs_rate.png")
    where = f"weight codes ({settings.encoding})" if "weight" in settings.locations else ""
    if "activation" in settings.locations:  # (fixed faulty cells per position of one sample's input)
        where += (" and " if where else "") + "activation codes (unsigned a-bit words; the rows 'activation ...')"
    rates = settings.rates
    lines = [
        "# Memory faults in activation-sparse quantized networks (arXiv 2406.10528), reproduced small",
        "",
        f"Command: `{command or 'analogsam study faults --out ' + str(out)}`; this invocation's wall time "
        f"{seconds / 60:.1f} min. Settings: {settings.model} on {settings.dataset} "
        f"({settings.train_limit or 'all'} training / {settings.test_limit or 'all'} test images), batch "
        f"{settings.batch_size}, seeds {', '.join(map(str, settings.seeds))}. Two stages (ziplab/SAQ's recipe): a "
        f"full-precision start per seed and activation kind ({settings.start_epochs} epochs of SGD, lr "
        f"{settings.start_lr}, cosine), then every variant from the start of its seed and kind ({settings.epochs} "
        f"epochs, lr {settings.lr}, cosine); LIQ quantization of every layer, its clips initialised from the "
        f"trained weights; sparse: L1 λ = {settings.sparsity_l1:g} "
        f"on the ReLU outputs in both stages; SAQ ρ = {settings.saq_rho}; SAM ρ = {settings.sam_rho} in full precision, "
        f"quantized afterwards (LIQ clips from {settings.calibration_samples} training images). Faults on the "
        f"{where}, every bit cell faulty with probability = the rate, "
        f"{settings.draws} draws per rate; stuck-at: each faulty cell stuck at 0 or 1 with equal odds. "
        "Every number is the mean ± the 95% Student-t half-width over training seeds (a network's value at a "
        "rate is its mean over the fault draws); p: Welch's two-sided test over seeds.",
        "",
        f"![accuracy against the bit error rate]({plot.name})",
        "",
        "## Accuracy (%) against the bit error rate",
        "",
    ]
    for kind in _faults(settings):
        lines += [f"### {kind}", ""]
        header = "| variant | seeds | clean | " + " | ".join(f"{r:g}" for r in rates) + " | sparsity (%) | sharpness |"
        lines += [header, "|" + "---|" * (header.count("|") - 1)]
        for v in variants(settings):
            rows = results[v.label]
            if not rows:
                continue
            cells = [_ci_text([_fault_accuracy(x, kind, r) for x in rows]) for r in rates]
            lines.append(
                f"| {v.label} | {len(rows)} | {_ci_text([x['clean_accuracy'] for x in rows])} | "
                + " | ".join(cells)
                + f" | {_ci_text([x['sparsity'] for x in rows])} | "
                f"{_ci_text([x['sharpness'] for x in rows], scale=1.0, digits=4)} |"
            )
        lines.append("")
    lines += _claims(results, settings)
    lines += [
        "## Per-layer activation sparsity (%), mean over seeds",
        "",
    ]
    layer_names = sorted({n for rows in results.values() for x in rows for n in x["sparsity_layers"]})
    if layer_names:
        lines += ["| variant | " + " | ".join(layer_names) + " |", "|" + "---|" * (len(layer_names) + 1)]
        for v in variants(settings):
            rows = results[v.label]
            if rows:
                cells = [f"{np.mean([x['sparsity_layers'][n] for x in rows]) * 100:.1f}" for n in layer_names]
                lines.append(f"| {v.label} | " + " | ".join(cells) + " |")
        lines.append("")
    path = out / REPORT
    path.write_text("\n".join(lines) + "\n")
    return path


def _claims(results: dict, settings: FaultStudySettings) -> list[str]:
    """The paper's three claims, each measured: sparse loses more; sparse is sharper; SAQ recovers."""
    lines = ["## The paper's three claims, measured here", ""]
    lines += [
        "**1. Sparse networks lose more accuracy under faults.** Drop = clean − faulted accuracy (pp); "
        "difference sparse − standard (positive: sparse loses more), SGD-trained QAT networks.",
        "",
    ]
    header = "| kind | bits | " + " | ".join(f"{r:g}" for r in settings.rates) + " |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for kind in _faults(settings):
        for b in settings.bits:
            std, sp = results.get(f"standard-w{b}a{b}-sgd") or [], results.get(f"sparse-w{b}a{b}-sgd") or []
            cells = []
            for r in settings.rates:
                a = [_drop(x, kind, r) for x in sp]
                c = [_drop(x, kind, r) for x in std]
                cells.append(f"{(np.mean(a) - np.mean(c)) * 100:+.1f} (p {_p_text(a, c)})" if a and c else "–")
            lines.append(f"| {kind} | w{b}a{b} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "**2. Sparse networks are sharper.** Sharpness = L(Q(w) + ε*) − L(Q(w)) at ρ = "
        f"{settings.sharpness_rho} (SAQ's ball around the quantized weights), SGD-trained QAT networks.",
        "",
        "| bits | standard | sparse | p |",
        "|---|---|---|---|",
    ]
    for b in settings.bits:
        std = [x["sharpness"] for x in results.get(f"standard-w{b}a{b}-sgd") or []]
        sp = [x["sharpness"] for x in results.get(f"sparse-w{b}a{b}-sgd") or []]
        lines.append(f"| w{b}a{b} | {_ci_text(std, 1.0, 4)} | {_ci_text(sp, 1.0, 4)} | {_p_text(sp, std)} |")
    lines += [
        "",
        "**3. SAQ recovers accuracy under faults.** Faulted accuracy SAQ − SGD (pp; positive: SAQ keeps more) "
        "with Welch's p and the paired t-test's p over seeds (SGD and SAQ of a seed start from the same "
        "full-precision run); then, after the slash, the drop SGD − SAQ (pp; positive: SAQ loses less of its own "
        "clean accuracy); in brackets the faulted accuracy of SAM (full precision, quantized afterwards) − SGD.",
        "",
        header.replace("| kind | bits |", "| kind | network |"),
        "|" + "---|" * (header.count("|") - 1),
    ]
    for kind in _faults(settings):
        for activations in ("standard", "sparse"):
            for b in settings.bits:
                sgd = results.get(f"{activations}-w{b}a{b}-sgd") or []
                saq = results.get(f"{activations}-w{b}a{b}-saq") or []
                sam = results.get(f"{activations}-w{b}a{b}-sam-ptq") or []
                cells = []
                for r in settings.rates:
                    a = [_fault_accuracy(x, kind, r) for x in saq]
                    c = [_fault_accuracy(x, kind, r) for x in sgd]
                    s = [_fault_accuracy(x, kind, r) for x in sam]
                    paired = _paired_p(saq, sgd, lambda x, kind=kind, r=r: _fault_accuracy(x, kind, r))
                    text = f"{(np.mean(a) - np.mean(c)) * 100:+.1f} (p {_p_text(a, c)}, {paired})" if a and c else "–"
                    if a and c:
                        drops = np.mean([_drop(x, kind, r) for x in sgd]) - np.mean([_drop(x, kind, r) for x in saq])
                        text += f" / {drops * 100:+.1f}"
                    if s and c:
                        text += f" [{(np.mean(s) - np.mean(c)) * 100:+.1f}]"
                    cells.append(text)
                lines.append(f"| {kind} | {activations} w{b}a{b} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines
