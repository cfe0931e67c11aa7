"""A common test in scikit-learn's style: every parameter of every method and entry point refuses bad values.

The cases are enumerated from the declarations (:mod:`analogsam.optim.hyperparameters`), so a new
hyperparameter or training setting is covered without writing a test for it. Each bad value must
raise :class:`~analogsam.errors.InvalidParameterError` (an ``AnalogsamError``) whose one-line message
names the parameter, before anything is trained or measured.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import analogsam
from analogsam.errors import AnalogsamError, InvalidParameterError
from analogsam.optim import METHODS, OPTIMIZER_NAMES, TRAINING_SETTINGS, build_method
from analogsam.optim.hyperparameters import Hyperparameter
from analogsam.studies.flatness import analyze_runs


def invalid_values(hp: Hyperparameter) -> list[tuple[str, object]]:
    """(label, value) pairs that ``hp`` must refuse: its constraint's counterexamples."""
    return hp.constraint.counterexamples()


METHOD_CASES = [
    pytest.param(name, hp, value, id=f"{name}-{hp.name}-{label}")
    for name, spec in METHODS.items()
    for hp in spec.hyperparameters
    for label, value in invalid_values(hp)
]
# the base optimizer's settings apply to every method; "base" only to the methods that have one
BASE_CASES = [
    pytest.param(name, TRAINING_SETTINGS[s], value, id=f"{name}-{s}-{label}")
    for name in OPTIMIZER_NAMES
    for s in ("lr", "momentum", "weight_decay", "base")
    if not (s == "base" and name in ("sgd", "adamw"))
    for label, value in invalid_values(TRAINING_SETTINGS[s])
]
TRAIN_CASES = [
    pytest.param(hp, value, id=f"{hp.name}-{label}")
    for hp in TRAINING_SETTINGS.values()
    for label, value in invalid_values(hp)
]


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def assert_names(err: pytest.ExceptionInfo, name: str) -> None:
    message = str(err.value)
    assert isinstance(err.value, AnalogsamError)
    assert name in message, message
    assert "\n" not in message, message


def test_every_declared_parameter_is_covered():
    covered = {(p.values[0], p.values[1].name) for p in METHOD_CASES}
    declared = {(name, hp.name) for name, spec in METHODS.items() for hp in spec.hyperparameters}
    assert covered == declared
    assert {p.values[0].name for p in TRAIN_CASES} == set(TRAINING_SETTINGS)


@pytest.mark.parametrize("name, hp, value", METHOD_CASES + BASE_CASES)
def test_build_method_refuses(name, hp, value):
    with pytest.raises(InvalidParameterError) as err:
        build_method(name, tiny_model(), num_samples=10, num_classes=10, epochs=10, **{hp.name: value})
    assert_names(err, hp.name)


@pytest.mark.parametrize("name, hp, value", METHOD_CASES)
def test_train_refuses_a_bad_hyperparameter_before_loading_data(name, hp, value, monkeypatch):
    import analogsam.training as training

    monkeypatch.setattr(training, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the check"))
    with pytest.raises(InvalidParameterError) as err:
        analogsam.train("mlp", "digits", optimizer=name, epochs=10, progress=False, **{hp.name: value})
    assert_names(err, hp.name)


@pytest.mark.parametrize("hp, value", TRAIN_CASES)
def test_train_refuses_a_bad_setting(hp, value, digits):
    optimizer = "sam" if hp.name == "base" else "sgd"  # sgd/adamw are their own base
    with pytest.raises(InvalidParameterError) as err:
        analogsam.train("mlp", digits, optimizer=optimizer, progress=False, **{hp.name: value})
    assert_names(err, hp.name)


def test_train_batch_size_zero_and_epochs_zero(digits):
    with pytest.raises(InvalidParameterError, match="batch_size must be an integer >= 1, got 0"):
        analogsam.train("mlp", digits, batch_size=0, progress=False)
    with pytest.raises(InvalidParameterError, match="epochs must be an integer >= 1, got 0"):
        analogsam.train("mlp", digits, epochs=0, progress=False)


def test_the_torch_optimizers_check_their_declarations():
    from analogsam.optim import ASAM, SAM, SAMSON

    params = tiny_model().parameters
    for make, name in (
        (lambda: SAM(params(), torch.optim.SGD, rho=-1, lr=0.1), "rho"),
        (lambda: ASAM(params(), torch.optim.SGD, eta=math.nan, lr=0.1), "eta"),
        (lambda: SAMSON(params(), torch.optim.SGD, p=0.5, lr=0.1), "p"),
    ):
        with pytest.raises(InvalidParameterError) as err:
            make()
        assert_names(err, name)


def test_valid_edge_values_pass():
    # the ends of each closed range and inf where declared are allowed
    method = build_method("samson", tiny_model(), rho=0, eta=0, p=math.inf)
    assert method.hparams["p"] == "inf" and method.hparams["rho"] == 0.0
    assert build_method("rwp", tiny_model(), rwp_alpha=1).hparams["rwp_alpha"] == 1.0
    assert build_method("sgd", tiny_model(), momentum=0).hparams["momentum"] == 0.0


# -- the evaluation and analysis entry points: generated in tests/test_bad_inputs.py; the sweep here


@pytest.fixture(scope="module")
def few_test_batches(digits):
    return [(digits.test.x[:40], digits.test.y[:40])]


SWEEP_CASES = [
    ("repeats", 0),
    ("repeats", "2"),
    ("seed", -1),
    ("seed", "0"),
    ("workers", 0),
    ("workers", 1.5),
    ("backend", "gpu"),
    ("times", "-1s"),
    ("times", "soon"),
]


@pytest.mark.parametrize("name, value", SWEEP_CASES, ids=[f"{n}-{v!r}" for n, v in SWEEP_CASES])
def test_sweep_refuses(name, value, digits_run, few_test_batches, tmp_path):
    from analogsam.evaluation import sweep

    settings = {"times": "1s", "repeats": 1, "progress": False, name: value}
    with pytest.raises(AnalogsamError) as err:
        sweep([digits_run], ["ideal"], out=tmp_path / "sweep", batches_for=lambda run: few_test_batches, **settings)
    assert_names(err, name)


ANALYZE_CASES = [
    pytest.param(name, value, id=f"{name}-{label}")
    for name, constraint in analyze_runs.parameter_constraints.items()
    for label, value in constraint.counterexamples()
]


@pytest.mark.parametrize("name, value", ANALYZE_CASES)
def test_analyze_runs_refuses(name, value, digits_run, tmp_path):
    settings = dict(
        preset="ideal",
        t="1s",
        repeats=1,
        num_batches=1,
        batch_size=16,
        test_samples=40,
        quick=True,
        metrics=["worst_case_sharpness"],
        curves=["weight_noise_relative"],
        progress=False,
    )
    settings[name] = value
    with pytest.raises(AnalogsamError) as err:
        analyze_runs([digits_run.path], tmp_path / "analysis", **settings)
    assert_names(err, name)
