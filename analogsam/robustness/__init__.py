"""Robustness of a digital network: its sharpness, and its accuracy under weight noise and faults.

Which tensors are crossbar weights (what the probes perturb and scale) is
:mod:`analogsam.models.roles`, which the conversion and the optimizers read too.

- :mod:`.sharpness`: sharpness metrics (worst-case, adaptive, average-case, Hessian);
- :mod:`.perturbations`: Gaussian weight noise (the package's one draw of it), stuck-at faults and
  bit flips, and accuracy curves under them;
- :mod:`.probes`: :func:`analyze_model`, every metric and curve of one model;
- :mod:`.correlation`: the rank correlation of sharpness with accuracy drops across runs;
- :mod:`.plots`: scatters and curves as PNGs (with :mod:`analogsam.reporting`).

Their Monte-Carlo summaries are :mod:`analogsam.statistics`'s.

This package sits below ``analogsam.quantization`` and ``analogsam.optim`` because they draw their
perturbations from it (the faults on integer weight codes use its bit-fault words and seeded
generator; noise injection its Gaussian weight noise), and it imports nothing from the optimizers,
training, hardware, evaluation or studies.
"""

from analogsam.robustness.probes import CURVES, METRICS, CurveSettings, SharpnessSettings, analyze_model, probe_settings

__all__ = ["CURVES", "METRICS", "CurveSettings", "SharpnessSettings", "analyze_model", "probe_settings"]
