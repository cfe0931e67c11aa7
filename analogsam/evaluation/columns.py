"""The columns of result rows, and how a row from before the metric columns reads.

Every row names its ``metric`` (``accuracy``, ``top5``, ``perplexity``, ...; see
:mod:`analogsam.scoring`), whether ``higher_is_better``, its ``value`` and the digital network's
``digital_value`` of the same metric. Accuracy rows also carry the value in ``accuracy`` and
``digital_accuracy``, the columns of every results.csv written before metrics were a choice, so old
files, the readers of those columns and the pinned rows keep their meaning; for other metrics those
two are empty. ``train_seed`` is the seed the network was trained with (empty for a network that
does not record one, and in files written before the column existed); ``seed_group`` is true for
the rows of a seed group's networks, which share their run name and differ in their training seed.
"""

from __future__ import annotations

__all__ = ["DEFAULT_METRIC", "RESULT_COLUMNS", "with_metric"]

RESULT_COLUMNS = [
    "run",
    "optimizer",
    "train_seed",
    "seed_group",
    "model",
    "dataset",
    "faults",
    "preset",
    "preset_hash",
    "t_seconds",
    "repeat",
    "seed",
    "metric",
    "higher_is_better",
    "value",
    "accuracy",
    "loss",
    "digital_value",
    "digital_accuracy",
    "n_samples",
    "backend",
]
#: What rows without a ``metric`` (written before it was a column) measured.
DEFAULT_METRIC = "accuracy"


def with_metric(row: dict) -> dict:
    """``row`` with its metric columns: a row from before they existed measured accuracy, so its
    ``metric`` is ``"accuracy"``, its ``value`` its ``accuracy`` (or a summary's ``mean``) and its
    ``digital_value`` its ``digital_accuracy``. Rows that have them are returned as they are."""
    if row.get("metric"):
        return row
    row = {**row, "metric": DEFAULT_METRIC, "higher_is_better": True}
    if row.get("value") is None and "accuracy" in row:
        row["value"] = row["accuracy"]
    if row.get("digital_value") is None and "digital_accuracy" in row:
        row["digital_value"] = row["digital_accuracy"]
    return row
