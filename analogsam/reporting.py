"""The building blocks every report is written with: markdown tables, numbers as reports print them,
and figures.

The sweep's report (:mod:`analogsam.evaluation.report`, :mod:`analogsam.evaluation.knobs`), the
robustness probes' plots (:mod:`analogsam.robustness.plots`) and the studies (robustness, flatness,
memory faults) each write the tables and figures of their own data, and write them with these: one
table syntax, one way to print a missing value, a p-value or a difference in percentage points, and
one way to make and save a figure.

Figures are :class:`matplotlib.figure.Figure` objects with their own Agg canvas: no pyplot and no
global backend switch, so importing or calling this leaves matplotlib's global state alone.

**Drop** means the same everywhere in analogsam: how much worse a measured value is than its
reference (the digital value, the clean value, the unfaulted value), in the metric's own units;
positive is a loss, for a higher-is-better metric (reference − measured) and for a lower-is-better
one (measured − reference) alike.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from analogsam.storage import ensure_folder

__all__ = ["NOT_AVAILABLE", "markdown_lines", "new_figure", "p_text", "pp_text", "save_figure", "value_text"]

#: What a table shows for a number that does not exist (NaN, or nothing to compute it from).
NOT_AVAILABLE = "n/a"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def value_text(value, spec: str = ".4g", missing: str = NOT_AVAILABLE) -> str:
    """``value`` formatted with ``spec``, or ``missing`` for None, NaN and infinities."""
    return missing if _missing(value) else format(value, spec)


def pp_text(fraction, missing: str = NOT_AVAILABLE) -> str:
    """A difference of two fractions (accuracies) in signed percentage points: ``+1.23``."""
    return missing if _missing(fraction) else f"{100 * fraction:+.2f}"


def p_text(p, missing: str = NOT_AVAILABLE) -> str:
    """A p-value with two significant digits (scientific below 0.001)."""
    if _missing(p):
        return missing
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def markdown_lines(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    """A markdown table: the header line, the rule, one line per row (cells as ``str``)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return lines


def new_figure(width: float = 5.0, height: float = 4.0, **figure_kwargs):
    """A :class:`~matplotlib.figure.Figure` of ``width`` x ``height`` inches on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), **figure_kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG to ``path`` (its folder made if needed: a one-line error where a file
    stands in the way, :func:`~analogsam.storage.ensure_folder`); returns the path."""
    path = Path(path)
    ensure_folder(path.parent)
    fig.savefig(path, dpi=dpi)
    return path
