"""The rewrite mechanism: which module a rewrite applies to, what replaces it, and why."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from analogsam.errors import AnalogsamError


@dataclass(frozen=True)
class Rewrite:
    """Replace modules that ``applies(module)`` by ``rewrite(module)``, a module computing the same
    eval-mode function whose weight matrices sit in Linear/Conv children (the analog part) and whose
    other operations are digital; ``description`` says which is which (for the layer report)."""

    name: str
    applies: Callable[[nn.Module], bool]
    rewrite: Callable[[nn.Module], nn.Module]
    #: Which parts of the rewritten module are analog and which digital, as the layer report says it.
    description: str


def map_to_tiles(model: nn.Module, rewrites: Sequence[Rewrite] | None = None) -> nn.Module:
    """``model`` with every module a rewrite applies to replaced, in place (pass a copy).

    Modules are visited outermost first and a replaced module's own children are not visited again,
    so a rewrite of a whole layer (e.g. a transformer block) wins over rewrites of its parts.
    """
    if rewrites is None:
        from analogsam.hardware.mapping import REWRITES as rewrites

    def visit(module: nn.Module, path: str) -> nn.Module:
        for rewrite in rewrites:
            if rewrite.applies(module):
                try:
                    replacement = rewrite.rewrite(module)
                except AnalogsamError as err:  # a rewrite sees the layer, not where it sits: say where
                    raise type(err)(f"layer {path or '<root>'} ({type(module).__name__}): {err}") from err
                replacement.analogsam_rewrite = rewrite.name  # the layer report names it
                return replacement
        for key, child in list(module._modules.items()):
            if child is not None:
                module._modules[key] = visit(child, f"{path}.{key}" if path else key)
        return module

    return visit(model, "")
