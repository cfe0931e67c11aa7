"""Bad inputs a new user tries, each answered by one line that names the thing and what to do.

Through the command line (``main([...])``: exit code 2, ``error: <one line>`` on stderr, no
traceback; ``--debug`` re-raises) and, where there is one, through the Python API.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from analogsam.cli import COMMANDS, main
from analogsam.data import ENV_VAR, DatasetNotFoundError, load_dataset, write_idx
from analogsam.errors import AnalogsamError, InvalidParameterError
from analogsam.runs import CheckpointError, RunNotFoundError, load_run
from analogsam.storage import OutputPathError
from analogsam.training import train


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
