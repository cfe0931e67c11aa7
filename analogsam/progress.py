"""Progress that reads well on a terminal and in a log file.

On a terminal a tqdm bar redraws itself in place; written to a file or a pipe (``analogsam run >
log 2>&1``, a batch job, CI) the same redraws become thousands of lines. :func:`progress_bar` gives
the bar where its stream is a terminal and otherwise a :class:`LineProgress`, which writes one plain
line every few items with the count, the rate and the time left. Callers that print their own line
per unit of work (training's line per epoch) pass ``lines=False`` to stay silent off a terminal.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm.auto import tqdm

#: Off a terminal, about this many lines per loop (and one at its end).
LINES_PER_LOOP = 10


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is an interactive terminal (a closed or fake stream is not)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    leave: bool = False,
    lines: bool = True,
    file: TextIO | None = None,
):
    """A tqdm bar on a terminal; off one a :class:`LineProgress` (``lines=True``) or nothing.

    ``file`` is the stream written to (default: standard error, read when called, as tqdm does).
    The returned object iterates like ``iterable`` and has tqdm's ``update``, ``set_postfix`` and
    ``close``.
    """
    stream = sys.stderr if file is None else file
    if disable or is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave, file=stream)
    if not lines:
        return tqdm(iterable, total=total, disable=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, file=stream)


class LineProgress:
    """tqdm's interface, writing ``desc: done/total unit, rate unit/s, time left`` as plain lines.

    A line is written after every ``every`` items (by default about :data:`LINES_PER_LOOP` lines
    per loop of known length) and at the last item; a loop of unknown length writes every
    ``every`` items (default 10).
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        every: int | None = None,
        file: TextIO | None = None,
        clock=time.perf_counter,
    ):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.every = every or (max(1, math.ceil(total / LINES_PER_LOOP)) if total else 10)
        self.file = sys.stderr if file is None else file
        self.clock = clock
        self.start = clock()
        self.n = 0
        self._written_at = 0

    def __iter__(self) -> Iterator:
        for item in self.iterable if self.iterable is not None else ():
            yield item
            self.update()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n - self._written_at >= self.every or (self.total and self.n >= self.total):
            self._write()

    def _write(self) -> None:
        if self._written_at == self.n:
            return
        self._written_at = self.n
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.n / elapsed
        of = f"/{self.total}" if self.total else ""
        left = ""
        if self.total and self.n < self.total:
            left = f", {_duration((self.total - self.n) / rate)} left"
        label = f"{self.desc}: " if self.desc else ""
        speed = f"{rate:.2f} {self.unit}/s" if rate >= 1 else f"{1 / rate:.1f} s/{self.unit}"
        units = self.unit + ("es" if self.unit.endswith("s") else "s")
        print(f"{label}{self.n}{of} {units}, {speed}, {_duration(elapsed)} elapsed{left}", file=self.file)
        self.file.flush()

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Ignored: the per-step numbers are a terminal's; logs get the caller's own summary lines."""

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        """Ignored, as :meth:`set_postfix`."""

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        """Writes the final count if the last line did not already show it."""
        if self.n and self._written_at != self.n:
            self._write()


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
