"""Noise on, the same distribution: the statistics the conformance tests compare between aihwkit's
tiles and the fast engine (each test asserts its own tolerances on them)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The largest |difference of per-output means| between aihwkit's draws and the engine's, in standard
# errors. aihwkit's C++ forward noise is seeded from the clock, so these comparisons are random:
# with ~300 draws a z is close to normal, P(|z| > 6) = 2e-9 per output, and a test over at most a few
# thousand outputs fails by chance with probability below 1e-5 (at 5 standard errors it was ~1e-3
# per test). A real mismatch of the noise or its scale moves many outputs by far more.
MAX_Z = 6.0


def repeated(forward, draws: int) -> torch.Tensor:
    """``draws`` outputs of ``forward()``, stacked along a new first dimension, without gradients."""
    with torch.no_grad():
        return torch.stack([forward() for _ in range(draws)])


@dataclass
class DrawComparison:
    """Per-output means and variances of two stacks of draws (``a``: the reference, aihwkit)."""

    mean_a: torch.Tensor
    mean_b: torch.Tensor
    var_a: torch.Tensor
    var_b: torch.Tensor
    draws: int

    @property
    def noise(self) -> float:
        """The reference's mean variance: the noise is there when this is clearly above 0."""
        return float(self.var_a.mean())

    @property
    def max_z(self) -> float:
        """The largest |difference of means| in standard errors, over every output."""
        se = ((self.var_a + self.var_b) / self.draws).sqrt() + 1e-7
        return float(((self.mean_a - self.mean_b).abs() / se).max())

    @property
    def variance_ratio(self) -> float:
        """Summed variance of ``b`` over that of ``a``."""
        return float(self.var_b.sum() / self.var_a.sum())

    def median_relative_std(self, min_var: float | None = None) -> float:
        """Median over outputs (those with a variance above ``min_var``, if given) of |σ_b − σ_a| / σ_a."""
        rel = (self.var_b.sqrt() - self.var_a.sqrt()).abs() / self.var_a.sqrt().clamp(min=1e-7)
        return float((rel if min_var is None else rel[self.var_a > min_var]).median())


def compare_draws(a: torch.Tensor, b: torch.Tensor) -> DrawComparison:
    return DrawComparison(a.mean(0), b.mean(0), a.var(0), b.var(0), len(a))
