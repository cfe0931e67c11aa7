"""Which (preset, time) cells a sweep measures when a preset's noise model is not defined at every
requested time.

Some noise models are fitted at a few times only (``rram-wan2022``: 1 s, 1 d, 2 d). A comparison
across presets measures each preset at the requested times it defines and leaves the others out,
said in one line (:func:`describe_left_out`) and shown as "—" in the reports; a preset that defines
none of the requested times is refused, since it would measure nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analogsam.evaluation.times import format_time, format_times, parse_times
from analogsam.hardware.conversion import resolve_preset
from analogsam.hardware.presets import Preset, PresetError


@dataclass(frozen=True)
class LeftOut:
    """The requested ``times`` (s) that ``preset`` does not define; it defines only ``defined``."""

    preset: str
    times: tuple[float, ...]
    defined: tuple[float, ...]


class LeftOutCellsWarning(UserWarning):
    """A sweep leaves out (preset, time) cells at which a preset's noise model is not defined."""


def times_per_preset(presets: Sequence[Preset], times: Sequence[float]) -> tuple[dict[str, list[float]], list[LeftOut]]:
    """({preset name: the requested times it defines}, the cells left out), refusing a preset that
    defines none of ``times``."""
    measured, left_out = {}, []
    for preset in presets:
        defined = preset.defined_times(times)
        if not defined:
            raise PresetError(
                f"preset {preset.name!r} defines none of the requested times ({format_times(times)}): its noise "
                f"model is defined only at {format_times(preset.supported_times)}; add one of these to the times "
                f"(e.g. --times {','.join(format_time(t) for t in preset.supported_times)}) or leave the preset out"
            )
        measured[preset.name] = defined
        missing = tuple(t for t in times if t not in defined)
        if missing:
            left_out.append(LeftOut(preset.name, missing, tuple(preset.supported_times)))
    return measured, left_out


def left_out_cells(presets: Sequence, times, overrides: dict | None = None) -> list[LeftOut]:
    """The cells :func:`analogsam.evaluation.sweep` with these arguments leaves out (presets as names,
    files or Presets, ``times`` as for ``sweep``), e.g. to print them or pass them to
    :func:`analogsam.evaluation.report.write_report`."""
    return times_per_preset([resolve_preset(p, overrides) for p in presets], parse_times(times))[1]


def describe_left_out(left_out: Sequence[LeftOut]) -> str:
    """One line naming every left-out cell and why; empty if none."""
    if not left_out:
        return ""
    cells = "; ".join(
        f"{c.preset} at {format_times(c.times)} (defined only at {format_times(c.defined)})" for c in left_out
    )
    return f"left out, as the preset's noise model is not defined there (shown as —): {cells}"
