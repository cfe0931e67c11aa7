"""Seeds derived from names: how every measured number gets a seed of its own.

A Monte-Carlo sweep is resumable and extensible because no number depends on what was measured
before it: a repeat's seed is derived from ``(seed, run, faults, preset, repeat)``, and the seeds of its
programming, drift and forward noise from that repeat seed (see :mod:`.backends`).
"""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed from ``seed`` and names/numbers; stable across processes and Python versions."""
    text = "\x1f".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
