"""Tidy result rows: a crash-safe append-only store, and the statistics per (run, preset, t) cell.

The store is one ``results.csv``. A *cell* is one programming of one run on one preset (one repeat):
all its time points are measured from the same programmed weights and are appended together, then
flushed and fsynced, so a killed sweep loses at most the cell it was measuring. Rerunning the same
sweep reads the finished cells back and measures only the missing ones. ``sweep.json`` beside it
records the settings; a rerun with different settings under the same folder is refused.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy import stats

from analogsam.storage import SettingsMismatchError

RESULT_COLUMNS = ["run", "optimizer", "model", "dataset", "preset", "preset_hash", "t_seconds", "repeat",
                  "seed", "accuracy", "loss", "digital_accuracy", "n_samples", "backend"]
SUMMARY_COLUMNS = ["run", "optimizer", "preset", "preset_hash", "t_seconds", "n", "mean", "std",
                   "ci95_low", "ci95_high", "digital_accuracy"]
_INT_COLUMNS = {"repeat", "seed", "n_samples", "n"}
_FLOAT_COLUMNS = {"t_seconds", "accuracy", "loss", "digital_accuracy", "mean", "std", "ci95_low", "ci95_high"}


def _typed(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        if value in ("", None):
            out[key] = None
        elif key in _INT_COLUMNS:
            out[key] = int(value)
        elif key in _FLOAT_COLUMNS:
            out[key] = float(value)
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
    """Write ``rows`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cell_key(row: dict) -> tuple:
    return (row["run"], row["preset"], row["preset_hash"], int(row["repeat"]))


class ResultStore:
    """Append-only ``results.csv`` in ``folder`` that remembers which cells are finished."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "results.csv"
        self._repair_torn_tail()
        self.rows = read_rows(self.path)
        self.done = {cell_key(r) for r in self.rows}

    def _repair_torn_tail(self) -> None:
        # A crash while appending can leave a partial last line; drop it so appends stay aligned.
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            self.path.write_bytes(data[: data.rfind(b"\n") + 1])

    def check_settings(self, settings: dict) -> None:
        """Record ``settings`` (times, seed, preset hashes...) or refuse if they differ from the stored ones.

        Presets and runs may be added to a folder; a preset name measured with other values, or other
        times or seed, may not.
        """
        path = self.folder / "sweep.json"
        if path.exists():
            old = json.loads(path.read_text())
            for key in ("times", "seed"):
                if key in old and old[key] != settings.get(key):
                    raise SettingsMismatchError(
                        f"{self.folder} holds results measured with {key}={old[key]}, not {settings.get(key)}. "
                        "Use another --out folder, or delete this one to start over.")
            for name, digest in settings.get("presets", {}).items():
                if old.get("presets", {}).get(name, digest) != digest:
                    raise SettingsMismatchError(
                        f"{self.folder} holds results for preset {name!r} with other values (hash "
                        f"{old['presets'][name]}, now {digest}). Use another --out folder, or give the changed "
                        "preset another name.")
            settings = {**old, **settings, "presets": {**old.get("presets", {}), **settings.get("presets", {})}}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(settings, indent=2) + "\n")
        os.replace(tmp, path)

    def append_cell(self, rows: list[dict]) -> None:
        """Append one finished cell's rows durably."""
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        self.rows.extend(rows)
        self.done.update(cell_key(r) for r in rows)


def confidence_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean; a single value has no spread to estimate, so its bounds are NaN."""
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n)
    return mean - half, mean + half


def summarize(rows: Iterable[dict]) -> list[dict]:
    """One row per (run, preset, preset_hash, t): n, mean, sample std and 95% CI of accuracy over repeats."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["run"], r["preset"], r["preset_hash"], float(r["t_seconds"]))].append(r)
    out = []
    for (run, preset, digest, t), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3])):
        acc = np.array([m["accuracy"] for m in members], dtype=float)
        low, high = confidence_interval(acc)
        out.append({"run": run, "optimizer": members[0].get("optimizer"), "preset": preset,
                    "preset_hash": digest, "t_seconds": t, "n": len(acc), "mean": float(acc.mean()),
                    "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                    "ci95_low": low, "ci95_high": high, "digital_accuracy": members[0].get("digital_accuracy")})
    return out
