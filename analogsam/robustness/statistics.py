"""Monte-Carlo summaries of the robustness probes: mean, spread and standard error over random draws."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mean_std_stderr(samples: Sequence[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation (ddof=1) and standard error of the mean; nan when n < 2."""
    arr = np.asarray(samples, dtype=float)
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, float("nan"), float("nan")
    std = float(arr.std(ddof=1))
    return mean, std, std / math.sqrt(arr.size)
