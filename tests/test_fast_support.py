"""The fast engine's support policy: an allow-list over every aihwkit setting, and the aihwkit version.

The coverage test enumerates aihwkit's own dataclasses at test time, so an aihwkit that adds a
field fails here until the field is declared reproduced or refused.
"""

import ast
import dataclasses
from importlib import metadata
from pathlib import Path

import pytest
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import InferenceRPUConfig
from aihwkit.simulator.parameters.enums import RPUDataType, WeightModifierType
from aihwkit.simulator.parameters.io import IOParameters
from torch import nn

from analogsam.hardware.fast import (
    AIHWKIT_VERSIONS,
    FastAnalogForward,
    FastPathUnsupported,
    aihwkit_version_reason,
    support,
    unsupported_reason,
)
from analogsam.hardware.fast.support import ALLOW_LIST, Refused, Reproduced


def aihwkit_fields(obj, prefix=""):
    """Every leaf field of an aihwkit dataclass instance by dotted path, nested dataclasses walked."""
    paths = []
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            paths += aihwkit_fields(value, f"{prefix}{field.name}.")
        else:
            paths.append(prefix + field.name)
    return paths


def analog_linear(cfg):
    return convert_to_analog(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2)), cfg).eval()


def test_every_aihwkit_field_is_reproduced_or_refused():
    fields = aihwkit_fields(InferenceRPUConfig())
    io_fields = [f.name for f in dataclasses.fields(IOParameters)]
    for section in ("forward", "backward"):
        assert all(f"{section}.{name}" in fields for name in io_fields)
    undeclared = [path for path in fields if path not in ALLOW_LIST]
    assert undeclared == [], f"aihwkit fields neither reproduced nor refused: {undeclared}"
    stale = [path for path in ALLOW_LIST if path not in fields]
    assert stale == [], f"allow-list entries that are not aihwkit fields: {stale}"
    rules = [ALLOW_LIST[path] for path in fields]
    reproduced = sum(isinstance(rule, Reproduced) for rule in rules)
    refused = sum(isinstance(rule, Refused) for rule in rules)
    training_only = sum(rule is support._TRAINING for rule in rules)
    print(
        f"\naihwkit {metadata.version('aihwkit')}: {len(fields)} InferenceRPUConfig fields, "
        f"{reproduced} reproduced ({training_only} of them act only in training), {refused} refused"
    )
    assert reproduced + refused == len(fields)
    assert (len(fields), reproduced, refused, training_only) == (131, 122, 9, 84)


# A non-default value for every refused field (with what it needs to take effect).
_REFUSED_VALUES = {
    "forward.out_noise_std": {"forward.out_noise_std": 0.1},
    "forward.out_nonlinearity": {"forward.out_nonlinearity": 0.5},
    "forward.out_nonlinearity_std": {"forward.out_nonlinearity_std": 0.1},
    "forward.slope_calibration": {"forward.slope_calibration": 0.5},
    "forward.v_offset_std": {"forward.v_offset_std": 0.1},
    "forward.v_offset_w_min": {"forward.v_offset_w_min": 0.5},
    "forward.r_series": {"forward.r_series": 0.1},
    "forward.w_read_asymmetry_dtod": {"forward.w_read_asymmetry_dtod": 0.1},
    "modifier.enable_during_test": {
        "modifier.enable_during_test": True,
        "modifier.type": WeightModifierType.ADD_NORMAL,
    },
}


def configured(settings: dict) -> InferenceRPUConfig:
    cfg = InferenceRPUConfig()
    for path, value in settings.items():
        section, name = path.split(".")
        setattr(getattr(cfg, section), name, value)
    return cfg


def test_every_refused_field_is_named_when_set():
    refused = sorted(path for path, rule in ALLOW_LIST.items() if isinstance(rule, Refused))
    assert refused == sorted(_REFUSED_VALUES)
    for path in refused:
        analog = analog_linear(configured(_REFUSED_VALUES[path]))
        reason = unsupported_reason(analog)
        assert reason is not None and path in reason and "'0'" in reason, (path, reason)
        with pytest.raises(FastPathUnsupported, match=path):
            FastAnalogForward(analog)


def test_refused_fields_at_their_noop_values_are_accepted():
    assert unsupported_reason(analog_linear(InferenceRPUConfig())) is None
    # a weight modifier that is off in eval mode, and one enabled in eval mode but of type NONE
    assert (
        unsupported_reason(
            analog_linear(configured({"modifier.type": WeightModifierType.ADD_NORMAL, "modifier.std_dev": 0.1}))
        )
        is None
    )
    assert unsupported_reason(analog_linear(configured({"modifier.enable_during_test": True}))) is None


def test_a_value_outside_a_reproduced_list_is_named():
    # (this aihwkit build has no double-precision tiles to convert with; the rule is asked directly)
    rule = ALLOW_LIST["runtime.data_type"]
    context = support.Context({}, "linear")
    assert rule.reason("runtime.data_type", RPUDataType.FLOAT, RPUDataType.FLOAT, context) is None
    reason = rule.reason("runtime.data_type", RPUDataType.DOUBLE, RPUDataType.FLOAT, context)
    assert reason == "runtime.data_type DOUBLE (reproduced: FLOAT)"


def test_a_field_the_list_does_not_know_refuses_the_tile(monkeypatch):
    monkeypatch.delitem(ALLOW_LIST, "forward.w_noise")
    reason = unsupported_reason(analog_linear(InferenceRPUConfig()))
    assert reason is not None and "forward.w_noise" in reason and "does not know" in reason


def test_values_are_read_from_the_cpp_tile():
    """Editing the rpu_config after conversion changes nothing in the C++ tile, nor the verdict."""
    analog = analog_linear(InferenceRPUConfig())
    for tile in analog.analog_tiles():
        tile.rpu_config.forward.w_read_asymmetry_dtod = 0.1
    assert unsupported_reason(analog) is None


def test_drawn_per_output_values_refuse_the_tile(monkeypatch):
    """r_series > 0 makes the C++ tile draw out_nonlinearity values although out_nonlinearity is 0:
    refused for r_series, and, were r_series reproduced, for the drawn values."""
    analog = analog_linear(configured({"forward.r_series": 0.1}))
    assert "forward.r_series 0.1, not 0 (series resistance)" in unsupported_reason(analog)
    monkeypatch.setitem(ALLOW_LIST, "forward.r_series", Reproduced("(pretended, for this test)"))
    reason = unsupported_reason(analog)
    assert "forward.out_nonlinearity at its default, but the C++ tile holds values drawn for it" in reason


# aihwkit's bindings and tile internals the engine reads (attribute names)
_AIHWKIT_INTERNALS = {
    "get_meta_parameters",
    "dump_extra",
    "get_weights",
    "get_x_size",
    "analog_module",
    "rpu_config",
    "reference_combined_weights",
    "out_scaling_alpha",
    "in_trans",
    "out_trans",
    "get_readout_tensor",
    "analog_tiles",
}


def aihwkit_contacts(source: str) -> list:
    """The lines of ``source`` that import aihwkit or read one of its internals (code, not prose)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "aihwkit" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "aihwkit":
            lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr in _AIHWKIT_INTERNALS:
            lines.append(node.lineno)
    return sorted(lines)


def test_only_the_adapter_touches_aihwkit():
    """aihwkit's modules, private bindings and tile internals are read in aihwkit_adapter.py alone."""
    package = Path(support.__file__).parent
    offenders = {
        path.name: aihwkit_contacts(path.read_text())
        for path in sorted(package.glob("*.py"))
        if path.name != "aihwkit_adapter.py"
    }
    assert {name: lines for name, lines in offenders.items() if lines} == {}
    assert len(aihwkit_contacts((package / "aihwkit_adapter.py").read_text())) > 10  # the check bites


def _installed(monkeypatch, version):
    real = metadata.version

    def fake(name):
        if name != "aihwkit":
            return real(name)
        if version is None:
            raise metadata.PackageNotFoundError(name)
        return version

    monkeypatch.setattr(metadata, "version", fake)


def test_the_mirrored_aihwkit_version_is_installed():
    assert metadata.version("aihwkit") in AIHWKIT_VERSIONS
    assert aihwkit_version_reason() is None


@pytest.mark.parametrize(
    "version, expected", [("1.3.0", "aihwkit 1.3.0 is installed"), (None, "aihwkit is not installed")]
)
def test_another_aihwkit_version_is_refused_first(monkeypatch, version, expected):
    analog = analog_linear(InferenceRPUConfig())
    _installed(monkeypatch, version)
    reason = aihwkit_version_reason()
    assert reason is not None and expected in reason and "1.1.0" in reason and "\n" not in reason
    assert unsupported_reason(analog) == reason
    assert unsupported_reason("not a model") == reason  # the version is checked before anything else
    with pytest.raises(FastPathUnsupported, match="mirrors aihwkit 1.1.0"):
        FastAnalogForward(analog)
