"""End-to-end conformance of hardware-aware training: aihwkit's HWA against analogsam's (issue 21).

    python benchmarks/hwa_conformance.py --out reports/hwa-conformance          # digits MLP, 3 seeds
    python benchmarks/hwa_conformance.py --data fashion-mnist --model lenet5 --train-limit 6000 --epochs 4

The same network (same initial weights per seed), the same batches in the same order, the same
cosine learning-rate schedule, trained two ways for each training seed:

- ``aihwkit-fixed``: aihwkit's own hardware-aware training: ``convert_to_analog`` with the preset's
  ``InferenceRPUConfig`` (C++ tiles in train mode: DAC/ADC, output noise, bound management, the
  preset's weight noise) and ``AnalogSGD``; the trained weights read back with ``convert_to_digital``.
  Its ``remap`` is NONE: the weight scale α of each tile stays the one of the conversion while the
  weights grow (a digits MLP's last layer reaches 20x the conductance range in 3 epochs);
- ``analogsam-fixed``: ``analogsam.train(..., optimizer="sgd", hardware_aware={"preset": PRESET,
  "remap": False})``, the same fixed α;
- ``aihwkit-remap``: as ``aihwkit-fixed`` with ``remap.type`` LAYERWISE_SYMMETRIC (CHANNELWISE with
  ``mapping.weight_scaling_columnwise``): α follows the weights after every update;
- ``analogsam-hwa``: ``analogsam.train(..., hardware_aware=PRESET)``, analogsam's default (α follows the
  weights, as aihwkit-lightning and aihwkit's StandardHWATrainingPreset do);
- ``analogsam-fixed-zsg``: as ``analogsam-fixed`` with ``zero_saturated_gradients``: aihwkit's C++ tiles'
  gradient rule, which passes no gradient back to a layer's inputs behind an output whose read-out (in
  units of the tile's weights, after noise management's rescaling) reached 0.999 out_bound. With α fixed
  the tile weights grow past 1, most read-outs pass that test, and the layers before the last learn
  slowly: this method is aihwkit-fixed's counterpart;
- ``analogsam-hwa-zsg``: ``analogsam-hwa`` with ``zero_saturated_gradients``, aihwkit-remap's counterpart
  (with remapping the tile weights stay within 1, but a read-out is tested times max|x| of its input
  vector, and hidden activations exceed 1);

(and ``digital``, plain SGD, for scale). Every network is then measured by the same
``analogsam.evaluation.sweep`` on the preset over time (10 programmings each), and the table gives,
per method and time, the mean accuracy over the training seeds ± the 95% Student-t half-width, and the
two-sided Welch p-values of aihwkit-fixed against analogsam-fixed and analogsam-fixed-zsg, and of
aihwkit-remap against analogsam-hwa and analogsam-hwa-zsg, over the per-seed means.

AnalogSGD's step on the weights equals SGD's (with momentum too: checked on an ``ideal``-preset layer,
the weights read back after three steps moved as plain SGD moved them, to 1e-4), so both use the same
learning rate.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from scipy import stats

from analogsam.data import load_dataset
from analogsam.evaluation import sweep
from analogsam.hardware import presets as devices
from analogsam.hardware.mapping import map_to_tiles
from analogsam.models import build_model, make_spec
from analogsam.runs import TrainedRun
from analogsam.training import train

TIMES = ("1s", "1h", "1d", "30d", "1y")
METHODS = (
    "aihwkit-fixed",
    "analogsam-fixed",
    "analogsam-fixed-zsg",
    "aihwkit-remap",
    "analogsam-hwa",
    "analogsam-hwa-zsg",
    "digital",
)
PAIRS = (
    ("aihwkit-fixed", "analogsam-fixed"),
    ("aihwkit-fixed", "analogsam-fixed-zsg"),
    ("aihwkit-remap", "analogsam-hwa"),
    ("aihwkit-remap", "analogsam-hwa-zsg"),
)


def aihwkit_hwa(spec, data, preset, *, seed, epochs, batch_size, lr, momentum, remap) -> TrainedRun:
    """aihwkit's HWA: convert_to_analog + AnalogSGD, the batches and schedule of analogsam.train."""
    from aihwkit.nn.conversion import convert_to_analog, convert_to_digital
    from aihwkit.optim import AnalogSGD
    from aihwkit.simulator.parameters.enums import WeightRemapType

    torch.manual_seed(seed)  # the same initial weights as analogsam.train(seed=seed)
    model = build_model(spec)
    p = devices.load(preset)
    config = p.rpu_config()
    if remap:
        columnwise = p.values["mapping"]["weight_scaling_columnwise"]
        config.remap.type = WeightRemapType.CHANNELWISE_SYMMETRIC if columnwise else WeightRemapType.LAYERWISE_SYMMETRIC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analog = convert_to_analog(map_to_tiles(model), config)
    optimizer = AnalogSGD(analog.parameters(), lr=lr, momentum=momentum)
    optimizer.regroup_param_groups(analog)
    steps = epochs * math.ceil(len(data.train) / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    for epoch in range(epochs):
        analog.train()
        for x, y, _ in data.train.batches(batch_size, shuffle=True, seed=seed * 100_003 + epoch, with_indices=True):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(analog(x), y).backward()
            optimizer.step()
            scheduler.step()
    digital = convert_to_digital(analog).eval()
    return TrainedRun(digital, spec, {"optimizer": "aihwkit-analogsgd", "seed": seed})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="digits")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--preset", default="pcm")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="hwa-conformance")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    options = {k: v for k, v in {"train_limit": args.train_limit, "test_limit": args.test_limit}.items() if v}
    data = load_dataset(args.data, **options)
    spec = make_spec(args.model, in_channels=data.in_channels, num_classes=data.num_classes, input_size=data.input_size)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs, seconds = [], {}
    for seed in seeds:
        for method in METHODS:
            start = time.perf_counter()
            if method.startswith("aihwkit"):
                run = aihwkit_hwa(spec, data, args.preset, seed=seed, remap=method == "aihwkit-remap", **common)
            else:
                hw = {
                    "analogsam-fixed": {"hardware_aware": {"preset": args.preset, "remap": False}},
                    "analogsam-fixed-zsg": {
                        "hardware_aware": {"preset": args.preset, "remap": False, "zero_saturated_gradients": True}
                    },
                    "analogsam-hwa": {"hardware_aware": args.preset},
                    "analogsam-hwa-zsg": {"hardware_aware": {"preset": args.preset, "zero_saturated_gradients": True}},
                }.get(method, {})
                run = train(
                    spec, data, optimizer="sgd", seed=seed, weight_decay=0.0, progress=False, run_name=method,
                    **common, **hw,
                )  # fmt: skip
            seconds.setdefault(method, []).append(time.perf_counter() - start)
            run.config.update({"run_name": method, "seed": seed})
            run.group = method
            runs.append(run)
            print(f"{method} seed {seed}: trained in {seconds[method][-1]:.0f} s", flush=True)
    test = list(data.test.batches(1000))
    rows = sweep(
        runs, [args.preset], batches_for=lambda r: test, times=list(TIMES), repeats=args.repeats, seed=0,
        out=out / "eval", progress=False,
    )  # fmt: skip
    per_seed: dict[tuple, dict[int, list[float]]] = {}
    digital: dict[tuple, float] = {}
    for r in rows:
        per_seed.setdefault((r["run"], r["t_seconds"]), {}).setdefault(r["train_seed"], []).append(r["accuracy"])
        digital[(r["run"], r["train_seed"])] = r["digital_accuracy"]
    lines = [
        f"# HWA conformance: aihwkit vs analogsam ({args.model} on {args.data}, preset {args.preset})",
        "",
        f"`python benchmarks/hwa_conformance.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"{args.epochs} epochs, batch {args.batch_size}, SGD lr {args.lr} (cosine), momentum {args.momentum}, "
        f"training seeds {args.seeds}, {args.repeats} programmings per network. "
        "Accuracy in %, mean over seeds of each network's mean over programmings ± 95% CI over seeds; "
        "p: Welch t-test over the per-seed means of each aihwkit method against its analogsam counterpart.",
        "",
        "| method | digital | " + " | ".join(TIMES) + " | train s/run |",
        "|---|---|" + "---|" * len(TIMES) + "---|",
    ]
    table = {}
    for method in METHODS:
        dig = [digital[(method, s)] for s in seeds]
        cells = [f"{100 * statistics.mean(dig):.2f}"]
        for t in sorted({t for (m, t) in per_seed if m == method}):
            means = [statistics.mean(v) for v in per_seed[(method, t)].values()]
            half = stats.t.ppf(0.975, len(means) - 1) * statistics.stdev(means) / math.sqrt(len(means))
            table[(method, t)] = means
            cells.append(f"{100 * statistics.mean(means):.2f} ± {100 * half:.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {statistics.mean(seconds[method]):.0f} |")
    for a, b in PAIRS:
        ps = []
        for t in sorted({t for (_, t) in table}):
            p = stats.ttest_ind(table[(a, t)], table[(b, t)], equal_var=False).pvalue
            ps.append(f"{p:.2g}")
        lines.append(f"| p ({a} vs {b}) | | " + " | ".join(ps) + " | |")
    lines.append("")
    (out / "report.md").write_text("\n".join(lines))
    with open(out / "per_seed.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "t_seconds", "train_seed", "mean_accuracy"])
        for (method, t), by_seed in sorted(per_seed.items()):
            for s, v in sorted(by_seed.items()):
                w.writerow([method, t, s, statistics.mean(v)])
    (out / "settings.json").write_text(json.dumps(vars(args), indent=2))
    print("\n".join(lines))
    print(f"wrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
