"""The layer report (analogsam.hardware.layer_report) and `analogsam inspect`."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import analogsam.hardware as hardware
from analogsam.cli import main
from analogsam.hardware.conversion import ConversionError, convert
from analogsam.hardware.inspection import LayerReport, format_layer_report, layer_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def mobilenet_style() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


class _WithOwnParameter(nn.Module):
    """A layer aihwkit cannot map (a parameter of its own) around a Bilinear (no tile mapping either),
    an Embedding (digital by design) and a Linear."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.pair = nn.Bilinear(8, 8, 8)
        self.scale = nn.Parameter(torch.ones(8))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        e = self.emb(x)
        return self.fc(self.pair(e, e) * self.scale)


def _by_path(rows):
    return {r["path"]: r for r in rows}


def test_every_layer_is_reported_with_where_and_why():
    model = mobilenet_style()
    rows = layer_report(model, "pcm")
    assert isinstance(rows, LayerReport) and rows.engine_reason is None and rows.refusal is None
    by_path = _by_path(rows)
    assert list(by_path) == [str(i) for i in range(10)]  # every leaf, the grouped conv as one layer
    assert sum(r["parameters"] for r in rows) == sum(p.numel() for p in model.parameters())
    stem, bn, relu, depthwise = by_path["0"], by_path["1"], by_path["2"], by_path["3"]
    assert (stem["placement"], stem["why"], stem["tiles"], stem["engine"]) == (
        "analog",
        "Conv2d: analog tiles",
        [[9, 8]],
        "fast",
    )
    assert bn["placement"] == "digital" and "normalisation" in bn["why"] and bn["engine"] == "torch"
    assert relu["why"] == "ReLU: digital (no weights)" and relu["parameters"] == 0
    # the depthwise conv: its rewrite named, one 9-row, 1-column tile per channel
    assert depthwise["type"] == "Conv2d" and depthwise["rewrite"] == "grouped-conv"
    assert depthwise["tiles"] == [[9, 1]] * 8 and depthwise["parameters"] == 72
    assert "each group's weights on its own analog tiles" in depthwise["why"]
    # the pointwise conv with a digital bias; the classifier
    assert by_path["6"]["tiles"] == [[8, 16]] and by_path["9"]["tiles"] == [[16, 10]]


def test_tiles_are_the_converted_models_real_tiles():
    """784 inputs on a preset of at most 256 rows x 100 columns: aihwkit's split, read back."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 120), nn.ReLU(), nn.Linear(120, 10))
    rows = _by_path(layer_report(model, "pcm", overrides={"tile.rows": 256, "tile.cols": 100}))
    tiles = rows["1"]["tiles"]
    assert len(tiles) == 4 * 2 and all(r <= 256 and c <= 100 for r, c in tiles)
    assert sum(r for r, _ in tiles) == 2 * 784 and sum(c for _, c in tiles) == 4 * 120
    analog = convert(model, "pcm", overrides={"tile.rows": 256, "tile.cols": 100})
    assert sorted(tiles) == sorted([t.in_size, t.out_size] for t in analog[1].analog_tiles())
    text = format_layer_report(layer_report(model, "pcm", overrides={"tile.rows": 256, "tile.cols": 100}))
    assert "at most 256 rows x 100 cols" in text and "8 x 196x60" in text


def test_analog_bias_row_is_counted():
    rows = _by_path(layer_report(nn.Sequential(nn.Linear(5, 3)), "pcm", overrides={"mapping.digital_bias": False}))
    assert rows["0"]["tiles"] == [[6, 3]]


def test_an_unmappable_layer_is_reported_and_refused_with_its_path_type_and_options():
    rows = layer_report(_WithOwnParameter(), "pcm")
    by_path = _by_path(rows)
    root, pair, fc = by_path["<root>"], by_path["pair"], by_path["fc"]
    assert root["placement"] == pair["placement"] == "unmappable" and pair["engine"] == "-"
    assert "allow_digital=('pair',)" in pair["why"] and "replace the layer" in pair["why"]
    assert by_path["emb"]["placement"] == "digital"  # a lookup: digital by design, not refused
    assert fc["placement"] == "analog" and fc["engine"] == "fast"  # the rest is still shown
    with pytest.raises(ConversionError) as err:
        convert(_WithOwnParameter(), "pcm")
    message = str(err.value)
    assert rows.refusal == message
    assert "pair (Bilinear)" in message and "<root> (_WithOwnParameter)" in message
    assert "allow_digital=" in message and "replace these layers" in message and "\n" not in message
    assert "convert() refuses this network as it is" in format_layer_report(rows)


def test_layers_kept_digital_knowingly():
    rows = layer_report(_WithOwnParameter(), "pcm", allow_digital=("pair", "<root>"))
    assert rows.refusal is None
    by_path = _by_path(rows)
    assert by_path["emb"]["why"] == "Embedding: digital (a lookup, not a matrix-vector product)"
    assert by_path["pair"]["why"] == "Bilinear: kept digital knowingly (allow_digital)"
    assert by_path["<root>"]["why"] == "_WithOwnParameter: kept digital knowingly (allow_digital)"


def test_the_engine_is_named_with_the_reason():
    conv1d = nn.Sequential(nn.Conv1d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6, 2))
    # per-column drift compensation: the fast engine refuses it on AnalogConv1d, aihwkit runs it
    rows = layer_report(conv1d, "pcm", overrides={"compensation.drift": "per-column"})
    by_path = _by_path(rows)
    assert by_path["0"]["engine"] == by_path["3"]["engine"] == "aihwkit"
    assert "per-column drift compensation on AnalogConv1d" in by_path["0"]["engine_reason"]
    assert by_path["3"]["engine_reason"] is None
    text = format_layer_report(rows)
    assert "engine: aihwkit's C++ tiles for the whole network" in text and "  0 (Conv1d): per-column" in text
    # an AnalogConv1d over several tiles: neither backend runs it
    rows = layer_report(conv1d, "pcm", overrides={"tile.rows": 8})
    assert _by_path(rows)["0"]["engine"] == "none"
    assert "engine: none: aihwkit cannot run layer 0" in format_layer_report(rows)


def test_a_preset_calibrated_on_data_is_reported_without_data():
    rows = layer_report(mobilenet_style(), "hwa-standard")
    assert rows.engine_reason is None and rows.notes and "input ranges not calibrated" in rows.notes[0]
    assert rows.preset.name == "hwa-standard" and rows.preset.needs_input_range_calibration


def test_the_table_lists_every_layer_and_the_totals():
    text = format_layer_report(layer_report(mobilenet_style(), "pcm"))
    lines = text.splitlines()
    assert lines[0].startswith("Sequential on preset 'pcm' (tiles of at most 512 rows x 512 cols")
    assert lines[1].split() == ["layer", "type", "placement", "tiles", "parameters", "engine", "why"]
    assert any(line.startswith("3 ") and "8 x 9x1" in line and "grouped convolution" in line for line in lines)
    assert "4 analog layers on 11 tiles (432 cells), 6 digital layers" in text
    assert "engine: fast" in text


@pytest.mark.slow  # starts a Python process
def test_importing_hardware_stays_light_and_exports_the_report():
    code = (
        "import sys, analogsam.hardware as h; light = 'aihwkit' not in sys.modules; "
        "print(light, callable(h.layer_report), callable(h.format_layer_report))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True"]
    assert hardware.layer_report is layer_report
    with pytest.raises(AttributeError):
        _ = hardware.no_such_name


def test_cli_inspect_a_run_folder(digits_run, capsys):
    assert main(["inspect", str(digits_run.path), "--preset", "pcm", "--set", "tile.rows=32"]) == 0
    out = capsys.readouterr().out
    assert "MLP on preset 'pcm' (tiles of at most 32 rows x 512 cols" in out
    assert "net.1" in out and "2 x 32x256" in out and "engine: fast" in out


def test_cli_inspect_a_zoo_model(capsys):
    assert main(["inspect", "lenet5", "--preset", "rram-wan2022", "--in-channels", "3", "--input-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "LeNet5 on preset 'rram-wan2022'" in out and "features.0" in out and "1 x 75x6" in out
    assert main(["inspect", "mlp", "--data", "digits"]) == 0
    assert "1 x 64x256" in capsys.readouterr().out  # sized for 8x8 digits


@pytest.mark.parametrize(
    "argv, words",
    [
        (["inspect", "lenet"], ["'lenet' is neither a run folder nor a model name", "did you mean 'lenet5'"]),
        (["inspect", "mlp", "--input-size", "0"], ["--input-size must be an integer >= 1"]),
        (["inspect", "mlp", "--preset", "nonexistent-preset"], ["nonexistent-preset"]),
        (["inspect", "no_such_module:build"], ["'no_such_module:build': cannot import 'no_such_module'"]),
        (["inspect", "conformance:no_such_function"], ["conformance has no function 'no_such_function'"]),
        (["inspect", "conformance:compare_draws"], ["compare_draws() needs a, b; pass a function that builds"]),
        (["inspect", "zoo_architectures:dilated_tcn", "--input-size", "8"], ["--input-size size a model name"]),
    ],
)
def test_cli_inspect_errors_are_one_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    for word in words:
        assert word in err


def test_cli_inspect_a_network_a_function_builds(capsys):
    """MODULE:FUNCTION returning (module, sample inputs): the dilated TCN of tests/zoo_architectures.py."""
    assert main(["inspect", "zoo_architectures:dilated_tcn", "--preset", "pcm"]) == 0
    out = capsys.readouterr().out
    assert "Sequential on preset 'pcm'" in out and "dilated Conv1d: the kernel on one analog tile" in out
    assert "engine: fast" in out


def test_cli_inspect_refuses_sizes_for_a_run_folder(digits_run, capsys):
    assert main(["inspect", str(digits_run.path), "--num-classes", "3"]) == 2
    assert "--num-classes size a model name, not the run folder" in capsys.readouterr().err
