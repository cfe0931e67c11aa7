"""Write the analogsam notebooks from this file, so they can be reviewed as code.

    python notebooks/build_notebooks.py                 # (re)write every notebook
    python notebooks/build_notebooks.py --execute 02    # then run notebook(s) at full size, outputs saved in place

Rewriting keeps a notebook's outputs when its code cells are unchanged (only markdown edited);
a changed code cell drops the now-stale outputs of that notebook, which must then be executed again.
Each notebook has one cell tagged ``parameters`` (papermill-style); ``tests/test_notebooks.py``
executes every notebook with small values injected after it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def _cells(stem: str, parts: list[tuple[str, str]]) -> list:
    """``parts`` are ("md" | "code" | "params", source); ids are stable so rebuilds diff cleanly."""
    cells = []
    for i, (kind, source) in enumerate(parts):
        source = source.strip("\n")
        if kind == "md":
            cell = new_markdown_cell(source)
        else:
            cell = new_code_cell(source)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
        cell.id = f"{stem[:2]}-{i:02d}"
        cells.append(cell)
    return cells


def _notebook(stem: str, parts: list[tuple[str, str]]):
    nb = new_notebook(cells=_cells(stem, parts))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# ------------------------------------------------------------------------------------------------
# 01: quickstart
# ------------------------------------------------------------------------------------------------

QUICKSTART = [
    (
        "md",
        """
# Quickstart: from a trained network to its accuracy on analog hardware

This notebook runs analogsam's pipeline once, end to end:

1. load Fashion-MNIST (from files on disk, nothing is downloaded),
2. train LeNet-5 digitally with SGD,
3. convert it to analog tiles of IBM aihwkit configured from the `pcm` device preset
   (phase-change memory: programming noise, read noise, conductance drift, 8-bit DAC/ADC),
4. measure the test accuracy from 1 second to 1 year after the weights were programmed,
   repeated over several independent programmings,
5. plot it and write the results to files.

The next cell holds every setting. With the defaults, the LeNet-5 run is reused from
`../studies/fashion-lenet5/sgd` if it is there (the same run notebook 02 uses), otherwise it is
trained (3 epochs on 20,000 images, a few minutes on a laptop CPU). For a one-minute tour set
`DATASET = "digits"` and `MODEL = "mlp"`.
""",
    ),
    (
        "params",
        """
DATASET = "fashion-mnist"   # fashion-mnist | mnist | cifar10 | svhn | digits
MODEL = "lenet5"            # mlp | lenet5 | resnet20 | resnet32 | vgg8
OPTIMIZER = "sgd"           # any of analogsam.optim.OPTIMIZER_NAMES
EPOCHS = 3
SEED = 0
TRAIN_LIMIT = 20000         # training images to use (None: all 60,000)
EVAL_LIMIT = 2000           # test images for the analog evaluation (None: the whole test split)
PRESET = "pcm"              # a shipped preset name or the path of a TOML file
TIMES = "1s,1h,1d,30d,1y"   # time after programming
REPEATS = 5                 # independent programmings (Monte-Carlo repeats)
RUNS = "../studies/fashion-lenet5"   # run folders: <RUNS>/<OPTIMIZER>
OUT = "outputs/01-quickstart"       # tables, plot and report
""",
    ),
    (
        "md",
        """
## 1. Data

`load_dataset` reads the standard files (IDX for Fashion-MNIST) and normalises the inputs with the
training split's mean and standard deviation. Everything is held in memory as tensors.
""",
    ),
    (
        "code",
        """
import time
import warnings
from pathlib import Path

from IPython.display import Image, display

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when ipywidgets is absent

from analogsam.hardware import presets
from analogsam.hardware.conversion import convert
from analogsam.data import ArrayDataset, load_dataset
from analogsam.evaluation import evaluate, format_time, summarize
from analogsam.evaluation.report import plot_accuracy_vs_time, text_table, write_report
from analogsam.studies.default import train_or_reuse

data = load_dataset(DATASET, train_limit=TRAIN_LIMIT)
print(f"{data.name}: {len(data.train)} training and {len(data.test)} test images of shape {data.input_shape}, "
      f"{data.num_classes} classes, read from {data.source}")
""",
    ),
    (
        "md",
        """
## 2. Train digitally

`train_or_reuse(folder, ...)` calls `analogsam.train` (SGD with momentum 0.9, learning rate 0.05 on
a cosine schedule, batch 128, weight decay 5e-4 by default) and writes `checkpoint.pt`, `log.csv` and
`config.json` into the folder. If the folder already holds a finished run with the same dataset,
model and settings it loads that run instead of training again.
""",
    ),
    (
        "code",
        """
run = train_or_reuse(Path(RUNS) / OPTIMIZER, model=MODEL, data=data, optimizer=OPTIMIZER, epochs=EPOCHS,
                     seed=SEED, data_options={"train_limit": TRAIN_LIMIT}, run_name=OPTIMIZER, progress=False)
print(f"run {run.name!r} ({run.config['model']}, {run.optimizer}) in {run.path}")
for m in run.metrics:
    print(f"  epoch {m['epoch']}: train loss {m['train_loss']:.3f}, test accuracy {m['test_accuracy']:.2%} "
          f"({m['seconds']:.0f} s)")
""",
    ),
    (
        "md",
        """
## 3. Convert to analog tiles

On an analog in-memory-computing chip each weight is stored as device conductances and every
matrix-vector product is computed in place, with a DAC on the inputs and an ADC on the outputs.
A device preset is plain data (a TOML file) that names the device model and every knob with its
unit; `presets.describe` prints the resolved values and where each came from.
""",
    ),
    (
        "code",
        """
preset = presets.load(PRESET)
print(presets.describe(preset))
""",
    ),
    (
        "md",
        """
`convert` turns every `Linear` and `Conv2d` layer into an aihwkit analog layer configured from the
preset (and returns the aihwkit model for your own experiments). `evaluate` below converts for you,
so this cell only shows what the analog model is made of.
""",
    ),
    (
        "code",
        """
analog = convert(run.model, preset)
for name, module in analog.named_modules():
    if type(module).__name__.startswith("Analog") and name:
        print(f"{name:12s} {type(module).__name__}")
""",
    ),
    (
        "md",
        """
## 4. Accuracy over time

For each repeat, `evaluate` programs the conductances afresh (a new draw of programming noise), then
for every time `t` lets them drift to `t` and measures the test accuracy (with read noise, output
noise, DAC/ADC quantization and the preset's drift compensation). Every number is seeded: running
the cell again gives the same table. To keep the run short the evaluation uses the first
`EVAL_LIMIT` test images (the test file is in random class order).
""",
    ),
    (
        "code",
        """
test = data.test if EVAL_LIMIT is None else ArrayDataset(data.test.x[:EVAL_LIMIT], data.test.y[:EVAL_LIMIT])
start = time.perf_counter()
rows = evaluate(run, test.batches(2000), preset, times=TIMES, repeats=REPEATS, seed=SEED, progress=False)
print(f"{len(rows)} measurements on {len(test)} test images in {time.perf_counter() - start:.0f} s")
summary = summarize(rows)
print(text_table(summary, preset.name))
""",
    ),
    (
        "md",
        """
`rows` are tidy: one dict per measurement (run, optimizer, preset, t_seconds, repeat, seed,
accuracy, ...). `summarize` aggregates them per time into mean, standard deviation and a 95%
Student-t confidence interval, which the plot shades.
""",
    ),
    (
        "code",
        """
Path(OUT).mkdir(parents=True, exist_ok=True)
display(Image(filename=str(plot_accuracy_vs_time(summary, Path(OUT) / "accuracy_vs_time.png"))))
first, last = summary[0], summary[-1]
print(f"digital accuracy {first['digital_accuracy']:.2%}; on {preset.name}: {first['mean']:.2%} "
      f"at {format_time(first['t_seconds'])} and {last['mean']:.2%} at {format_time(last['t_seconds'])} "
      f"(95% CI {last['ci95_low']:.2%} to {last['ci95_high']:.2%})")
""",
    ),
    (
        "md",
        """
## 5. Save

`write_report` writes `results.csv` (every measurement), `summary.csv`, the plots and a markdown
`report.md` into one folder.
""",
    ),
    (
        "code",
        """
for kind, path in write_report(rows, OUT, title=f"{run.name} on {preset.name}").items():
    print(f"{kind:8s} {path}")
""",
    ),
    (
        "md",
        """
## Next

- The same study from the command line:
  `analogsam train --data fashion-mnist --model lenet5 --optimizer sgd --epochs 3 --train-limit 20000 --out runs/sgd` and
  `analogsam evaluate runs/sgd --preset pcm --times 1s,1h,1d,30d,1y --repeats 5 --out runs/sgd/eval`.
- `02-optimizers.ipynb` compares SGD with sharpness-aware optimizers on the same task.
- `03-device-presets.ipynb` runs one network on every shipped device preset and sweeps the ADC
  resolution and the drift compensation.
""",
    ),
]


# ------------------------------------------------------------------------------------------------
# 02: optimizers
# ------------------------------------------------------------------------------------------------

# Written after the full-size run whose outputs are committed; it must agree with the printed facts.
OPTIMIZERS_READING = """
## Reading the result

*This describes the committed run (the parameters above: LeNet-5, 3 epochs on 20,000 Fashion-MNIST
images, one training seed per method, default hyperparameters except SAF's look-back and adversarial's
attack steps, 5 programmings on 2000 test images); every number is in the outputs above. Run with
other parameters, the numbers will differ.*

**First, how large a difference has to be.** Each analog accuracy is a mean over 5 independent
programmings. Their standard deviation is 0.10 to 0.61 points at 1 s for every network; from 1 hour
on it stays between 0.23 and 0.74 points for SAM, ASAM, SAMSON and adversarial, but it is 0.97 to
2.39 points for SGD and SAF, whose accuracy depends more on how a programming drifts. The section 3
table makes 25 comparisons with SGD, so a single p-value between 0.01 and 0.05 can be chance; below,
a difference counts as clear when p <= 0.01 and it holds over neighbouring time points. This spread
is programming noise only: how much the training seed moves these numbers was not measured.

**Sharpness-aware training pays off as the conductances drift.** SAM, ASAM and SAMSON are 1.10,
1.25 and 0.35 points *below* SGD digitally (83.85%, 83.70%, 84.60% against 84.95% on these images).
1 s after programming, SAM and ASAM are level with SGD (83.65% and 83.63% against 83.85%; -0.20 and
-0.22 points, p = 0.507 and 0.468) and SAMSON is 0.66 points ahead (84.51%, p = 0.075, not clear).
But all three lose little more than 1 point from 1 s to 1 year (1.17, 1.02 and 0.82 points) where
SGD loses 6.77. From 1 day on all three lead SGD with p <= 0.009, and at 1 year by +5.40, +5.53 and
+6.61 points (82.48%, 82.61%, 83.69% against 77.08%; p <= 0.007), more than twice SGD's spread there
(± 2.39). At 1 hour the leads (+1.41, +1.50, +2.10) are not clear (p = 0.072, 0.060 and 0.019).
SAMSON is the best network at every time point, 0.1 to 1.2 points above SAM and ASAM; with one
training seed per method this run does not rank the three.

**SAF does not help here.** Its default look-back of 3 epochs would never switch on in 3 epochs, so
it compares each sample's logits with its own from 1 epoch earlier, from epoch 1 (0-based) on: the
distillation term is active for 2 of the 3 epochs, and the trained weights differ from SGD's. It
ends 1.00 point below SGD digitally on these images (83.95%; 83.60% against 84.26% on the whole
test split). On PCM it follows SGD: its difference to SGD is between -1.08 and +0.74 points at every
time point, none of them clear (p = 0.020 at 1 s, p >= 0.342 after); it loses 4.95 points from 1 s
to 1 year against SGD's 6.77 and the sharpness-aware methods' 0.82 to 1.17, and at 1 year both
spread widely (77.82% ± 1.56 against SGD's 77.08% ± 2.39), so its 0.74-point lead is within the
noise (p = 0.581). This is a weak test of SAF: 2 short epochs of distillation with a 1-epoch
look-back and untuned `saf_lambda` and `saf_tau`, far from the long runs it was designed for. It
shows that SAF in this setting buys nothing against drift, not that SAF cannot.

**Adversarial parameter perturbation does not help either.** With 3 attack steps it ends 4.30 points
below SGD digitally on these images (80.65%; 80.48% against 84.26% on the whole test split). It is
robust to drift (0.80 points lost from 1 s to 1 year), but it starts so much lower that it is below
SGD up to 1 hour (-3.80 points at 1 s, p = 0.000; -2.71 at 1 hour, p = 0.006), not clearly different
at 1 day and 30 days (-1.18, p = 0.099; -0.67, p = 0.361), and ahead at 1 year by +2.17 points
(79.25%, p = 0.113), which is not clear. It is below SAM, ASAM and SAMSON at every time point.

**Training time.** The times in the first table were measured on a shared machine that other jobs
kept busy while the runs trained, so they do not compare the methods' cost (SAM, ASAM and SAMSON took
no longer than SGD here, 23-28 s, although they do twice the work). By construction SAM, ASAM and
SAMSON take two forward/backward passes per step, adversarial with 3 attack steps about five (94 s
here), and SAF one plus a buffer of past logits.

**What this does not show.** One training seed per method, 3 short epochs and untuned
hyperparameters: longer training, another `rho`, or SAF with a longer look-back could change the
ordering. The result to take away is the size of the gap between SGD and the sharpness-aware methods
after a day or more of drift, not the ranking within that family, and not a verdict on SAF.
"""

OPTIMIZERS = [
    (
        "md",
        """
# Sharpness-aware optimizers on analog hardware: SGD, SAM, ASAM, SAMSON, adversarial, SAF

Do flatter minima survive analog noise better? This notebook trains LeNet-5 on Fashion-MNIST with
six training methods, all else equal (3 epochs on 20,000 training images, learning rate 0.05 with
a cosine schedule, momentum 0.9, batch 128, weight decay 5e-4, seed 0), and measures each network on the PCM preset from 1 second to
1 year after programming:

| name | method |
|---|---|
| `sgd` | plain SGD with momentum: the baseline |
| `sam` | Sharpness-Aware Minimization (Foret et al., ICLR 2021): gradient at the worst point in an L2 ball of radius rho |
| `asam` | Adaptive SAM (Kwon et al., ICML 2021): the ball is scaled by each weight's magnitude |
| `samson` | SAMSON (Mordido et al., 2022): adaptive SAM with an L-infinity ball, for noisy and quantized hardware |
| `adversarial` | adversarial parameter perturbation (Rakin et al.; Stutz et al., "Bit error robustness", 2021), here with 3 attack steps |
| `saf` | Sharpness-Aware training for Free (Du et al., NeurIPS 2022): a KL term to each sample's own logits from a few epochs back (here 1 epoch back, from the second epoch on, since its default 3-epoch look-back would never start in a 3-epoch run) |

Training all six at full size takes a while on a CPU (the two-pass methods cost about twice SGD's
time). With the defaults, finished runs in `../studies/fashion-lenet5/<optimizer>` are reused.
""",
    ),
    (
        "params",
        """
DATASET = "fashion-mnist"
MODEL = "lenet5"
OPTIMIZERS = ["sgd", "sam", "asam", "samson", "adversarial", "saf"]
# Everything else: each method's defaults. SAF's defaults (history 3 epochs, start >= 3) never switch
# on in a 3-epoch run, so it looks back 1 epoch from epoch 1 (0-based) on.
HYPERPARAMETERS = {"adversarial": {"attack_steps": 3}, "saf": {"saf_history": 1, "saf_start": 1}}
EPOCHS = 3
SEED = 0
SEEDS = None                # training seeds per method, e.g. [0, 1, 2]: a seed group per method and
                            # statistics over seeds; None: one network per method, trained with SEED
TRAIN_LIMIT = 20000         # training images (None: all 60,000)
EVAL_LIMIT = 2000           # test images for the analog evaluation (None: the whole test split)
PRESET = "pcm"
TIMES = "1s,1h,1d,30d,1y"
REPEATS = 5                 # independent programmings per network
RUNS = "../studies/fashion-lenet5"   # run folders: <RUNS>/<optimizer>, seed groups <RUNS>/<optimizer>-seeds
OUT = "outputs/02-optimizers"
""",
    ),
    (
        "md",
        """
## 1. Train (or reuse) one network per method
""",
    ),
    (
        "code",
        """
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, Markdown, display
from scipy import stats

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when ipywidgets is absent

from analogsam.hardware import presets
from analogsam.data import ArrayDataset, load_dataset
from analogsam.evaluation import format_time, parse_times, sweep
from analogsam.evaluation.report import markdown_table, plot_accuracy_vs_time, summary_of, text_table, write_report
from analogsam.evaluation.statistics import seed_level_test
from analogsam.training import train_or_reuse, train_seeds

data = load_dataset(DATASET, train_limit=TRAIN_LIMIT)
runs = []
for name in OPTIMIZERS:
    start = time.perf_counter()
    settings = dict(model=MODEL, data=data, optimizer=name, epochs=EPOCHS, data_options={"train_limit": TRAIN_LIMIT},
                    run_name=name, progress=False, **HYPERPARAMETERS.get(name, {}))
    if SEEDS is None:
        group = [train_or_reuse(Path(RUNS) / name, seed=SEED, **settings)]
    else:  # one network per training seed in <RUNS>/<name>-seeds/seed-N, all named after the method
        group = train_seeds(seeds=SEEDS, out=Path(RUNS) / f"{name}-seeds", **settings)
    runs.extend(group)
    where = group[0].path if SEEDS is None else group[0].path.parent
    print(f"{name:12s} ready in {time.perf_counter() - start:5.1f} s ({where})")


def label(run):
    return run.name if SEEDS is None else f"{run.name} seed {run.train_seed}"


common = {"base", "lr", "momentum", "weight_decay"}  # the same for every run
lines = ["| run | method's hyperparameters | training time | final train loss | digital test accuracy |", "|---|---|---|---|---|"]
for run in runs:
    hp = ", ".join(f"{k}={v}" for k, v in run.config["optimizer_hparams"].items() if k not in common) or "-"
    seconds = sum(m["seconds"] for m in run.metrics)
    last = run.metrics[-1]
    lines.append(f"| {label(run)} | {hp} | {seconds:.0f} s | {last['train_loss']:.3f} | {last['test_accuracy']:.2%} |")
display(Markdown("\\n".join(lines)))

# A method whose extra term never switches on within the epochs trained ends with exactly SGD's weights
# (compared seed by seed).
reference = {run.train_seed: run.model.state_dict() for run in runs if run.name == OPTIMIZERS[0]}
same = [label(run) for run in runs if run.name != OPTIMIZERS[0]
        and all(torch.equal(value, reference[run.train_seed][key]) for key, value in run.model.state_dict().items())]
print(f"trained weights identical to {OPTIMIZERS[0]}'s: {', '.join(same) or 'none'}")
""",
    ),
    (
        "md",
        """
The digital test accuracy above is on the whole test split. The analog evaluation below uses the
first `EVAL_LIMIT` test images, the same images for every network.

## 2. Evaluate on PCM over time

`sweep` evaluates every run on every preset. Each repeat is an independent programming of the
conductances; all time points of one repeat come from the same programming, drifting further.
""",
    ),
    (
        "code",
        """
test = data.test if EVAL_LIMIT is None else ArrayDataset(data.test.x[:EVAL_LIMIT], data.test.y[:EVAL_LIMIT])
preset = presets.load(PRESET)
start = time.perf_counter()
rows = sweep(runs, [preset], batches_for=lambda run: test.batches(2000), times=TIMES, repeats=REPEATS,
             seed=SEED, progress=False)
print(f"{len(rows)} measurements on {len(test)} test images in {time.perf_counter() - start:.0f} s")
# over programmings of one network per method, or over training seeds when each method is a seed group
summary = sorted(summary_of(rows), key=lambda r: OPTIMIZERS.index(r["run"]))  # runs in the order given
print(text_table(summary, preset.name))
display(Markdown(markdown_table(summary, preset.name)))
""",
    ),
    (
        "code",
        """
Path(OUT).mkdir(parents=True, exist_ok=True)
display(Image(filename=str(plot_accuracy_vs_time(summary, Path(OUT) / "accuracy_vs_time.png", rows=rows))))
""",
    ),
    (
        "md",
        """
A network that starts higher digitally can stay ahead on hardware without being more robust. The
plot below separates the two: the accuracy lost relative to each network's own digital accuracy
(on the same test images).
""",
    ),
    (
        "code",
        """
times = parse_times(TIMES)
cell = {(r["run"], r["t_seconds"]): r for r in summary}
fig, ax = plt.subplots(figsize=(6, 4))
for name in OPTIMIZERS:
    loss = [100 * (cell[(name, t)]["digital_accuracy"] - cell[(name, t)]["mean"]) for t in times]
    ax.plot(times, loss, marker="o", label=name)
ax.set_xscale("log")
ax.set_xticks(times)
ax.set_xticklabels([format_time(t) for t in times])
ax.set_xlabel("time after programming")
ax.set_ylabel("digital minus analog accuracy (points)")
ax.set_title(f"accuracy lost on {preset.name}")
ax.grid(True, alpha=0.3)
ax.legend(fontsize="small")
fig.tight_layout()
fig.savefig(Path(OUT) / "accuracy_lost.png", dpi=120)
plt.close(fig)
display(Image(filename=str(Path(OUT) / "accuracy_lost.png")))
""",
    ),
    (
        "md",
        """
## 3. Facts to check the reading against

For each method and time: the difference of its mean accuracy to SGD's and Welch's t-test p-value
(a p-value says how surprising the difference would be if the two were equal; with a handful of
samples, only large differences are clear). With one network per method the samples are its
repeats, so the test is about those two trained networks; with `SEEDS` each method is a seed group
and the samples are the per-seed means (n = the number of seeds,
`analogsam.evaluation.statistics.seed_level_test`), so the test is about the training methods.
""",
    ),
    (
        "code",
        """
baseline = OPTIMIZERS[0]
if SEEDS is None:  # one network per method: Welch's test over its programmings
    acc = {}
    for r in rows:
        acc.setdefault((r["run"], r["t_seconds"]), []).append(r["accuracy"])

    def versus_baseline(name, t):
        a, b = np.array(acc[(name, t)]), np.array(acc[(baseline, t)])
        return 100 * (a.mean() - b.mean()), stats.ttest_ind(a, b, equal_var=False).pvalue

    print(f"difference to {baseline} in accuracy points (p-value of Welch's t-test over {REPEATS} repeats)")
else:  # seed groups: Welch's test over the per-seed means, n = seeds
    tested = {(r["run"], r["t_seconds"]): r for r in seed_level_test(rows, baseline)}

    def versus_baseline(name, t):
        return 100 * tested[(name, t)]["difference"], tested[(name, t)]["p_value"]

    print(f"difference to {baseline} in accuracy points (p-value of Welch's t-test over the means of "
          f"{len(SEEDS)} training seeds, {REPEATS} repeats each)")
print(f"{'run':12s} {'digital':>8s}" + "".join(f"{format_time(t):>16s}" for t in times))
for name in OPTIMIZERS:
    digital = cell[(name, times[0])]["digital_accuracy"] - cell[(baseline, times[0])]["digital_accuracy"]
    parts = [f"{name:12s} {100 * digital:+8.2f}"]
    for t in times:
        if name == baseline:
            parts.append(f"{'-':>16s}")
            continue
        diff, p = versus_baseline(name, t)
        parts.append(f"{diff:+8.2f} (p={p:.3f})")
    print("".join(parts))

print()
for t in (times[0], times[-1]):
    ranked = sorted(OPTIMIZERS, key=lambda name: -cell[(name, t)]["mean"])
    print(f"ranking at {format_time(t)}: " + " > ".join(f"{name} {cell[(name, t)]['mean']:.2%}" for name in ranked))
for name in OPTIMIZERS:
    c0, c1 = cell[(name, times[0])], cell[(name, times[-1])]
    print(f"{name:12s} digital {c0['digital_accuracy']:.2%} -> {format_time(times[0])} {c0['mean']:.2%} "
          f"-> {format_time(times[-1])} {c1['mean']:.2%}: drift over the whole span costs "
          f"{100 * (c0['mean'] - c1['mean']):.2f} points")
""",
    ),
    (
        "code",
        """
for kind, path in write_report(rows, OUT, title=f"optimizers on {preset.name}").items():
    print(f"{kind:8s} {path}")
""",
    ),
    ("md", OPTIMIZERS_READING),
]


# ------------------------------------------------------------------------------------------------
# 03: device presets
# ------------------------------------------------------------------------------------------------

PRESETS_READING = """
## What to notice

*About the committed run (the parameters above: LeNet-5 with SGD, 84.8% digital accuracy on the
1000 evaluation images, 3 programmings per setting); the numbers are in the outputs above.*

- **Converters alone** (`ideal`: 8-bit DAC/ADC, no device noise) cost 0.8 points (84.00%, the same
  in every repeat since nothing is random).
- **Across presets**, `hwa-standard` loses least (83.9% at 1 s, 83.1% at 2 d). Its static input
  ranges are calibrated on the same images it is evaluated on, and that calibration runs through
  aihwkit's tiles, whose forward noise cannot be seeded: its numbers move by a few tenths of a point
  from one execution to the next, unlike every other number here. `rram-cmo` starts close to
  digital (83.8% at 1 s) but falls to 71.3% after 1 d and 69.5% after 2 d; `rram-wan2022` is the
  lowest at 1 s (81.3%) and ends at 77.9% at 2 d. `pcm` and `pcm-hermes` sit in between (about
  81.7% at 2 d).
- **The resolution of this size of run is one to two points.** `pcm` reads 80.4% ± 0.3 at 1 d but
  81.7% ± 0.8 at 2 d, which is not a recovery (drift only lowers the conductances) but the spread of
  3 programmings on 1000 images. Differences between presets smaller than that are not resolved.
- **ADC bits** (one variant of `pcm` per value, all on the same programming-noise draws): at 1 s,
  8 bits and more are equivalent (83.3-83.7%). Below that accuracy collapses: 81.8% at 7 bits, 78.6%
  at 6, 66.7% at 5, 58.7% at 4. After a day of drift it collapses sooner (4 bits: 23.3%; 6 bits:
  70.9%), and 9 and 10 bits (81.3%, 82.1%) now do better than 8 (80.4%): drift lowers the
  conductances, so the outputs reaching the ADC are smaller and use fewer of its levels; the drift
  compensation rescales them only after the conversion. A designer budgeting ADC bits for this
  network reads 8 bits for fresh weights and 9-10 once the device has drifted for a day.
- **Drift scale**: a device that drifts half as fast as aihwkit's PCM model keeps 79.4% after a
  year, aihwkit's own ν keeps 75.2%; twice the drift is 4 points below that after a day (76.4%
  against 80.4%), 11 after a month (69.5% against 80.7%) and 16 after a year (58.9%); four times the
  drift is down to 44.8% ± 9.1 after a day and at chance (10%) from a month on, drift compensation
  notwithstanding. Read as a device specification: for a year's retention within about 10 points of
  digital, this network needs a drift exponent no larger than aihwkit's PCM model's.
- **Drift compensation** is what keeps PCM usable: without it accuracy is 63.3% after 1 d, 15.7% after
  30 d and 9.5% after 1 year (chance level is 10%); global compensation keeps 80.7% at 30 d and 75.2%
  at 1 year. Per-column compensation is no better than global here (73.6% at 1 year, within the noise
  of global's 75.2%, and lower at every time point).
"""

PRESETS = [
    (
        "md",
        """
# One network on every device preset, and two knobs swept

A device preset describes an analog accelerator as data: the device model (PCM, RRAM, ...), its
noise and drift, the DAC/ADC resolution, tile size and mapping. This notebook takes one trained
network (LeNet-5 trained with SGD on Fashion-MNIST, reused from `../studies/fashion-lenet5/sgd`
if it is there) and

1. evaluates it on every shipped preset (the TOML files of the repository's `devices/` folder),
2. sweeps the ADC resolution from 4 to 10 bits on the PCM preset (`sweep(vary=...)`, what
   `analogsam compare ... --vary io.adc_bits=4,5,6,7,8,9,10` runs),
3. sweeps PCM's drift: the drift exponent ν scaled from half to four times aihwkit's model,
4. switches PCM's drift compensation between none, global and per-column.
""",
    ),
    (
        "params",
        """
DATASET = "fashion-mnist"
MODEL = "lenet5"
OPTIMIZER = "sgd"
EPOCHS = 3
SEED = 0
TRAIN_LIMIT = 20000  # training images (None: all 60,000)
EVAL_LIMIT = 1000  # test images for the analog evaluation (None: the whole test split)
REPEATS = 3  # independent programmings per setting
PRESETS = None  # None: every shipped preset
PRESET_TIMES = "1s,1d,2d"  # rram-wan2022 is only defined at 1 s, 1 d and 2 d
KNOB_PRESET = "pcm"
ADC_BITS = [4, 5, 6, 7, 8, 9, 10]
ADC_TIMES = "1s,1d"
DRIFT_SCALES = [0.5, 1.0, 2.0, 4.0]  # × the drift exponent ν of aihwkit's PCM model
DRIFT_SCALE_TIMES = "1s,1d,30d,1y"
DRIFT_MODES = ["none", "global", "per-column"]
DRIFT_TIMES = "1s,1h,1d,30d,1y"
RUNS = "../studies/fashion-lenet5"
OUT = "outputs/03-device-presets"
""",
    ),
    (
        "code",
        """
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when ipywidgets is absent
warnings.filterwarnings("ignore", category=UserWarning, module="aihwkit")  # a torch deprecation inside aihwkit

from analogsam.data import ArrayDataset, load_dataset
from analogsam.evaluation import evaluate, format_time, parse_times, summarize, sweep
from analogsam.evaluation.knobs import knob_figure, knob_markdown_table
from analogsam.hardware import presets
from analogsam.studies.default import train_or_reuse

Path(OUT).mkdir(parents=True, exist_ok=True)
lines = ["| preset | device | times | input ranges | hash |", "|---|---|---|---|---|"]
for p in presets.list_presets():
    preset = presets.load(p["name"])
    times = "any" if preset.supported_times is None else ", ".join(format_time(t) for t in preset.supported_times)
    calibrated = "calibrated on data" if preset.needs_input_range_calibration else "dynamic"
    lines.append(f"| `{p['name']}` | {p['device']} | {times} | {calibrated} | {p['hash']} |")
display(Markdown("\\n".join(lines)))
""",
    ),
    (
        "md",
        """
`presets.describe(name)` prints every value of a preset with its unit and source, e.g. for the
NeuRRAM RRAM preset:
""",
    ),
    (
        "code",
        """
print(presets.describe("rram-wan2022"))
""",
    ),
    (
        "code",
        """
data = load_dataset(DATASET, train_limit=TRAIN_LIMIT)
run = train_or_reuse(
    Path(RUNS) / OPTIMIZER,
    model=MODEL,
    data=data,
    optimizer=OPTIMIZER,
    epochs=EPOCHS,
    seed=SEED,
    data_options={"train_limit": TRAIN_LIMIT},
    run_name=OPTIMIZER,
    progress=False,
)
test = data.test if EVAL_LIMIT is None else ArrayDataset(data.test.x[:EVAL_LIMIT], data.test.y[:EVAL_LIMIT])
print(
    f"run {run.name!r} in {run.path}: digital test accuracy {run.metrics[-1]['test_accuracy']:.2%} "
    f"(whole test split); evaluating on {len(test)} test images"
)
""",
    ),
    (
        "md",
        """
## 1. Every preset

The times are the ones every preset supports (`rram-wan2022`'s noise model is fitted at 1 s, 1 d
and 2 d only, and refuses other times). Presets with static input ranges (`hwa-standard`) are
calibrated on the evaluation images automatically. The `backend` column says what computed the
analog forward: analogsam's seeded re-implementation of the tile arithmetic (`fast`) or aihwkit's
own C++ tiles (`aihwkit`, for settings the fast path does not reproduce; slower).
""",
    ),
    (
        "code",
        """
def table(cell, keys, label, header, times):
    # mean ± std (%) of each setting (row) at each time (column); cell: {(setting, t): summary row}
    lines = [
        f"| {header} | digital | " + " | ".join(format_time(t) for t in times) + " |",
        "|---|---|" + "---|" * len(times),
    ]
    for k in keys:
        values = [f"{100 * cell[(k, t)]['mean']:.2f} ± {100 * cell[(k, t)]['std']:.2f}" for t in times]
        lines.append(
            f"| {label(k)} | {100 * cell[(k, times[0])]['digital_accuracy']:.2f} | " + " | ".join(values) + " |"
        )
    display(Markdown("\\n".join(lines)))


def plot(series, x, title, filename, xlabel="time after programming", time_axis=True):
    # one line per entry of series ({label: summary rows along x}): mean, 95% CI shaded;
    # time points are spaced evenly and labelled
    positions = list(range(len(x))) if time_axis else x
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, cells in series.items():
        mean = [100 * c["mean"] for c in cells]
        low = [100 * c["ci95_low"] if c["n"] > 1 else m for c, m in zip(cells, mean)]
        high = [100 * c["ci95_high"] if c["n"] > 1 else m for c, m in zip(cells, mean)]
        (line,) = ax.plot(positions, mean, marker="o", label=label)
        ax.fill_between(positions, low, high, color=line.get_color(), alpha=0.15)
    if time_axis:
        ax.set_xticks(positions)
        ax.set_xticklabels([format_time(t) for t in x])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(Path(OUT) / filename, dpi=120)
    plt.close(fig)
    display(Image(filename=str(Path(OUT) / filename)))
""",
    ),
    (
        "code",
        """
names = PRESETS or [p["name"] for p in presets.list_presets()]
preset_times = parse_times(PRESET_TIMES)
preset_rows, backend = [], {}
for name in names:
    start = time.perf_counter()
    rows = evaluate(run, test.batches(2000), name, times=preset_times, repeats=REPEATS, seed=SEED, progress=False)
    preset_rows += rows
    backend[name] = rows[0]["backend"]
    print(f"{name:14s} backend {backend[name]:8s} {time.perf_counter() - start:6.1f} s")
cell = {(r["preset"], r["t_seconds"]): r for r in summarize(preset_rows)}
table(cell, names, lambda n: f"`{n}` ({backend[n]})", "preset (backend)", preset_times)
plot(
    {n: [cell[(n, t)] for t in preset_times] for n in names}, preset_times, f"{run.name} on every preset", "presets.png"
)
""",
    ),
    (
        "md",
        """
## 2. ADC resolution

Every output of a tile goes through an ADC; with fewer bits its steps get coarser. A knob sweep
changes one preset value without editing a file: `sweep(..., vary={"io.adc_bits": [4, 5, ...]})`
measures one preset *variant* per value, named `pcm[io.adc_bits=4]`, each with its own hash, and
gives its rows an `io.adc_bits` column (on the command line: `--vary io.adc_bits=4,5,6`). The
variants share the base preset's seeds, so every value sees the same programming-noise draws and the
values differ by the ADC alone.
""",
    ),
    (
        "code",
        """
def knob_sweep(knob, values, times, filename):
    # one variant of KNOB_PRESET per value; the table and the plot of evaluation/knobs.py
    start = time.perf_counter()
    rows = sweep(
        [run],
        [KNOB_PRESET],
        vary={knob: values},
        batches_for=lambda r: test.batches(2000),
        times=times,
        repeats=REPEATS,
        seed=SEED,
        progress=False,
    )
    print(
        f"{len(rows)} measurements of {len(values)} variants "
        f"({', '.join(dict.fromkeys(r['preset'] for r in rows))}) in {time.perf_counter() - start:.0f} s"
    )
    summary = summarize(rows)
    display(Markdown(knob_markdown_table(summary, KNOB_PRESET, knob)))
    knob_figure(summary, KNOB_PRESET, knob).savefig(Path(OUT) / filename, dpi=110)
    display(Image(filename=str(Path(OUT) / filename)))
    return summary


adc = knob_sweep("io.adc_bits", ADC_BITS, ADC_TIMES, "adc_bits.png")
""",
    ),
    (
        "md",
        """
**Reading the plot.** One panel per time after programming, the knob's values along x, one line per
network with its 95% interval over programmings shaded, and the network's digital accuracy as the
dashed line. The knob value where the analog curve meets the dashed line is the resolution this
network needs; the panels side by side show whether that need grows as the device drifts. A device
or circuit designer reads the number of ADC bits to budget for (every extra bit costs ADC area and
energy), and how much margin drift eats.

## 3. Drift

The PCM model's conductances drift as G(t) = G(t0) (t/t0)^-ν, with ν drawn per device.
`noise.drift_scale` multiplies ν: 0.5 is a device that drifts half as fast as aihwkit's PCM model,
4 one that drifts four times as fast. The same sweep, one variant per value:
""",
    ),
    (
        "code",
        """
drift = knob_sweep("noise.drift_scale", DRIFT_SCALES, DRIFT_SCALE_TIMES, "drift_scale.png")
""",
    ),
    (
        "md",
        """
**Reading the plot.** At 1 s the weights have drifted for one second past the model's 20 s reference
time, so the drift scales differ by little (the same programmings; what remains is the spread of the
drift exponents between devices); the panels to the right show how much drift each device
tolerates over a day, a month and a year with the preset's global drift compensation. The largest scale whose curve
stays near the dashed digital line at the time the chip must hold its weights is the drift
coefficient this network tolerates: the number to compare with a measured device's ν.
""",
    ),
    (
        "md",
        """
## 4. Drift compensation

PCM conductances drift down over time (G(t) = G(t0) (t/t0)^-nu, with nu varying from device to
device). Global drift compensation measures a reference read-out of each tile and rescales all its
outputs by one factor; per-column compensation uses one factor per output column; with none the
network sees the raw drift.
""",
    ),
    (
        "code",
        """
drift_times = parse_times(DRIFT_TIMES)
mode_of = {presets.load(KNOB_PRESET, {"compensation.drift": m}).hash: m for m in DRIFT_MODES}
drift_rows = []
start = time.perf_counter()
for mode in DRIFT_MODES:
    drift_rows += evaluate(
        run,
        test.batches(2000),
        KNOB_PRESET,
        overrides={"compensation.drift": mode},
        times=drift_times,
        repeats=REPEATS,
        seed=SEED,
        progress=False,
    )
print(f"{len(drift_rows)} measurements in {time.perf_counter() - start:.0f} s")
cell = {(mode_of[r["preset_hash"]], r["t_seconds"]): r for r in summarize(drift_rows)}
table(cell, DRIFT_MODES, str, "drift compensation", drift_times)
plot(
    {m: [cell[(m, t)] for t in drift_times] for m in DRIFT_MODES},
    drift_times,
    f"drift compensation on {KNOB_PRESET}",
    "drift_compensation.png",
)
""",
    ),
    ("md", PRESETS_READING),
]


# ------------------------------------------------------------------------------------------------
# 04: networks beyond LeNet-5
# ------------------------------------------------------------------------------------------------

NETWORKS = [
    (
        "md",
        """
# SGD, SAM and SAMSON on a transformer and a depthwise CNN

Notebook 02 asks whether sharpness-aware training keeps a network accurate on drifting PCM
conductances, for LeNet-5. This notebook asks the same question of two networks of the kinds that
are deployed on analog accelerators and that LeNet-5 does not represent:

| model | kind | what goes on analog tiles | what stays digital |
|---|---|---|---|
| `vit-tiny` | patch-embedding vision transformer (Dosovitskiy et al. 2021): 2 pre-norm encoder blocks, dim 64, 4 heads | the patch embedding, the Q, K, V and output projections of every attention, the MLPs, the head | the attention products (QKᵀ, softmax, ·V), LayerNorm, the class token and position embedding |
| `mobilenet-tiny` | MobileNet v1 (Howard et al. 2017) for small images: depthwise-separable blocks, BatchNorm, width multiplier 0.25 | every convolution, each group of a depthwise one on its own tiles, and the classifier | BatchNorm, ReLU, pooling |

Each model is trained on Fashion-MNIST with plain SGD (momentum 0.9), SAM (Foret et al., ICLR 2021)
and SAMSON (Mordido et al. 2022), all else equal (each method's default hyperparameters, the same
epochs, learning rate, schedule and seed), then converted to the `pcm` preset and measured from 1
second to 1 year after programming, over several independent programmings.

Every sentence below that states a result is computed from this run's numbers: rerun with other
parameters and the text changes with them.
""",
    ),
    (
        "params",
        """
DATASET = "fashion-mnist"
MODELS = ["vit-tiny", "mobilenet-tiny"]     # any of analogsam.models.model_names(); dscnn also fits
OPTIMIZERS = ["sgd", "sam", "samson"]
HYPERPARAMETERS = {}        # per optimizer, e.g. {"sam": {"rho": 0.1}}; everything else: the defaults
EPOCHS = 3
SEED = 0
TRAIN_LIMIT = 10000         # training images (None: all 60,000)
EVAL_LIMIT = 1000           # test images for the analog evaluation (None: the whole test split)
PRESET = "pcm"
TIMES = "1s,1h,1d,30d,1y"
REPEATS = 5                 # independent programmings per network
RUNS = "../studies/fashion-networks"   # run folders: <RUNS>/<model>/<optimizer>
OUT = "outputs/04-networks"
""",
    ),
    (
        "md",
        """
## 1. Train (or reuse) every model with every method
""",
    ),
    (
        "code",
        """
import collections
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display
from scipy import stats

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when ipywidgets is absent

from analogsam.data import ArrayDataset, load_dataset
from analogsam.evaluation import format_time, parse_times, summarize, sweep
from analogsam.evaluation.report import markdown_table, write_report
from analogsam.hardware import presets
from analogsam.hardware.conversion import convert
from analogsam.studies.default import train_or_reuse

data = load_dataset(DATASET, train_limit=TRAIN_LIMIT)
runs, model_of = [], {}
for model in MODELS:
    for name in OPTIMIZERS:
        start = time.perf_counter()
        run = train_or_reuse(Path(RUNS) / model / name, model=model, data=data, optimizer=name, epochs=EPOCHS,
                             seed=SEED, data_options={"train_limit": TRAIN_LIMIT}, run_name=f"{model}-{name}",
                             progress=False, **HYPERPARAMETERS.get(name, {}))
        runs.append(run)
        model_of[run.name] = model
        print(f"{run.name:24s} ready in {time.perf_counter() - start:6.1f} s ({run.path})")

lines = ["| run | parameters | training time | final train loss | digital test accuracy |", "|---|---|---|---|---|"]
for run in runs:
    parameters = sum(p.numel() for p in run.model.parameters())
    last = run.metrics[-1]
    lines.append(f"| {run.name} | {parameters:,d} | {sum(m['seconds'] for m in run.metrics):.0f} s | "
                 f"{last['train_loss']:.3f} | {last['test_accuracy']:.2%} |")
display(Markdown("\\n".join(lines)))
""",
    ),
    (
        "md",
        """
## 2. What the hardware sees

`convert` rewrites the layers aihwkit cannot convert itself (attention, grouped convolutions) into
layers whose weight matrices sit on tiles, and converts those. The count below is of the analog
layers of each network on the preset, by type (the containers aihwkit wraps them in left out).
""",
    ),
    (
        "code",
        """
preset = presets.load(PRESET)
for model in MODELS:
    analog = convert(next(run for run in runs if model_of[run.name] == model).model, preset)
    kinds = collections.Counter(type(m).__name__ for m in analog.modules() if type(m).__name__.startswith("Analog")
                                and not type(m).__name__.startswith(("AnalogSequential", "AnalogWrapper")))
    print(f"{model:16s} " + ", ".join(f"{n} x {kind}" for kind, n in sorted(kinds.items())))
""",
    ),
    (
        "md",
        """
## 3. Accuracy on PCM over time

The analog evaluation uses the first `EVAL_LIMIT` test images, the same images for every network;
each repeat is an independent programming, and all time points of one repeat drift from the same
programming. The `backend` says what computed the analog forward.
""",
    ),
    (
        "code",
        """
test = data.test if EVAL_LIMIT is None else ArrayDataset(data.test.x[:EVAL_LIMIT], data.test.y[:EVAL_LIMIT])
start = time.perf_counter()
rows = sweep(runs, [preset], batches_for=lambda run: test.batches(2000), times=TIMES, repeats=REPEATS,
             seed=SEED, progress=False)
print(f"{len(rows)} measurements on {len(test)} test images in {time.perf_counter() - start:.0f} s")
backends = collections.defaultdict(set)
for r in rows:
    backends[model_of[r["run"]]].add(r["backend"])
print("backend: " + "; ".join(f"{model}: {', '.join(sorted(b))}" for model, b in backends.items()))
order = [run.name for run in runs]
summary = sorted(summarize(rows), key=lambda r: (order.index(r["run"]), r["t_seconds"]))
display(Markdown(markdown_table(summary, preset.name)))
""",
    ),
    (
        "code",
        """
times = parse_times(TIMES)
cell = {(r["run"], r["t_seconds"]): r for r in summary}
Path(OUT).mkdir(parents=True, exist_ok=True)


def panels(value, ylabel, filename, title):
    # one panel per model, one line per method: value(summary cell) along the times (log axis)
    fig, axes = plt.subplots(1, len(MODELS), figsize=(5.5 * len(MODELS), 4), squeeze=False)
    for ax, model in zip(axes[0], MODELS):
        for name in OPTIMIZERS:
            cells = [cell[(f"{model}-{name}", t)] for t in times]
            ax.plot(times, [value(c) for c in cells], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xticks(times)
        ax.set_xticklabels([format_time(t) for t in times])
        ax.set_xlabel("time after programming")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{model} on {preset.name}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(Path(OUT) / filename, dpi=120)
    plt.close(fig)
    display(Image(filename=str(Path(OUT) / filename)))


panels(lambda c: 100 * c["mean"], "test accuracy (%)", "accuracy_by_model.png",
       f"mean over {REPEATS} programmings")
panels(lambda c: 100 * (c["digital_accuracy"] - c["mean"]), "digital minus analog accuracy (points)",
       "accuracy_lost.png", "accuracy lost to the hardware, relative to each network's own digital accuracy")
""",
    ),
    (
        "md",
        """
## 4. Facts to check the reading against

For each model, method and time: the difference of its mean accuracy to SGD's on the same model,
with Welch's t-test p-value over the repeats (a handful of repeats resolves only large differences;
with 2 methods x 5 times per model, a single p between 0.01 and 0.05 can be chance).
""",
    ),
    (
        "code",
        """
acc = collections.defaultdict(list)
for r in rows:
    acc[(r["run"], r["t_seconds"])].append(r["accuracy"])
baseline = OPTIMIZERS[0]


def versus(model, name, t):
    # (difference in points to the baseline method on the same model, Welch p-value)
    a, b = np.array(acc[(f"{model}-{name}", t)]), np.array(acc[(f"{model}-{baseline}", t)])
    p = stats.ttest_ind(a, b, equal_var=False).pvalue if len(a) > 1 and len(b) > 1 else float("nan")
    return 100 * (a.mean() - b.mean()), p


for model in MODELS:
    print(f"{model}: difference to {baseline} in accuracy points (Welch p over {REPEATS} repeats)")
    print(f"  {'method':8s} {'digital':>8s}" + "".join(f"{format_time(t):>17s}" for t in times))
    for name in OPTIMIZERS[1:]:
        digital = (cell[(f"{model}-{name}", times[0])]["digital_accuracy"]
                   - cell[(f"{model}-{baseline}", times[0])]["digital_accuracy"])
        parts = [f"  {name:8s} {100 * digital:+8.2f}"]
        for t in times:
            diff, p = versus(model, name, t)
            parts.append(f"{diff:+8.2f} (p={p:.3f})")
        print("".join(parts))
""",
    ),
    (
        "md",
        """
## 5. Reading the result

The paragraphs below are written by the next cell from the numbers above: a difference is called
clear when p <= 0.01 at that time point, and within the noise otherwise.
""",
    ),
    (
        "code",
        """
def pct(x):
    return f"{100 * x:.2f}%"


def reading(model):
    first, last = times[0], times[-1]
    base = {t: cell[(f"{model}-{baseline}", t)] for t in (first, last)}
    text = [f"**{model}.** {baseline} reaches {pct(base[first]['digital_accuracy'])} digitally, "
            f"{pct(base[first]['mean'])} at {format_time(first)} and {pct(base[last]['mean'])} at "
            f"{format_time(last)} on {preset.name} (± {100 * base[last]['std']:.2f} over the programmings)."]
    for name in OPTIMIZERS[1:]:
        c0, c1 = cell[(f"{model}-{name}", first)], cell[(f"{model}-{name}", last)]
        digital = 100 * (c0["digital_accuracy"] - base[first]["digital_accuracy"])
        sentence = [f"{name} is {digital:+.2f} points from {baseline} digitally"]
        for t in (first, last):
            diff, p = versus(model, name, t)
            verdict = "clear" if p <= 0.01 else "within the noise"
            sentence.append(f"{diff:+.2f} at {format_time(t)} (p = {p:.3f}, {verdict})")
        change = 100 * (c1["mean"] - c0["mean"])
        change_base = 100 * (base[last]["mean"] - base[first]["mean"])
        clear = [t for t in times if versus(model, name, t)[1] <= 0.01 and versus(model, name, t)[0] > 0]
        text.append(", ".join(sentence) + f"; from {format_time(first)} to {format_time(last)} its accuracy "
                    f"changes by {change:+.2f} points ({baseline}: {change_base:+.2f}), and it leads {baseline} "
                    "clearly at " + (", ".join(format_time(t) for t in clear) if clear else "no time point") + ".")
    return " ".join(text)


display(Markdown("\\n\\n".join(reading(model) for model in MODELS)))
""",
    ),
    (
        "md",
        """
**What this does not show.** One training seed per method, a few short epochs and default
hyperparameters: the spread over training seeds, which this run does not measure, may be as large
as the differences between methods, and a transformer is usually trained longer and with AdamW. The
comparison is within each model (same data, same epochs, same evaluation images), not between the
two models, whose digital accuracies differ.
""",
    ),
    (
        "code",
        """
for kind, path in write_report(rows, OUT, title=f"networks on {preset.name}").items():
    print(f"{kind:8s} {path}")
""",
    ),
]


NOTEBOOKS = {
    "01-quickstart": QUICKSTART,
    "02-optimizers": OPTIMIZERS,
    "03-device-presets": PRESETS,
    "04-networks": NETWORKS,
}


def _code_sources(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def build(stem: str) -> Path:
    """Write notebook ``stem``; keep the outputs of an existing file whose code is unchanged."""
    path = HERE / f"{stem}.ipynb"
    nb = _notebook(stem, NOTEBOOKS[stem])
    if path.exists():
        old = nbformat.read(path, as_version=4)
        if _code_sources(old) == _code_sources(nb):
            old_code = [c for c in old.cells if c.cell_type == "code"]
            for new, prev in zip((c for c in nb.cells if c.cell_type == "code"), old_code):
                new.outputs, new.execution_count = prev.outputs, prev.execution_count
                if "execution" in prev.metadata:
                    new.metadata["execution"] = prev.metadata["execution"]
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return path


def execute(stem: str, timeout: int = 3600) -> float:
    """Run notebook ``stem`` at its own (full-size) parameters in the notebooks folder; save outputs."""
    from nbclient import NotebookClient

    path = HERE / f"{stem}.ipynb"
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--execute",
        nargs="*",
        metavar="PREFIX",
        help="execute these notebooks (name prefixes such as 01; none given: all) after writing",
    )
    args = parser.parse_args(argv)
    for stem in NOTEBOOKS:
        print(f"wrote {build(stem)}")
    if args.execute is not None:
        for stem in NOTEBOOKS:
            if not args.execute or any(stem.startswith(p) for p in args.execute):
                print(f"executed {stem} in {execute(stem):.0f} s", flush=True)


if __name__ == "__main__":
    main()
