"""``analogsam presets diff A B``: every knob two presets set differently, with its unit and where each
value came from (the schema default, which file of the ``extends`` chain, or an override)."""

from __future__ import annotations

from analogsam.hardware.presets.discovery import shown_path, shown_source
from analogsam.hardware.presets.loading import Preset, load
from analogsam.hardware.presets.schema import KNOBS
from analogsam.hardware.presets.values import show_value

__all__ = ["diff", "format_diff"]


def diff(a, b, *, devices=None) -> list:
    """The knobs whose resolved values differ between presets ``a`` and ``b`` (names, paths or
    Presets), in the schema's order: ``[{"key", "unit", "a", "b", "a_source", "b_source"}, ...]``."""
    a = a if isinstance(a, Preset) else load(a, devices=devices)
    b = b if isinstance(b, Preset) else load(b, devices=devices)
    rows = []
    for knob in KNOBS:
        va, vb = a.values[knob.section][knob.key], b.values[knob.section][knob.key]
        if va != vb:
            rows.append(
                {
                    "key": knob.path,
                    "unit": knob.unit,
                    "a": va,
                    "b": vb,
                    "a_source": a.sources[knob.section][knob.key],
                    "b_source": b.sources[knob.section][knob.key],
                }
            )
    return rows


def format_diff(a, b, *, devices=None) -> str:
    """:func:`diff` as an aligned text table headed by both presets' names, files and hashes."""
    a = a if isinstance(a, Preset) else load(a, devices=devices)
    b = b if isinstance(b, Preset) else load(b, devices=devices)
    head = [
        f"A  {a.name}  ({shown_path(a.path)}, hash {a.hash})",
        f"B  {b.name}  ({shown_path(b.path)}, hash {b.hash})",
        "",
    ]
    rows = diff(a, b)
    if not rows:
        return "\n".join(head + [f"no knob differs: A and B resolve to the same values (hash {a.hash})"]) + "\n"
    table = [("key", "A", "B", "unit", "A from", "B from")]
    table += [
        (
            r["key"],
            show_value(r["a"]),
            show_value(r["b"]),
            r["unit"],
            shown_source(r["a_source"]),
            shown_source(r["b_source"]),
        )
        for r in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    lines = []
    for i, r in enumerate(table):
        lines.append("  ".join(f"{c:<{w}}" for c, w in zip(r[:5], widths)) + "  " + r[5])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    n = len(rows)
    return "\n".join(head + lines + ["", f"{n} knob{'s' if n != 1 else ''} differ{'s' if n == 1 else ''}"]) + "\n"
