"""Which torch device a command computes on: ``"cpu"``, ``"cuda"`` (``"cuda:N"``) or ``"auto"``.

One home for the choice, so training, evaluation and the command line's ``--device`` flag agree:
``"auto"`` is CUDA when torch sees a CUDA device and the CPU otherwise; an explicit ``"cuda"`` on a
machine without one is an error that says so, not a silent fallback (a number measured on the CPU
when the user asked for the GPU would be mislabelled in their benchmark).
"""

from __future__ import annotations

import torch

from .errors import AnalogsamError

DEVICES = ("auto", "cpu", "cuda")


class DeviceUnavailableError(AnalogsamError, RuntimeError):
    """The requested device does not exist on this machine."""


def is_auto(device: str | torch.device | None) -> bool:
    """Whether ``device`` leaves the choice to analogsam: ``None`` or ``"auto"``."""
    return device is None or (isinstance(device, str) and device.strip().lower() == "auto")


def asks_for_accelerator(device: str | torch.device | None, resolved: torch.device) -> bool:
    """Whether ``device`` names an accelerator itself (``"cuda"``, not ``"auto"``), resolved to
    ``resolved``: there only the fast engine measures, aihwkit's CPU tiles are no fallback."""
    return resolved.type != "cpu" and not is_auto(device)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return the torch device for ``device`` (``None`` means ``"auto"``).

    Accepts ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
    """
    if is_auto(device):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError):
        raise AnalogsamError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N: pass one of those") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise AnalogsamError(f"device {device!r}: analogsam runs on cpu or cuda only; pass --device cpu, cuda or auto")
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device {device!r}: torch sees no CUDA GPU on this machine "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); "
            "pass --device cpu or auto"
        )
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); pass cuda:0 ... or auto"
        )
    return resolved
