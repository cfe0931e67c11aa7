"""Studies built from the API: train several optimizers on one task, reusing finished runs.

``analogsam run`` is :func:`default_study_runs` followed by :func:`analogsam.evaluation.sweep`.
"""

from __future__ import annotations

from pathlib import Path

from analogsam.data import load_dataset
from analogsam.runs import TrainedRun
from analogsam.training import train_or_reuse

#: Programmings per model in the default study (``analogsam run``), as the README says; every other
#: evaluation uses :data:`analogsam.evaluation.DEFAULT_REPEATS`.
STUDY_REPEATS = 5


def default_study_runs(
    out: str | Path,
    *,
    optimizers=("sgd", "sam"),
    data: str = "fashion-mnist",
    model: str = "lenet5",
    epochs: int = 3,
    seed: int = 0,
    data_root=None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    progress: bool = True,
    device="cpu",
) -> list[TrainedRun]:
    """Train ``model`` on ``data`` once per optimizer (default hyperparameters) into ``out/<optimizer>``,
    on ``device`` (:func:`analogsam.train`'s; where a run was trained does not decide its reuse)."""
    options = {"root": data_root, "train_limit": train_limit, "test_limit": test_limit}
    splits = load_dataset(data, **options)
    return [
        train_or_reuse(
            Path(out) / name,
            model=model,
            data=splits,
            optimizer=name,
            epochs=epochs,
            seed=seed,
            progress=progress,
            data_options=options,
            run_name=name,
            device=device,
        )
        for name in optimizers
    ]
