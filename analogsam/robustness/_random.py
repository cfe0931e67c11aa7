"""Seeding for the robustness probes: one generator per call, independent sub-streams per draw."""

from __future__ import annotations

import numpy as np
import torch

from analogsam.errors import InvalidParameterError
from analogsam.validation import check_int


def make_generator(seed: int | None = 0, generator: torch.Generator | None = None) -> torch.Generator:
    """The generator to draw from: ``generator`` if given, else a fresh one seeded with ``seed``.

    ``seed=None`` (and no generator) draws from torch's global generator, so ``torch.manual_seed``
    governs it.
    """
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise InvalidParameterError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    if seed is None:
        return torch.default_generator
    seed = check_int("seed", seed, low=0)
    return torch.Generator().manual_seed(seed)


def derived_seed(seed: int, *keys: int) -> int:
    """An independent 63-bit seed for sub-stream ``keys`` of ``seed`` (numpy's SeedSequence)."""
    state = np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def seed_settings(seed, generator) -> dict:
    """What a result records about its randomness: the seed, or None when a generator was passed."""
    return {"seed": None if generator is not None else seed}


def standard_normal(p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, 1) of ``p``'s shape and dtype on ``p``'s device.

    Drawn from ``generator`` on the generator's device (then moved), so a CPU generator gives the
    same numbers for a model on any device; ``generator=None`` draws from torch's global generator
    of ``p``'s device (``torch.randn_like``).
    """
    if generator is None:
        return torch.randn_like(p)
    return torch.randn(p.shape, generator=generator, device=generator.device, dtype=p.dtype).to(p.device)


def uniform(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """U[0, 1) in float64 of ``p``'s shape on ``p``'s device, drawn from ``generator`` on its device."""
    return torch.rand(p.shape, generator=generator, device=generator.device, dtype=torch.float64).to(p.device)


def rademacher(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """±1 with equal odds, of ``p``'s shape, dtype and device, drawn from ``generator`` on its device."""
    return (torch.randint(0, 2, p.shape, generator=generator, device=generator.device) * 2 - 1).to(
        dtype=p.dtype, device=p.device
    )
