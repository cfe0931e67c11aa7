# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -papermill
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # SGD, SAM and SAMSON on a transformer and a depthwise CNN
#
# Notebook 02 asks whether sharpness-aware training keeps a network accurate on drifting PCM
# conductances, for LeNet-5. This notebook asks the same question of two networks of the kinds that
# are deployed on analog accelerators and that LeNet-5 does not represent:
#
# | model | kind | what goes on analog tiles | what stays digital |
# |---|---|---|---|
# | `vit-tiny` | patch-embedding vision transformer (Dosovitskiy et al. 2021): 2 pre-norm encoder blocks, dim 64, 4 heads | the patch embedding, the Q, K, V and output projections of every attention, the MLPs, the head | the attention products (QKᵀ, softmax, ·V), LayerNorm, the class token and position embedding |
# | `mobilenet-tiny` | MobileNet v1 (Howard et al. 2017) for small images: depthwise-separable blocks, BatchNorm, width multiplier 0.25 | every convolution, each group of a depthwise one on its own tiles, and the classifier | BatchNorm, ReLU, pooling |
#
# Each model is trained on Fashion-MNIST with plain SGD (momentum 0.9), SAM (Foret et al., ICLR 2021)
# and SAMSON (Mordido et al. 2022), all else equal (each method's default hyperparameters, the same
# epochs, learning rate, schedule and seed), then converted to the `pcm` preset and measured from 1
# second to 1 year after programming, over several independent programmings.
#
# Every sentence below that states a result is computed from this run's numbers: rerun with other
# parameters and the text changes with them.

# %% tags=["parameters"]
DATASET = "fashion-mnist"
MODELS = ["vit-tiny", "mobilenet-tiny"]  # any of analogsam.models.model_names(); dscnn also fits
OPTIMIZERS = ["sgd", "sam", "samson"]
HYPERPARAMETERS = {}  # per optimizer, e.g. {"sam": {"rho": 0.1}}; everything else: the defaults
EPOCHS = 3
SEED = 0
TRAIN_LIMIT = 10000  # training images (None: all 60,000)
EVAL_LIMIT = 1000  # test images for the analog evaluation (None: the whole test split)
PRESET = "pcm"
TIMES = "1s,1h,1d,30d,1y"
REPEATS = 5  # independent programmings per network
RUNS = "../studies/fashion-networks"  # run folders: <RUNS>/<model>/<optimizer>
OUT = "outputs/04-networks"

# %% [markdown]
# ## 1. Train (or reuse) every model with every method

# %%
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
from analogsam.training import train_or_reuse

data = load_dataset(DATASET, train_limit=TRAIN_LIMIT)
runs, model_of = [], {}
for model in MODELS:
    for name in OPTIMIZERS:
        start = time.perf_counter()
        run = train_or_reuse(
            Path(RUNS) / model / name,
            model=model,
            data=data,
            optimizer=name,
            epochs=EPOCHS,
            seed=SEED,
            data_options={"train_limit": TRAIN_LIMIT},
            run_name=f"{model}-{name}",
            progress=False,
            **HYPERPARAMETERS.get(name, {}),
        )
        runs.append(run)
        model_of[run.name] = model
        print(f"{run.name:24s} ready in {time.perf_counter() - start:6.1f} s ({run.path})")

lines = ["| run | parameters | training time | final train loss | digital test accuracy |", "|---|---|---|---|---|"]
for run in runs:
    parameters = sum(p.numel() for p in run.model.parameters())
    last = run.metrics[-1]
    lines.append(
        f"| {run.name} | {parameters:,d} | {sum(m['seconds'] for m in run.metrics):.0f} s | "
        f"{last['train_loss']:.3f} | {last['test_accuracy']:.2%} |"
    )
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## 2. What the hardware sees
#
# `convert` rewrites the layers aihwkit cannot convert itself (attention, grouped convolutions) into
# layers whose weight matrices sit on tiles, and converts those. The count below is of the analog
# layers of each network on the preset, by type (the containers aihwkit wraps them in left out).

# %%
preset = presets.load(PRESET)
for model in MODELS:
    analog = convert(next(run for run in runs if model_of[run.name] == model).model, preset)
    kinds = collections.Counter(
        type(m).__name__
        for m in analog.modules()
        if type(m).__name__.startswith("Analog")
        and not type(m).__name__.startswith(("AnalogSequential", "AnalogWrapper"))
    )
    print(f"{model:16s} " + ", ".join(f"{n} x {kind}" for kind, n in sorted(kinds.items())))

# %% [markdown]
# ## 3. Accuracy on PCM over time
#
# The analog evaluation uses the first `EVAL_LIMIT` test images, the same images for every network;
# each repeat is an independent programming, and all time points of one repeat drift from the same
# programming. The `backend` says what computed the analog forward.

# %%
test = data.test if EVAL_LIMIT is None else ArrayDataset(data.test.x[:EVAL_LIMIT], data.test.y[:EVAL_LIMIT])
start = time.perf_counter()
rows = sweep(
    runs, [preset], batches_for=lambda run: test.batches(2000), times=TIMES, repeats=REPEATS, seed=SEED, progress=False
)
print(f"{len(rows)} measurements on {len(test)} test images in {time.perf_counter() - start:.0f} s")
backends = collections.defaultdict(set)
for r in rows:
    backends[model_of[r["run"]]].add(r["backend"])
print("backend: " + "; ".join(f"{model}: {', '.join(sorted(b))}" for model, b in backends.items()))
order = [run.name for run in runs]
summary = sorted(summarize(rows), key=lambda r: (order.index(r["run"]), r["t_seconds"]))
display(Markdown(markdown_table(summary, preset.name)))

# %%
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


panels(lambda c: 100 * c["mean"], "test accuracy (%)", "accuracy_by_model.png", f"mean over {REPEATS} programmings")
panels(
    lambda c: 100 * (c["digital_accuracy"] - c["mean"]),
    "digital minus analog accuracy (points)",
    "accuracy_lost.png",
    "accuracy lost to the hardware, relative to each network's own digital accuracy",
)

# %% [markdown]
# ## 4. Facts to check the reading against
#
# For each model, method and time: the difference of its mean accuracy to SGD's on the same model,
# with Welch's t-test p-value over the repeats (a handful of repeats resolves only large differences;
# with 2 methods x 5 times per model, a single p between 0.01 and 0.05 can be chance).

# %%
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
        digital = (
            cell[(f"{model}-{name}", times[0])]["digital_accuracy"]
            - cell[(f"{model}-{baseline}", times[0])]["digital_accuracy"]
        )
        parts = [f"  {name:8s} {100 * digital:+8.2f}"]
        for t in times:
            diff, p = versus(model, name, t)
            parts.append(f"{diff:+8.2f} (p={p:.3f})")
        print("".join(parts))


# %% [markdown]
# ## 5. Reading the result
#
# The paragraphs below are written by the next cell from the numbers above: a difference is called
# clear when p <= 0.01 at that time point, and within the noise otherwise.


# %%
def pct(x):
    return f"{100 * x:.2f}%"


def reading(model):
    first, last = times[0], times[-1]
    base = {t: cell[(f"{model}-{baseline}", t)] for t in (first, last)}
    text = [
        f"**{model}.** {baseline} reaches {pct(base[first]['digital_accuracy'])} digitally, "
        f"{pct(base[first]['mean'])} at {format_time(first)} and {pct(base[last]['mean'])} at "
        f"{format_time(last)} on {preset.name} (± {100 * base[last]['std']:.2f} over the programmings)."
    ]
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
        text.append(
            ", ".join(sentence) + f"; from {format_time(first)} to {format_time(last)} its accuracy "
            f"changes by {change:+.2f} points ({baseline}: {change_base:+.2f}), and it leads {baseline} "
            "clearly at " + (", ".join(format_time(t) for t in clear) if clear else "no time point") + "."
        )
    return " ".join(text)


display(Markdown("\n\n".join(reading(model) for model in MODELS)))

# %% [markdown]
# **What this does not show.** One training seed per method, a few short epochs and default
# hyperparameters: the spread over training seeds, which this run does not measure, may be as large
# as the differences between methods, and a transformer is usually trained longer and with AdamW. The
# comparison is within each model (same data, same epochs, same evaluation images), not between the
# two models, whose digital accuracies differ.

# %%
for kind, path in write_report(rows, OUT, title=f"networks on {preset.name}").items():
    print(f"{kind:8s} {path}")
