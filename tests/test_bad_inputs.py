"""Bad inputs a new user tries, each answered by one line that names the thing and what to do.

Through the command line (``main([...])``: exit code 2, ``error: <one line>`` on stderr, no
traceback; ``--debug`` re-raises) and, where there is one, through the Python API.
"""

from __future__ import annotations

import shutil

import pytest
import torch

import analogsam
from analogsam.cli import COMMANDS, main
from analogsam.data import ENV_VAR, DatasetNotFoundError, load_dataset, write_idx
from analogsam.errors import AnalogsamError, InvalidParameterError
from analogsam.evaluation import PassLayout, RunLabels
from analogsam.hardware import presets
from analogsam.hardware.presets import PresetError
from analogsam.hardware.presets.schema import KNOBS
from analogsam.optim.hyperparameters import TRAINING_SETTINGS, method_flags
from analogsam.robustness import CurveSettings, SharpnessSettings, analyze_model
from analogsam.runs import CheckpointError, RunNotFoundError, load_run
from analogsam.storage import OutputPathError
from analogsam.studies.flatness import analyze_runs
from analogsam.training import train
from analogsam.validation import Boolean, Interval, Options, OrNone, Text


class Custom:
    """A user class: pickling an instance into a checkpoint makes ``weights_only`` loading refuse it."""

    def __init__(self):
        self.note = "not plain data"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def run_copy(digits_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(digits_run.path, folder)
    return folder


def test_truncated_checkpoint(run_copy, capsys):
    checkpoint = run_copy / "checkpoint.pt"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    assert main(["evaluate", str(run_copy), "--quiet", "--out", str(run_copy / "eval")]) == 2
    line = one_error_line(capsys)
    assert str(checkpoint) in line and "damaged or incomplete" in line and "retrain" in line
    assert not (run_copy / "eval").exists()  # refused before an output folder was made
    with pytest.raises(CheckpointError, match="damaged or incomplete"):
        load_run(run_copy)
    checkpoint.write_bytes(b"")
    with pytest.raises(CheckpointError, match="damaged or incomplete"):
        load_run(checkpoint)


def test_checkpoint_holding_a_pickled_object(run_copy, capsys):
    checkpoint = run_copy / "checkpoint.pt"
    torch.save({"state_dict": {}, "extra": Custom()}, checkpoint)
    assert main(["evaluate", str(run_copy), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert str(checkpoint) in line and "pickled Python object" in line and "Custom" in line
    assert "weights_only" not in line  # our message, not torch's
    with pytest.raises(CheckpointError, match="pickled"):
        load_run(run_copy)


def test_missing_run_folder(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing"), "--quiet"]) == 2
    assert "no checkpoint" in one_error_line(capsys)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(RunNotFoundError):
        load_run(tmp_path / "missing")


def test_out_below_a_regular_file(digits_run, tmp_path, capsys):
    blocker = tmp_path / "results.txt"
    blocker.write_text("a file, not a folder")
    below = blocker / "out"
    commands = [
        ["train", "--data", "digits", "--model", "mlp", "--epochs", "1", "--out", str(below), "--quiet"],
        ["evaluate", str(digits_run.path), "--out", str(below), "--quiet"],
        ["compare", str(digits_run.path), "--out", str(below), "--quiet"],
        ["analyze", str(digits_run.path), "--out", str(below), "--quiet"],
        ["run", "--data", "digits", "--model", "mlp", "--out", str(below), "--quiet"],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        line = one_error_line(capsys)
        assert str(below) in line and f"{blocker} is a file" in line, line
    with pytest.raises(OutputPathError):
        train("mlp", "digits", epochs=1, progress=False, out=below)


def _write_mnist(folder):
    folder.mkdir(parents=True)
    for stem, shape in (
        ("train-images-idx3-ubyte", (8, 28, 28)),
        ("train-labels-idx1-ubyte", (8,)),
        ("t10k-images-idx3-ubyte", (4, 28, 28)),
        ("t10k-labels-idx1-ubyte", (4,)),
    ):
        write_idx(folder / f"{stem}.gz", torch.zeros(shape, dtype=torch.uint8).numpy())


def test_explicit_data_root_is_the_only_place_searched(tmp_path, monkeypatch, capsys):
    _write_mnist(tmp_path / "elsewhere" / "mnist")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "elsewhere"))  # holds mnist; must not be used
    empty = tmp_path / "my-data"
    empty.mkdir()
    assert len(load_dataset("mnist").train) == 8  # without a root the variable still works
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", root=empty)
    message = str(err.value)
    assert str(empty) in message and "train-images-idx3-ubyte.gz" in message and "\n" not in message
    assert main(["train", "--data", "mnist", "--data-root", str(empty), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert str(empty) in line and "the only place searched" in line
    assert not (tmp_path / "run").exists()


def test_batch_size_zero(tmp_path, capsys):
    with pytest.raises(InvalidParameterError, match="batch_size must be an integer >= 1, got 0"):
        train("mlp", "digits", batch_size=0, progress=False)
    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--model",
                "mlp",
                "--batch-size",
                "0",
                "--out",
                str(tmp_path / "run"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "batch_size must be an integer >= 1, got 0" in one_error_line(capsys)


def test_bad_hyperparameter_on_the_command_line(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--model",
                "mlp",
                "--optimizer",
                "sam",
                "--rho",
                "-1",
                "--out",
                str(tmp_path / "run"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "rho of optimizer 'sam'" in one_error_line(capsys)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(RunNotFoundError):
        main(["--debug", "evaluate", str(tmp_path / "missing")])
    with pytest.raises(RunNotFoundError):
        main(["evaluate", str(tmp_path / "missing"), "--debug"])


def test_other_exceptions_keep_their_traceback(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setitem(COMMANDS, "presets", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["presets", "list"])
    assert not issubclass(RuntimeError, AnalogsamError)


def test_error_messages_are_printed_on_one_line(monkeypatch, capsys):
    def multi_line(args):
        raise InvalidParameterError("first part\nsecond part")

    monkeypatch.setitem(COMMANDS, "presets", multi_line)
    assert main(["presets", "list"]) == 2
    assert one_error_line(capsys) == "error: first part second part"


# -- generated from the declarations: an invalid value for every declared parameter ------------------
#
# Each declaration (a preset knob, a hyperparameter, a field of a settings object, an argument declared
# with ``analogsam.validation.declare``) holds a constraint, and each constraint names the values it
# refuses (``Constraint.counterexamples``: wrong types, NaN/inf, just outside the range, an excluded
# value). Every one of them must be refused with one line that names the parameter; a parameter added
# to a declaration is covered without a new test, and one added to an entry point without a
# declaration fails ``test_every_argument_of_the_entry_points_is_declared_or_listed``.


def names_it(message: str, name: str) -> bool:
    """``message`` names the parameter ``name`` as the one error format does (``name must be``,
    ``name of optimizer ...``), not merely as a substring of another word."""
    return any(f"{name}{after}" in message for after in (" must be", " of optimizer", ":", " ="))


def _cases(owner: str, constraints: dict) -> list:
    return [
        pytest.param(name, value, id=f"{owner}-{name}-{label}")
        for name, constraint in constraints.items()
        for label, value in constraint.counterexamples()
    ]


def _text_cases(constraint) -> list[tuple[str, str]]:
    """Invalid values as a user types them after a flag or ``--set KEY=``: the out-of-range and
    excluded numbers and unknown choices, and a word that is no value of the type (the wrong
    Python types of ``counterexamples`` do not exist as text)."""
    inner = constraint.inner if isinstance(constraint, OrNone) else constraint
    kept = ("below-range", "above-range", "unknown-choice", "nan", "inf")
    cases = [
        (label, str(value)) for label, value in inner.counterexamples() if label in kept or label.startswith("excluded")
    ]
    if isinstance(inner, Boolean):
        cases.append(("not-a-word", "maybe"))
    elif isinstance(inner, Text):
        cases.append(("empty", ""))
    elif isinstance(inner, Interval) or (isinstance(inner, Options) and inner.type is not str):
        cases.append(("not-a-number", "abc"))
    return cases


# ---- preset knobs: through the API (overrides), a TOML file, and the command line (--set)

KNOB_CASES = [
    pytest.param(knob, value, id=f"{knob.path}-{label}")
    for knob in KNOBS
    for label, value in knob.constraint.counterexamples()
]
KNOB_TEXT_CASES = [
    pytest.param(knob, text, id=f"{knob.path}-{label}")
    for knob in KNOBS
    for label, text in _text_cases(knob.constraint)
]


@pytest.mark.parametrize("knob, value", KNOB_CASES)
def test_every_knob_refuses_its_counterexamples(knob, value):
    with pytest.raises(PresetError) as err:
        presets.load("pcm", overrides={knob.path: value})
    message = str(err.value)
    assert names_it(message, knob.path) and "\n" not in message, message
    assert knob.allowed() in message  # says what is allowed, in the words of docs/devices.md


@pytest.mark.parametrize("knob, text", KNOB_TEXT_CASES)
def test_every_knob_refuses_a_bad_set_on_the_command_line(knob, text, capsys):
    assert main(["presets", "show", "pcm", "--set", f"{knob.path}={text}"]) == 2
    line = one_error_line(capsys)
    assert names_it(line, knob.path) and f"--set {knob.path}={text}" in line, line


def test_a_knob_in_a_file_is_refused_naming_the_file(tmp_path):
    for knob in KNOBS:
        value = next(
            v
            for label, v in knob.constraint.counterexamples()
            if label in ("below-range", "unknown-choice", "string", "above-range")
        )
        literal = f'"{value}"' if isinstance(value, str) else str(value).lower()
        path = tmp_path / f"{knob.key}.toml"
        path.write_text(f"[{knob.section}]\n{knob.key} = {literal}\n")
        with pytest.raises(PresetError) as err:
            presets.load(path)
        assert str(path.resolve()) in str(err.value) and names_it(str(err.value), knob.path), str(err.value)


# ---- hyperparameters and training settings on the command line (the API: tests/test_validation.py)


def _flag_cases() -> list:
    cases = []
    for hp, users, _ in method_flags():
        if isinstance(hp.constraint, Boolean):
            continue  # a --name/--no-name switch: no value to get wrong
        for label, text in _text_cases(hp.constraint):
            cases.append(pytest.param(hp, users[0], text, id=f"{users[0]}-{hp.name}-{label}"))
    for name in ("lr", "momentum", "weight_decay", "epochs", "batch_size", "seed", "schedule", "base"):
        hp = TRAINING_SETTINGS[name]
        for label, text in _text_cases(hp.constraint):
            cases.append(pytest.param(hp, "sam", text, id=f"train-{name}-{label}"))
    return cases


FLAG_CASES = _flag_cases()


@pytest.mark.parametrize("hp, optimizer, text", FLAG_CASES)
def test_every_training_flag_refuses_a_bad_value(hp, optimizer, text, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", "digits", "--model", "mlp", "--optimizer", optimizer, "--out", str(out), "--quiet"]
    argv += ([] if hp.name == "epochs" else ["--epochs", "1"]) + [hp.option, text]
    try:
        code = main(argv)
    except SystemExit as exit_:  # a wrong type or an unknown choice: argparse's own one-line refusal
        code = exit_.code
        err = capsys.readouterr().err
        assert f"argument {hp.option}" in err.strip().splitlines()[-1], err
    else:
        line = one_error_line(capsys)
        assert names_it(line, hp.name), line
    assert code == 2
    assert not (out / "checkpoint.pt").exists()


# ---- the evaluate and analyze commands: each flag whose API argument is declared


def _command_flags(command: str, constraints: dict) -> list:
    """(flag, text) cases for every declared argument that ``command`` has a flag for (found by
    the argparse ``dest``), from the declaration's constraint."""
    import argparse

    from analogsam.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    options = {a.dest: a.option_strings[0] for a in sub._actions if a.option_strings}
    return [
        pytest.param(command, name, options[name], text, id=f"{command}-{name}-{label}")
        for name, constraint in constraints.items()
        if name in options and not isinstance(constraint, Boolean)  # a switch has no value to get wrong
        for label, text in _text_cases(constraint)
    ]


COMMAND_FLAG_CASES = _command_flags(
    "evaluate",
    {**analogsam.evaluate.parameter_constraints, **PassLayout.constraints()},
) + _command_flags("analyze", analyze_runs.parameter_constraints)


@pytest.mark.parametrize("command, name, option, text", COMMAND_FLAG_CASES)
def test_every_declared_flag_of_evaluate_and_analyze_refuses_a_bad_value(
    command, name, option, text, digits_run, tmp_path, capsys
):
    argv = [command, str(digits_run.path), "--preset", "ideal", "--out", str(tmp_path / "out"), "--quiet"]
    try:
        code = main(argv + [option, text])
    except SystemExit as exit_:  # not a number at all: argparse's own one-line refusal
        code = exit_.code
        assert f"argument {option}" in capsys.readouterr().err.strip().splitlines()[-1]
    else:
        line = one_error_line(capsys)
        assert names_it(line, name), line
    assert code == 2
    assert not list((tmp_path / "out").glob("*.csv"))  # refused before anything was measured


# ---- evaluate: its declared arguments and its two settings objects

EVALUATE_CASES = _cases("evaluate", analogsam.evaluate.parameter_constraints)
LAYOUT_CASES = _cases("PassLayout", PassLayout.constraints())
LABEL_CASES = _cases("RunLabels", RunLabels.constraints())


@pytest.fixture(scope="module")
def few_test_batches(digits):
    return [(digits.test.x[:40], digits.test.y[:40])]


@pytest.mark.parametrize("name, value", EVALUATE_CASES)
def test_evaluate_refuses_every_declared_argument(name, value, digits_run, few_test_batches):
    settings = {"times": "1s", "repeats": 1, "progress": False, name: value}
    with pytest.raises(InvalidParameterError) as err:
        analogsam.evaluate(digits_run, few_test_batches, "ideal", **settings)
    assert names_it(str(err.value), name) and "\n" not in str(err.value)


@pytest.mark.parametrize("name, value", LAYOUT_CASES + [pytest.param("device", "tpu", id="PassLayout-device-unknown")])
def test_the_pass_layout_refuses_every_field(name, value):
    with pytest.raises(AnalogsamError) as err:
        PassLayout(**{name: value})
    assert names_it(str(err.value), name) or name == "device" and "tpu" in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name, value", LABEL_CASES)
def test_the_run_labels_refuse_every_field(name, value):
    with pytest.raises(InvalidParameterError) as err:
        RunLabels(**{name: value})
    assert names_it(str(err.value), name)


@pytest.mark.parametrize(
    "name, value",
    [("times", "-1s"), ("times", "soon"), ("times", []), ("layout", "fast"), ("labels", {"optimizer": "sam"})],
    ids=["times-negative", "times-word", "times-empty", "layout-not-an-object", "labels-not-an-object"],
)
def test_evaluate_refuses_the_arguments_checked_where_they_are_parsed(name, value, digits_run, few_test_batches):
    settings = {"times": "1s", "repeats": 1, "progress": False, name: value}
    with pytest.raises(AnalogsamError) as err:
        analogsam.evaluate(digits_run, few_test_batches, "ideal", **settings)
    assert name in str(err.value) and "\n" not in str(err.value)


# ---- analyze_model: its declared arguments and its two settings objects

ANALYZE_CASES = _cases("analyze_model", analyze_model.parameter_constraints)
SHARPNESS_CASES = _cases("SharpnessSettings", SharpnessSettings.constraints())
CURVE_CASES = _cases("CurveSettings", CurveSettings.constraints())


@pytest.mark.parametrize("name, value", ANALYZE_CASES)
def test_analyze_model_refuses_every_declared_argument(name, value, few_test_batches):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(InvalidParameterError) as err:
        analyze_model(model, few_test_batches, **{name: value})
    assert names_it(str(err.value), name) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kind, name, value",
    [("sharpness", *p.values) for p in SHARPNESS_CASES] + [("robustness", *p.values) for p in CURVE_CASES],
)
def test_the_probe_settings_refuse_every_field(kind, name, value):
    settings = SharpnessSettings if kind == "sharpness" else CurveSettings
    with pytest.raises(InvalidParameterError) as err:
        settings(**{name: value})
    assert names_it(str(err.value), name) and "\n" not in str(err.value)


# ---- what is not declared must be listed, with the reason, so that a new argument cannot slip through

NOT_DECLARED = {
    "evaluate": {
        "model": "a module or a TrainedRun: unpack() refuses anything else by name",
        "batches": "any iterable of batches, refused when empty",
        "preset": "a name, a path or a Preset: the preset loader's errors",
        "times": "parsed text or numbers: parse_times (cases above)",
        "run": "a free label",
        "overrides": "preset knobs: their own declarations (above)",
        "faults": "faulted_copy's arguments",
        "metric": "resolve_metric",
        "output_fn": "a callable",
        "layout": "a PassLayout (declared fields, above)",
        "labels": "a RunLabels (declared fields, above)",
        "store": "a ResultStore",
        "only_repeats": "indices below repeats: checked against repeats",
    },
    "analyze_model": {
        "model": "a module",
        "batches": "any iterable of batches",
        "loss_fn": "a callable",
        "sharpness": "a SharpnessSettings (declared fields, above)",
        "robustness": "a CurveSettings (declared fields, above)",
        "metric": "resolve_metric",
        "output_fn": "a callable",
    },
}


@pytest.mark.parametrize("function", [analogsam.evaluate, analyze_model], ids=["evaluate", "analyze_model"])
def test_every_argument_of_the_entry_points_is_declared_or_listed(function):
    import inspect

    arguments = set(inspect.signature(function).parameters)
    declared = set(function.parameter_constraints)
    listed = set(NOT_DECLARED[function.__name__])
    assert arguments == declared | listed and not declared & listed


def test_the_generated_cases_cover_every_declaration():
    assert {p.values[0].path for p in KNOB_CASES} == {k.path for k in KNOBS}
    assert {p.values[0].path for p in KNOB_TEXT_CASES} == {k.path for k in KNOBS}
    flags = {p.values[0].name for p in FLAG_CASES}
    switches = {hp.name for hp, _, _ in method_flags() if isinstance(hp.constraint, Boolean)}
    assert flags == {hp.name for hp, _, _ in method_flags()} - switches | {
        "lr",
        "momentum",
        "weight_decay",
        "epochs",
        "batch_size",
        "seed",
        "schedule",
        "base",
    }  # a --flag/--no-flag switch has no invalid value on the command line
    flagged = {(p.values[0], p.values[1]) for p in COMMAND_FLAG_CASES}
    assert flagged == {
        ("evaluate", "repeats"),
        ("evaluate", "seed"),
        ("evaluate", "backend"),
        ("evaluate", "repeats_per_pass"),
        ("analyze", "repeats"),
        ("analyze", "seed"),
        ("analyze", "num_batches"),
        ("analyze", "batch_size"),
        ("analyze", "test_samples"),
    }  # the flags of evaluate and analyze whose API argument is declared (metrics/curves: --metrics a,b text)
    for cases, constraints in (
        (EVALUATE_CASES, analogsam.evaluate.parameter_constraints),
        (LAYOUT_CASES, PassLayout.constraints()),
        (LABEL_CASES, RunLabels.constraints()),
        (ANALYZE_CASES, analyze_model.parameter_constraints),
        (SHARPNESS_CASES, SharpnessSettings.constraints()),
        (CURVE_CASES, CurveSettings.constraints()),
    ):
        assert {p.values[0] for p in cases} == set(constraints)
