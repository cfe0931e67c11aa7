"""The fast engine's own random numbers: counter-based, addressed, the same on every device.

Every random number of the engine's forward is a function of its *address*, not of a position in
a stream: (the state's seed, the tile, the layer call, the draw site and bound-management round,
the global index of the input vector, the element). So a number does not depend on the batch
size, the processing chunks, the thread count, whether states are stacked, or the device, and the
compiled kernels generate it where it is used, never materialised as a tensor.

The generator (Salmon et al., SC'11, "Parallel random numbers: as easy as 1, 2, 3", for the
counter-based design). The draw site's 64-bit key ``k`` and the element's index ``i`` give the
64-bit word ``h = mix(k + (i + 1) * gamma)``, the ``i``-th output of SplitMix64 seeded with ``k``
(Steele, Lea and Flood, OOPSLA 2014: gamma = 0x9E3779B97F4A7C15 and the variant-13 finaliser of
MurmurHash3; SplitMix64 passes BigCrush, and it is Java's ``SplittableRandom``). Keys are
derived from (seed, tile, ...) by the same finaliser, so streams of different sites start at
unrelated points of the 2^64 cycle. A Gaussian is an inverse-CDF table look-up of ``h``: the top
16 bits pick one of 65,536 equiprobable bins of the standard normal, and the value is the bin's
conditional mean; the two outermost bins (probability 2^-16 each) are refined by the next 16
bits into 65,536 sub-bins of probability 2^-32. The tails therefore reach the conditional means
of the outermost 2^-32 sub-bins, +-6.4 sigma (a standard normal exceeds 6.4 sigma once in
6.4e9 draws); between 4.17 and 6.4 sigma the resolution is 2^-32 in probability, so tail
frequencies out to 6 sigma are the normal's (``tests/test_fast_noise.py`` measures moments, a KS
test on 10^7 draws and the frequencies beyond 1 ... 5 sigma). A uniform number (stochastic
rounding) is the top 24 bits of ``h`` times 2^-24.

Why this generator and not Philox4x32-10 (torch's and cuRAND's on CUDA). A Gaussian from Philox
needs a Box-Muller transform (log, sqrt, sin/cos): numba's libm and torch's SLEEF / CUDA
functions do not round these alike, so the CPU kernels and the torch (GPU) path would draw
different numbers; and a scalar Philox + Box-Muller costs about 9 ns per number in numba against
about 1 ns for a hash and a table look-up (ALGORITHMS.md, "Random numbers for the engine"). Here
every step is integer arithmetic and a float32 table read: the numba kernels (:func:`normal`,
:func:`uniform`) and the torch implementation (:func:`normal_tensor`, :func:`uniform_tensor`,
what the engine runs on a GPU and for the settings without kernels) give bit-identical numbers.
aihwkit's own C++ tiles also read Gaussians from a table (32,768 entries, ``rpucuda/rng.h``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from numba import njit
from torch import Tensor

__all__ = ["NoiseSource", "Stream", "derive", "normal_tensor", "table", "uniform_tensor"]

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
BINS = 1 << 16  # equiprobable bins of the table's centre; each outermost bin refined into as many

# draw sites (part of a key): what a number is for
INPUT_NOISE, WEIGHT_NOISE, OUTPUT_NOISE, INPUT_ROUNDING, OUTPUT_ROUNDING = 1, 2, 3, 4, 5
# purposes of a tile's numbers: the forward, the drift-compensation read-outs
FORWARD, READOUT, BASELINE = 11, 12, 13


def _mix64(z: int) -> int:
    """SplitMix64's finaliser on a Python int (mod 2^64)."""
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def derive(*parts: int) -> int:
    """A 64-bit key from integers (a seed, a tile index, a site, ...): each part folded in by the
    finaliser, so that keys differing in any part are unrelated."""
    key = 0
    for part in parts:
        key = _mix64((key + (int(part) & _MASK) * _GAMMA + 1) & _MASK)
    return key


@functools.lru_cache(maxsize=1)
def table() -> np.ndarray:
    """The float32 look-up table (3 * 65,536 values): the conditional means of the standard normal
    on the 65,536 equiprobable bins (entries 0 ... 65535), then on the 65,536 sub-bins of the
    lowest bin (65,536 ...) and of the highest bin (131,072 ...)."""
    from scipy.special import ndtri

    def conditional_means(edges: np.ndarray) -> np.ndarray:
        # E[Z | a < Z < b] = (phi(a) - phi(b)) / (Phi(b) - Phi(a)), the bin probabilities being exact
        z = ndtri(edges)
        pdf = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
        pdf[~np.isfinite(z)] = 0.0
        return (pdf[:-1] - pdf[1:]) / np.diff(edges)

    centre = conditional_means(np.arange(BINS + 1, dtype=np.float64) / BINS)
    low = conditional_means(np.arange(BINS + 1, dtype=np.float64) / float(BINS) ** 2)
    return np.concatenate([centre, low, -low[::-1]]).astype(np.float32)


# -- the numba generator (inlined into the kernels) -------------------------------------------------
_G = np.uint64(_GAMMA)
_A = np.uint64(_M1)
_B = np.uint64(_M2)
_ONE = np.uint64(1)
_S16 = np.uint64(16)
_S30, _S27, _S31, _S32, _S40, _S48 = (np.uint64(s) for s in (30, 27, 31, 32, 40, 48))
_LOW16 = np.uint64(0xFFFF)
_UNIT24 = np.float32(2.0**-24)
_jit = njit(cache=True, boundscheck=False, nogil=True, inline="always")


@_jit
def bits(key, index):
    """The 64-bit word at ``index`` (int) of the stream ``key`` (uint64): SplitMix64's output."""
    z = key + (np.uint64(index) + _ONE) * _G
    z = (z ^ (z >> _S30)) * _A
    z = (z ^ (z >> _S27)) * _B
    return z ^ (z >> _S31)


@_jit
def normal(tab, key, index):
    """The standard normal number at ``index`` of stream ``key``, from the table ``tab``."""
    h = bits(key, index)
    c = h >> _S48
    lo = (h >> _S32) & _LOW16
    if c == np.uint64(0):
        return tab[np.int64(lo) + 65536]
    if c == _LOW16:
        return tab[np.int64(lo) + 131072]
    return tab[np.int64(c)]


@_jit
def uniform(key, index):
    """The uniform number in [0, 1) at ``index`` of stream ``key`` (24 bits)."""
    return np.float32(bits(key, index) >> _S40) * _UNIT24


# -- the same numbers with torch operations (any device) -------------------------------------------
def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 torch stores."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _shr(z: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 ``z`` (torch shifts arithmetically)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def bits_tensor(key: int, index: Tensor) -> Tensor:
    """:func:`bits` for int64 ``index`` (int64 words; torch's int64 products wrap like uint64's)."""
    z = (index + 1) * _signed(_GAMMA) + _signed(key)
    z = (z ^ _shr(z, 30)) * _signed(_M1)
    z = (z ^ _shr(z, 27)) * _signed(_M2)
    return z ^ _shr(z, 31)


@functools.lru_cache(maxsize=8)
def _table_on(device: torch.device) -> Tensor:
    return torch.from_numpy(table()).to(device)


def normal_tensor(key: int, index: Tensor) -> Tensor:
    """:func:`normal` at every int64 ``index`` (float32, ``index``'s shape and device)."""
    h = bits_tensor(key, index)
    c = _shr(h, 48)
    lo = _shr(h, 32) & 0xFFFF
    slot = torch.where(c == 0, lo + 65536, torch.where(c == 0xFFFF, lo + 131072, c))
    return _table_on(index.device)[slot]


def uniform_tensor(key: int, index: Tensor) -> Tensor:
    """:func:`uniform` at every int64 ``index``."""
    return _shr(bits_tensor(key, index), 40).to(torch.float32) * (2.0**-24)


# -- addresses --------------------------------------------------------------------------------------
class Stream:
    """The numbers of one tile call: ``key`` (seed, tile, call), the global index of the first input
    vector ``base`` (vectors stored as columns (B, K, L): vector ``(i, t)`` is ``base + i * L + t``;
    as rows: row ``r`` is ``base + r``, or ``ids[r]`` if given), and the bound-management ``round``.
    The element ``e`` of vector ``v`` in a draw of width ``W`` (K inputs or N outputs) has index
    ``v * W + e``, in the stream of key ``derive(key, site, round)``."""

    __slots__ = ("key", "base", "ids", "round")

    def __init__(self, key: int, base: int = 0, ids: Tensor | None = None, round: int = 0):
        self.key, self.base, self.ids, self.round = key, base, ids, round

    def site(self, site: int) -> int:
        """The key of draw site ``site`` in this round."""
        return derive(self.key, site, self.round)

    def shifted(self, vectors: int) -> Stream:
        """The stream of a chunk that starts ``vectors`` rows later."""
        if self.ids is not None:
            return Stream(self.key, ids=self.ids[vectors:], round=self.round)
        return Stream(self.key, self.base + vectors, round=self.round)

    def vector_ids(self, count: int, device) -> Tensor:
        """The global indices (int64) of ``count`` vectors stored as rows, or of the (B, L) vectors
        of columns flattened (``count = B * L``)."""
        if self.ids is not None:
            return self.ids.to(device)
        return torch.arange(self.base, self.base + count, dtype=torch.int64, device=device)

    def selected(self, mask: Tensor) -> Stream:
        """The stream of the vectors selected by ``mask`` (one flag per vector, in the order of
        :meth:`vector_ids`), as rows."""
        flat = mask.reshape(-1)
        return Stream(self.key, ids=self.vector_ids(flat.numel(), flat.device)[flat], round=self.round)

    def subset(self, index: Tensor) -> Stream:
        """The stream of the rows ``index`` of this stream (one made by :meth:`selected`)."""
        return Stream(self.key, ids=self.ids.index_select(0, index), round=self.round)

    def at_round(self, r: int) -> Stream:
        return Stream(self.key, self.base, self.ids, r)

    def indices(self, like: Tensor) -> Tensor:
        """The element indices of a draw shaped like ``like``: rows (M, W) or columns (B, W, L)."""
        device = like.device
        width = like.shape[1]
        e = torch.arange(width, dtype=torch.int64, device=device)
        if like.dim() == 3:
            b, _, length = like.shape
            v = self.vector_ids(b * length, device).view(b, 1, length)
            return v * width + e.view(1, width, 1)
        v = self.vector_ids(like.shape[0], device).view(-1, 1)
        return v * width + e.view(1, width)

    def normal(self, like: Tensor, site: int) -> Tensor:
        """Standard normal numbers for a draw shaped like ``like`` at ``site`` (torch operations)."""
        return normal_tensor(self.site(site), self.indices(like))

    def uniform(self, like: Tensor, site: int) -> Tensor:
        return uniform_tensor(self.site(site), self.indices(like))


class NoiseSource:
    """The forward noise of one engine state: a ``seed`` (drawn from the generator given to
    :meth:`FastAnalogForward.sync <analogsam.hardware.fast.FastAnalogForward.sync>`), the number of
    samples its forwards have read since (the global index of the next forward's first sample), and
    the calls of each analog layer in the forward in progress (a layer run twice in one forward,
    e.g. a shared module, draws other numbers the second time)."""

    def __init__(self, seed: int, baseline_generator: torch.Generator | None = None):
        """``baseline_generator``: where the seed of the drift-compensation baseline read-outs is
        drawn from, when the first tile needs it (None: derived from ``seed``)."""
        self.seed = seed
        self.baseline_generator = baseline_generator
        self._baseline_seed = None
        self.samples = 0  # (the baseline's seed is read when a tile needs it)
        self._calls: dict[int, int] = {}

    @property
    def baseline_seed(self) -> int:
        if self._baseline_seed is None:
            g = self.baseline_generator
            self._baseline_seed = derive(self.seed, BASELINE) if g is None else seed_of(g)
        return self._baseline_seed

    def begin(self) -> None:
        """A forward starts (its first sample is ``samples``)."""
        self._calls = {}

    def end(self, samples: int) -> None:
        """A forward of ``samples`` samples is done."""
        self.samples += samples

    def call(self, layer) -> int:
        """The number of earlier calls of ``layer`` in this forward (and count this one)."""
        c = self._calls.get(id(layer), 0)
        self._calls[id(layer)] = c + 1
        return c

    def peek(self, layer) -> int:
        """What :meth:`call` would return, without counting a call."""
        return self._calls.get(id(layer), 0)

    def stream(self, tile_index: int, call: int, first_vector: int) -> Stream:
        return Stream(derive(self.seed, FORWARD, tile_index, call), first_vector)

    def readout(self, tile_index: int) -> Stream:
        """The drift-compensation read-out of a tile at this state."""
        return Stream(derive(self.seed, READOUT, tile_index))

    def baseline(self, tile_index: int) -> Stream:
        """The read-out of a tile's programmed weights (the compensation baseline)."""
        return Stream(derive(self.baseline_seed, BASELINE, tile_index))


def seed_of(generator: torch.Generator | None) -> int:
    """The engine's seed for ``generator``: its ``initial_seed()``, the same for a CPU and a CUDA
    generator seeded alike (their streams differ), so that the CPU and a GPU draw the same numbers;
    for None, a seed drawn from torch's default CPU generator (advancing it: ``torch.manual_seed``
    controls it, and successive syncs get different seeds)."""
    if generator is None:
        return int(torch.randint(0, 2**63 - 1, (1,)).item())
    return int(generator.initial_seed())
