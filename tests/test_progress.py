"""Progress off a terminal: a line per epoch (training) and a line every few cells with the rate and
the time left (sweeps), never a bar's redraws; on a terminal, tqdm's bar."""

import io

import pytest
from tqdm.auto import tqdm

from analogsam.cli import main
from analogsam.progress import LINES_PER_LOOP, LineProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_the_bar_and_a_file_gets_lines():
    assert isinstance(progress_bar(range(3), file=_Terminal()), tqdm)
    assert isinstance(progress_bar(range(3), file=io.StringIO()), LineProgress)
    silent = progress_bar(range(3), file=io.StringIO(), lines=False)
    assert isinstance(silent, tqdm) and silent.disable


def test_line_progress_writes_about_ten_lines_with_rate_and_time_left():
    now = [0.0]
    out = io.StringIO()
    for item in LineProgress(range(95), desc="sweep", unit="cell", file=out, clock=lambda: now[0]):
        now[0] = item + 1.0  # each cell takes a second

    lines = out.getvalue().splitlines()
    assert len(lines) == LINES_PER_LOOP  # every 10 cells, and the 95th
    assert lines[0] == "sweep: 10/95 cells, 1.00 cell/s, 10 s elapsed, 1 min 25 s left"
    assert lines[-1] == "sweep: 95/95 cells, 1.00 cell/s, 1 min 35 s elapsed"
    assert "\r" not in out.getvalue()


def test_line_progress_close_reports_an_unfinished_count_once():
    out = io.StringIO()
    bar = LineProgress(total=100, unit="point", file=out)
    bar.update(3)
    bar.close()
    bar.close()
    assert len(out.getvalue().splitlines()) == 1 and out.getvalue().startswith("3/100 points")


@pytest.mark.slow  # trains on digits
def test_cli_logs_read_well_off_a_terminal(tmp_path, capsys):
    """Training: one line per epoch; a sweep: a bounded number of lines; no carriage returns."""
    epochs, repeats = 3, 12
    run = tmp_path / "sgd"
    assert main(["train", "--data", "digits", "--model", "mlp", "--epochs", str(epochs), "--out", str(run)]) == 0
    captured = capsys.readouterr()
    logged = captured.out + captured.err
    assert "\r" not in logged
    assert sum(line.startswith("[sgd] epoch ") for line in logged.splitlines()) == epochs

    args = ["evaluate", str(run), "--preset", "pcm", "--times", "1,1d", "--repeats", str(repeats), "--out"]
    assert main([*args, str(tmp_path / "eval")]) == 0
    captured = capsys.readouterr()
    progress_lines = [line for line in captured.err.splitlines() if " left" in line or " elapsed" in line]
    assert "\r" not in captured.out + captured.err
    # repeats x times = 24 points: a line every 3 points, about LINES_PER_LOOP in all
    assert 1 <= len(progress_lines) <= LINES_PER_LOOP, captured.err
    assert all("points" in line for line in progress_lines)
