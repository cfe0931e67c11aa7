"""Networks onto tiles: rewrites that give every weight matrix of a network a layer aihwkit converts.

aihwkit converts ``Linear`` and ungrouped ``Conv1d/2d/3d`` layers. Other layers that hold crossbar
weights (grouped and depthwise convolutions, dilated 1-D convolutions, attention projections,
recurrent gates, Linear layers in disguise such as transformers' ``Conv1D``, convolutions with
``padding='same'``) are first
rewritten, in the copy that :func:`analogsam.hardware.conversion.convert` makes, into modules that
compute the same function with those weights in ``Linear`` / ``Conv`` children, and the digital
rest (splitting channels, attention products, gate non-linearities) in plain torch. aihwkit's tiles
and the fast engine then see the same analog layers, so both backends compute the same thing.

Each kind of layer is one :class:`~analogsam.hardware.mapping.base.Rewrite` in its own module;
:data:`REWRITES` lists them all, and :func:`map_to_tiles` applies them.
"""

from analogsam.hardware.mapping.attention import MULTIHEAD_ATTENTION, TRANSFORMER_ENCODER
from analogsam.hardware.mapping.base import Rewrite, map_to_tiles
from analogsam.hardware.mapping.dilated import DILATED_CONV1D
from analogsam.hardware.mapping.grouped import GROUPED_CONV
from analogsam.hardware.mapping.linear_like import TRANSPOSED_LINEAR
from analogsam.hardware.mapping.padding import NAMED_PADDING
from analogsam.hardware.mapping.recurrent import RECURRENT

#: Every rewrite, tried in this order on each module (outermost modules first).
REWRITES: tuple[Rewrite, ...] = (
    TRANSFORMER_ENCODER,
    MULTIHEAD_ATTENTION,
    RECURRENT,
    GROUPED_CONV,
    DILATED_CONV1D,
    NAMED_PADDING,
    TRANSPOSED_LINEAR,
)

__all__ = ["REWRITES", "Rewrite", "map_to_tiles"]
