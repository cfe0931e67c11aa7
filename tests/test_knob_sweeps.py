"""Knob sweeps (``sweep(vary=)``, ``--vary``): variants, their rows and columns, resuming, the report.

Real sweeps of the digits MLP on the fast engine (a few seconds); the report is drawn to real PNGs.
"""

import csv

import pytest

from analogsam.cli import main
from analogsam.evaluation import read_rows, sweep
from analogsam.evaluation.knobs import knob_markdown_table, knob_tables
from analogsam.evaluation.report import summary_of, write_report
from analogsam.hardware import presets as devices
from analogsam.hardware.presets import PresetError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(times="1s,1d", repeats=2, seed=0, progress=False, backend="fast")


# --- parsing and variants -------------------------------------------------------------------------


def test_vary_options_parse_to_typed_values_in_order():
    vary = devices.parse_vary_options(["io.adc_bits=4, 6", "noise.drift_scale=0.5,1,2", "mapping.digital_bias=off,on"])
    assert vary == {"io.adc_bits": [4, 6], "noise.drift_scale": [0.5, 1.0, 2.0], "mapping.digital_bias": [False, True]}
    assert all(type(v) is float for v in vary["noise.drift_scale"])


@pytest.mark.parametrize(
    "item, message",
    [
        ("io.adc_bit=4,6", r"--vary io.adc_bit=4,6: unknown key 'io.adc_bit' \(did you mean 'io.adc_bits'\?\)"),
        ("io.adc_bits=4,six", r"io.adc_bits must be an integer in \[0, 16\] \(0 = off; 1 not allowed\), got 'six'"),
        (
            "io.adc_bits=1,4",
            r"--vary io.adc_bits=1,4: io.adc_bits must be .*, got 1: 1 bit is not a symmetric converter",
        ),
        ("io.adc_bits=4,17", r"io.adc_bits must be an integer in \[0, 16\] \(0 = off; 1 not allowed\), got 17"),
        ("io.adc_bits=4,,6", "no empty value"),
        ("io.adc_bits", "expected SECTION.KEY=V1,V2"),
        ("io.adc_bits=4,4", "lists 4 more than once"),
        ("name=a,b", "unknown key 'name'"),
    ],
)
def test_a_bad_vary_is_refused_naming_the_key_value_and_what_is_allowed(item, message):
    with pytest.raises(PresetError, match=message):
        devices.parse_vary_options([item])


def test_a_key_varied_twice_or_both_set_and_varied_is_refused():
    with pytest.raises(PresetError, match="varied twice"):
        devices.parse_vary_options(["io.adc_bits=4", "io.adc_bits=6"])
    with pytest.raises(PresetError, match="io.adc_bits is both set .* and varied"):
        devices.variants("pcm", {"io.adc_bits": [4]}, overrides={"io.adc_bits": 6})


def test_a_knob_the_noise_model_ignores_is_refused_as_with_set():
    with pytest.raises(PresetError, match="noise.drift_scale = 2.0 .* has no effect with noise.model"):
        devices.variants("rram-wan2022", {"noise.drift_scale": [2.0]})


def test_variants_form_the_grid_with_readable_names_and_their_own_hashes():
    grid = devices.variants("pcm", {"io.adc_bits": [4, 8], "noise.drift_scale": [0.5, 2]})
    assert [p.name for p in grid] == [
        "pcm[io.adc_bits=4,noise.drift_scale=0.5]",
        "pcm[io.adc_bits=4,noise.drift_scale=2.0]",
        "pcm[io.adc_bits=8,noise.drift_scale=0.5]",
        "pcm[io.adc_bits=8,noise.drift_scale=2.0]",
    ]
    for p in grid:
        same = devices.load("pcm", overrides=p.varied)  # a variant is exactly the --set preset
        assert p.hash == same.hash and p.values == same.values and p.seed_name == "pcm" and p.base_name == "pcm"
    assert len({p.hash for p in grid}) == 4
    assert grid[2].hash == devices.load("pcm").with_overrides({"noise.drift_scale": 0.5}).hash  # 8 bits: pcm's own
    assert devices.variants("pcm", None) == [devices.load("pcm")]


# --- sweeps ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swept(digits_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("knobs")
    rows = sweep([digits_run], ["pcm"], vary={"io.adc_bits": [3, 8]}, out=out, **SMALL)
    return out, rows


def test_a_variant_measures_what_set_on_the_base_preset_measures(digits_run, swept):
    _, rows = swept
    plain = sweep([digits_run], ["pcm"], overrides={"io.adc_bits": 3}, **SMALL)
    varied = [r for r in rows if r["io.adc_bits"] == 3]
    assert [r["value"] for r in varied] == [r["value"] for r in plain]  # same seeds, same draws
    assert [r["seed"] for r in varied] == [r["seed"] for r in plain]
    assert {r["preset"] for r in varied} == {"pcm[io.adc_bits=3]"} and {r["preset"] for r in plain} == {"pcm"}
    assert varied[0]["preset_hash"] == plain[0]["preset_hash"]


def test_accuracy_falls_with_fewer_adc_bits(swept):
    # 3 ADC bits (6 steps over +-10) against 8: on the same programmings the drop is tens of points
    # (about 30 on this MLP); 5 points is far outside the repeat-to-repeat spread (< 2 points).
    _, rows = swept
    mean = {b: sum(r["value"] for r in rows if r["io.adc_bits"] == b) / 4 for b in (3, 8)}
    assert mean[3] < mean[8] - 0.05


def test_results_and_summary_get_one_column_per_varied_knob(swept, tmp_path):
    out, rows = swept
    with open(out / "results.csv") as f:
        header = next(csv.reader(f))
    assert header[-1] == "io.adc_bits"
    back = read_rows(out / "results.csv")
    assert [r["io.adc_bits"] for r in back] == [r["io.adc_bits"] for r in rows] and isinstance(
        back[0]["io.adc_bits"], int
    )
    written = write_report(back, tmp_path)
    summary = read_rows(written["summary"])
    assert {(r["preset"], r["io.adc_bits"]) for r in summary} == {("pcm[io.adc_bits=3]", 3), ("pcm[io.adc_bits=8]", 8)}


def test_resuming_and_adding_values_keep_the_measured_numbers(digits_run, swept, tmp_path):
    out, rows = swept
    before = (out / "results.csv").read_text()
    again = sweep([digits_run], ["pcm"], vary={"io.adc_bits": [3, 8]}, out=out, **SMALL)
    assert (out / "results.csv").read_text() == before and len(again) == len(rows)
    more = sweep([digits_run], ["pcm"], vary={"io.adc_bits": [3, 5, 8], "noise.drift_scale": [1.0]}, out=out, **SMALL)
    old = {(r["preset"], r["repeat"], r["t_seconds"]): r["value"] for r in rows}
    new = {(r["preset"], r["repeat"], r["t_seconds"]): r for r in more}
    assert len(new) == len(old) + 3 * 2 * 2  # three new variants (a second knob renames all), two repeats, two times
    assert all(key in new and new[key]["value"] == value for key, value in old.items())  # old rows kept
    # the new variant pcm[io.adc_bits=3,noise.drift_scale=1.0] has pcm[io.adc_bits=3]'s values and draws
    same = [r["value"] for r in more if r["preset"] == "pcm[io.adc_bits=3,noise.drift_scale=1.0]"]
    assert same == [r["value"] for r in rows if r["preset"] == "pcm[io.adc_bits=3]"]
    back = read_rows(out / "results.csv")
    assert [r["noise.drift_scale"] for r in back[: len(rows)]] == [None] * len(rows)  # the new column, empty
    assert {r["noise.drift_scale"] for r in back[len(rows) :]} == {1.0}


def test_the_report_tabulates_and_plots_the_metric_against_each_knob(digits_run, tmp_path):
    rows = sweep([digits_run], ["pcm"], vary={"io.adc_bits": [3, 8], "noise.drift_scale": [0.5, 2]}, **SMALL)
    written = write_report(rows, tmp_path)
    for key in (
        "knob_plot_pcm_io.adc_bits_accuracy",
        "knob_plot_pcm_noise.drift_scale_accuracy",
        "knob_heatmap_pcm_accuracy",
    ):
        assert written[key].is_file() and written[key].stat().st_size > 10_000
    report = (tmp_path / "report.md").read_text()
    assert "## `pcm`: accuracy against `io.adc_bits`, `noise.drift_scale`" in report
    assert "(accuracy_heatmap_pcm.png)" in report and "(accuracy_vs_io_adc_bits_pcm.png)" in report
    summary = summary_of(rows)
    table = knob_markdown_table(summary, "pcm", "io.adc_bits")
    head, _, *lines = table.splitlines()
    assert head == "| run | other knobs | t | digital | io.adc_bits=3 | io.adc_bits=8 |"
    assert len(lines) == 2 * 2  # one run, two drift scales, two times
    cell = next(
        r for r in summary if r["preset"] == "pcm[io.adc_bits=3,noise.drift_scale=2.0]" and r["t_seconds"] == 86400
    )
    assert f"{100 * cell['mean']:.2f} ± {100 * cell['std']:.2f}" in lines[-1]  # drift scale 2.0, 1d
    assert "io.adc_bits=3" in knob_tables(summary)


def test_cli_compare_vary_end_to_end_and_its_errors(digits_run, tmp_path, capsys):
    args = ["compare", str(digits_run.path), "--presets", "pcm", "--times", "1s", "--repeats", "1", "--quiet"]
    assert main([*args, "--vary", "io.adc_bits=4,8", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "preset pcm: accuracy % against io.adc_bits" in out and "io.adc_bits=4" in out
    assert (tmp_path / "cmp" / "accuracy_vs_io_adc_bits_pcm.png").is_file()
    assert main([*args, "--vary", "io.adc_bits=1", "--out", str(tmp_path / "bad")]) == 2
    assert (
        "error: --vary io.adc_bits=1: io.adc_bits must be an integer in [0, 16] (0 = off; 1 not allowed), got 1: 1 bit"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "bad").exists()  # refused before a folder is made
