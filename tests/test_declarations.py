"""The one declaration style (:mod:`analogsam.validation`): constraints, the validator, its one error
format, declared functions and settings objects; and the model facts the preset schema holds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from analogsam.errors import InvalidParameterError
from analogsam.hardware import presets
from analogsam.hardware.presets import PresetError, schema
from analogsam.optim.hyperparameters import METHODS, TRAINING_SETTINGS
from analogsam.validation import (
    Boolean,
    Interval,
    Many,
    Options,
    OrNone,
    Settings,
    Subset,
    Text,
    check,
    declare,
    refusal,
    setting,
)


@pytest.mark.parametrize(
    "constraint, words",
    [
        (Interval(int, 1), "an integer >= 1"),
        (Interval(int, 0, 16, excluded=(1,), note="0 = off"), "an integer in [0, 16] (0 = off; 1 not allowed)"),
        (Interval(float, 0.0, 1.0, high_open=True), "a number in [0, 1)"),
        (Interval(float, 0.0, low_open=True), "a number > 0"),
        (Interval(float, 1.0, infinite=True), "a number >= 1 or inf"),
        (Interval(float), "a number"),
        (Options(("a", "b")), "one of 'a', 'b'"),
        (Boolean(), "true or false"),
        (Text(), "a non-empty name"),
        (Many(Interval(float, 0.0, 1.0)), "a non-empty list, each a number in [0, 1]"),
        (OrNone(Interval(int, 1), "all"), "an integer >= 1, or None (all)"),
    ],
)
def test_each_constraint_says_what_it_allows(constraint, words):
    assert constraint.describe() == words


def test_accepted_values_come_back_in_their_canonical_type():
    assert check("x", 3, Interval(float, 0.0)) == 3.0 and isinstance(check("x", 3, Interval(float)), float)
    assert check("p", math.inf, Interval(float, 1.0, infinite=True)) == "inf"
    assert check("p", "inf", Interval(float, 1.0, infinite=True)) == "inf"
    assert check("levels", (0, 0.5), Many(Interval(float, 0.0, 1.0))) == [0.0, 0.5]
    assert check("names", "a", Subset(("a", "b"))) == ("a",)
    assert check("n", None, OrNone(Interval(int, 1))) is None
    assert check("bits", 0, Interval(int, 0, 16, excluded=(1,))) == 0


@pytest.mark.parametrize(
    "constraint",
    [
        Interval(int, 0, 16, excluded=(1,)),
        Interval(float, 0.0, 1.0, low_open=True, high_open=True),
        Interval(float, 1.0, infinite=True),
        Options(("a", "b")),
        Options((1, 2)),
        Options((0.2, 2.0)),
        Boolean(),
        Text(),
        Many(Interval(float, 0.0, 1.0)),
        Subset(("a", "b")),
    ],
    ids=repr,
)
def test_every_counterexample_is_refused_in_the_one_format(constraint):
    for label, value in constraint.counterexamples():
        with pytest.raises(InvalidParameterError) as err:
            check("knob", value, constraint)
        message = str(err.value)
        assert message.startswith(f"knob must be {constraint.describe()}, got {value!r}"), (label, message)
        assert "\n" not in message


def test_the_one_format_with_a_place_a_hint_and_a_reason():
    bits = Interval(int, 0, 16, excluded=(1,), why="1 bit is not a symmetric converter")
    assert refusal("io.adc_bits", bits, 1, place="my.toml", why="1 bit is not a symmetric converter") == (
        "my.toml: io.adc_bits must be an integer in [0, 16] (1 not allowed), got 1: 1 bit is not a symmetric converter"
    )
    with pytest.raises(InvalidParameterError, match=r"got 'abs' \(did you mean 'abs-max'\?\)$"):
        check("io.noise_management", "abs", Options(("abs-max", "none")))
    with pytest.raises(InvalidParameterError, match=r"got \[0.1, 2\]: item 1 \(2\) is not a number in \[0, 1\]$"):
        check("rates", [0.1, 2], Many(Interval(float, 0.0, 1.0)))


def test_a_bool_never_passes_for_a_number_nor_a_number_for_a_bool():
    for constraint in (Interval(int, 0), Interval(float, 0.0), Options((1, 2))):
        with pytest.raises(InvalidParameterError):
            check("x", True, constraint)
    with pytest.raises(InvalidParameterError):
        check("x", 1, Boolean())


def test_knobs_hyperparameters_and_arguments_share_the_validator_and_the_format():
    knob = schema.KNOBS_BY_PATH["io.adc_bits"]
    with pytest.raises(PresetError) as from_knob:
        presets.load("pcm", io={"adc_bits": 17})
    hp = TRAINING_SETTINGS["batch_size"]
    with pytest.raises(InvalidParameterError) as from_hyperparameter:
        hp.check(0)
    assert str(from_knob.value).endswith(f"io.adc_bits must be {knob.allowed()}, got 17")
    assert str(from_hyperparameter.value) == "batch_size must be an integer >= 1, got 0"
    assert METHODS["samson"]["p"].check(math.inf) == "inf"


def test_a_declared_function_checks_its_arguments_before_it_runs():
    calls = []

    @declare({"repeats": Interval(int, 1)})
    def measure(model, *, repeats=10):
        calls.append(repeats)
        return repeats

    assert measure("m", repeats=3) == 3 and measure("m") == 10
    with pytest.raises(InvalidParameterError, match="repeats must be an integer >= 1, got 0"):
        measure("m", repeats=0)
    assert calls == [3, 10]
    assert measure.parameter_constraints == {"repeats": Interval(int, 1)}


@dataclass(frozen=True)
class _Probe(Settings):
    draws: int = setting(5, Interval(int, 1), "draws")
    levels: tuple = setting((0.0, 0.1), Many(Interval(float, 0.0)), "levels")


def test_a_settings_object_is_checked_when_made_and_stays_hashable():
    probe = _Probe(draws=3, levels=[0, 0.5])
    assert probe.levels == (0.0, 0.5) and hash(probe) == hash(_Probe(draws=3, levels=(0.0, 0.5)))
    assert probe.as_dict() == {"draws": 3, "levels": [0.0, 0.5]}
    with pytest.raises(InvalidParameterError, match="draws must be an integer >= 1, got 0"):
        _Probe(draws=0)
    assert _Probe.given("probe", None) == _Probe()
    with pytest.raises(InvalidParameterError, match="probe must be a _Probe"):
        _Probe.given("probe", {"draws": 3})
    assert _Probe.pick({"draws": 2, "other": 1}) == {"draws": 2}


# -- model facts in the schema ------------------------------------------------------------------------


def test_the_times_a_noise_model_defines_are_schema_data(monkeypatch):
    assert presets.load("rram-wan2022").supported_times == schema.MODEL_TIMES["rram-wan2022"]
    assert presets.load("pcm").supported_times is None  # not listed: defined at any t >= 0
    # the check and its message follow the schema, whichever model is restricted
    monkeypatch.setitem(schema.MODEL_TIMES, "rram-cmo", (1.0, 3600.0))
    cmo = presets.load("rram-cmo")
    assert cmo.supported_times == (1.0, 3600.0)
    cmo.check_times([1.0, 3600.0])
    with pytest.raises(PresetError) as err:
        cmo.check_times([1.0, 86400.0])
    message = str(err.value)
    assert 'noise.model = "rram-cmo", ReRamCMONoiseModel' in message and "rram-wan2022" not in message
    assert "unsupported time(s): 86400 s (1 d)" in message and "--times 1,3600" in message
