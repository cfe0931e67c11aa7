"""The ``analogsam`` command: a thin client of the Python API (parse, call, print where it wrote).

Each flag group (data, preset, evaluation, output, training) is declared once below and shared by the
commands that take it; every default is read from the API (the training settings and optimizer
hyperparameters from :mod:`analogsam.optim.hyperparameters`, repeats and times from
:mod:`analogsam.evaluation`, the study and analysis defaults from their functions' signatures), so the
command line and the Python API cannot disagree.

Errors a user can cause (:class:`~analogsam.errors.AnalogsamError`) are printed as one line,
``error: <message>``, with exit code 2; ``--debug`` shows their traceback. Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

from analogsam.errors import AnalogsamError, InvalidParameterError

#: ``backend`` of :class:`analogsam.evaluation.settings.PassLayout` (what evaluate and sweep take).
BACKENDS = ("auto", "fast", "aihwkit")


def _default(function, name: str):
    """The default of ``function``'s parameter ``name``: the API's default is the command's."""
    return inspect.signature(function).parameters[name].default


# -- flag groups, each declared once ------------------------------------------------------------------


def add_data_flags(
    p: argparse.ArgumentParser,
    *,
    dataset: bool = False,
    subsets: bool = False,
    validation: bool = False,
    text: bool = False,
) -> None:
    """``--data-root`` (every command that reads data), optionally ``--data``, the subset flags and the
    text dataset's ``--seq-len``."""
    from analogsam.data import ENV_VAR, dataset_names, load_text

    group = p.add_argument_group("data")
    if dataset:
        group.add_argument(
            "--data",
            default="fashion-mnist",
            choices=dataset_names(),
            metavar="NAME",
            help=f"dataset: {', '.join(dataset_names())} (default: %(default)s)",
        )
    group.add_argument(
        "--data-root",
        default=None,
        metavar="DIR",
        help=f"folder holding the dataset files (or a folder containing the dataset's folder); "
        f"when given, the only place searched (default: ${ENV_VAR}, then /usr/share/datasets, "
        "~/.cache/analogsam, ./data); for --data text: the UTF-8 text file itself",
    )
    if subsets:
        group.add_argument(
            "--train-limit",
            type=int,
            default=None,
            metavar="N",
            help="train on a seeded random subset of N training samples (quick studies; default: all)",
        )
        group.add_argument(
            "--test-limit",
            type=int,
            default=None,
            metavar="N",
            help="evaluate on a seeded random subset of N test samples (default: all)",
        )
    if text:
        group.add_argument(
            "--seq-len",
            type=int,
            default=None,
            metavar="N",
            help=f"--data text only: characters per training sequence (default: {_default(load_text, 'seq_len')})",
        )
    if validation:
        group.add_argument(
            "--val-fraction",
            type=float,
            default=0.0,
            metavar="SHARE",
            help="share of the training files held out for validation, 0-0.5 (default: %(default)s)",
        )


def add_device_flag(group) -> None:
    """``--device``: where the command computes (one declaration for every command)."""
    from analogsam.device import DEVICES

    group.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="auto = the CUDA GPU when torch sees one, else the CPU; cuda without a GPU is an "
        "error (default: %(default)s)",
    )


def add_devices_flag(group) -> None:
    """``--devices``: a folder of the user's own presets (one declaration for every command that takes a preset)."""
    from analogsam.hardware.presets import DEVICES_ENV_VAR

    group.add_argument(
        "--devices",
        action="append",
        default=None,
        metavar="DIR",
        help="a folder of your own preset .toml files, each loadable by its file name beside the shipped "
        f"presets (repeatable; also ${DEVICES_ENV_VAR}, folders separated by ':'); a name that is "
        "already taken is an error (default: the shipped presets only)",
    )


def add_preset_flags(p: argparse.ArgumentParser, *, many: bool = False, vary: bool = False) -> None:
    """``--preset`` (or ``--presets``), ``--set``, ``--devices`` and, for sweeps, ``--vary``."""
    group = p.add_argument_group("preset", "the simulated device (see `analogsam presets list`)")
    if many:
        group.add_argument(
            "--presets",
            default="pcm",
            metavar="NAMES",
            help="comma-separated preset names or TOML paths (default: %(default)s)",
        )
    else:
        group.add_argument(
            "--preset",
            default="pcm",
            metavar="NAME",
            help="preset name or path to a TOML preset (default: %(default)s)",
        )
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset value, e.g. --set io.adc_bits=6 (repeatable; every key with its "
        "unit: `analogsam presets show NAME`)",
    )
    if vary:
        group.add_argument(
            "--vary",
            action="append",
            default=[],
            metavar="KEY=V1,V2,...",
            help="sweep a preset value: measure each preset once per value, as a variant named e.g. "
            "pcm[io.adc_bits=4] (any --set key, same units and checks; repeatable: several form a grid); "
            "results get one column per varied key and the report plots the metric against it",
        )
    add_devices_flag(group)


def add_evaluation_flags(
    p: argparse.ArgumentParser,
    *,
    repeats: int,
    one_time: str | None = None,
    workers: bool = True,
    seed_help: str = "base seed of the programmings",
) -> None:
    """``--times`` (or ``--time``), ``--repeats``, ``--backend``, ``--workers``, ``--ray`` and
    ``--repeats-per-pass``, ``--seed``, ``--metric``, ``--device``."""
    from analogsam.evaluation import DEFAULT_TIMES, format_time, sweep
    from analogsam.evaluation.ray_sweep import INSTALL_HINT
    from analogsam.evaluation.settings import PassLayout

    group = p.add_argument_group("evaluation", "Monte-Carlo accuracy on the simulated hardware")
    units = "seconds, or a number with a unit s, min, h, d, w, y (365 d)"
    if one_time is None:
        group.add_argument(
            "--times",
            default=",".join(format_time(t) for t in DEFAULT_TIMES),
            metavar="LIST",
            help=f"comma-separated times after programming; {units} (default: %(default)s)",
        )
    else:
        group.add_argument(
            "--time", default=one_time, metavar="T", help=f"time after programming; {units} (default: %(default)s)"
        )
    group.add_argument(
        "--repeats",
        type=int,
        default=repeats,
        metavar="N",
        help="independent programmings (programming-noise draws) per run and preset (default: %(default)s)",
    )
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        default=PassLayout.__dataclass_fields__["backend"].default,
        help="analog forward: auto = the seeded fast engine where it reproduces the tiles, else "
        "aihwkit's C++ tiles; fast = the fast engine or an error; aihwkit = the tiles "
        "(default: %(default)s)",
    )
    if workers:
        group.add_argument(
            "--workers",
            type=int,
            default=_default(sweep, "workers"),
            metavar="N",
            help="local processes to spread the programmings over; the numbers do not depend "
            "on it (default: %(default)s)",
        )
        group.add_argument(
            "--ray",
            nargs="?",
            const=True,
            default=None,
            metavar="ADDRESS",
            help="run the programmings as Ray tasks: on a local Ray (with --workers CPUs if "
            "given, else all) without ADDRESS, or on the Ray cluster at ADDRESS, e.g. "
            f"HEAD:6379; same numbers; needs {INSTALL_HINT} (default: off)",
        )
        group.add_argument(
            "--repeats-per-pass",
            type=int,
            default=_default(sweep, "repeats_per_pass"),
            metavar="P",
            help="fast engine: measure P programmings, each at every time, in one stacked forward "
            "(the inputs quantized once for all); on the CPU the same numbers bit for bit, on a "
            "GPU up to float summation order (default: one at a time)",
        )
    group.add_argument("--seed", type=int, default=0, metavar="SEED", help=f"{seed_help} (default: %(default)s)")
    _add_metric_flag(group, "what each point measures")
    add_device_flag(group)


def _add_metric_flag(group, what: str) -> None:
    from analogsam.scoring import METRIC_NAMES

    group.add_argument(
        "--metric",
        default="accuracy",
        metavar="NAME",
        help=f"{what}: {', '.join(METRIC_NAMES)} or topK for any K; perplexity and "
        "cross_entropy per token for sequence models, mse and r2 for regression "
        "(default: %(default)s)",
    )


def add_output_flags(
    p: argparse.ArgumentParser, *, required: bool = False, default: str | None = None, what: str
) -> None:
    """``--out`` and ``--quiet``."""
    group = p.add_argument_group("output")
    shown = "" if required or default is None else " (default: %(default)s)"
    group.add_argument("--out", required=required, default=default, metavar="DIR", help=f"{what}{shown}")
    group.add_argument("--quiet", action="store_true", help="no progress bars")


def add_training_flags(p: argparse.ArgumentParser, *, study: bool = False) -> None:
    """``--model``, ``--epochs`` and, for ``train``, every training setting and optimizer flag."""
    from analogsam.models import model_names
    from analogsam.optim import TRAINING_SETTINGS, add_optimizer_arguments
    from analogsam.optim.hyperparameters import add_flag
    from analogsam.studies.default import default_study_runs

    group = p.add_argument_group("training")
    group.add_argument(
        "--model",
        default="lenet5",
        choices=model_names(),
        metavar="NAME",
        help=f"architecture: {', '.join(model_names())} (default: %(default)s)",
    )
    if study:
        epochs = _default(default_study_runs, "epochs")
        add_flag(group, TRAINING_SETTINGS["epochs"], default=epochs, used_by="per optimizer", default_text=str(epochs))
        group.add_argument(
            "--optimizers",
            default=",".join(_default(default_study_runs, "optimizers")),
            metavar="NAMES",
            help="comma-separated optimizers, each with its default hyperparameters (default: %(default)s)",
        )
        return
    for name in ("epochs", "batch_size", "schedule", "seed"):
        add_flag(group, TRAINING_SETTINGS[name], default=TRAINING_SETTINGS[name].default)
    group.add_argument(
        "--seeds",
        default=None,
        metavar="LIST",
        help="comma-separated training seeds, e.g. 0,1,2: one run per seed in OUT/seed-N (a seed "
        "group, which compare and evaluate take as one method), instead of --seed; seeds "
        "already trained with these settings are reused",
    )
    _add_metric_flag(
        group, "what each epoch reports (and, for mse/r2, a mean-squared-error loss instead of cross-entropy)"
    )
    group.add_argument(
        "--hardware-aware",
        default=None,
        metavar="PRESET",
        help="hardware-aware training for this device preset (name or TOML path): each Linear/Conv layer "
        "trains through the preset's training-time tile model (DAC/ADC, weight and output noise, learned "
        "input ranges where the preset uses static ones), with any --optimizer (sam: SAM+HWA); default: "
        "digital training",
    )
    add_optimizer_arguments(p)
    quantized = p.add_argument_group(
        "quantization and activation sparsity", "quantization-aware training (LIQ) and an L1 activation penalty"
    )
    quantized.add_argument(
        "--quantize",
        default=None,
        metavar="wKaK",
        help="train quantization-aware with K-bit weights and activations, e.g. w8a8 or w4a4 (LIQ quantizer with "
        "learnable clips, ziplab/SAQ's; --optimizer saq is sharpness-aware quantization) (default: full precision)",
    )
    quantized.add_argument(
        "--init-from",
        default=None,
        metavar="RUN",
        help="start from the trained weights of this full-precision run folder (QAT/SAQ from a trained model, "
        "as ziplab/SAQ's --pretrained; the clips are initialised from the trained weights); the architecture is "
        "the run's, --model must name it or be left out (default: a random initialisation)",
    )
    quantized.add_argument(
        "--quantize-first-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="quantize the first and last Linear/Conv layers too (--no-quantize-first-last keeps them in full "
        "precision) (default: on)",
    )
    quantized.add_argument(
        "--activation-l1",
        type=float,
        default=0.0,
        metavar="LAMBDA",
        help="activation sparsity: λ of the penalty λ·Σ‖a‖₁ per sample on the ReLU outputs (Kurtz et al. 2020); "
        "LeNet-5 on Fashion-MNIST (20k images, 4 epochs, full precision): 1e-4 gives 81%% zeros against 54%% "
        "at 2 points of accuracy; with --quantize and saq start from a trained run (--init-from), from scratch "
        "the clips collapsed; 0 is off (default: 0)",
    )
    quantized.add_argument(
        "--activation-threshold",
        type=float,
        default=0.0,
        metavar="THETA",
        help="activation sparsity: every ReLU becomes a thresholded ReLU (FATReLU, Kurtz et al. 2020), 0 at or "
        "below THETA; a forward change only, so it composes with every optimizer (trained from scratch, "
        "LeNet-5 lost accuracy without gaining zeros: use it on a trained network); 0 keeps plain ReLUs "
        "(default: 0)",
    )


def add_probe_flags(p: argparse.ArgumentParser) -> None:
    """``analyze``'s probes: the sharpness batches, the test samples, the metric and curve subsets, ``--quick``."""
    from analogsam.optim.hyperparameters import ADAPTIVE_SCOPES
    from analogsam.studies.flatness import analyze_runs

    probes = p.add_argument_group("probes")
    probes.add_argument(
        "--num-batches",
        "--batches",
        dest="num_batches",
        type=int,
        default=_default(analyze_runs, "num_batches"),
        metavar="N",
        help="seeded random training batches the sharpness metrics are measured on (default: %(default)s)",
    )
    probes.add_argument(
        "--batch-size",
        type=int,
        default=_default(analyze_runs, "batch_size"),
        metavar="N",
        help="samples per sharpness batch (default: %(default)s)",
    )
    probes.add_argument(
        "--test-samples",
        type=int,
        default=None,
        metavar="N",
        help="use the first N test samples for curves and drop (default: the whole test split)",
    )
    probes.add_argument(
        "--metrics",
        default=None,
        help="comma-separated subset of worst_case_sharpness, adaptive_sharpness, "
        "average_sharpness, hessian_top_eigenvalue, hessian_trace (default: all)",
    )
    probes.add_argument(
        "--curves",
        default=None,
        help="comma-separated subset of weight_noise_relative, weight_noise_additive, stuck_at, "
        "bit_flip (default: all)",
    )
    probes.add_argument(
        "--asam-scope",
        choices=ADAPTIVE_SCOPES,
        default=None,
        help="tensors adaptive_sharpness scales by |w| + eta for runs not trained with asam/samson "
        "(those use their own --scope): weights (layer weights only) or all (default: weights)",
    )
    probes.add_argument(
        "--quick",
        action="store_true",
        help="fewer ascent steps, power iterations, noise draws and levels (seconds per run, noisier)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``analogsam`` parser: one sub-command per function below, each built from the flag groups above."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error instead of its one-line message",
    )
    parser = argparse.ArgumentParser(
        prog="analogsam",
        parents=[debug],
        description="Train with sharpness-aware optimizers, then measure accuracy over time on simulated "
        "analog in-memory-computing hardware (IBM aihwkit).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (
        _add_run,
        _add_train,
        _add_evaluate,
        _add_compare,
        _add_presets,
        _add_analyze,
        _add_study,
        _add_inspect,
    ):
        add_command(sub, debug)
    return parser


def _add_run(sub, debug: argparse.ArgumentParser) -> None:
    """``analogsam run``: the default study."""
    from analogsam.studies import default as default_study

    run = sub.add_parser(
        "run",
        parents=[debug],
        help="the default study: Fashion-MNIST LeNet-5, SGD vs SAM, PCM, 1 s to 1 year",
        description="Train LeNet-5 on Fashion-MNIST with SGD and with SAM, convert both to the PCM "
        "preset and measure accuracy over time. Reruns reuse finished work.",
    )
    add_data_flags(run, dataset=True, subsets=True)
    add_training_flags(run, study=True)
    add_preset_flags(run)
    add_evaluation_flags(run, repeats=default_study.STUDY_REPEATS, seed_help="seed of training and evaluation")
    add_output_flags(run, default="analogsam-study", what="study folder: one run folder per optimizer and evaluation/")


def _add_train(sub, debug: argparse.ArgumentParser) -> None:
    """``analogsam train``: one run folder (or a seed group)."""
    train = sub.add_parser(
        "train", parents=[debug], help="train a model digitally and write a run folder (checkpoint, log)"
    )
    add_data_flags(train, dataset=True, subsets=True, validation=True, text=True)
    add_training_flags(train)
    add_device_flag(
        train.add_argument_group(
            "device",
            "where to train. Under torchrun every process trains one replica (DDP; on CUDA cuda:LOCAL_RANK) "
            "and --batch-size stays the global batch of one step: each of N processes takes batch-size/N",
        )
    )
    add_output_flags(train, required=True, what="run folder to write (checkpoint.pt, log.csv, config.json)")


def _add_evaluate(sub, debug: argparse.ArgumentParser) -> None:
    """``analogsam evaluate``: one run (or seed group) on one preset."""
    from analogsam.evaluation import DEFAULT_REPEATS

    ev = sub.add_parser("evaluate", parents=[debug], help="accuracy over time of one trained run on one device preset")
    ev.add_argument("run_dir", help="a run folder written by `analogsam train`, or a seed group (`train --seeds`)")
    add_preset_flags(ev, vary=True)
    add_evaluation_flags(ev, repeats=DEFAULT_REPEATS)
    add_data_flags(ev)
    add_output_flags(ev, what="output folder (default: RUN_DIR/eval-PRESET)")


def _add_compare(sub, debug: argparse.ArgumentParser) -> None:
    """``analogsam compare``: several runs on several presets, with a report."""
    from analogsam.evaluation import DEFAULT_REPEATS

    cmp = sub.add_parser(
        "compare", parents=[debug], help="evaluate several runs on several presets; tables, plots, markdown report"
    )
    cmp.add_argument(
        "run_dirs",
        nargs="+",
        help="run folders written by `analogsam train`, or seed groups "
        "(`train --seeds`: one method, statistics over its seeds)",
    )
    add_preset_flags(cmp, many=True, vary=True)
    add_evaluation_flags(cmp, repeats=DEFAULT_REPEATS)
    add_data_flags(cmp)
    add_output_flags(cmp, required=True, what="output folder; rerunning the same command resumes it")


def _add_presets(sub, debug: argparse.ArgumentParser) -> None:
    """``analogsam presets``: list, show or diff device presets."""
    pre = sub.add_parser(
        "presets",
        parents=[debug],
        help="list device presets, show one with every value, unit and source, or diff two",
        description="list: every preset loadable by name and its source (shipped, or your --devices "
        "folder); show NAME: every value with its unit and where it came from; diff A B: every value "
        "that differs, with its unit and where each came from.",
    )
    pre.add_argument("action", nargs="?", choices=("list", "show", "diff"), default="list")
    pre.add_argument("name", nargs="*", help="preset name or TOML path (show: one; diff: two)")
    pre.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a value, e.g. io.adc_bits=6"
    )
    add_devices_flag(pre)


def _add_analyze(sub, debug: argparse.ArgumentParser) -> None:
    """``analogsam analyze``: sharpness, noise/fault curves and analog drop of runs."""
    from analogsam.studies.flatness import analyze_runs

    ana = sub.add_parser(
        "analyze",
        parents=[debug],
        help="sharpness metrics, noise/fault curves and analog accuracy drop of runs; their rank correlation",
        description="Per run: every sharpness metric (on training batches), accuracy under "
        "relative/additive weight noise, stuck-at faults and bit flips (test set), and "
        "the accuracy drop (digital - analog) at one preset and time. Across runs: a "
        "table, Spearman rank correlation of each metric with the drop, scatters and "
        "report.md. Rerunning the same command skips runs already analysed.",
    )
    ana.add_argument("run_dirs", nargs="+", help="run folders written by `analogsam train`")
    add_preset_flags(ana)
    add_evaluation_flags(
        ana,
        repeats=_default(analyze_runs, "repeats"),
        one_time=_default(analyze_runs, "t"),
        workers=False,
        seed_help="seed of the batches, noise and fault draws and programmings",
    )
    add_probe_flags(ana)
    add_data_flags(ana)
    add_output_flags(ana, required=True, what="output folder (per-run subfolders, table.csv, report.md)")


def _add_study(sub, debug: argparse.ArgumentParser) -> None:
    """``analogsam study``: the packaged studies (robustness, faults)."""
    study = sub.add_parser("study", parents=[debug], help="the packaged studies: `study robustness`")
    studies = study.add_subparsers(dest="study", required=True, metavar="STUDY")
    rob = studies.add_parser(
        "robustness",
        parents=[debug],
        help="8 training methods x 3 seeds on LeNet-5 / Fashion-MNIST, PCM and RRAM over time; report.md",
        description="Train SGD, SAM, ASAM (scope weights and all), SAMSON, adversarial, SAF and noise injection "
        "(package defaults) on LeNet-5 / Fashion-MNIST with 3 training seeds, measure every network "
        "over 10 programmings on PCM (1s-1y) and RRAM (1s, 1d, 2d), and write report.md: accuracy and "
        "drop tables over seeds, p-values against SGD, plots, wall times. States the measured "
        "runtime first; rerunning the same command resumes (finished runs and cells are reused).",
    )
    rob.add_argument(
        "--quick",
        action="store_true",
        help="the same pipeline, every method, on a tiny problem (128/200 samples, 4 epochs, 2 seeds, "
        "2 programmings, 2 times per preset): a minute or so",
    )
    add_data_flags(rob)
    add_output_flags(rob, required=True, what="study folder (train/, eval/, report.md); rerunning resumes it")
    flt = studies.add_parser(
        "faults",
        parents=[debug],
        help="memory faults in standard vs activation-sparse quantized LeNet-5, SGD vs SAQ (arXiv 2406.10528)",
        description="Train LeNet-5 on 20k Fashion-MNIST images in two stages (a full-precision start per seed, "
        "standard and activation-sparse (L1), then from it: quantization-aware at w8a8 and w4a4 with SGD and "
        "SAQ, and SAM in full precision quantized afterwards), 3 training seeds; inject bit flips and stuck-at "
        "faults into the weight codes (and, with --fault-locations, the activation codes) at rates 1e-4 to 1e-1; write "
        "report.md (accuracy vs rate, sparsity, sharpness, the paper's three claims). States the measured "
        "runtime first; rerunning the same command resumes.",
    )
    flt.add_argument(
        "--quick",
        action="store_true",
        help="the same pipeline on a tiny problem (256/200 images, 1 epoch, 2 seeds, 2 rates, 2 draws): a minute or so",
    )
    flt.add_argument(
        "--fault-locations",
        default="weight",
        metavar="LIST",
        help="which memory the faults are in: weight (the weight codes, as the paper), activation (the quantized "
        "layers' a-bit input codes, fixed faulty cells per position) or weight,activation (default: %(default)s)",
    )
    add_data_flags(flt)
    add_output_flags(flt, required=True, what="study folder (train/, measure/, report.md); rerunning resumes it")


def _add_inspect(sub, debug: argparse.ArgumentParser) -> None:
    """``analogsam inspect``: the layer report of a converted model."""
    from analogsam.data import dataset_names
    from analogsam.models import model_names

    ins = sub.add_parser(
        "inspect",
        parents=[debug],
        help="the layer report: every layer analog or digital and why, its tiles, parameters and engine",
        description="Convert a trained run's model, a model of the zoo, or a network a Python function "
        "builds, for a preset and print every layer: analog tiles or digital and why (digital by "
        "use: parameters used element-wise only), its tiles (count x rows x cols), its parameters "
        "and which engine runs it (fast or aihwkit).",
    )
    ins.add_argument(
        "model_or_run",
        metavar="MODEL_OR_RUN",
        help="a run folder written by `analogsam train`, a model name ("
        + ", ".join(model_names())
        + "), or MODULE:FUNCTION, a function (imported from the current folder or the installed "
        "packages; this runs its code) that returns a torch.nn.Module or (module, sample inputs), "
        "e.g. a torchvision/timm/transformers constructor with a small config",
    )
    add_preset_flags(ins)
    sizes = ins.add_argument_group(
        "model size",
        "for a model name only (a run folder knows its sizes): the "
        "sizes of --data, or the numbers given (default 1 x 28 x 28 "
        "inputs, 10 classes)",
    )
    sizes.add_argument(
        "--data",
        default=None,
        choices=dataset_names(),
        metavar="NAME",
        help=f"size the model for this dataset (loaded from disk): {', '.join(dataset_names())}",
    )
    sizes.add_argument("--in-channels", type=int, default=None, metavar="C", help="channels of the input images")
    sizes.add_argument("--input-size", type=int, default=None, metavar="S", help="height and width of the input images")
    sizes.add_argument("--num-classes", type=int, default=None, metavar="K", help="classes the model outputs")
    add_device_flag(ins.add_argument_group("engine", "which engine would run the analog layers"))
    add_data_flags(ins)


# -- commands --------------------------------------------------------------------------------------


def _overrides(items):
    from analogsam.hardware.presets import parse_set_options

    return parse_set_options(items) if items else None


def _load_presets(args, names) -> list:
    """The presets ``names`` (names or TOML paths) loaded with the user's ``--devices`` folders, so
    the API below gets Presets and never looks a name up again."""
    from analogsam.hardware.presets import load

    return [load(name, devices=args.devices) for name in names]


def _output_folder(path) -> Path:
    from analogsam.storage import ensure_folder

    return ensure_folder(path)


def _finish(rows, out: Path, title: str, left_out=()) -> None:
    from analogsam.evaluation.report import summary_of, summary_tables, write_report

    written = write_report(rows, out, title=title, left_out=left_out)
    print()
    print(summary_tables(summary_of(rows)))
    print()
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")


def _test_batches(run, data_root):
    from analogsam.runs import run_test_data

    return run_test_data(run, root=data_root).batches(2000)


def _sweep(args, runs, presets, out: Path):
    """The sweep's rows and the (preset, time) cells it leaves out, said once on stderr beforehand."""
    import warnings

    from analogsam.evaluation import sweep
    from analogsam.evaluation.coverage import LeftOutCellsWarning, describe_left_out, left_out_cells

    left_out = left_out_cells(presets, args.times, _overrides(args.set))
    if left_out:
        print(f"note: {describe_left_out(left_out)}", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeftOutCellsWarning)  # said above, without the warning's clutter
        rows = sweep(
            runs,
            presets,
            times=args.times,
            repeats=args.repeats,
            seed=args.seed,
            out=out,
            overrides=_overrides(args.set),
            backend=args.backend,
            progress=not args.quiet,
            workers=args.workers,
            ray=args.ray,
            metric=args.metric,
            device=args.device,
            repeats_per_pass=args.repeats_per_pass,
            batches_for=lambda r: _test_batches(r, args.data_root),
            vary=_vary(args),
        )
    return rows, left_out


def _vary(args) -> dict | None:
    from analogsam.hardware.presets import parse_vary_options

    return parse_vary_options(args.vary) if getattr(args, "vary", None) else None


def _check_device(args) -> None:
    """Refuse a --device (and --backend) this machine cannot run before any work starts."""
    from analogsam.evaluation.backends import check_backend_device

    check_backend_device(args.backend, args.device)


def cmd_run(args) -> None:
    from analogsam.studies.default import default_study_runs

    _check_device(args)  # before training, not after it
    presets = _load_presets(args, [args.preset])  # so is a preset that cannot be loaded
    start = time.perf_counter()
    out = _output_folder(args.out)
    runs = default_study_runs(
        out,
        optimizers=args.optimizers.split(","),
        data=args.data,
        model=args.model,
        epochs=args.epochs,
        seed=args.seed,
        data_root=args.data_root,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        progress=not args.quiet,
        device=args.device,
    )
    rows, left_out = _sweep(args, runs, presets, out / "evaluation")
    _finish(
        rows, out / "evaluation", left_out=left_out, title=f"Default study: {args.model} on {args.data}, {args.preset}"
    )
    print(f"finished in {time.perf_counter() - start:.0f} s; results in {out}")


def cmd_train(args) -> None:
    from analogsam.distributed import is_main_process
    from analogsam.optim import method_kwargs_from_args
    from analogsam.scoring import resolve_metric
    from analogsam.training import train

    data_options = {
        "root": args.data_root,
        "train_limit": args.train_limit,
        "test_limit": args.test_limit,
        "val_fraction": args.val_fraction,
        "seq_len": args.seq_len,
    }
    kwargs = dict(
        optimizer=args.optimizer,
        epochs=args.epochs,
        batch_size=args.batch_size,
        schedule=args.schedule,
        out=args.out,
        progress=not args.quiet,
        data_options=data_options,
        metric=args.metric,
        device=args.device,
        quantize=args.quantize,
        quantize_first_last=args.quantize_first_last,
        activation_l1=args.activation_l1,
        activation_threshold=args.activation_threshold,
        **method_kwargs_from_args(args),
    )
    model = args.model
    if args.init_from is not None:
        kwargs["init_from"] = args.init_from
        model = None if args.model == "lenet5" else args.model  # (--model's default: the run's architecture)
    if args.hardware_aware is not None:
        kwargs["hardware_aware"] = args.hardware_aware
    metric = resolve_metric(args.metric)

    def said(run) -> str:
        last = run.metrics[-1]
        value = last[f"test_{metric.name}"]
        shown = f"{value:.2%}" if metric.percent else metric.format(value)
        return (
            f"test {metric.name} {shown} after {last['epoch']} epochs ({sum(m['seconds'] for m in run.metrics):.0f} s)"
        )

    if args.seeds is None:
        run = train(model, args.data, seed=args.seed, **kwargs)
        if not is_main_process():
            return  # under torchrun rank 0 alone reports
        print(said(run))
        print(f"wrote run folder: {run.path} (checkpoint.pt, log.csv, config.json)")
        return
    from analogsam.training import train_seeds

    runs = train_seeds(model, args.data, seeds=args.seeds, **kwargs)
    if not is_main_process():
        return
    for run in runs:
        print(f"seed {run.train_seed}: {said(run)}")
    print(f"wrote seed group: {args.out} (one run folder per seed: seed-N/checkpoint.pt, log.csv, config.json)")


def _sweep_and_report(args, run_dirs, presets, out, title: str) -> None:
    from analogsam.evaluation.runs import load_runs

    _check_device(args)
    _vary(args)  # a bad --vary is refused before anything is loaded
    presets = _load_presets(args, presets)
    runs = load_runs(run_dirs)  # a missing or damaged run is refused before a folder is made
    out = _output_folder(out)
    rows, left_out = _sweep(args, runs, presets, out)
    _finish(rows, out, title=title, left_out=left_out)


def cmd_evaluate(args) -> None:
    preset_label = Path(args.preset).stem
    out = args.out or Path(args.run_dir) / f"eval-{preset_label}"
    _sweep_and_report(args, [args.run_dir], [args.preset], out, f"{Path(args.run_dir).name} on {preset_label}")


def cmd_compare(args) -> None:
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    _sweep_and_report(
        args, args.run_dirs, presets, args.out, "Comparison: " + ", ".join(Path(r).name for r in args.run_dirs)
    )


def cmd_presets(args) -> None:
    from analogsam.hardware import presets as devices

    if args.action == "list":
        entries = devices.list_presets(args.devices)
        width = max(len(e["name"]) for e in entries)
        dev_width = max(len(e["device"]) for e in entries)
        src_width = max(len(e["source"]) for e in entries)
        for e in entries:
            print(
                f"{e['name'].ljust(width)}  {e['device'].ljust(dev_width)}  {e['source'].ljust(src_width)}  {e['description']}"
            )
        return
    wanted = {"show": 1, "diff": 2}[args.action]
    if len(args.name) != wanted:
        example = "show pcm" if args.action == "show" else "diff pcm pcm-hermes"
        raise InvalidParameterError(
            f"presets {args.action} needs {wanted} preset name{'s' if wanted > 1 else ''} or TOML path"
            f"{'s' if wanted > 1 else ''}, got {len(args.name)}, e.g. `analogsam presets {example}`"
        )
    if args.action == "diff":
        a, b = (devices.load(n, devices=args.devices, overrides=_overrides(args.set)) for n in args.name)
        print(devices.format_diff(a, b), end="")
        return
    print(devices.describe(devices.load(args.name[0], devices=args.devices, overrides=_overrides(args.set))))


def _names(flag: str, text: str | None, allowed) -> list[str]:
    """A comma-separated subset of ``allowed`` (all of it when the flag is not given)."""
    if text is None:
        return list(allowed)
    from analogsam.validation import check_choice

    return [check_choice(flag, n.strip(), tuple(allowed)) for n in text.split(",") if n.strip()]


def cmd_analyze(args) -> None:
    from analogsam.studies.flatness import CURVES, METRICS, analyze_runs

    start = time.perf_counter()
    metrics, curves = _names("--metrics", args.metrics, METRICS), _names("--curves", args.curves, CURVES)
    _check_device(args)
    out = _output_folder(args.out)
    result = analyze_runs(
        args.run_dirs,
        out,
        preset=_load_presets(args, [args.preset])[0],
        t=args.time,
        repeats=args.repeats,
        seed=args.seed,
        num_batches=args.num_batches,
        batch_size=args.batch_size,
        test_samples=args.test_samples,
        overrides=_overrides(args.set),
        backend=args.backend,
        data_root=args.data_root,
        metrics=metrics,
        curves=curves,
        quick=args.quick,
        progress=not args.quiet,
        device=args.device,
        # accuracy is the default: naming it would change the settings of earlier analyses
        **({} if args.metric == "accuracy" else {"metric": args.metric}),
        **({} if args.asam_scope is None else {"asam_scope": args.asam_scope}),
    )
    print()
    for c in result["correlations"]:
        if c["drop"] == "accuracy_drop":
            print(
                f"{c['metric']:<24} Spearman rho vs accuracy drop {c['spearman_rho']:+.2f} (n={c['n']}, "
                f"exact p={c['p_exact']:.3g})"
            )
    if result["skipped"]:
        print(f"reused earlier analyses of: {', '.join(result['skipped'])}")
    paths = result["paths"]
    print(f"wrote per-run results: {', '.join(str(paths['run_' + r['run']].parent) for r in result['records'])}")
    for kind in ("table", "correlation", "report"):
        print(f"wrote {kind}: {paths[kind]}")
    print(f"wrote plots: {args.out}/*.png")
    print(f"finished in {time.perf_counter() - start:.0f} s")


def _inspected_model(args):
    """The network `inspect` reports: a run folder's model, or a zoo model built for the sizes asked."""
    from analogsam.models import build_model, make_spec, model_names
    from analogsam.runs import load_run
    from analogsam.validation import check_int

    size_flags = {
        "--data": args.data,
        "--in-channels": args.in_channels,
        "--input-size": args.input_size,
        "--num-classes": args.num_classes,
    }
    given = [flag for flag, value in size_flags.items() if value is not None]
    if ":" in args.model_or_run and not Path(args.model_or_run).exists():
        if given:
            raise InvalidParameterError(
                f"{', '.join(given)} size a model name, not the function {args.model_or_run} (it builds "
                "the network it wants): leave them out"
            )
        return _built_by_function(args.model_or_run)
    if Path(args.model_or_run).exists():
        if given:
            raise InvalidParameterError(
                f"{', '.join(given)} size a model name, not the run folder "
                f"{args.model_or_run} (its checkpoint knows its sizes): leave them out"
            )
        return load_run(args.model_or_run).model
    if args.model_or_run not in model_names():
        import difflib

        close = difflib.get_close_matches(args.model_or_run, model_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidParameterError(
            f"{args.model_or_run!r} is neither a run folder nor a model name{hint}: pass a "
            f"folder written by `analogsam train` or one of {', '.join(model_names())}"
        )
    sizes = {"in_channels": 1, "input_size": 28, "num_classes": 10}
    if args.data:
        from analogsam.data import load_dataset

        data = load_dataset(args.data, root=args.data_root)
        sizes = {"in_channels": data.in_channels, "input_size": data.input_size, "num_classes": data.num_classes}
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = check_int("--" + key.replace("_", "-"), getattr(args, key), low=1)
    return build_model(make_spec(args.model_or_run, **sizes))


def _built_by_function(spec: str):
    """``(module, sample inputs or None)`` from ``MODULE:FUNCTION``, the function called without arguments."""
    import importlib
    import os

    from torch import nn

    module_name, _, name = spec.partition(":")
    if os.getcwd() not in sys.path:  # (as `python -m` does: a module of the current folder is found)
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InvalidParameterError(
            f"{spec!r}: cannot import {module_name!r} ({err}); pass MODULE:FUNCTION with an importable module"
        ) from err
    function = getattr(module, name, None)
    if not callable(function):
        raise InvalidParameterError(f"{spec!r}: {module_name} has no function {name!r}")
    try:
        needed = [
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):  # (no signature to read: call it and see)
        needed = []
    if needed:
        raise InvalidParameterError(
            f"{spec!r}: {name}() needs {', '.join(needed)}; pass a function that builds the network without arguments"
        )
    built = function()
    network, inputs = built if isinstance(built, tuple) and len(built) == 2 else (built, None)
    if not isinstance(network, nn.Module):
        raise InvalidParameterError(
            f"{spec!r} returned {type(network).__name__}: it must return a torch.nn.Module or (module, sample inputs)"
        )
    return network, inputs


def cmd_inspect(args) -> None:
    from analogsam.device import resolve_device
    from analogsam.hardware import format_layer_report, layer_report

    resolve_device(args.device)  # refused before the model is built
    network = _inspected_model(args)
    network, inputs = network if isinstance(network, tuple) else (network, None)
    print(
        format_layer_report(
            layer_report(
                network,
                _load_presets(args, [args.preset])[0],
                overrides=_overrides(args.set),
                device=args.device,
                example_inputs=inputs,
            )
        )
    )


def cmd_study(args) -> None:
    from analogsam.studies.robustness import robustness_study

    command = "analogsam " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["study"] else None
    if args.study == "faults":
        from dataclasses import replace

        from analogsam.studies.faults import FULL, QUICK, fault_study

        locations = tuple(x.strip() for x in args.fault_locations.split(",") if x.strip())
        settings = replace(QUICK if args.quick else FULL, locations=locations)
        fault_study(args.out, settings=settings, data_root=args.data_root, progress=not args.quiet, command=command)
        return
    robustness_study(
        args.out,
        quick=args.quick,
        data_root=args.data_root,
        progress=not args.quiet,
        command=command
        or f"analogsam study robustness --out {args.out}"
        + (" --quick" if args.quick else "")
        + (f" --data-root {args.data_root}" if args.data_root else ""),
    )


COMMANDS = {
    "run": cmd_run,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "compare": cmd_compare,
    "presets": cmd_presets,
    "analyze": cmd_analyze,
    "inspect": cmd_inspect,
    "study": cmd_study,
}


def _one_line(err: BaseException) -> str:
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "ray", None) is not None:
            from analogsam.evaluation.ray_sweep import import_ray

            import_ray()  # before `run` trains for minutes, or a command makes its output folder
        COMMANDS[args.command](args)
    except AnalogsamError as err:
        if getattr(args, "debug", False):  # --debug before or after the command
            raise
        # Our errors say what went wrong and what to do; a traceback would bury that.
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
