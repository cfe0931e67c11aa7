"""The tiles' matrix products: the kernel backend of the engine's one floating-point reduction.

Everything else a tile computes is element-wise, in the C++ order with the same roundings; the
product is where summation order enters. :class:`Weights` holds a tile's weights in the layouts
its products need and picks the backend: numpy's OpenBLAS on the CPU, a chain of fused
multiply-adds in order for the tiles of a fused grouped layer (:mod:`.grouped_kernels`, the same
order as its kernel), torch's product on a GPU.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["Weights"]


class Weights:
    """A tile's weight matrix (d_size, x_size) in the layouts the products need, on ``device``
    (None: the CPU). ``chain``: on the CPU, the products of columns (B, K, L) as a chain of fused
    multiply-adds over K in order (:func:`.grouped_kernels.chain_product`, what the grouped
    layers' kernel computes) instead of the BLAS."""

    def __init__(self, w, device: torch.device | None = None, *, chain: bool = False):
        self.w = torch.as_tensor(w).detach().to(device=device, dtype=torch.float32).contiguous()
        self.n = self.w.shape[0]
        self.chain = chain
        self._wt = None
        self._abs = None
        self._abs_t = None

    @property
    def wt(self) -> Tensor:
        if self._wt is None:
            self._wt = self.w.t().contiguous()
        return self._wt

    def matmul(self, x: Tensor, out: Tensor) -> Tensor:
        """``W x`` for columns (B, K, L) -> (B, N, L), ``x W^T`` for rows (M, K) -> (M, N).

        Through numpy's OpenBLAS where the operands are contiguous: torch's MKL does not use
        its fastest kernels on AMD processors (benchmarks/bench_evaluate.py --internals compares
        the two on the tile shapes of ResNet-20). Its threads follow torch's
        (:class:`.threads.engine_threads`). On a GPU, torch's product."""
        if x.device.type == "cpu" and x.is_contiguous() and out.is_contiguous():
            if x.dim() == 3 and self.chain:
                from analogsam.hardware.fast.grouped_kernels import chain_product

                chain_product(self.w.numpy(), x.numpy(), out.numpy())
            elif x.dim() == 3:
                np.matmul(self.w.numpy(), x.numpy(), out=out.numpy())
            else:
                np.matmul(x.numpy(), self.wt.numpy(), out=out.numpy())
            return out
        if x.dim() == 3:
            return torch.matmul(self.w, x, out=out)
        return torch.matmul(x, self.wt, out=out)

    def abs_matmul(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            if self._abs is None:
                self._abs = self.w.abs()
            return torch.matmul(self._abs, x)
        if self._abs_t is None:
            self._abs_t = self.wt.abs()
        return x @ self._abs_t
