"""The threads of the fast engine: torch's intra-op threads, and the BLAS threads of its products.

The tile products run through numpy's OpenBLAS (:meth:`.products.Weights.matmul`), whose thread pool
torch's setting does not reach; threadpoolctl sets it to torch's for the duration of a call.
"""

from __future__ import annotations

import torch

_BLAS = None


def _numpy_blas():
    """threadpoolctl's handle on the BLAS libraries loaded in this process (numpy's OpenBLAS)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController().select(user_api="blas")
    return _BLAS


class engine_threads:
    """Context manager: torch intra-op threads set to ``n`` (None: unchanged), and the BLAS
    threads of the products set to torch's; both restored on exit."""

    def __init__(self, n: int | None):
        self.n = n
        self.old = None
        self.blas = None

    def __enter__(self):
        if self.n is not None and self.n != torch.get_num_threads():
            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)
        self.blas = _numpy_blas().limit(limits=torch.get_num_threads())

    def __exit__(self, *exc):
        self.blas.restore_original_limits()
        if self.old is not None:
            torch.set_num_threads(self.old)
            self.old = None
