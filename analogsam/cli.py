"""The ``analogsam`` command: a thin client of the Python API (parse, call, print where it wrote)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_TIMES_TEXT = "1s,1h,1d,30d,1y"


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="fashion-mnist",
                   help="dataset name: fashion-mnist, mnist, cifar10, svhn, digits (default: %(default)s)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder holding the dataset files; searched before $ANALOGSAM_DATA and the standard places")
    p.add_argument("--train-limit", type=int, default=None, metavar="N",
                   help="train on a seeded random subset of N training samples (quick studies)")
    p.add_argument("--test-limit", type=int, default=None, metavar="N",
                   help="evaluate on a seeded random subset of N test samples")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="share of the training files held out for validation, 0-0.5 (default: %(default)s)")


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    from analogsam.optim import add_optimizer_arguments

    p.add_argument("--model", default="lenet5", help="mlp, lenet5, resnet20, resnet32, vgg8 (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=128, help="samples per training step (default: %(default)s)")
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                   help="learning-rate schedule over all steps (default: %(default)s)")
    add_optimizer_arguments(p)


def _add_evaluation_arguments(p: argparse.ArgumentParser, *, many_presets: bool) -> None:
    if many_presets:
        p.add_argument("--presets", default="pcm",
                       help="comma-separated preset names or TOML paths (default: %(default)s; see `analogsam presets list`)")
    else:
        p.add_argument("--preset", default="pcm",
                       help="preset name or path to a TOML preset (default: %(default)s; see `analogsam presets list`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset value, e.g. --set io.adc_bits=6 (repeatable; see `analogsam presets show NAME`)")
    p.add_argument("--times", default=DEFAULT_TIMES_TEXT,
                   help="times after programming: seconds or with units s,min,h,d,w,y (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=10,
                   help="independent programmings (programming-noise draws) per preset (default: %(default)s)")
    p.add_argument("--backend", choices=("auto", "fast", "aihwkit"), default="auto",
                   help="analog forward: auto = seeded fast path where it reproduces the tiles, else aihwkit's C++ tiles")
    p.add_argument("--workers", type=int, default=1,
                   help="local processes to spread the programmings over (default: %(default)s)")
    p.add_argument("--data-root", default=None, metavar="DIR", help="folder holding the dataset files")
    p.add_argument("--seed", type=int, default=0, help="base seed of the repeats (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analogsam",
        description="Train with sharpness-aware optimizers, then measure accuracy over time on simulated "
                    "analog in-memory-computing hardware (IBM aihwkit).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="the default study: Fashion-MNIST LeNet-5, SGD vs SAM, PCM, 1 s to 1 year",
                         description="Train LeNet-5 on Fashion-MNIST with SGD and with SAM, convert both to the PCM "
                                     "preset and measure accuracy over time. Reruns reuse finished work.")
    run.add_argument("--out", default="analogsam-study", help="output folder (default: %(default)s)")
    run.add_argument("--epochs", type=int, default=3, help="training epochs per optimizer (default: %(default)s)")
    run.add_argument("--repeats", type=int, default=5, help="programmings per model (default: %(default)s)")
    run.add_argument("--optimizers", default="sgd,sam", help="comma-separated optimizers (default: %(default)s)")
    run.add_argument("--preset", default="pcm", help="device preset (default: %(default)s)")
    run.add_argument("--times", default=DEFAULT_TIMES_TEXT, help="time points (default: %(default)s)")
    run.add_argument("--data", default="fashion-mnist", help="dataset (default: %(default)s)")
    run.add_argument("--data-root", default=None, metavar="DIR", help="folder holding the dataset files")
    run.add_argument("--train-limit", type=int, default=None, metavar="N", help="train on N samples only")
    run.add_argument("--test-limit", type=int, default=None, metavar="N", help="evaluate on N test samples only")
    run.add_argument("--model", default="lenet5", help="architecture (default: %(default)s)")
    run.add_argument("--seed", type=int, default=0, help="seed of training and evaluation (default: %(default)s)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    train = sub.add_parser("train", help="train a model digitally and write a run folder (checkpoint, log)")
    _add_data_arguments(train)
    _add_training_arguments(train)
    train.add_argument("--seed", type=int, default=0, help="seed of initialisation and batch order (default: %(default)s)")
    train.add_argument("--out", required=True, help="run folder to write (checkpoint.pt, log.csv, config.json)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    ev = sub.add_parser("evaluate", help="accuracy over time of one trained run on one device preset")
    ev.add_argument("run_dir", help="a run folder written by `analogsam train`")
    _add_evaluation_arguments(ev, many_presets=False)
    ev.add_argument("--out", default=None, help="output folder (default: RUN_DIR/eval-PRESET)")

    cmp = sub.add_parser("compare", help="evaluate several runs on several presets; tables, plots, markdown report")
    cmp.add_argument("run_dirs", nargs="+", help="run folders written by `analogsam train`")
    _add_evaluation_arguments(cmp, many_presets=True)
    cmp.add_argument("--out", required=True, help="output folder; rerunning the same command resumes it")

    pre = sub.add_parser("presets", help="list device presets or show one with every value, unit and source")
    pre.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    pre.add_argument("name", nargs="?", help="preset name or TOML path (for show)")
    pre.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a value, e.g. io.adc_bits=6")
    ana = sub.add_parser("analyze", help="sharpness metrics, noise/fault curves and analog accuracy drop of runs; "
                                         "their rank correlation",
                         description="Per run: every sharpness metric (on training batches), accuracy under "
                                     "relative/additive weight noise, stuck-at faults and bit flips (test set), and "
                                     "the accuracy drop (digital - analog) at one preset and time. Across runs: a "
                                     "table, Spearman rank correlation of each metric with the drop, scatters and "
                                     "report.md. Rerunning the same command skips runs already analysed.")
    ana.add_argument("run_dirs", nargs="+", help="run folders written by `analogsam train`")
    ana.add_argument("--out", required=True, help="output folder (per-run subfolders, table.csv, report.md)")
    ana.add_argument("--preset", default="pcm",
                     help="preset name or TOML path for the accuracy drop (default: %(default)s)")
    ana.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a preset value, e.g. --set io.adc_bits=6 (repeatable)")
    ana.add_argument("--time", default="1d",
                     help="time after programming of the accuracy drop: seconds or with a unit s,min,h,d,w,y "
                          "(default: %(default)s)")
    ana.add_argument("--repeats", type=int, default=5,
                     help="programmings (programming-noise draws) averaged for the drop (default: %(default)s)")
    ana.add_argument("--num-batches", "--batches", dest="num_batches", type=int, default=4, metavar="N",
                     help="seeded random training batches the sharpness metrics are measured on (default: %(default)s)")
    ana.add_argument("--batch-size", type=int, default=256,
                     help="samples per sharpness batch (default: %(default)s)")
    ana.add_argument("--test-samples", type=int, default=None, metavar="N",
                     help="use the first N test samples for curves and drop (default: the whole test split)")
    ana.add_argument("--metrics", default=None,
                     help="comma-separated subset of worst_case_sharpness, adaptive_sharpness, average_sharpness, "
                          "hessian_top_eigenvalue, hessian_trace (default: all)")
    ana.add_argument("--curves", default=None,
                     help="comma-separated subset of weight_noise_relative, weight_noise_additive, stuck_at, "
                          "bit_flip (default: all)")
    ana.add_argument("--quick", action="store_true",
                     help="fewer ascent steps, power iterations, noise draws and levels (seconds per run, noisier)")
    ana.add_argument("--backend", choices=("auto", "fast", "aihwkit"), default="auto",
                     help="analog forward: auto = seeded fast path where it reproduces the tiles, else aihwkit's C++ tiles")
    ana.add_argument("--data-root", default=None, metavar="DIR", help="folder holding the dataset files")
    ana.add_argument("--seed", type=int, default=0,
                     help="seed of the batches, noise and fault draws and programmings (default: %(default)s)")
    ana.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _overrides(items):
    from analogsam.hardware.presets import parse_set_options

    return parse_set_options(items) if items else None


def _finish(rows, out: Path, title: str) -> None:
    from analogsam.evaluation.report import summary_tables, write_report
    from analogsam.evaluation.store import summarize

    written = write_report(rows, out, title=title)
    print()
    print(summary_tables(summarize(rows)))
    print()
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")


def cmd_run(args) -> None:
    from analogsam.evaluation import sweep
    from analogsam.studies.default import default_study_runs

    start = time.perf_counter()
    out = Path(args.out)
    runs = default_study_runs(out, optimizers=args.optimizers.split(","), data=args.data, model=args.model,
                              epochs=args.epochs, seed=args.seed, data_root=args.data_root,
                              train_limit=args.train_limit, test_limit=args.test_limit, progress=not args.quiet)
    rows = sweep(runs, [args.preset], times=args.times, repeats=args.repeats, seed=args.seed,
                 out=out / "evaluation", progress=not args.quiet,
                 batches_for=lambda r: _test_batches(r, args.data_root))
    _finish(rows, out / "evaluation", title=f"Default study: {args.model} on {args.data}, {args.preset}")
    print(f"finished in {time.perf_counter() - start:.0f} s; results in {out}")


def _test_batches(run, data_root):
    from analogsam.training import run_test_data

    return run_test_data(run, root=data_root).batches(2000)


def cmd_train(args) -> None:
    from analogsam.optim import method_kwargs_from_args
    from analogsam.training import train

    data_options = {"root": args.data_root, "train_limit": args.train_limit, "test_limit": args.test_limit,
                    "val_fraction": args.val_fraction}
    kwargs = method_kwargs_from_args(args)
    run = train(args.model, args.data, optimizer=args.optimizer, epochs=args.epochs, batch_size=args.batch_size, schedule=args.schedule,
                seed=args.seed, out=args.out, progress=not args.quiet, data_options=data_options, **kwargs)
    last = run.metrics[-1]
    print(f"test accuracy {last['test_accuracy']:.2%} after {last['epoch']} epochs "
          f"({sum(m['seconds'] for m in run.metrics):.0f} s)")
    print(f"wrote run folder: {run.path} (checkpoint.pt, log.csv, config.json)")


def _sweep_and_report(args, run_dirs, presets, out: Path, title: str) -> None:
    from analogsam.evaluation import sweep

    rows = sweep(run_dirs, presets, times=args.times, repeats=args.repeats, seed=args.seed, out=out,
                 overrides=_overrides(args.set), backend=args.backend, progress=not args.quiet,
                 workers=args.workers, batches_for=lambda r: _test_batches(r, args.data_root))
    _finish(rows, out, title=title)


def cmd_evaluate(args) -> None:
    preset_label = Path(args.preset).stem
    out = Path(args.out) if args.out else Path(args.run_dir) / f"eval-{preset_label}"
    _sweep_and_report(args, [args.run_dir], [args.preset], out, f"{Path(args.run_dir).name} on {preset_label}")


def cmd_compare(args) -> None:
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    _sweep_and_report(args, args.run_dirs, presets, Path(args.out),
                      "Comparison: " + ", ".join(Path(r).name for r in args.run_dirs))


def cmd_presets(args) -> None:
    from analogsam.hardware import presets as devices

    if args.action == "list":
        entries = devices.list_presets()
        width = max(len(e["name"]) for e in entries)
        dev_width = max(len(e["device"]) for e in entries)
        for e in entries:
            print(f"{e['name'].ljust(width)}  {e['device'].ljust(dev_width)}  {e['description']}")
        return
    if not args.name:
        raise SystemExit("analogsam presets show: name a preset, e.g. `analogsam presets show pcm`")
    print(devices.describe(devices.load(args.name, overrides=_overrides(args.set))))


def cmd_analyze(args) -> None:
    from analogsam.studies.flatness import CURVES, METRICS, analyze_runs

    def names(text, default):
        return default if text is None else [n.strip() for n in text.split(",") if n.strip()]

    start = time.perf_counter()
    result = analyze_runs(args.run_dirs, args.out, preset=args.preset, t=args.time, repeats=args.repeats,
                          seed=args.seed, num_batches=args.num_batches, batch_size=args.batch_size,
                          test_samples=args.test_samples, overrides=_overrides(args.set), backend=args.backend,
                          data_root=args.data_root, metrics=names(args.metrics, METRICS),
                          curves=names(args.curves, CURVES), quick=args.quick, progress=not args.quiet)
    print()
    for c in result["correlations"]:
        if c["drop"] == "accuracy_drop":
            print(f"{c['metric']:<24} Spearman rho vs accuracy drop {c['spearman_rho']:+.2f} (n={c['n']}, "
                  f"exact p={c['p_exact']:.3g})")
    if result["skipped"]:
        print(f"reused earlier analyses of: {', '.join(result['skipped'])}")
    paths = result["paths"]
    print(f"wrote per-run results: {', '.join(str(paths['run_' + r['run']].parent) for r in result['records'])}")
    for kind in ("table", "correlation", "report"):
        print(f"wrote {kind}: {paths[kind]}")
    print(f"wrote plots: {args.out}/*.png")
    print(f"finished in {time.perf_counter() - start:.0f} s")


COMMANDS = {"run": cmd_run, "train": cmd_train, "evaluate": cmd_evaluate, "compare": cmd_compare,
            "presets": cmd_presets, "analyze": cmd_analyze}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        # Our errors already say what went wrong and what to do; a traceback would bury that.
        print(f"analogsam {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
