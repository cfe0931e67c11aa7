"""Simulated analog hardware: device presets (:mod:`.presets`), the aihwkit tile configuration they
build (:mod:`.rpu_config`), conversion of a digital network to aihwkit tiles (:mod:`.conversion`) and
the fast seeded replay of those tiles' forward pass (:mod:`.fast`), and the layer report of a
network on a preset (:mod:`.inspection`: :func:`layer_report`, :func:`format_layer_report`).

Nothing here knows about training methods, result stores or studies. Importing this package loads
nothing else (aihwkit included) until one of its names is used."""

_LAZY = {"layer_report": "analogsam.hardware.inspection", "format_layer_report": "analogsam.hardware.inspection"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'analogsam.hardware' has no attribute {name!r}")
