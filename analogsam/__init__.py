"""analogsam: sharpness-aware training evaluated on simulated analog in-memory-computing hardware.

The public API, by pipeline stage (see the README):

- ``analogsam.data``: ``load_dataset(name)``, ``batches(...)``
- ``analogsam.models``: ``build_model(spec)``
- ``analogsam.optim``: SAM, ASAM, SAMSON, adversarial, SAF, MESA, noise injection, RWP
- ``analogsam.train(...)`` -> a trained model and its checkpoint; ``analogsam.train_seeds(..., seeds=[0, 1, 2],
  out=DIR)`` -> one run per training seed (a seed group ``DIR/seed-0``, ...), reusing finished seeds
- ``analogsam.hardware.presets``: ``load(preset, **overrides)``
- ``analogsam.convert(...)`` -> an aihwkit analog model
- ``analogsam.evaluate(...)`` -> tidy rows of accuracy over time

Every error a user can cause is an ``analogsam.AnalogsamError`` (see ``analogsam.errors``) whose
message says what to do; a bad parameter is an ``InvalidParameterError`` naming it.
"""

__version__ = "0.1.0"

# Submodules are imported on first use so that ``import analogsam`` stays fast and a CLI call
# such as ``analogsam presets list`` does not pay for importing aihwkit.
_LAZY = {
    "train": ("analogsam.training", "train"),
    "train_seeds": ("analogsam.training", "train_seeds"),
    "load_run": ("analogsam.runs", "load_run"),
    "load_group": ("analogsam.runs", "load_group"),
    "convert": ("analogsam.hardware.conversion", "convert"),
    "evaluate": ("analogsam.evaluation", "evaluate"),
    "AnalogsamError": ("analogsam.errors", "AnalogsamError"),
    "InvalidParameterError": ("analogsam.errors", "InvalidParameterError"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'analogsam' has no attribute {name!r}")
