"""The columns of result rows: one schema.

Every row names its ``metric`` (``accuracy``, ``top5``, ``perplexity``, ...; see
:mod:`analogsam.scoring`), whether ``higher_is_better``, its ``value`` and the digital network's
``digital_value`` of the same metric. Accuracy rows also carry the value in ``accuracy`` and
``digital_accuracy`` (for other metrics those two are empty). ``train_seed`` is the seed the network
was trained with (empty for a network that does not record one); ``seed_group`` is true for
the rows of a seed group's networks, which share their run name and differ in their training seed.

A knob sweep (``sweep(vary=...)``, ``--vary``) adds one column per varied knob, named by its key
(``io.adc_bits``), after these: :func:`columns_for` gives a file's columns, :func:`knob_columns` the
knob columns of rows, and :func:`knob_value` reads one back with the knob's type.
"""

from __future__ import annotations

from analogsam.hardware.presets.schema import KNOBS_BY_PATH

__all__ = ["DEFAULT_METRIC", "RESULT_COLUMNS", "columns_for", "knob_columns", "knob_value"]

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
#: The metric an evaluation scores unless told otherwise.
DEFAULT_METRIC = "accuracy"


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
