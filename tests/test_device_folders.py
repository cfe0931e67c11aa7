"""A user's folders of presets (devices=, --devices, $ANALOGSAM_DEVICES), name clashes, `extends` by
name, `presets list` sources and `presets diff`. Presets as data only: no tiles, about a second."""

import shutil
from pathlib import Path

import pytest

from analogsam.cli import main
from analogsam.hardware import presets as devices
from analogsam.hardware.presets import PresetError

REPO = Path(__file__).resolve().parents[1]
MY_PCM = 'name = "my-pcm"\nextends = "pcm"\ndescription = "our PCM"\n[noise]\ndrift_scale = 2.0\n[io]\nadc_bits = 6\n'


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A user folder with one preset that extends a shipped one by name (and no $ANALOGSAM_DEVICES)."""
    monkeypatch.delenv(devices.DEVICES_ENV_VAR, raising=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my-pcm.toml").write_text(MY_PCM)
    return tmp_path / "mine"


def test_a_user_folder_makes_its_presets_loadable_by_name_and_extends_a_shipped_one(folder):
    p = devices.load("my-pcm", devices=folder)
    pcm = devices.load("pcm")
    assert (p.values["io"]["adc_bits"], p.values["noise"]["drift_scale"]) == (6, 2.0)
    assert p.sources["io"]["adc_bits"] == f"file:{(folder / 'my-pcm.toml').resolve()}"
    assert p.sources["io"]["dac_bits"] == f"file:{pcm.path}"  # inherited from the shipped file
    assert p.hash == pcm.with_overrides({"io.adc_bits": 6, "noise.drift_scale": 2.0}).hash
    with pytest.raises(PresetError, match=r"unknown preset 'my-pcm'.*--devices DIR or \$ANALOGSAM_DEVICES"):
        devices.load("my-pcm")  # without the folder the name is unknown


def test_the_environment_variable_names_folders_too(folder, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    (other / "chip-b.toml").write_text('extends = "my-pcm"\n[io]\ndac_bits = 6\n')  # a user preset by name
    monkeypatch.setenv(devices.DEVICES_ENV_VAR, f"{folder}{':'}{other}")
    p = devices.load("chip-b")
    assert (p.values["io"]["adc_bits"], p.values["io"]["dac_bits"]) == (6, 6)
    rows = {r["name"]: r for r in devices.list_presets()}
    assert rows["pcm"]["source"] == "shipped"
    assert rows["my-pcm"]["source"] == str(folder.resolve()) and rows["chip-b"]["source"] == str(other.resolve())
    shipped = len(list((REPO / "devices").glob("*.toml")))
    assert [r["source"] for r in rows.values()][:shipped] == ["shipped"] * shipped  # shipped ones first


def test_a_user_preset_named_like_a_shipped_one_is_an_error_naming_both_files(folder):
    (folder / "pcm.toml").write_text("[io]\nadc_bits = 4\n")
    with pytest.raises(PresetError) as err:
        devices.load("pcm", devices=folder)
    text = str(err.value)
    assert str((folder / "pcm.toml").resolve()) in text and str(REPO / "devices" / "pcm.toml") in text
    assert "defined twice" in text and 'extends = "pcm"' in text


def test_two_user_folders_with_one_name_are_an_error_naming_both(folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(folder / "my-pcm.toml", other / "my-pcm.toml")
    with pytest.raises(PresetError, match=r"'my-pcm' is defined twice: .*mine/my-pcm.toml .* and .*other/my-pcm.toml"):
        devices.catalog([folder, other])
    assert devices.catalog([folder, folder]).keys() == devices.catalog(folder).keys()  # one folder twice: once


def test_a_missing_folder_is_an_error_naming_where_it_came_from(tmp_path, monkeypatch):
    monkeypatch.delenv(devices.DEVICES_ENV_VAR, raising=False)
    with pytest.raises(PresetError, match=r"devices folder .*nowhere \(from --devices .*nowhere\) is not a folder"):
        devices.load("pcm", devices=str(tmp_path / "nowhere"))
    monkeypatch.setenv(devices.DEVICES_ENV_VAR, str(tmp_path / "gone"))
    with pytest.raises(PresetError, match=r"gone \(from \$ANALOGSAM_DEVICES\)"):
        devices.list_presets()


def test_the_hash_does_not_depend_on_where_the_file_is(folder):
    shutil.copy(REPO / "devices" / "rram-cmo.toml", folder / "copied-cmo.toml")
    assert devices.load("copied-cmo", devices=folder).hash == devices.load("rram-cmo").hash


def test_diff_lists_every_differing_value_with_unit_and_origin(folder):
    rows = devices.diff("pcm", "pcm-hermes")
    assert [r["key"] for r in rows] == ["noise.model", "noise.g_max_uS", "tile.rows", "tile.cols"]
    g_max = rows[1]
    assert (g_max["a"], g_max["b"], g_max["unit"]) == (25.0, 20.7, "µS")
    assert g_max["a_source"].endswith("pcm.toml") and g_max["b_source"].endswith("pcm-hermes.toml")
    mine = {
        r["key"]: r for r in devices.diff("pcm", devices.load("my-pcm", devices=folder, overrides={"io.dac_bits": 4}))
    }
    assert set(mine) == {"io.adc_bits", "io.dac_bits", "noise.drift_scale"}
    assert mine["io.dac_bits"]["b_source"] == "override" and mine["io.adc_bits"]["b_source"].endswith("my-pcm.toml")
    assert "no knob differs" in devices.format_diff("pcm", "pcm")


def test_cli_presets_list_show_and_diff_with_a_user_folder(folder, capsys):
    assert main(["presets", "list", "--devices", str(folder)]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("my-pcm "))
    assert str(folder.resolve()) in line and "our PCM" in line
    assert "shipped" in next(row for row in out.splitlines() if row.startswith("pcm "))
    assert main(["presets", "diff", "pcm", "my-pcm", "--devices", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "io.adc_bits" in out and "noise.drift_scale" in out and "bits" in out and "2 knobs differ" in out
    assert main(["presets", "diff", "pcm"]) == 2
    assert "presets diff needs 2 preset names" in capsys.readouterr().err
    (folder / "ideal.toml").write_text("")
    assert main(["presets", "show", "my-pcm", "--devices", str(folder)]) == 2
    assert "defined twice" in capsys.readouterr().err


def test_printed_tables_show_shipped_files_without_a_machines_path(folder, monkeypatch):
    text = devices.describe("pcm") + devices.format_diff("pcm", "ideal")
    assert str(REPO) not in text and "file         devices/pcm.toml" in text and "file:devices/ideal.toml" in text
    monkeypatch.chdir(folder.parent)  # a user's file below the working folder: relative
    assert "file         mine/my-pcm.toml" in devices.describe(devices.load("my-pcm", devices=folder))
