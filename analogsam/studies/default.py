"""Studies built from the API: train several optimizers on one task, reusing finished runs.

``analogsam run`` is :func:`default_study_runs` followed by :func:`analogsam.evaluation.sweep`.
"""

from __future__ import annotations

from pathlib import Path

from analogsam.data import load_dataset
from analogsam.training import CHECKPOINT, TrainedRun, load_run, train


def train_or_reuse(out: str | Path, **train_kwargs) -> TrainedRun:
    """Train into ``out`` unless ``out`` already holds a finished run with the same settings.

    Takes :func:`analogsam.train`'s arguments. "Same" means: the dataset, model name, data options,
    every training setting given here, and every optimizer hyperparameter given here match the stored
    config; anything else is retrained (and overwrites ``out``).
    """
    out = Path(out)
    if (out / CHECKPOINT).exists() and (out / "config.json").exists():
        run = load_run(out)
        if _matches(run.config, train_kwargs) and len(run.metrics) == run.config.get("epochs"):
            return run
    return train(out=out, **train_kwargs)


_TRAIN_SETTINGS = ("optimizer", "epochs", "seed", "batch_size", "lr", "momentum", "weight_decay", "schedule")
_NOT_HPARAMS = set(_TRAIN_SETTINGS) | {"model", "data", "data_options", "progress", "run_name", "device", "out"}


def _matches(config: dict, kwargs: dict) -> bool:
    data = kwargs.get("data", "fashion-mnist")
    model = kwargs.get("model", "lenet5")
    checks = [config.get("dataset") == (data if isinstance(data, str) else data.name),
              config.get("model") == (model if isinstance(model, str) else model.get("name") if isinstance(model, dict) else None),
              config.get("data_options") == _identity_options(kwargs.get("data_options"))]
    checks += [config.get(k) == kwargs[k] for k in _TRAIN_SETTINGS if k in kwargs]
    hparams = config.get("optimizer_hparams", {})
    checks += [hparams.get(k) == v for k, v in kwargs.items() if k not in _NOT_HPARAMS]
    return all(checks)


def _identity_options(options: dict | None) -> dict:
    return {k: v for k, v in (options or {}).items() if v is not None and k != "root"}


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
