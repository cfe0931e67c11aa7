"""`analogsam study robustness --quick`: the whole pipeline, every method, on a tiny problem; its
report's tables and a resume that trains and measures nothing new."""

from __future__ import annotations

import csv
import json

import pytest

from analogsam.cli import main
from analogsam.evaluation import read_rows
from analogsam.evaluation.statistics import SEED_SUMMARY_COLUMNS, SEED_TEST_COLUMNS
from analogsam.studies.robustness import METHODS, QUICK, StudySettingsError, robustness_study

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = [m.label for m in METHODS]


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # trains a quick study on real data
def test_quick_study_reports_every_method_over_seeds_and_resumes(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "robustness", "--quick", "--out", str(out), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "expected wall time of the work left, measured on this machine just now" in said
    assert all(f"train {label}:" in said for label in LABELS)

    # every method, both scopes of ASAM among them, trained once per seed into its seed group
    assert {"asam-weights", "asam-all"} <= set(LABELS) and len(LABELS) == 13
    # hardware-aware training for PCM and for RRAM, SAM/SAMSON on top of it, the device-shaped sharpness
    assert {"hwa", "sam-hwa", "samson-hwa", "hwa-rram", "device-sam"} <= set(LABELS)
    for label, preset in (("hwa", "pcm"), ("sam-hwa", "pcm"), ("samson-hwa", "pcm"), ("hwa-rram", "rram-wan2022")):
        config = json.loads((out / "train" / label / "seed-0" / "config.json").read_text())
        assert config["hardware_aware"]["preset"] == preset
    assert "hardware_aware" not in json.loads((out / "train" / "sgd" / "seed-0" / "config.json").read_text())
    for label in LABELS:
        for seed in QUICK.seeds:
            config = json.loads((out / "train" / label / f"seed-{seed}" / "config.json").read_text())
            assert config["seed"] == seed and config["epochs"] == QUICK.epochs
    assert (
        json.loads((out / "train" / "asam-all" / "seed-0" / "config.json").read_text())["optimizer_hparams"]["scope"]
        == "all"
    )

    rows = [r for preset, _ in QUICK.presets for r in read_rows(out / "eval" / preset / "results.csv")]
    n_times = sum(len(times) for _, times in QUICK.presets)
    assert len(rows) == len(LABELS) * len(QUICK.seeds) * QUICK.repeats * n_times
    assert {r["train_seed"] for r in rows} == set(QUICK.seeds)

    summary = _csv(out / "summary.csv")
    assert list(summary[0]) == SEED_SUMMARY_COLUMNS
    assert len(summary) == len(LABELS) * n_times and {int(r["n_seeds"]) for r in summary} == {len(QUICK.seeds)}
    tests = _csv(out / "tests.csv")
    assert list(tests[0]) == SEED_TEST_COLUMNS
    assert len(tests) == (len(LABELS) - 1) * n_times * 2 and {r["quantity"] for r in tests} == {"value", "drop"}
    assert {r["baseline"] for r in tests} == {"sgd"}
    against_hwa = _csv(out / "tests-vs-hwa.csv")
    assert {r["baseline"] for r in against_hwa} == {"hwa"} and len(against_hwa) == len(tests)

    report = (out / "report.md").read_text()
    for preset, times in QUICK.presets:
        assert f"## `{preset}`" in report
        header = "| run | optimizer | seeds | digital | " + " | ".join(times) + " |"
        assert report.count(header) == 2  # accuracy and drop tables
        assert f"| method | {times[0]} accuracy Δ (p) | {times[0]} drop Δ (p) |" in report
        assert f"| method | {times[0]} σp / σseeds |" in report
        for name in (f"accuracy_vs_time_{preset}.png", f"drop_{preset}.png"):
            assert (out / name).stat().st_size > 0 and f"]({name})" in report
    for label in LABELS:  # a row per method in each accuracy, drop and spread table
        assert report.count(f"| {label} | ") >= 3 * len(QUICK.presets)
    assert "analogsam study robustness --out" in report and "--quick" in report
    assert "## Wall time" in report and "| sgd | " in report.split("## Wall time")[1]
    # the accuracy table's cell is summarize_seeds' seed-level mean
    sgd_first = next(r for r in summary if r["run"] == "sgd" and r["preset"] == "pcm")
    assert f"{100 * float(sgd_first['mean']):.2f}" in report.split("## `pcm`")[1].split("| sgd |")[1].split("\n")[0]

    again = robustness_study(out, quick=True, progress=False, log=False)
    assert again["trained"] == [] and again["measured"] == 0 and again["estimate"]["total"] == 0
    assert len(again["rows"]) == len(rows)
    timings = json.loads((out / "timings.json").read_text())
    assert len(timings) == 2 and timings[1]["trained"] == [] and timings[0]["expected_seconds"] > 0

    # the result stores alone (the run folders elsewhere, as with the committed rows): nothing is redone
    moved = tmp_path / "rows-only"
    for preset, _ in QUICK.presets:
        (moved / "eval" / preset).mkdir(parents=True)
        (moved / "eval" / preset / "results.csv").write_text((out / "eval" / preset / "results.csv").read_text())
    elsewhere = robustness_study(moved, quick=True, progress=False, log=False)
    assert elsewhere["trained"] == [] and elsewhere["measured"] == 0 and elsewhere["estimate"]["total"] == 0
    assert not (moved / "train").exists() and "measured earlier" in (moved / "report.md").read_text()


def test_a_quick_folder_refuses_the_full_study(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.json").write_text(json.dumps({"settings": {}, "settings_hash": "another"}))
    with pytest.raises(StudySettingsError, match="other settings"):
        robustness_study(out, progress=False, log=False)
