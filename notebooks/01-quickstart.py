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
# # Quickstart: from a trained network to its accuracy on analog hardware
#
# This notebook runs analogsam's pipeline once, end to end:
#
# 1. load Fashion-MNIST (from files on disk, nothing is downloaded),
# 2. train LeNet-5 digitally with SGD,
# 3. convert it to analog tiles of IBM aihwkit configured from the `pcm` device preset
#    (phase-change memory: programming noise, read noise, conductance drift, 8-bit DAC/ADC),
# 4. measure the test accuracy from 1 second to 1 year after the weights were programmed,
#    repeated over several independent programmings,
# 5. plot it and write the results to files.
#
# The next cell holds every setting. With the defaults, the LeNet-5 run is reused from
# `../studies/fashion-lenet5/sgd` if it is there (the same run notebook 02 uses), otherwise it is
# trained (3 epochs on 20,000 images, a few minutes on a laptop CPU). For a one-minute tour set
# `DATASET = "digits"` and `MODEL = "mlp"`.

# %% tags=["parameters"]
DATASET = "fashion-mnist"  # fashion-mnist | mnist | cifar10 | svhn | digits
MODEL = "lenet5"  # mlp | lenet5 | resnet20 | resnet32 | vgg8
OPTIMIZER = "sgd"  # any of analogsam.optim.OPTIMIZER_NAMES
EPOCHS = 3
SEED = 0
TRAIN_LIMIT = 20000  # training images to use (None: all 60,000)
EVAL_LIMIT = 2000  # test images for the analog evaluation (None: the whole test split)
PRESET = "pcm"  # a shipped preset name or the path of a TOML file
TIMES = "1s,1h,1d,30d,1y"  # time after programming
REPEATS = 5  # independent programmings (Monte-Carlo repeats)
RUNS = "../studies/fashion-lenet5"  # run folders: <RUNS>/<OPTIMIZER>
OUT = "outputs/01-quickstart"  # tables, plot and report

# %% [markdown]
# ## 1. Data
#
# `load_dataset` reads the standard files (IDX for Fashion-MNIST) and normalises the inputs with the
# training split's mean and standard deviation. Everything is held in memory as tensors.

# %%
import time
import warnings
from pathlib import Path

from IPython.display import Image, display

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when ipywidgets is absent

from analogsam.data import ArrayDataset, load_dataset
from analogsam.evaluation import evaluate, format_time, summarize
from analogsam.evaluation.report import plot_accuracy_vs_time, text_table, write_report
from analogsam.hardware import presets
from analogsam.hardware.conversion import convert
from analogsam.training import train_or_reuse

data = load_dataset(DATASET, train_limit=TRAIN_LIMIT)
print(
    f"{data.name}: {len(data.train)} training and {len(data.test)} test images of shape {data.input_shape}, "
    f"{data.num_classes} classes, read from {data.source}"
)

# %% [markdown]
# ## 2. Train digitally
#
# `train_or_reuse(folder, ...)` calls `analogsam.train` (SGD with momentum 0.9, learning rate 0.05 on
# a cosine schedule, batch 128, weight decay 5e-4 by default) and writes `checkpoint.pt`, `log.csv` and
# `config.json` into the folder. If the folder already holds a finished run with the same dataset,
# model and settings it loads that run instead of training again.

# %%
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
print(f"run {run.name!r} ({run.config['model']}, {run.optimizer}) in {run.path}")
for m in run.metrics:
    print(
        f"  epoch {m['epoch']}: train loss {m['train_loss']:.3f}, test accuracy {m['test_accuracy']:.2%} "
        f"({m['seconds']:.0f} s)"
    )

# %% [markdown]
# ## 3. Convert to analog tiles
#
# On an analog in-memory-computing chip each weight is stored as device conductances and every
# matrix-vector product is computed in place, with a DAC on the inputs and an ADC on the outputs.
# A device preset is plain data (a TOML file) that names the device model and every knob with its
# unit; `presets.describe` prints the resolved values and where each came from.

# %%
preset = presets.load(PRESET)
print(presets.describe(preset))

# %% [markdown]
# `convert` turns every `Linear` and `Conv2d` layer into an aihwkit analog layer configured from the
# preset (and returns the aihwkit model for your own experiments). `evaluate` below converts for you,
# so this cell only shows what the analog model is made of.

# %%
analog = convert(run.model, preset)
for name, module in analog.named_modules():
    if type(module).__name__.startswith("Analog") and name:
        print(f"{name:12s} {type(module).__name__}")

# %% [markdown]
# ## 4. Accuracy over time
#
# For each repeat, `evaluate` programs the conductances afresh (a new draw of programming noise), then
# for every time `t` lets them drift to `t` and measures the test accuracy (with read noise, output
# noise, DAC/ADC quantization and the preset's drift compensation). Every number is seeded: running
# the cell again gives the same table. To keep the run short the evaluation uses the first
# `EVAL_LIMIT` test images (the test file is in random class order).

# %%
test = data.test if EVAL_LIMIT is None else ArrayDataset(data.test.x[:EVAL_LIMIT], data.test.y[:EVAL_LIMIT])
start = time.perf_counter()
rows = evaluate(run, test.batches(2000), preset, times=TIMES, repeats=REPEATS, seed=SEED, progress=False)
print(f"{len(rows)} measurements on {len(test)} test images in {time.perf_counter() - start:.0f} s")
summary = summarize(rows)
print(text_table(summary, preset.name))

# %% [markdown]
# `rows` are tidy: one dict per measurement (run, optimizer, preset, t_seconds, repeat, seed,
# accuracy, ...). `summarize` aggregates them per time into mean, standard deviation and a 95%
# Student-t confidence interval, which the plot shades.

# %%
Path(OUT).mkdir(parents=True, exist_ok=True)
display(Image(filename=str(plot_accuracy_vs_time(summary, Path(OUT) / "accuracy_vs_time.png"))))
first, last = summary[0], summary[-1]
print(
    f"digital accuracy {first['digital_accuracy']:.2%}; on {preset.name}: {first['mean']:.2%} "
    f"at {format_time(first['t_seconds'])} and {last['mean']:.2%} at {format_time(last['t_seconds'])} "
    f"(95% CI {last['ci95_low']:.2%} to {last['ci95_high']:.2%})"
)

# %% [markdown]
# ## 5. Save
#
# `write_report` writes `results.csv` (every measurement), `summary.csv`, the plots and a markdown
# `report.md` into one folder.

# %%
for kind, path in write_report(rows, OUT, title=f"{run.name} on {preset.name}").items():
    print(f"{kind:8s} {path}")

# %% [markdown]
# ## Next
#
# - The same study from the command line:
#   `analogsam train --data fashion-mnist --model lenet5 --optimizer sgd --epochs 3 --train-limit 20000 --out runs/sgd` and
#   `analogsam evaluate runs/sgd --preset pcm --times 1s,1h,1d,30d,1y --repeats 5 --out runs/sgd/eval`.
# - `02-optimizers.ipynb` compares SGD with sharpness-aware optimizers on the same task.
# - `03-device-presets.ipynb` runs one network on every shipped device preset and sweeps the ADC
#   resolution and the drift compensation.
