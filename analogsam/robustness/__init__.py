"""Robustness of a digital network, built on one parameter-roles module.

- :mod:`.roles`: which layers become analog tiles, which stay digital, which tensors are crossbar
  weights (used by the optimizers and the conversion as well);
- :mod:`.sharpness`: sharpness metrics (worst-case, adaptive, average-case, Hessian);
- :mod:`.perturbations`: Gaussian weight noise (the package's one draw of it), stuck-at faults and
  bit flips, and accuracy curves under them;
- :mod:`.probes`: :func:`analyze_model`, every metric and curve of one model;
- :mod:`.correlation`: the rank correlation of sharpness with accuracy drops across runs;
- :mod:`.plots`: scatters and curves as PNGs.

Their Monte-Carlo summaries are :mod:`analogsam.statistics`'s.

This package sits below ``analogsam.optim`` (which uses its roles and noise) and imports nothing
from the optimizers, training, hardware, evaluation or studies.
"""

from analogsam.robustness.probes import CURVES, METRICS, analyze_model

__all__ = ["CURVES", "METRICS", "analyze_model"]
