"""The numbers a small seeded pipeline produces, pinned across refactors.

``python tests/pinned_numbers.py`` rewrites ``tests/data/pinned_numbers.json`` (do that only when a
change of numbers is intended and explained); ``tests/test_pinned_numbers.py`` recomputes them and
compares them under the README's reproducibility contract (bit-identical where they were recorded;
elsewhere within the float32 and ADC-step tolerances it states). Only public API names are used, so
the pin survives moves of internal code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

PIN_FILE = Path(__file__).parent / "data" / "pinned_numbers.json"
ROW_KEYS = (
    "run",
    "optimizer",
    "preset",
    "preset_hash",
    "t_seconds",
    "repeat",
    "seed",
    "accuracy",
    "loss",
    "digital_accuracy",
    "n_samples",
    "backend",
)


def _rows(rows):
    return [{k: r[k] for k in ROW_KEYS} for r in rows]


def compute(workdir: Path) -> dict:
    import analogsam
    from analogsam.data import load_dataset
    from analogsam.evaluation import sweep
    from analogsam.optim import build_method  # noqa: F401  (public name the pin relies on)

    torch.set_num_threads(1)
    data = load_dataset("digits")
    sgd = analogsam.train(
        "mlp", data, optimizer="sgd", epochs=3, batch_size=64, lr=0.05, seed=0, out=workdir / "sgd", progress=False
    )
    asam = analogsam.train(
        "lenet5", data, optimizer="asam", epochs=3, batch_size=64, lr=0.05, seed=1, out=workdir / "asam", progress=False
    )
    batches = list(data.test.batches(200))
    rows = sweep(
        [sgd, asam],
        ["pcm", "rram-wan2022", "hwa-standard"],
        batches_for=lambda r: batches,
        times="1s,1d",
        repeats=2,
        seed=3,
        progress=False,
    )
    faulted = analogsam.evaluate(
        sgd,
        batches,
        "pcm",
        times="1s,1y",
        repeats=2,
        seed=5,
        progress=False,
        faults={"stuck_at_rate": 0.01, "bit_flip_rate": 0.001, "bits": 8},
    )
    try:  # the flatness probes' public home
        from analogsam.robustness import analyze_model
    except ImportError:
        from analogsam.studies.flatness import analyze_model
    probe_settings = dict(hessian_iters=5, trace_draws=3, sharpness_draws=3, noise_draws=2, fault_draws=2)
    try:  # the settings grouped into two objects (issue 26); flat keywords before
        from analogsam.robustness import probe_settings as grouped

        sharp, curves = grouped(probe_settings)
        probe_settings = {"sharpness": sharp, "robustness": curves}
    except ImportError:
        pass
    probes = analyze_model(
        sgd.model,
        list(data.train.batches(128)),
        num_batches=2,
        seed=0,
        **probe_settings,
        metrics=(
            "worst_case_sharpness",
            "adaptive_sharpness",
            "average_sharpness",
            "hessian_top_eigenvalue",
            "hessian_trace",
        ),
    )
    untimed = [{k: v for k, v in m.items() if k != "seconds"} for m in (*sgd.metrics, *asam.metrics)]
    # Faulted rows are compared without their run label: faults move from the name to a column.
    faulted = [{k: v for k, v in r.items() if k != "run"} for r in _rows(faulted)]
    return {
        "probes": {k: probes[k] for k in ("metrics", "drops", "clean")},
        "train": untimed,
        "sweep": _rows(rows),
        "faulted": faulted,
    }


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        numbers = compute(Path(tmp))
    PIN_FILE.parent.mkdir(exist_ok=True)
    PIN_FILE.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PIN_FILE}", file=sys.stderr)
