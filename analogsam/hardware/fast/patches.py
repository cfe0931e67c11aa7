"""A convolution's patches, read from the image without unfolding it.

A tile of a convolution multiplies every patch of the image (the vectors ``F.unfold`` would make,
elements ordered (C, kh, kw)). :class:`Patches` reads them through strided views of the padded
image; :func:`window_max` gives each patch's largest element (the noise management's maximum) as
a sliding-window maximum over the image, exact and without the patches; ``conv_out_hw`` is the
output size. Used by :meth:`.tile.Tile.forward_patches` (the torch operations) and, for the rows a
bound-management round reruns, by the compiled kernels' path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Patches", "conv_out_hw", "window_max"]


def conv_out_hw(h: int, w: int, geometry) -> tuple[int, int]:
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = geometry
    return ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


def window_max(m: Tensor, kernel, dilation, stride, out_hw) -> Tensor:
    """max over (C, kh, kw) of every convolution window of ``m`` (b, C, H, W), already padded:
    (b, oh, ow). Separable: the maximum over channels first, then running maxima along W and H."""
    (kh, kw), (dh, dw), (sh, sw), (oh, ow) = kernel, dilation, stride, out_hw
    m = m.amax(1, keepdim=True) if m.shape[1] > 1 else m
    r = None
    for j in range(kw):
        sl = m[..., j * dw : j * dw + sw * (ow - 1) + 1 : sw]
        r = sl if r is None else torch.maximum(r, sl)
    c = None
    for i in range(kh):
        sl = r[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, :]
        c = sl if c is None else torch.maximum(c, sl)
    return c[:, 0]


class Patches:
    """The convolution patches of images ``img`` (b, C, H, W; float32, contiguous, input range
    applied) for ``geometry`` ``(kernel, dilation, padding, stride)``, read through strided views."""

    def __init__(self, img: Tensor, geometry):
        self.img = img
        self.geometry = geometry
        self.b, self.c, h, w = img.shape
        (kh, kw) = geometry[0]
        self.oh, self.ow = conv_out_hw(h, w, geometry)
        self.k, self.L = self.c * kh * kw, self.oh * self.ow

    def padded(self) -> Tensor:
        (ph, pw) = self.geometry[2]
        return F.pad(self.img, (pw, pw, ph, ph)) if (ph or pw) else self.img

    def patches(self, xp: Tensor | None = None) -> Tensor:
        """The patches as a strided view (b, c, kh, kw, oh, ow) of the padded images."""
        (kh, kw), (dh, dw), _, (sh, sw) = self.geometry
        xp = self.padded() if xp is None else xp
        st = xp.stride()
        return xp.as_strided(
            (self.b, self.c, kh, kw, self.oh, self.ow), (st[0], st[1], dh * st[2], dw * st[3], sh * st[2], sw * st[3])
        )

    def rows_of(self, mask: Tensor) -> Tensor:
        """The raw patches selected by ``mask`` (b, L) as rows (M', K), for bound management."""
        return self.patches().permute(0, 4, 5, 1, 2, 3)[mask.view(self.b, self.oh, self.ow)].reshape(-1, self.k)
