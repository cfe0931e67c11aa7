"""One way to declare and check a user-settable value: constraints as data, one validator, one error format.

Every value a user sets is declared with a :class:`Constraint`: a preset knob
(:class:`analogsam.hardware.presets.schema.Knob`), a method hyperparameter or training setting
(:class:`analogsam.optim.hyperparameters.Hyperparameter`) and an argument of an API entry point
(:func:`declare` on :func:`analogsam.evaluation.evaluate`, :func:`analogsam.robustness.analyze_model`,
...). :func:`check` is the one validator and its error the one format::

    [<place>: ]<name> must be <allowed>, got <value>[ (did you mean ...?)][: <why>]

e.g. ``batch_size must be an integer >= 1, got 0`` or ``my.toml: io.adc_bits must be an integer in
[0, 16] (0 = off; 1 not allowed), got 1: 1 bit is not a symmetric converter; use 0 (no
quantization) or 2..16 bits``. The
words of ``<allowed>`` (:meth:`~analogsam.validation.Constraint.describe`) are also what ``--help``, ``docs/devices.md`` and
the README tables print, and :meth:`Constraint.counterexamples` gives the invalid values the
generated bad-input tests (``tests/test_bad_inputs.py``) try on every declared parameter.

This is the idea of scikit-learn's ``sklearn.utils._param_validation`` (``Interval``,
``StrOptions``, ``validate_params``, ``generate_invalid_param_val``) written small here rather than
imported: that module is private (no API promise: its ``validate_params`` has since gained a
required ``prefer_skip_nested_validation`` keyword), raises
scikit-learn's own error in its own words, and has no place (a preset file, a ``--set`` item), no
``inf`` kept as the string ``"inf"`` (JSON has no infinity) and no value excluded inside a range
(1 ADC bit), all of which the declarations here need.
"""

from __future__ import annotations

import abc
import difflib
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from analogsam.errors import InvalidParameterError


class Refused(Exception):
    """Raised by :meth:`~analogsam.validation.Constraint.convert` for a value it does not accept; ``why`` (optional) says why."""

    def __init__(self, why: str = "", hint: str = ""):
        super().__init__(why)
        self.why = why
        self.hint = hint


def _number(value: float) -> str:
    if value == math.inf:
        return "inf"
    return f"{value:g}"


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Constraint(abc.ABC):
    """What a value may be: :meth:`convert` returns it in its canonical type or raises :class:`Refused`.
    Each kind of constraint (:class:`Interval`, :class:`Options`, ...) says all three of its methods."""

    #: The Python type of an accepted value (argparse's ``type=``, TOML coercion, ``--set`` parsing).
    type: type = object

    @abc.abstractmethod
    def describe(self) -> str:
        """The allowed values in words (an error's ``<allowed>``, ``--help``, the README tables)."""

    @abc.abstractmethod
    def convert(self, value: Any) -> Any:
        """``value`` in the canonical type, or :class:`Refused` if it is not allowed."""

    @abc.abstractmethod
    def counterexamples(self) -> list[tuple[str, Any]]:
        """(label, value) pairs this constraint refuses: wrong types, non-finite numbers, just outside."""


@dataclass(frozen=True)
class Interval(Constraint):
    """An ``int`` or a finite ``float`` within ``[low, high]`` (``(``/``)`` where open; ``None``: unbounded).

    ``infinite`` also admits infinity (``float('inf')`` or ``"inf"``, returned as ``"inf"``);
    ``excluded`` are values inside the range that are still refused, for the reason ``why``;
    ``note`` is added to the words (``"0 = off"``).
    """

    type: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    infinite: bool = False
    excluded: tuple = ()
    why: str = ""
    note: str = ""

    def describe(self) -> str:
        kind = "an integer" if self.type is int else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            words = f"{kind} in {left}{_number(self.low)}, {_number(self.high)}{right}"
        elif self.low is not None:
            words = f"{kind} {'>' if self.low_open else '>='} {_number(self.low)}"
        elif self.high is not None:
            words = f"{kind} {'<' if self.high_open else '<='} {_number(self.high)}"
        else:
            words = kind
        if self.infinite:
            words += " or inf"
        notes = [self.note] if self.note else []
        notes += [f"{_number(v)} not allowed" for v in self.excluded]
        return words + (f" ({'; '.join(notes)})" if notes else "")

    def convert(self, value: Any) -> Any:
        if self.infinite and (value == "inf" or (_is_real(value) and value == math.inf)):
            return "inf"
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise Refused
            value = int(value)
        else:
            if not _is_real(value) or not math.isfinite(value):
                raise Refused
            value = float(value)
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise Refused
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise Refused
        if value in self.excluded:
            raise Refused(self.why)
        return value

    def counterexamples(self) -> list[tuple[str, Any]]:
        if self.type is int:
            cases = [("float", 1.5), ("string", "3"), ("bool", True)]
            step = 1
        else:
            cases = [("string", "0.1"), ("nan", math.nan), ("bool", True)]
            if not self.infinite:
                cases.append(("inf", math.inf))
            step = 0.5
        if self.low is not None:
            cases.append(("below-range", self.low if self.low_open else self.low - step))
        if self.high is not None:
            cases.append(("above-range", self.high if self.high_open else self.high + step))
        cases += [(f"excluded-{_number(v)}", v) for v in self.excluded]
        return cases


@dataclass(frozen=True)
class Options(Constraint):
    """One of ``values`` (strings or numbers; a bool never stands for a number)."""

    values: tuple

    @property
    def type(self) -> type:  # noqa: D102 (see Constraint.type)
        return type(self.values[0])

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self.values))

    def convert(self, value: Any) -> Any:
        same_kind = isinstance(value, str) if self.type is str else _is_real(value)
        if same_kind and value in self.values:
            return value
        hint = ""
        if isinstance(value, str) and self.type is str:
            near = difflib.get_close_matches(value, self.values, n=1, cutoff=0.5)
            hint = f"did you mean {near[0]!r}?" if near else ""
        raise Refused(hint=hint)

    def counterexamples(self) -> list[tuple[str, Any]]:
        if self.type is str:
            return [("unknown-choice", "no-such-choice"), ("number", 1)]
        return [("unknown-choice", max(self.values) + 1), ("string", str(self.values[0])), ("bool", True)]


@dataclass(frozen=True)
class Boolean(Constraint):
    """``True`` or ``False`` (not 0/1, not a string)."""

    type = bool

    def describe(self) -> str:
        return "true or false"

    def convert(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise Refused
        return value

    def counterexamples(self) -> list[tuple[str, Any]]:
        return [("string", "yes"), ("int", 1)]


@dataclass(frozen=True)
class Text(Constraint):
    """A non-empty string (a name or a path, checked further where it is used)."""

    type = str

    def describe(self) -> str:
        return "a non-empty name"

    def convert(self, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            raise Refused
        return value

    def counterexamples(self) -> list[tuple[str, Any]]:
        return [("empty", ""), ("number", 1)]


@dataclass(frozen=True)
class Many(Constraint):
    """A non-empty sequence (not a string) of values each meeting ``each``; returned as a list."""

    each: Constraint

    type = list

    def describe(self) -> str:
        return f"a non-empty list, each {self.each.describe()}"

    def convert(self, value: Any) -> Any:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise Refused
        items = list(value)
        if not items:
            raise Refused("it is empty")
        out = []
        for i, item in enumerate(items):
            try:
                out.append(self.each.convert(item))
            except Refused as exc:
                why = f"item {i} ({item!r}) is not {self.each.describe()}" + (f": {exc.why}" if exc.why else "")
                raise Refused(why) from None
        return out

    def counterexamples(self) -> list[tuple[str, Any]]:
        return [("empty", []), ("string", "0.1")] + [
            (f"item-{label}", [value]) for label, value in self.each.counterexamples() if label != "string"
        ][:2]


@dataclass(frozen=True)
class Subset(Constraint):
    """One of ``values`` or several (a non-empty-or-empty sequence, not a string); returned as a tuple."""

    values: tuple

    type = tuple

    def describe(self) -> str:
        return "names among " + ", ".join(map(repr, self.values))

    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            value = (value,)
        if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
            raise Refused
        value = tuple(value)
        unknown = [v for v in value if not isinstance(v, str) or v not in self.values]
        if unknown:
            raise Refused(f"unknown {', '.join(map(repr, unknown))}")
        return value

    def counterexamples(self) -> list[tuple[str, Any]]:
        return [("unknown-name", ["no-such-name"]), ("number", 1)]


@dataclass(frozen=True)
class OrNone(Constraint):
    """``None`` (meaning "the default", "all" or "off", said in ``none_means``) or a value meeting ``inner``."""

    inner: Constraint
    none_means: str = "default"

    @property
    def type(self) -> type:  # noqa: D102 (see Constraint.type)
        return self.inner.type

    def describe(self) -> str:
        return f"{self.inner.describe()}, or None ({self.none_means})"

    def convert(self, value: Any) -> Any:
        return None if value is None else self.inner.convert(value)

    def counterexamples(self) -> list[tuple[str, Any]]:
        return self.inner.counterexamples()


def refusal(name: str, constraint: Constraint, value: Any, *, place: str = "", show=repr, why="", hint="") -> str:
    """The one error format: ``[<place>: ]<name> must be <allowed>, got <value>[ (<hint>)][: <why>]``."""
    text = f"{place + ': ' if place else ''}{name} must be {constraint.describe()}, got {show(value)}"
    if hint:
        text += f" ({hint})"
    if why:
        text += f": {why}"
    return text


def check(name: str, value: Any, constraint: Constraint, *, place: str = "", show=repr, error=InvalidParameterError):
    """The one validator: ``value`` in its canonical type, or ``error`` (an
    :class:`~analogsam.errors.AnalogsamError`) with the message of :func:`refusal`."""
    try:
        return constraint.convert(value)
    except Refused as exc:
        raise error(refusal(name, constraint, value, place=place, show=show, why=exc.why, hint=exc.hint)) from None


# -- shortcuts for an argument checked where it is used -----------------------------------------------


def check_real(name: str, value, low=None, high=None, *, low_open=False, high_open=False) -> float:
    """``value`` as a float within ``[low, high]`` (``(`` / ``)`` where open)."""
    return check(name, value, Interval(float, low, high, low_open, high_open))


def check_int(name: str, value, low: int | None = 1, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]`` (``None``: unbounded)."""
    return check(name, value, Interval(int, low, high))


def check_choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices``."""
    return check(name, value, Options(tuple(choices)))


def check_levels(name: str, values, low=0.0, high=None) -> list[float]:
    """A non-empty sequence of noise levels or fault rates, each within ``[low, high]``."""
    return check(name, values, Many(Interval(float, low, high)))


# -- declared entry points ------------------------------------------------------------------------------


def declare(constraints: Mapping[str, Constraint]) -> Callable:
    """Declare the constraints of a function's arguments, checked (by :func:`check`) before it runs.

    Like scikit-learn's ``validate_params``: the declarations are data on the function
    (``function.parameter_constraints``), from which the bad-input tests are generated; an argument
    left at its default is not checked (the defaults are right by construction).
    """

    def wrap(function: Callable) -> Callable:
        signature = inspect.signature(function)
        unknown = set(constraints) - set(signature.parameters)
        if unknown:  # pragma: no cover (a mistake in a declaration, caught at import)
            raise TypeError(f"{function.__qualname__} has no parameters {sorted(unknown)}")

        @functools.wraps(function)
        def checked(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            for name, value in bound.arguments.items():
                if name in constraints:
                    bound.arguments[name] = check(name, value, constraints[name])
            return function(*bound.args, **bound.kwargs)

        checked.parameter_constraints = dict(constraints)
        return checked

    return wrap


# -- settings objects ---------------------------------------------------------------------------------


def setting(default: Any, constraint: Constraint, doc: str = ""):
    """A field of a :class:`Settings` dataclass: its default, its constraint and what it means."""
    return field(default=default, metadata={"constraint": constraint, "doc": doc})


class Settings:
    """Base of a frozen dataclass of settings declared with :func:`setting`: every field is checked
    by :func:`check` when the object is made (a list becomes a tuple, so the object stays hashable),
    so a settings object that exists is valid."""

    def __post_init__(self):
        for f in fields(self):
            constraint = f.metadata.get("constraint")
            if constraint is None:
                continue
            value = check(f.name, getattr(self, f.name), constraint)
            object.__setattr__(self, f.name, tuple(value) if isinstance(value, list) else value)

    @classmethod
    def given(cls, name: str, value):
        """``value`` if it is one of these settings objects (``None``: the defaults), else an error
        naming the argument ``name`` it was passed as."""
        if value is None:
            return cls()
        if not isinstance(value, cls):
            raise InvalidParameterError(f"{name} must be a {cls.__name__} (or None: the defaults), got {value!r}")
        return value

    @classmethod
    def constraints(cls) -> dict[str, Constraint]:
        """name -> constraint of every declared field (what the bad-input tests are generated from)."""
        return {f.name: f.metadata["constraint"] for f in fields(cls) if "constraint" in f.metadata}

    @classmethod
    def pick(cls, options: Mapping) -> dict:
        """The entries of ``options`` that are fields of this class."""
        names = {f.name for f in fields(cls)}
        return {k: v for k, v in options.items() if k in names}

    def as_dict(self) -> dict:
        """name -> value of every field (tuples as lists: JSON-ready)."""
        return {f.name: list(v) if isinstance(v, tuple) else v for f in fields(self) for v in [getattr(self, f.name)]}
