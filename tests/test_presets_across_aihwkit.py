"""Presets keep their meaning across the aihwkit versions analogsam installs (1.1.0, 1.2.0).

The digits MLP is measured on every shipped preset by the seeded fast engine (backend ``fast``:
aihwkit's noise-model methods programming and drifting all tiles at once
(:mod:`analogsam.hardware.programming`), then the engine's replay of the tiles' forward, which the
conformance tests check against each version's C++ tiles), and its accuracy at each repeat is
compared with the accuracies recorded under the other aihwkit version in
``tests/data/preset_accuracies_aihwkit-*.json``, **paired by programming seed**: repeat k of a cell
has the same seed under both versions, so unchanged physics gives equal numbers, and a change shows
as paired differences of one sign.

The rule, per (preset, t) cell: the two versions differ if the exact two-sided sign test of the
paired differences (ties dropped) rejects "as likely up as down" under a Holm correction over all
cells at a family-wise level of :data:`FAMILY_ALPHA` = 1e-4, **and** the mean difference exceeds one
prediction (1/N, what the README's reproducibility contract lets another CPU's kernels move an
accuracy by). Under the null hypothesis (the presets mean the same under both versions; repeats
independent) the sign test is exact whatever the distribution, and Holm keeps the chance of any
false failure over the whole test at or below 1e-4 (the test computes and checks that bound). Every
number is seeded, so the verdict is also the same at every run: the test cannot be flaky.

:data:`REPEATS` = 24 makes a rejection possible at all: the smallest p-value of a cell is
2 * 0.5**24 = 1.2e-7, below Holm's strictest threshold, 1e-4 / 12 cells (six presets, two times).

To record the file of the installed aihwkit (after a deliberate change, under that version):
``ANALOGSAM_RECORD_PRESET_STATISTICS=1 python -m pytest tests/test_presets_across_aihwkit.py``.
"""

import json
import os
from importlib import metadata
from pathlib import Path

import pytest
from scipy.stats import binom, binomtest

from analogsam.evaluation import evaluate
from analogsam.evaluation.settings import PassLayout
from analogsam.hardware.presets import list_presets, load

DATA = Path(__file__).parent / "data"
RECORDED = "preset_accuracies_aihwkit-{}.json"
REPEATS = 24
TIMES = (1.0, 86400.0)
FAMILY_ALPHA = 1e-4


def preset_times(name: str) -> list:
    """The times of :data:`TIMES` the preset is defined at, else its first two defined times."""
    preset = load(name)
    return preset.defined_times(TIMES) or list(preset.supported_times[:2])


def shipped_names() -> list:
    return [row["name"] for row in list_presets()]


def preset_accuracies(run, digits) -> dict:
    """{"preset@t": {"accuracy": [one per repeat], "seed": [...], "n_samples", "digital_accuracy"}}."""
    cells = {}
    for name in shipped_names():
        rows = evaluate(
            run,
            digits.test.batches(512),
            name,
            times=preset_times(name),
            repeats=REPEATS,
            seed=0,
            layout=PassLayout(backend="fast"),
            progress=False,
        )
        for row in sorted(rows, key=lambda r: (r["t_seconds"], r["repeat"])):
            cell = cells.setdefault(
                f"{row['preset']}@{row['t_seconds']:g}",
                {
                    "accuracy": [],
                    "seed": [],
                    "n_samples": row["n_samples"],
                    "digital_accuracy": row["digital_accuracy"],
                },
            )
            cell["accuracy"].append(row["accuracy"])
            cell["seed"].append(row["seed"])
    return cells


def recorded_versions() -> dict:
    """{aihwkit version: accuracies} of the files in tests/data."""
    prefix, suffix = RECORDED.split("{}")
    return {
        path.name[len(prefix) : -len(suffix)]: json.loads(path.read_text())
        for path in sorted(DATA.glob(RECORDED.format("*")))
    }


def sign_test_p(differences: list) -> float:
    """Exact two-sided sign test of paired differences, ties dropped (1.0 when all are ties)."""
    ups = sum(d > 0 for d in differences)
    downs = sum(d < 0 for d in differences)
    return binomtest(ups, ups + downs, 0.5).pvalue if ups + downs else 1.0


def holm_rejections(p_values: dict, alpha: float) -> list:
    """The keys Holm's step-down procedure rejects at family-wise level ``alpha``."""
    ordered = sorted(p_values, key=p_values.get)
    rejected = []
    for i, key in enumerate(ordered):
        if p_values[key] > alpha / (len(ordered) - i):
            break
        rejected.append(key)
    return rejected


def differing_cells(ours: dict, theirs: dict) -> list:
    """The cells where the two versions' accuracies differ by the module's rule."""
    p_values, big = {}, set()
    for cell, mine in ours.items():
        other = theirs[cell]
        assert mine["seed"] == other["seed"], f"{cell}: the repeats' programming seeds differ, so they cannot pair"
        differences = [a - b for a, b in zip(mine["accuracy"], other["accuracy"])]
        p_values[cell] = sign_test_p(differences)
        if abs(sum(differences) / len(differences)) > 1 / mine["n_samples"]:
            big.add(cell)
    return [cell for cell in holm_rejections(p_values, FAMILY_ALPHA) if cell in big]


def test_the_rule_rejects_a_shift_and_keeps_its_false_failure_rate():
    """The rule on made-up cells: a one-sided shift is found; unchanged numbers and kernel-sized
    moves are not; and the chance of any false failure under the null is at most 1e-4."""
    n, seeds = 359, list(range(REPEATS))
    base = {"n_samples": n, "seed": seeds, "accuracy": [0.95 + (k % 5) / n for k in range(REPEATS)]}
    shifted = {**base, "accuracy": [a - 2 / n for a in base["accuracy"]]}
    kernel = {**base, "accuracy": [a - (k % 2) / n for k, a in enumerate(base["accuracy"])]}
    assert differing_cells({"c": base, "d": base}, {"c": shifted, "d": base}) == ["c"]
    assert differing_cells({"c": base}, {"c": kernel}) == []
    # Under the null every nonzero difference is up or down with probability 1/2: the sign test's
    # p-value is valid (P(p <= a) <= a for every level a Holm may use, for every number of nonzero
    # pairs), so Holm keeps the chance of any false failure over the cells at most FAMILY_ALPHA.
    cells = 2 * len(shipped_names())
    for m in range(1, REPEATS + 1):
        p_of = [binomtest(k, m, 0.5).pvalue for k in range(m + 1)]
        for level in (FAMILY_ALPHA / j for j in range(1, cells + 1)):
            assert sum(binom.pmf(k, m, 0.5) for k in range(m + 1) if p_of[k] <= level) <= level
    assert 2 * 0.5**REPEATS < FAMILY_ALPHA / cells


@pytest.fixture(scope="module")
def accuracies(digits_run, digits):
    return preset_accuracies(digits_run, digits)


@pytest.mark.slow  # every preset, 24 programmings
def test_presets_mean_the_same_under_every_recorded_aihwkit(accuracies):
    installed = metadata.version("aihwkit")
    if os.environ.get("ANALOGSAM_RECORD_PRESET_STATISTICS"):
        (DATA / RECORDED.format(installed)).write_text(json.dumps(accuracies, indent=1, sort_keys=True) + "\n")
    others = {version: cells for version, cells in recorded_versions().items() if version != installed}
    assert others, f"no recorded accuracies of an aihwkit other than the installed {installed} in {DATA}"
    assert {len(load(name).defined_times(TIMES) or [0, 0]) for name in shipped_names()} == {2}
    for version, cells in others.items():
        assert sorted(cells) == sorted(accuracies), (version, sorted(cells), sorted(accuracies))
        for cell, ours in accuracies.items():
            assert len(ours["accuracy"]) == len(cells[cell]["accuracy"]) == REPEATS, cell
            # the same trained network: equal digital accuracy, up to one prediction on another CPU's kernels
            assert abs(ours["digital_accuracy"] - cells[cell]["digital_accuracy"]) <= 1 / ours["n_samples"] + 1e-12, (
                cell
            )
        differing = differing_cells(accuracies, cells)
        assert not differing, "\n".join(
            f"{cell}: mean accuracy {sum(accuracies[cell]['accuracy']) / REPEATS:.4f} under aihwkit {installed}, "
            f"{sum(cells[cell]['accuracy']) / REPEATS:.4f} under {version}, paired by programming seed: "
            f"differences of one sign (sign test, Holm over {len(accuracies)} cells at {FAMILY_ALPHA:g})"
            for cell in differing
        )
