"""Studies built from the API: train several optimizers on one task, reusing finished runs.

``analogsam run`` is :func:`default_study_runs` followed by :func:`analogsam.evaluation.sweep`.
"""

from __future__ import annotations

import json
from pathlib import Path

from analogsam.data import load_dataset
from analogsam.training import CHECKPOINT, TrainedRun, load_run, train


def train_or_reuse(out: str | Path, **train_kwargs) -> TrainedRun:
    """Train into ``out`` unless ``out`` already holds a finished run with the same settings.

    "Same" means the stored config matches the one this call would write (dataset, model, optimizer
    and its hyperparameters, epochs, seed, ...); anything else is retrained.
    """
    out = Path(out)
    config_path = out / "config.json"
    if (out / CHECKPOINT).exists() and config_path.exists():
        run = load_run(out)
        wanted = {k: train_kwargs[k] for k in ("optimizer", "epochs", "seed", "batch_size") if k in train_kwargs}
        if all(run.config.get(k) == v for k, v in wanted.items()) and len(run.metrics) == run.config.get("epochs") \
                and run.config.get("data_options") == _identity_options(train_kwargs.get("data_options")):
            return run
    return train(out=out, **train_kwargs)


def _identity_options(options: dict | None) -> dict:
    options = {k: v for k, v in (options or {}).items() if v is not None and k != "root"}
    return json.loads(json.dumps(options))


def default_study_runs(out: str | Path, *, optimizers=("sgd", "sam"), data: str = "fashion-mnist",
                       model: str = "lenet5", epochs: int = 3, seed: int = 0, data_root=None,
                       train_limit: int | None = None, test_limit: int | None = None,
                       progress: bool = True) -> list[TrainedRun]:
    """Train ``model`` on ``data`` once per optimizer (default hyperparameters) into ``out/<optimizer>``."""
    options = {"root": data_root, "train_limit": train_limit, "test_limit": test_limit}
    splits = load_dataset(data, **options)
    return [train_or_reuse(Path(out) / name, model=model, data=splits, optimizer=name, epochs=epochs,
                           seed=seed, progress=progress, data_options=options, run_name=name)
            for name in optimizers]
