"""Time points after programming: reading ``"1s,1h,1d,30d,1y"`` and writing seconds back as text."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Sequence

from analogsam.errors import InvalidParameterError

#: The default study's time points: 1 s, 1 h, 1 day, 30 days, 1 year.
DEFAULT_TIMES = (1.0, 3600.0, 86400.0, 2592000.0, 31536000.0)

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_NUMBER_WITH_UNIT = re.compile(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*")


def _seconds(item) -> float:
    if isinstance(item, numbers.Real) and not isinstance(item, bool):
        return float(item)
    match = _NUMBER_WITH_UNIT.fullmatch(item.lower()) if isinstance(item, str) else None
    if not match or match.group(2) not in ("", *_UNITS):
        raise InvalidParameterError(
            f"times: cannot read time {item!r}: use seconds or a number with a unit "
            f"({', '.join(_UNITS)}), e.g. 1s,1h,1d,30d,1y"
        )
    return float(match.group(1)) * _UNITS.get(match.group(2), 1.0)


def parse_times(text: str | Iterable[float | str]) -> list[float]:
    """Seconds from ``"1,3600"``, ``"1s,1h,1d,30d,1y"`` or a sequence; a year is 365 days.

    Raises :class:`~analogsam.errors.InvalidParameterError` for text it cannot read, a time that is
    not a finite positive number of seconds, a time given twice, or no time at all.
    """
    if isinstance(text, str):
        items = text.split(",")
    elif isinstance(text, Iterable):
        items = list(text)
    else:
        raise InvalidParameterError(f"times must be text such as '1s,1h,1d' or a sequence of seconds, got {text!r}")
    times = []
    for item in items:
        value = _seconds(item)
        if not (math.isfinite(value) and value > 0):
            raise InvalidParameterError(f"times must be positive and finite (seconds after programming), got {item!r}")
        if value in times:  # a repeated time would measure the same cell twice and double its n
            raise InvalidParameterError(f"times lists {format_time(value)} twice; give each time once")
        times.append(value)
    if not times:
        raise InvalidParameterError("times: no time points given; pass e.g. '1s,1h,1d'")
    return times


def format_time(seconds: float) -> str:
    """1 -> '1s', 3600 -> '1h', 31536000 -> '1y' (the largest unit that divides exactly)."""
    for unit, size in (("y", 31536000.0), ("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def format_times(seconds: Sequence[float]) -> str:
    """'1s, 1d, 2d': a list of times for messages and reports."""
    return ", ".join(format_time(t) for t in seconds)
