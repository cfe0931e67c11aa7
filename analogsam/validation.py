"""Declarative parameter checks shared by every entry point.

Each check returns the value converted to its canonical type or raises
:class:`~analogsam.errors.InvalidParameterError` naming the parameter, what is allowed and what was
given, e.g. ``batch_size must be an integer >= 1, got 0``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

from analogsam.errors import InvalidParameterError


def check_real(name: str, value, low=None, high=None, *, low_open=False, high_open=False) -> float:
    """``value`` as a float within ``[low, high]`` (``(`` / ``)`` where open)."""
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    allowed = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidParameterError(f"{name} must be a finite number in {allowed}, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise InvalidParameterError(f"{name} must be in {allowed}, got {value!r}")
    return float(value)


def check_int(name: str, value, low: int | None = 1, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]`` (``None``: unbounded)."""
    if low is None and high is None:
        allowed = "an integer"
    elif high is None:
        allowed = f"an integer >= {low}"
    elif low is None:
        allowed = f"an integer <= {high}"
    else:
        allowed = f"an integer in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidParameterError(f"{name} must be {allowed}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidParameterError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidParameterError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_levels(name: str, values, low=0.0, high=None) -> list[float]:
    """A non-empty sequence of noise levels or fault rates, each within ``[low, high]``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidParameterError(f"{name} must be a sequence of numbers, got {values!r}")
    levels = [check_real(f"{name}[{i}]", v, low, high) for i, v in enumerate(values)]
    if not levels:
        raise InvalidParameterError(f"{name} must contain at least one value")
    return levels
