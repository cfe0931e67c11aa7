"""Tidy result rows: reading and writing them, and a crash-safe, append-only, resumable store.

The store is one ``results.csv``. A *cell* is one programming of one run (clean, or with one set of
memory faults) on one preset: one repeat. All its time points are measured from the same programmed
weights and are appended together, then flushed and fsynced, so a killed sweep loses at most the
cell it was measuring. Rerunning the same sweep reads the finished cells back and measures only the
missing ones. ``sweep.json`` beside it records the settings; a rerun with different settings under
the same folder is refused.

The columns are :data:`~analogsam.evaluation.columns.RESULT_COLUMNS` (each row names its metric;
see :mod:`.columns`), followed by a column per varied knob; a ``results.csv`` with another header is
refused. A cell is keyed by (run, faults, preset, preset hash, repeat, metric), so one folder can
hold a run's accuracy and its top-5 accuracy side by side, and, for the rows of a seed group
(``seed_group`` true: one name, one network per training seed), also by its ``train_seed``, so each
network of a group has cells of its own.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from analogsam.evaluation.columns import DEFAULT_METRIC, RESULT_COLUMNS, columns_for, knob_columns, knob_value
from analogsam.hardware.presets.schema import KNOBS_BY_PATH
from analogsam.storage import SettingsMismatchError, atomic_write, read_json, write_json

__all__ = [
    "DEFAULT_METRIC",
    "RESULT_COLUMNS",
    "ResultStore",
    "SettingsMismatchError",
    "cell_key",
    "fault_label",
    "read_rows",
    "run_label",
    "write_rows",
]

_INT_COLUMNS = {"repeat", "seed", "n_samples", "n", "train_seed", "n_seeds"}
_FLOAT_COLUMNS = {
    "t_seconds",
    "value",
    "accuracy",
    "loss",
    "digital_value",
    "digital_accuracy",
    "mean",
    "std",
    "ci95_low",
    "ci95_high",
    "seed_std",
    "programming_std",
    "drop_ci95_low",
    "drop_ci95_high",
}
# A number in a summary over training seeds, a name (which drop) in analyze's correlation table.
_NUMBER_OR_TEXT_COLUMNS = {"drop"}
_BOOL_COLUMNS = {"higher_is_better", "seed_group"}
_TEXT_COLUMNS = {"faults"}  # empty means "none" (clean), a value in its own right, not a missing one


def fault_label(faults) -> str:
    """The ``faults`` column of rows measured with these memory faults: ``"bit_flip_rate=0.001, bits=8,
    stuck_at_rate=0.01"`` (keys sorted), or ``""`` for clean rows."""
    return ", ".join(f"{k}={v}" for k, v in sorted(faults.items())) if faults else ""


def run_label(run: str, faults: str = "") -> str:
    """``run [faults]`` for a faulted run, else ``run``: how progress bars and reports name it."""
    return f"{run} [{faults}]" if faults else run


def _typed(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        if key in _TEXT_COLUMNS:
            out[key] = value or ""
        elif value in ("", None):
            out[key] = None
        elif key in _INT_COLUMNS:
            out[key] = int(value)
        elif key in _BOOL_COLUMNS:
            out[key] = value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1")
        elif key in _FLOAT_COLUMNS:
            out[key] = float(value)
        elif key in KNOBS_BY_PATH:  # a varied knob's column (a knob sweep)
            out[key] = knob_value(key, value)
        elif key in _NUMBER_OR_TEXT_COLUMNS:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
        else:
            out[key] = value
    return out


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of a results.csv or summary.csv, with numbers as numbers. A torn last line is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [_typed(r) for r in rows if None not in r.values()]


def write_rows(path: str | os.PathLike, rows: Iterable[dict], columns: list[str]) -> None:
    """Write ``rows`` as CSV with ``columns``, atomically (see :func:`analogsam.storage.atomic_write`)."""

    def write(f):
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write)


def _key(
    run: str, faults: str, preset: str, digest: str, repeat: int, metric: str, train_seed: int | None = None
) -> tuple:
    key = (run, faults, preset, digest, repeat, metric)
    # Only a seed group's rows are keyed by their training seed (a single run has one network); the
    # seed is tagged so it can never be read as a metric's name.
    return key if train_seed is None else (*key, ("train_seed", int(train_seed)))


def cell_key(row: dict) -> tuple:
    """(run, faults, preset, preset_hash, repeat, metric), plus the training seed for a row of a seed
    group: what one cell of the store measured."""
    return _key(
        row["run"],
        row.get("faults") or "",
        row["preset"],
        row["preset_hash"],
        int(row["repeat"]),
        row["metric"],
        row.get("train_seed") if row.get("seed_group") else None,
    )


def _header(path: Path) -> list[str] | None:
    with open(path, newline="") as f:
        return next(csv.reader(f), None)


class ResultStore:
    """Append-only ``results.csv`` in ``folder`` that remembers which cells are finished."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "results.csv"
        self._repair_torn_tail()
        self.rows = read_rows(self.path)
        self.columns = columns_for(RESULT_COLUMNS, self.rows)
        self._check_header()
        self.done = {cell_key(r) for r in self.rows}

    def _repair_torn_tail(self) -> None:
        # A crash while appending can leave a partial last line; drop it so appends stay aligned.
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            atomic_write(self.path, lambda f: f.write(data[: data.rfind(b"\n") + 1]), binary=True)

    def _check_header(self) -> None:
        # Appended rows follow RESULT_COLUMNS and the columns of the knobs its rows vary: a file with
        # other columns was not written by this version of analogsam, and appending would misalign it.
        if not (self.path.exists() and self.path.stat().st_size):
            return
        header = _header(self.path)
        if header != RESULT_COLUMNS + knob_columns([dict.fromkeys(header or [])]):
            raise SettingsMismatchError(
                f"{self.path} has the columns {header}, not those of analogsam's results "
                f"({', '.join(RESULT_COLUMNS)}, then one per varied knob). Use another --out folder, or "
                "delete this one to start over."
            )

    def check_settings(self, settings: dict) -> None:
        """Record ``settings`` (times, seed, preset hashes...) or refuse if they differ from the stored ones.

        Presets and runs may be added to a folder; a preset name measured with other values, or other
        times or seed, may not.
        """
        path = self.folder / "sweep.json"
        old = read_json(path) if path.exists() else None
        if path.exists() and not isinstance(old, dict):
            raise SettingsMismatchError(
                f"{path} is not a readable settings record; delete it (or the folder {self.folder}) to start over"
            )
        if old is not None:
            for key in ("times", "seed"):
                if key in old and old[key] != settings.get(key):
                    raise SettingsMismatchError(
                        f"{self.folder} holds results measured with {key}={old[key]}, not {settings.get(key)}. "
                        "Use another --out folder, or delete this one to start over."
                    )
            for name, digest in settings.get("presets", {}).items():
                if old.get("presets", {}).get(name, digest) != digest:
                    raise SettingsMismatchError(
                        f"{self.folder} holds results for preset {name!r} with other values (hash "
                        f"{old['presets'][name]}, now {digest}). Use another --out folder, or give the changed "
                        "preset another name."
                    )
            settings = {**old, **settings, "presets": {**old.get("presets", {}), **settings.get("presets", {})}}
        write_json(path, settings)

    def has(
        self, run: str, faults: str, preset, repeat: int, metric: str = DEFAULT_METRIC, train_seed: int | None = None
    ) -> bool:
        """Whether the cell of ``run`` with ``faults`` (``""``: clean) on ``preset`` (a Preset) at
        ``repeat``, scored by ``metric`` (its name), is finished; ``train_seed`` names the network of
        a seed group (``None`` for a single run)."""
        return _key(run, faults, preset.name, preset.hash, repeat, metric, train_seed) in self.done

    def append_cell(self, rows: list[dict]) -> None:
        """Append one finished cell's rows durably. A cell that varies a knob no earlier row varied
        adds its column: the file is rewritten once with it (atomically; the old rows' values kept,
        their new column empty)."""
        columns = columns_for(self.columns, rows)
        if columns != self.columns:
            self.columns = columns
            if self.path.exists() and self.path.stat().st_size:
                write_rows(self.path, self.rows, self.columns)
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        self.rows.extend(rows)
        self.done.update(cell_key(r) for r in rows)
