"""The columns of result rows, and how a row from before the metric columns reads.

Every row names its ``metric`` (``accuracy``, ``top5``, ``perplexity``, ...; see
:mod:`analogsam.scoring`), whether ``higher_is_better``, its ``value`` and the digital network's
``digital_value`` of the same metric. Accuracy rows also carry the value in ``accuracy`` and
``digital_accuracy``, the columns of every results.csv written before metrics were a choice, so old
files, the readers of those columns and the pinned rows keep their meaning; for other metrics those
two are empty. ``train_seed`` is the seed the network was trained with (empty for a network that
does not record one, and in files written before the column existed); ``seed_group`` is true for
the rows of a seed group's networks, which share their run name and differ in their training seed.

A knob sweep (``sweep(vary=...)``, ``--vary``) adds one column per varied knob, named by its key
(``io.adc_bits``), after these: :func:`columns_for` gives a file's columns, :func:`knob_columns` the
knob columns of rows, and :func:`knob_value` reads one back with the knob's type.
"""

from __future__ import annotations

from analogsam.hardware.presets.schema import KNOBS_BY_PATH

__all__ = ["DEFAULT_METRIC", "RESULT_COLUMNS", "columns_for", "knob_columns", "knob_value", "with_metric"]

#: The columns of a result row, in the order ``results.csv`` writes them.
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


def knob_columns(rows) -> list[str]:
    """The varied-knob columns of ``rows`` (keys that name a preset knob), in first-seen order."""
    return list(dict.fromkeys(key for row in rows for key in row if key in KNOBS_BY_PATH))


def columns_for(base: list[str], rows) -> list[str]:
    """``base`` (e.g. :data:`RESULT_COLUMNS`) followed by the knob columns of ``rows``."""
    return base + [key for key in knob_columns(rows) if key not in base]


def knob_value(key: str, text: str):
    """A knob column's CSV text as the knob's type (``"4"`` -> 4 for ``io.adc_bits``)."""
    kind = KNOBS_BY_PATH[key].type
    if kind is bool:
        return str(text).strip().lower() in ("true", "1")
    return kind(text) if kind is not str else text
