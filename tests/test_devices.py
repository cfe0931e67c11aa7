"""Device presets as data: loading, overrides, extends, validation errors, hash, docs, packaging.

These tests do not run analog tiles (see test_devices_physics.py for that) and take about a second.
"""

import sys
from pathlib import Path

import pytest

from analogsam.hardware import presets as devices
from analogsam.hardware.presets import PresetError
from analogsam.hardware.presets.schema import KNOBS, WAN2022_TIMES

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"pcm", "pcm-hermes", "rram-wan2022", "rram-cmo", "hwa-standard", "ideal"}


def write(tmp_path, text, name="my.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- shipped presets ---------------------------------------------------------------------------


def test_every_shipped_preset_is_listed_with_name_device_description_and_path():
    rows = devices.list_presets()
    names = {r["name"] for r in rows}
    assert SHIPPED <= names
    for r in rows:
        assert r["description"] and r["device"]
        assert Path(r["path"]).is_file()
        p = devices.load(r["name"])
        assert p.name == r["name"] and p.hash == r["hash"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_presets_name_their_source(name):
    p = devices.load(name)
    # each description names its source: a paper or the aihwkit class it uses
    assert any(s in p.description for s in ("aihwkit", "et al.", "Nature")), p.description


def test_pcm_values_and_sources():
    p = devices.load("pcm")
    assert p.name == "pcm" and p.device == "PCM"
    assert p.values["noise"]["model"] == "pcm-like"
    assert p.values["noise"]["g_max_uS"] == 25.0
    assert p.values["compensation"]["drift"] == "global"
    assert p.values["io"]["adc_bits"] == 8 and p.values["tile"]["rows"] == 512
    assert p.values["mapping"]["weight_scaling"] == 1.0
    assert p.sources["io"]["adc_bits"] == f"file:{p.path}"
    assert p.sources["noise"]["g_min_uS"] == "default"
    # every knob is resolved, values and sources have the same shape
    assert {k.path for k in KNOBS} == set(p.flat_values())
    assert {s: set(v) for s, v in p.values.items()} == {s: set(v) for s, v in p.sources.items()}


def test_rram_wan2022_chooses_g_max_40_knowingly():
    p = devices.load("rram-wan2022")
    assert p.values["noise"]["g_max_uS"] == 40.0
    assert "40" in p.description and "25" in p.description
    assert p.supported_times == WAN2022_TIMES == (1.0, 86400.0, 172800.0)


# --- overrides and extends -----------------------------------------------------------------------


def test_overrides_by_section_keyword_flat_and_nested_agree():
    a = devices.load("pcm", io={"adc_bits": 6})
    b = devices.load("pcm", overrides={"io.adc_bits": 6})
    c = devices.load("pcm", overrides={"io": {"adc_bits": 6}})
    d = devices.load("pcm").with_overrides({"io.adc_bits": 6})
    assert a.values == b.values == c.values == d.values
    assert a.values["io"]["adc_bits"] == 6
    assert a.sources["io"]["adc_bits"] == "override"
    assert a.sources["io"]["dac_bits"].startswith("file:")
    assert a.hash == b.hash == c.hash == d.hash != devices.load("pcm").hash


def test_int_for_float_knob_is_accepted_as_float():
    p = devices.load("pcm", noise={"g_max_uS": 30})
    assert p.values["noise"]["g_max_uS"] == 30.0 and isinstance(p.values["noise"]["g_max_uS"], float)


def test_user_file_by_path_extends_a_shipped_preset(tmp_path):
    path = write(tmp_path, 'name = "pcm-4bit"\nextends = "pcm"\n[io]\nadc_bits = 4\n')
    p = devices.load(path)
    assert p.name == "pcm-4bit"
    assert p.values["io"]["adc_bits"] == 4
    assert p.sources["io"]["adc_bits"] == f"file:{path.resolve()}"
    pcm = devices.load("pcm")
    assert p.sources["io"]["dac_bits"] == f"file:{pcm.path}"  # inherited from the parent file
    assert p.values["noise"] == pcm.values["noise"]
    assert p.description == pcm.description  # inherited unless the child sets one
    assert devices.load(str(path)).values == p.values  # a string path works too


def test_extends_a_relative_path_and_chains(tmp_path):
    write(tmp_path, 'extends = "pcm"\n[io]\nadc_bits = 6\n', "base.toml")
    child = write(tmp_path, 'extends = "base.toml"\n[io]\ndac_bits = 6\n', "child.toml")
    p = devices.load(child)
    assert (p.values["io"]["adc_bits"], p.values["io"]["dac_bits"]) == (6, 6)
    assert p.name == "child"  # no name: the file's stem


def test_circular_extends_is_an_error(tmp_path):
    write(tmp_path, 'extends = "b.toml"\n', "a.toml")
    write(tmp_path, 'extends = "a.toml"\n', "b.toml")
    with pytest.raises(PresetError, match="circular"):
        devices.load(tmp_path / "a.toml")


# --- errors name the file, the key, the value and what is allowed ----------------------------


def test_unknown_key_in_file_suggests_the_nearest(tmp_path):
    path = write(tmp_path, 'extends = "pcm"\n[io]\nadc_bit = 6\n')
    with pytest.raises(PresetError) as err:
        devices.load(path)
    msg = str(err.value)
    assert str(path.resolve()) in msg and "io.adc_bit" in msg and "did you mean 'io.adc_bits'" in msg


def test_unknown_key_in_overrides_and_misplaced_key_suggest_the_nearest(tmp_path):
    with pytest.raises(PresetError, match="did you mean 'noise.g_max_uS'"):
        devices.load("pcm", overrides={"noise.gmax": 30})
    with pytest.raises(PresetError, match="did you mean 'io.adc_bits'"):
        devices.load(write(tmp_path, "adc_bits = 6\n"))  # a knob outside its section
    with pytest.raises(PresetError, match="did you mean 'io'"):
        devices.load("pcm", ios={"adc_bits": 6})


def test_wrong_type_names_file_key_value_and_expected_type(tmp_path):
    path = write(tmp_path, 'extends = "pcm"\n[io]\nadc_bits = "eight"\n')
    with pytest.raises(PresetError) as err:
        devices.load(path)
    msg = str(err.value)
    assert str(path.resolve()) in msg
    assert "io.adc_bits must be an integer in [0, 16]" in msg and msg.endswith('got "eight"')
    with pytest.raises(PresetError, match="io.input_range_calibration must be true or false, got 1"):
        devices.load("pcm", io={"input_range_calibration": 1})
    with pytest.raises(PresetError, match=r"tile.rows must be an integer in \[0, 65536\], got 2.5"):
        devices.load("pcm", tile={"rows": 2.5})


def test_out_of_range_names_the_allowed_range(tmp_path):
    path = write(tmp_path, 'extends = "pcm"\n[noise]\ng_max_uS = -5.0\n')
    with pytest.raises(PresetError) as err:
        devices.load(path)
    msg = str(err.value)
    assert str(path.resolve()) in msg and "noise.g_max_uS must be a number in (0, 1000], got -5.0" in msg
    with pytest.raises(
        PresetError, match=r"io.adc_bits must be an integer in \[0, 16\] \(0 = off; 1 not allowed\), got 40"
    ):
        devices.load("pcm", io={"adc_bits": 40})
    with pytest.raises(PresetError, match="1 bit is not a symmetric converter"):
        devices.load("pcm", io={"dac_bits": 1})


def test_bad_choice_lists_the_allowed_values():
    with pytest.raises(PresetError) as err:
        devices.load("pcm", noise={"model": "pcm"})
    msg = str(err.value)
    assert "noise.model must be one of" in msg and "got \"pcm\" (did you mean 'pcm-like'?)" in msg
    assert "'rram-wan2022'" in msg and "'none'" in msg
    with pytest.raises(PresetError, match="one of 'none', 'global', 'per-column', got \"exact\""):
        devices.load("pcm", compensation={"drift": "exact"})


def test_missing_file_and_unknown_preset_name_list_what_exists(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(PresetError) as err:
        devices.load(missing)
    assert "preset file not found" in str(err.value) and str(missing) in str(err.value)
    with pytest.raises(PresetError) as err:
        devices.load("pcm-hermse")
    msg = str(err.value)
    assert "unknown preset 'pcm-hermse'" in msg and "did you mean 'pcm-hermes'" in msg
    for name in SHIPPED:
        assert name in msg
    with pytest.raises(PresetError, match="extends = 'nosuch'.*available presets"):
        devices.load(write(tmp_path, 'extends = "nosuch"\n'))


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[io\nadc_bits = 6\n")
    with pytest.raises(PresetError, match="not valid TOML") as err:
        devices.load(path)
    assert str(path) in str(err.value)


def test_settings_the_tile_cannot_honour_are_refused_at_load():
    # ReRamWan2022NoiseModel has one noise scale: a read-noise scale would be silently ignored
    with pytest.raises(PresetError, match="noise.read_noise_scale = 2.0.*no effect.*rram-wan2022"):
        devices.load("rram-wan2022", noise={"read_noise_scale": 2.0})
    # HermesNoiseModel's characterised maximum conductance
    with pytest.raises(PresetError, match=r"allowed: \(0, 20.7\] µS"):
        devices.load("pcm-hermes", noise={"g_max_uS": 25.0})
    with pytest.raises(PresetError, match=r"\(0, 10.35\] µS"):
        devices.load("pcm-hermes", noise={"hermes_devices": 1})
    with pytest.raises(PresetError, match="needs io.w_noise_type"):
        devices.load("pcm", io={"w_noise": 0.02})
    with pytest.raises(PresetError, match='needs io.noise_management = "none"'):
        devices.load("pcm", io={"input_range_calibration": True})
    with pytest.raises(PresetError, match="g_min_uS = 30.0 must be below"):
        devices.load("pcm", noise={"g_min_uS": 30.0})
    # switching the model keeps knobs that the new model honours
    p = devices.load("pcm", noise={"model": "state-independent", "drift_nu_mean": 0.05})
    assert p.values["noise"]["drift_nu_mean"] == 0.05


def test_unsupported_time_is_a_clear_error():
    p = devices.load("rram-wan2022")
    p.check_times([1, 86400, 172800.0])
    with pytest.raises(PresetError) as err:
        p.check_times([1, 3600, 2592000])
    msg = str(err.value)
    assert "'rram-wan2022'" in msg and "3600 s" in msg and "2592000 s" in msg
    assert "1 s, 86400 s (1 d), 172800 s (2 d)" in msg
    assert devices.load("pcm").supported_times is None
    devices.load("pcm").check_times([0, 1, 31536000])
    with pytest.raises(PresetError, match=">= 0 s"):
        devices.load("pcm").check_times([-1])


# --- hash ----------------------------------------------------------------------------------------


def test_hash_is_stable_and_changes_with_any_value():
    base = devices.load("pcm")
    assert base.hash == devices.load("pcm").hash
    assert len(base.hash) == 12
    # the same values reached another way hash the same
    assert devices.load("pcm", io={"adc_bits": 8}).hash == base.hash
    # the name and description are labels, not settings
    assert devices.load("pcm", overrides={"name": "other"}).hash == base.hash
    changed = {
        "noise.model": "state-independent",
        "noise.g_max_uS": 26.0,
        "noise.prog_noise_scale": 1.5,
        "noise.read_noise_scale": 0.5,
        "noise.drift_scale": 2.0,
        "compensation.drift": "none",
        "io.dac_bits": 7,
        "io.adc_bits": 7,
        "io.out_noise": 0.05,
        "io.out_bound": 12.0,
        "io.ir_drop": 1.0,
        "io.noise_management": "max",
        "io.bound_management": "none",
        "tile.rows": 256,
        "tile.cols": 256,
        "mapping.weight_scaling": 0.5,
        "mapping.weight_scaling_columnwise": True,
        "mapping.digital_bias": False,
    }
    hashes = {base.hash}
    for key, value in changed.items():
        h = devices.load("pcm", overrides={key: value}).hash
        assert h not in hashes, key
        hashes.add(h)
    assert len({devices.load(n).hash for n in SHIPPED}) == len(SHIPPED)


# --- CLI --set parsing -----------------------------------------------------------------------------


def test_parse_set_options_types_values():
    got = devices.parse_set_options(
        [
            "io.adc_bits=6",
            "noise.model=pcm-like",
            "io.out_noise=0.02",
            "noise.g_max_uS=30",
            "io.input_range_calibration=false",
            "compensation.drift = none",
            'io.w_noise_type="pcm-read"',
        ]
    )
    assert got == {
        "io.adc_bits": 6,
        "noise.model": "pcm-like",
        "io.out_noise": 0.02,
        "noise.g_max_uS": 30.0,
        "io.input_range_calibration": False,
        "compensation.drift": "none",
        "io.w_noise_type": "pcm-read",
    }
    assert type(got["io.adc_bits"]) is int and type(got["noise.g_max_uS"]) is float
    assert devices.load("pcm", overrides=devices.parse_set_options(["io.adc_bits=6"])).values["io"]["adc_bits"] == 6
    assert devices.parse_set_options(None) == {}


@pytest.mark.parametrize(
    "item, pattern",
    [
        ("io.adc_bits", "expected SECTION.KEY=VALUE"),
        ("io.adc_bits=", "expected SECTION.KEY=VALUE"),
        ("=6", "expected SECTION.KEY=VALUE"),
        ("io.adc_bits=six", r"io.adc_bits must be an integer in \[0, 16\] .*, got 'six'"),
        ("io.out_noise=lots", r"io.out_noise must be a number in \[0, 10\], got 'lots'"),
        ("io.input_range_calibration=maybe", "io.input_range_calibration must be true or false, got 'maybe'"),
        ("io.adc_bitz=6", "did you mean 'io.adc_bits'"),
    ],
)
def test_parse_set_options_malformed_items(item, pattern):
    with pytest.raises(PresetError, match=pattern):
        devices.parse_set_options([item])


# --- describe, docs, packaging -------------------------------------------------------------------


def test_describe_shows_every_value_with_unit_and_source():
    p = devices.load("pcm", io={"adc_bits": 6})
    text = devices.describe(p)
    assert p.hash in text and "any t" in text
    for knob in KNOBS:
        assert knob.path in text
    line = next(ln for ln in text.splitlines() if ln.startswith("io.adc_bits"))
    assert "6" in line and "bits" in line and line.rstrip().endswith("override")
    line = next(ln for ln in text.splitlines() if ln.startswith("noise.g_max_uS"))
    assert "µS" in line and "file:" in line
    line = next(ln for ln in text.splitlines() if ln.startswith("noise.hermes_devices"))
    assert "default (unused by pcm-like)" in line


def test_describe_warns_about_time_limited_noise_models():
    text = devices.describe("rram-wan2022")
    assert "ONLY t = 1 s, 86400 s (1 d), 172800 s (2 d)" in text
    assert "ReRamWan2022NoiseModel" in text
    assert "calibrated" in devices.describe("hwa-standard")


def test_knob_table_covers_every_knob_and_docs_are_current():
    table = devices.knob_table_markdown()
    for knob in KNOBS:
        assert f"`{knob.path}`" in table
    assert "µS" in table and "bits" in table
    docs = (REPO / "docs" / "devices.md").read_text(encoding="utf-8")
    assert table in docs, "docs/devices.md is stale: paste devices.knob_table_markdown() into it"


def test_presets_live_in_the_top_level_devices_folder_and_ship_as_package_data():
    """The shipped presets are one copy, in the top-level devices/ folder, which setup.py installs as
    the package data of analogsam.devices (a wheel is built by tests/test_install.py)."""
    shipped = REPO / "devices"
    assert {f"{n}.toml" for n in SHIPPED} <= {p.name for p in shipped.glob("*.toml")}
    assert (shipped / "README.md").is_file()
    assert devices.preset_dir() == shipped.resolve()
    assert not list((REPO / "analogsam").rglob("*.toml")), "a second copy of a preset inside the package"
    setup = (REPO / "setup.py").read_text()
    assert '"analogsam.devices": "devices"' in setup and '"analogsam.devices": ["*.toml", "*.md"]' in setup


@pytest.mark.slow  # starts a Python process
def test_listing_presets_does_not_import_aihwkit():
    import subprocess

    code = (
        "import sys; from analogsam.hardware import presets as devices; devices.list_presets(); "
        "devices.describe('pcm'); print('aihwkit' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
