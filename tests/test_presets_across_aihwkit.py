"""Presets keep their meaning across the aihwkit versions analogsam installs (1.1.0, 1.2.0).

The digits MLP is evaluated on every shipped preset through aihwkit's own tiles (backend
``aihwkit``: its programming, drift and forward noise), and the statistics are compared with those
recorded under the other aihwkit version in ``tests/data/preset_statistics_aihwkit-*.json``: at
every (preset, t) the two means agree within their combined 95% confidence intervals
(``|mean_a - mean_b| <= half-width_a + half-width_b``), and the digital accuracy is the same model's.

To record the file of the installed aihwkit (after a deliberate change, under that version):
``ANALOGSAM_RECORD_PRESET_STATISTICS=1 python -m pytest tests/test_presets_across_aihwkit.py``.
"""

import json
import os
from importlib import metadata
from pathlib import Path

import pytest

from analogsam.evaluation import evaluate
from analogsam.evaluation.statistics import summarize
from analogsam.hardware.presets import list_presets, load

DATA = Path(__file__).parent / "data"
RECORDED = "preset_statistics_aihwkit-{}.json"
REPEATS = 12
TIMES = (1.0, 86400.0)


def preset_times(name: str) -> list:
    """The times of :data:`TIMES` the preset is defined at, else its first two defined times."""
    preset = load(name)
    return preset.defined_times(TIMES) or list(preset.supported_times[:2])


def shipped_names() -> list:
    return [row["name"] for row in list_presets()]


def preset_statistics(run, digits) -> dict:
    """{"preset@t": {mean, ci95_low, ci95_high, n, digital_accuracy}} over every shipped preset."""
    cells = {}
    for name in shipped_names():
        rows = evaluate(
            run,
            digits.test.batches(512),
            name,
            times=preset_times(name),
            repeats=REPEATS,
            seed=0,
            backend="aihwkit",
            progress=False,
        )
        for s in summarize(rows):
            cells[f"{s['preset']}@{s['t_seconds']:g}"] = {
                key: s[key] for key in ("mean", "ci95_low", "ci95_high", "n", "digital_accuracy")
            }
    return cells


def recorded_versions() -> dict:
    """{aihwkit version: statistics} of the files in tests/data."""
    prefix, suffix = RECORDED.split("{}")
    return {
        path.name[len(prefix) : -len(suffix)]: json.loads(path.read_text())
        for path in sorted(DATA.glob(RECORDED.format("*")))
    }


@pytest.fixture(scope="module")
def statistics(digits_run, digits):
    return preset_statistics(digits_run, digits)


def test_presets_mean_the_same_under_every_recorded_aihwkit(statistics):
    installed = metadata.version("aihwkit")
    if os.environ.get("ANALOGSAM_RECORD_PRESET_STATISTICS"):
        (DATA / RECORDED.format(installed)).write_text(json.dumps(statistics, indent=1, sort_keys=True) + "\n")
    others = {version: cells for version, cells in recorded_versions().items() if version != installed}
    assert others, f"no recorded statistics of an aihwkit other than the installed {installed} in {DATA}"
    assert {len(load(name).defined_times(TIMES) or [0, 0]) for name in shipped_names()} == {2}
    for version, cells in others.items():
        assert sorted(cells) == sorted(statistics), (version, sorted(cells), sorted(statistics))
        for cell, ours in statistics.items():
            theirs = cells[cell]
            assert ours["n"] == theirs["n"] == REPEATS
            assert ours["digital_accuracy"] == pytest.approx(theirs["digital_accuracy"], abs=1e-9), cell
            half_widths = (ours["ci95_high"] - ours["ci95_low"] + theirs["ci95_high"] - theirs["ci95_low"]) / 2
            gap = abs(ours["mean"] - theirs["mean"])
            assert gap <= half_widths, (
                f"{cell}: mean accuracy {ours['mean']:.4f} under aihwkit {installed}, {theirs['mean']:.4f} "
                f"under {version}, farther apart than their combined 95% CIs ({half_widths:.4f})"
            )
