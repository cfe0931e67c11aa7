"""The command line end to end on digits: train, evaluate, compare, run, presets."""

import csv
import inspect

import pytest

from analogsam.cli import main
from analogsam.evaluation.store import read_rows
from analogsam.runs import load_run


def _train(folder, optimizer, *extra):
    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--model",
                "mlp",
                "--optimizer",
                optimizer,
                "--epochs",
                "3",
                "--batch-size",
                "32",
                "--lr",
                "0.05",
                "--out",
                str(folder),
                "--quiet",
                *extra,
            ]
        )
        == 0
    )


@pytest.mark.slow  # trains on digits
def test_train_evaluate_compare(tmp_path, capsys):
    _train(tmp_path / "sgd", "sgd")
    _train(tmp_path / "sam", "sam", "--rho", "0.05")
    out = capsys.readouterr().out
    assert "wrote run folder" in out and str(tmp_path / "sam") in out
    config = load_run(tmp_path / "sam").config
    assert config["optimizer"] == "sam" and config["optimizer_hparams"]["rho"] == 0.05

    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "sam"),
                "--preset",
                "pcm",
                "--times",
                "1,1d",
                "--repeats",
                "2",
                "--set",
                "io.adc_bits=6",
                "--out",
                str(tmp_path / "eval"),
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "summary.csv" in out and "accuracy_vs_time.png" in out
    rows = read_rows(tmp_path / "eval" / "results.csv")
    assert len(rows) == 4 and {r["t_seconds"] for r in rows} == {1.0, 86400.0}
    assert (tmp_path / "eval" / "accuracy_vs_time.png").stat().st_size > 1000

    cmp = tmp_path / "cmp"
    args = [
        "compare",
        str(tmp_path / "sgd"),
        str(tmp_path / "sam"),
        "--presets",
        "pcm,ideal",
        "--times",
        "1s,1d",
        "--repeats",
        "2",
        "--out",
        str(cmp),
        "--quiet",
    ]
    assert main(args) == 0
    summary = list(csv.DictReader(open(cmp / "summary.csv")))
    assert len(summary) == 2 * 2 * 2
    report = (cmp / "report.md").read_text()
    assert "## Preset `pcm`" in report and "## Preset `ideal`" in report and "**" in report
    # the report's tables show the same numbers as summary.csv
    for row in summary:
        assert f"{100 * float(row['mean']):.2f} ± {100 * float(row['std']):.2f}" in report
    before = (cmp / "results.csv").read_text()
    assert main(args) == 0  # a rerun resumes: nothing new to measure, nothing duplicated
    assert sorted((cmp / "results.csv").read_text().splitlines()) == sorted(before.splitlines())

    # rram-wan2022 is defined only at 1 s, 1 d and 2 d: its 1 h cell is left out, said once, shown as —
    capsys.readouterr()
    mixed = tmp_path / "mixed"
    assert (
        main(
            [
                "compare",
                str(tmp_path / "sgd"),
                "--presets",
                "pcm,rram-wan2022",
                "--times",
                "1s,1h",
                "--repeats",
                "1",
                "--out",
                str(mixed),
                "--quiet",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "left out" in line]
    assert notes == [
        "note: left out, as the preset's noise model is not defined there (shown as —): "
        "rram-wan2022 at 1h (defined only at 1s, 1d, 2d)"
    ]
    assert "Warning" not in captured.err
    measured = {(r["preset"], r["t_seconds"]) for r in read_rows(mixed / "results.csv")}
    assert measured == {("pcm", 1.0), ("pcm", 3600.0), ("rram-wan2022", 1.0)}
    assert "—" in captured.out and "left out" in (mixed / "report.md").read_text()


@pytest.mark.slow  # trains through analogsam run
def test_run_default_study_small(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "--data",
                "digits",
                "--model",
                "mlp",
                "--epochs",
                "1",
                "--repeats",
                "2",
                "--times",
                "1s,1y",
                "--out",
                str(tmp_path / "study"),
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "preset pcm" in out and "sgd" in out and "sam" in out and "±" in out
    assert (tmp_path / "study" / "evaluation" / "accuracy_vs_time.png").exists()
    assert len(read_rows(tmp_path / "study" / "evaluation" / "results.csv")) == 2 * 2 * 2


def test_presets_commands(capsys):
    assert main(["presets", "list"]) == 0
    out = capsys.readouterr().out
    assert "pcm" in out and "rram-wan2022" in out
    assert main(["presets", "show", "pcm", "--set", "io.adc_bits=6"]) == 0
    assert "adc_bits" in capsys.readouterr().out


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing"), "--quiet"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--data", "digits", "--optimizer", "adam-typo", "--out", str(tmp_path / "x")])


def _subcommands():
    import argparse

    from analogsam.cli import build_parser

    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _options(command):
    return {o for a in command._actions for o in a.option_strings}


def test_flag_groups_are_shared_and_defaults_come_from_the_api():
    from analogsam.evaluation import DEFAULT_REPEATS, DEFAULT_TIMES, parse_times
    from analogsam.studies.flatness import analyze_runs

    commands = _subcommands()
    evaluation = {
        "--preset",
        "--set",
        "--times",
        "--repeats",
        "--backend",
        "--workers",
        "--seed",
        "--data-root",
        "--out",
        "--quiet",
    }
    assert evaluation <= _options(commands["evaluate"]) and evaluation <= _options(commands["run"])
    assert evaluation - {"--preset"} | {"--presets"} <= _options(commands["compare"])
    for name in ("run", "train", "evaluate", "compare", "analyze"):
        assert "--data-root" in _options(commands[name]) and "--debug" in _options(commands[name])
    for name in ("evaluate", "compare"):
        assert commands[name].get_default("repeats") == DEFAULT_REPEATS
        assert parse_times(commands[name].get_default("times")) == list(DEFAULT_TIMES)
    assert commands["run"].get_default("repeats") == 5  # the default study keeps its own
    assert parse_times(commands["run"].get_default("times")) == list(DEFAULT_TIMES)
    assert commands["analyze"].get_default("repeats") == inspect.signature(analyze_runs).parameters["repeats"].default
    assert commands["train"].get_default("epochs") == 10 and commands["run"].get_default("epochs") == 3


def test_help_explains_every_flag():
    for name, command in _subcommands().items():
        for action in command._actions:
            if action.option_strings:
                assert action.help and len(action.help) > 10, (name, action.option_strings)
    text = " ".join(_subcommands()["train"].format_help().split())
    assert "--batch-size N samples per training step; samples, an integer >= 1 (default: 128)" in text
    assert "--lr LR base learning rate" in text and "(default: 0.05 with sgd, 0.001 with adamw)" in text


@pytest.mark.slow  # trains through analogsam run
def test_run_passes_the_evaluation_flags(tmp_path):
    assert (
        main(
            [
                "run",
                "--data",
                "digits",
                "--model",
                "mlp",
                "--epochs",
                "1",
                "--optimizers",
                "sgd",
                "--repeats",
                "1",
                "--times",
                "1s",
                "--set",
                "io.adc_bits=6",
                "--backend",
                "fast",
                "--out",
                str(tmp_path / "study"),
                "--quiet",
            ]
        )
        == 0
    )
    rows = read_rows(tmp_path / "study" / "evaluation" / "results.csv")
    assert len(rows) == 1 and rows[0]["backend"] == "fast"
    from analogsam.hardware import presets

    assert rows[0]["preset_hash"] == presets.load("pcm", overrides={"io.adc_bits": 6}).hash != presets.load("pcm").hash
