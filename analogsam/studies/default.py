"""Studies built from the API: train several optimizers on one task, reusing finished runs.

``analogsam run`` is :func:`default_study_runs` followed by :func:`analogsam.evaluation.sweep`.
"""

from __future__ import annotations

from pathlib import Path

from analogsam.data import load_dataset
from analogsam.storage import file_digest, matching_record, settings_hash, write_json
from analogsam.training import CHECKPOINT, TrainedRun, load_run, train

#: Programmings per model in the default study (``analogsam run``), as the README says; every other
#: evaluation uses :data:`analogsam.evaluation.DEFAULT_REPEATS`.
STUDY_REPEATS = 5

#: The record ``train_or_reuse`` writes beside a finished run: the settings it was trained with, their hash
#: and the digest of the checkpoint they produced.
REUSE_RECORD = "train_settings.json"

# Arguments of ``train`` that do not change what is trained (how progress is shown, the device, where it
# is written; a local data folder is dropped from data_options): everything else is part of its identity.
_NOT_IDENTITY = {"progress", "device", "out"}


def train_or_reuse(out: str | Path, **train_kwargs) -> TrainedRun:
    """Train into ``out`` unless ``out`` already holds the run these settings train.

    Takes :func:`analogsam.train`'s arguments. After training, the settings (dataset and model names,
    data options, every training setting and optimizer hyperparameter given here) are recorded in
    ``out/train_settings.json`` with their :func:`~analogsam.storage.settings_hash` and the
    checkpoint's digest: the same resume record as ``analyze`` and the result store use. A later call
    with the same settings loads that run; other settings, a changed checkpoint or a missing record
    (e.g. a run interrupted before it finished) retrain and overwrite ``out``. A model given as a
    module has no name to record, so it is always trained.
    """
    out = Path(out)
    settings = _identity(train_kwargs)
    if settings is not None and (out / CHECKPOINT).exists():
        record = matching_record(out / REUSE_RECORD, settings)
        if record is not None and record.get("checkpoint") == file_digest(out / CHECKPOINT):
            return load_run(out)
    run = train(out=out, **train_kwargs)
    if settings is not None:
        write_json(out / REUSE_RECORD, {"settings": settings, "settings_hash": settings_hash(settings),
                                        "checkpoint": file_digest(out / CHECKPOINT)})
    return run


def _identity(kwargs: dict) -> dict | None:
    """What decides the trained run: the settings of ``kwargs`` with the dataset and model by name."""
    data = kwargs.get("data", "fashion-mnist")
    model = kwargs.get("model", "lenet5")
    if not isinstance(model, (str, dict)):
        return None
    options = {k: v for k, v in (kwargs.get("data_options") or {}).items() if v is not None and k != "root"}
    rest = {k: v for k, v in kwargs.items() if k not in _NOT_IDENTITY | {"data", "model", "data_options"}}
    return {"dataset": data if isinstance(data, str) else data.name, "model": model, "data_options": options,
            **rest}


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
