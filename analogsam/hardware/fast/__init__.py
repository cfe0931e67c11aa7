"""The fast engine: a seeded replay of aihwkit's analog tile forward pass (see :mod:`.engine`)."""

from analogsam.hardware.fast.engine import FastAnalogForward, FastPathUnsupported, IOSpec, unsupported_reason

__all__ = ["FastAnalogForward", "FastPathUnsupported", "IOSpec", "unsupported_reason"]
