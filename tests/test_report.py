"""Reports: presets measured at the times they define with "—" for the rest, the digital accuracy
as a dashed line in each run's colour, faulted runs labelled apart, matplotlib's global state untouched."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analogsam.evaluation import summarize, sweep
from analogsam.evaluation.coverage import LeftOutCellsWarning, describe_left_out, left_out_cells, times_per_preset
from analogsam.evaluation.report import (
    NOT_MEASURED,
    accuracy_figure,
    markdown_table,
    summary_tables,
    text_table,
    write_report,
)
from analogsam.hardware.presets import PresetError, load


def _row(run, preset, t, accuracy, repeat=0, faults="", digital=0.9):
    return {
        "run": run,
        "optimizer": "sgd",
        "faults": faults,
        "preset": preset,
        "preset_hash": "h",
        "t_seconds": t,
        "repeat": repeat,
        "metric": "accuracy",
        "higher_is_better": True,
        "value": accuracy,
        "digital_value": digital,
        "accuracy": accuracy,
        "digital_accuracy": digital,
    }


# run "a" on pcm at 1 s and 1 h; on rram only at 1 s (1 h is not defined there)
ROWS = [
    _row("a", "pcm", 1.0, 0.88),
    _row("a", "pcm", 1.0, 0.86, repeat=1),
    _row("a", "pcm", 3600.0, 0.84),
    _row("a", "pcm", 3600.0, 0.82, repeat=1),
    _row("a", "rram", 1.0, 0.80),
    _row("a", "rram", 1.0, 0.78, repeat=1),
    _row("b", "pcm", 1.0, 0.70, digital=0.75),
    _row("b", "pcm", 3600.0, 0.65, digital=0.75),
]


def test_cells_not_measured_show_as_a_dash():
    summary = summarize(ROWS)
    text = text_table(summary, "rram")
    assert text.splitlines()[0] == "preset rram (accuracy %, mean ± std over 2 repeats)"
    assert text.splitlines()[3].split() == ["a", "90.00", "79.00", "±", "1.41", NOT_MEASURED]
    markdown = markdown_table(summary, "rram")
    assert markdown.splitlines()[0] == "| run | optimizer | digital | 1s | 1h |"
    assert markdown.splitlines()[2] == f"| a | sgd | 90.00 | 79.00 ± 1.41 | {NOT_MEASURED} |"
    assert "**87.00 ± 1.41**" in markdown_table(summary, "pcm")  # the best mean per time is still in bold


def test_faulted_runs_are_labelled_apart():
    rows = ROWS[:2] + [_row("a", "pcm", 1.0, 0.5, faults="stuck_at_rate=0.01")]
    tables = summary_tables(summarize(rows))
    assert "a [stuck_at_rate=0.01]" in tables and "50.00 ± 0.00" in tables and "87.00 ± 1.41" in tables


def test_plot_draws_each_digital_accuracy_dashed_in_its_run_colour():
    fig = accuracy_figure(summarize(ROWS), "pcm")
    (ax,) = fig.axes
    runs = {line.get_label(): line for line in ax.lines if line.get_linestyle() == "-"}
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert set(runs) == {"a", "b"} and len(dashed) == 2
    for name, digital in (("a", 90.0), ("b", 75.0)):
        (line,) = [d for d in dashed if list(d.get_ydata()) == [pytest.approx(digital)] * 2]
        assert line.get_color() == runs[name].get_color()
    assert "digital (dashed)" in [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.mark.slow  # starts a Python process
def test_report_leaves_matplotlibs_global_state_alone(tmp_path):
    code = (
        "import sys, matplotlib; matplotlib.use('pdf')\n"
        "from analogsam.evaluation.report import write_report\n"
        f"write_report(__import__('json').loads({json.dumps(json.dumps(ROWS))}), {str(tmp_path)!r})\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pdf", "False"]
    assert (tmp_path / "accuracy_vs_time_rram.png").stat().st_size > 0


@pytest.mark.slow  # every preset measured
def test_presets_are_measured_at_the_times_they_define(digits_run, digits, tmp_path):
    times = "1s,1h"
    with pytest.warns(LeftOutCellsWarning) as caught:
        rows = sweep(
            [digits_run],
            ["pcm", "rram-wan2022"],
            batches_for=lambda r: digits.test.batches(200),
            times=times,
            repeats=1,
            progress=False,
            out=tmp_path / "cmp",
        )
    (notice,) = [str(w.message) for w in caught]
    assert notice == (
        "left out, as the preset's noise model is not defined there (shown as —): "
        "rram-wan2022 at 1h (defined only at 1s, 1d, 2d)"
    )
    assert sorted((r["preset"], r["t_seconds"]) for r in rows) == [("pcm", 1.0), ("pcm", 3600.0), ("rram-wan2022", 1.0)]
    _, left_out = times_per_preset([load("pcm"), load("rram-wan2022")], [1.0, 3600.0])
    assert describe_left_out(left_out) == notice
    write_report(rows, tmp_path / "cmp", left_out=left_out)
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert f"Note: {notice}." in report
    (line,) = [ln for ln in report.splitlines() if ln.startswith("| sgd ") and ln.endswith(f"| {NOT_MEASURED} |")]
    assert line.count(NOT_MEASURED) == 1


def test_a_preset_that_defines_none_of_the_times_is_refused(digits_run, digits):
    with pytest.raises(PresetError) as refused:
        sweep(
            [digits_run],
            ["pcm", "rram-wan2022"],
            batches_for=lambda r: digits.test.batches(200),
            times="1h,1y",
            repeats=1,
            progress=False,
        )
    message = str(refused.value)
    assert "'rram-wan2022'" in message and "1s, 1d, 2d" in message and "--times 1s,1d,2d" in message
    assert "\n" not in message


def test_evaluate_of_one_preset_still_refuses_an_undefined_time(digits_run, digits):
    from analogsam.evaluation import evaluate

    with pytest.raises(PresetError, match="only defined at"):
        evaluate(digits_run, digits.test.batches(200), "rram-wan2022", times="1h", repeats=1, progress=False)


def test_left_out_cells_can_be_listed_before_a_sweep():
    (cell,) = left_out_cells(["pcm", "rram-wan2022"], "1s,1h,1y")
    assert (cell.preset, cell.times, cell.defined) == ("rram-wan2022", (3600.0, 31536000.0), (1.0, 86400.0, 172800.0))
