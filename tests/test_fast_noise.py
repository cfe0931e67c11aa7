"""The fast engine's counter-based generator (:mod:`analogsam.hardware.fast.noise`): the numba and
torch implementations draw the same numbers, the numbers are standard normal (moments, a KS test
on 10^7 draws, tail frequencies out to 5 sigma), and the engine's outputs do not depend on the
batch size, the processing chunks, the thread count or whether states are stacked.

The statistical tests draw fixed streams (deterministic), so each either always passes or always
fails; the false-failure rate stated with each is the probability that a true N(0, 1) sample of the
same size would fail the same check, i.e. how unlucky a fixed stream would have to be."""

import numpy as np
import pytest
import torch
from numba import njit
from scipy import stats

from analogsam.hardware import presets
from analogsam.hardware.conversion import convert
from analogsam.hardware.fast import FastAnalogForward
from analogsam.hardware.fast import noise as rng
from analogsam.hardware.fast import tile as tile_module
from analogsam.models import build_model, make_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DRAWS = 10**7


@njit(cache=True)
def _normals(tab, key, index):
    out = np.empty(index.shape[0], np.float32)
    for i in range(index.shape[0]):
        out[i] = rng.normal(tab, key, index[i])
    return out


@njit(cache=True)
def _uniforms(key, index):
    out = np.empty(index.shape[0], np.float32)
    for i in range(index.shape[0]):
        out[i] = rng.uniform(key, index[i])
    return out


@pytest.fixture(scope="module")
def draws() -> np.ndarray:
    """10^7 consecutive normal numbers of one stream (numba), as float64."""
    key = np.uint64(rng.derive(2024, rng.FORWARD, 3, 0))
    return _normals(rng.table(), key, np.arange(DRAWS, dtype=np.int64)).astype(np.float64)


def test_numba_and_torch_draw_the_same_numbers():
    """Bit-identical at consecutive, large (beyond 2^32 and 2^53) and negative-looking indices, for
    several keys: every step is integer arithmetic and a table read."""
    index = np.concatenate(
        [
            np.arange(200_000, dtype=np.int64),
            np.array([2**31 - 1, 2**32, 2**32 + 7, 2**53 + 1, 2**62 + 12345], dtype=np.int64),
            np.random.default_rng(0).integers(0, 2**62, 100_000, dtype=np.int64),
        ]
    )
    for key in (0, 1, rng.derive(7), rng.derive(7, 1), 2**64 - 1):
        expected = _normals(rng.table(), np.uint64(key), index)
        assert torch.equal(rng.normal_tensor(key, torch.from_numpy(index)), torch.from_numpy(expected))
        u = _uniforms(np.uint64(key), index)
        assert torch.equal(rng.uniform_tensor(key, torch.from_numpy(index)), torch.from_numpy(u))
        assert u.min() >= 0 and u.max() < 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_draws_the_cpu_kernels_numbers():
    """The torch implementation on a GPU (what the engine runs there) gives the numba kernels'
    numbers bit for bit (integer arithmetic and a table read: no libm rounding involved)."""
    index = np.concatenate(
        [np.arange(100_000, dtype=np.int64), np.random.default_rng(1).integers(0, 2**62, 100_000, dtype=np.int64)]
    )
    on_gpu = torch.from_numpy(index).cuda()
    for key in (0, rng.derive(7, 1), 2**64 - 1):
        expected = torch.from_numpy(_normals(rng.table(), np.uint64(key), index))
        assert torch.equal(rng.normal_tensor(key, on_gpu).cpu(), expected)
        assert torch.equal(rng.uniform_tensor(key, on_gpu).cpu(), torch.from_numpy(_uniforms(np.uint64(key), index)))


def test_table_tails_end_at_6_4_sigma_and_are_symmetric():
    tab = rng.table()
    assert tab.shape == (3 * rng.BINS,) and tab.dtype == np.float32
    assert 6.3 < tab.max() < 6.5 and tab.min() == -tab.max()
    centre = tab[: rng.BINS]
    assert np.all(np.diff(centre) > 0) and np.array_equal(centre, -centre[::-1])
    # the centre's outermost bins (refined by the tail tables) sit at ~4.39 sigma
    assert 4.3 < -centre[0] < 4.45


def test_moments_of_ten_million_draws(draws):
    """Mean, variance, skewness and excess kurtosis within 5 standard errors of a normal's (0, 1, 0,
    0): standard errors 1/sqrt(n), sqrt(2/n), sqrt(6/n), sqrt(24/n); false-failure rate about
    6e-7 per moment (two-sided 5 sigma)."""
    n = draws.size
    mean, var = draws.mean(), draws.var()
    z = (draws - mean) / np.sqrt(var)
    skew, kurt = (z**3).mean(), (z**4).mean() - 3
    assert abs(mean) < 5 / np.sqrt(n)
    assert abs(var - 1) < 5 * np.sqrt(2 / n)
    assert abs(skew) < 5 * np.sqrt(6 / n)
    assert abs(kurt) < 5 * np.sqrt(24 / n)


def test_kolmogorov_smirnov_on_ten_million_draws(draws):
    """KS against N(0, 1): p > 1e-4 (false-failure rate 1e-4). The table's discreteness (65,536
    equiprobable atoms in the centre) moves the CDF by at most 2^-17 = 7.6e-6, far below the
    statistic's scale at this size (1/sqrt(n) = 3.2e-4)."""
    result = stats.kstest(draws, "norm")
    assert result.pvalue > 1e-4, result


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_tail_frequencies_out_to_five_sigma(draws, k):
    """The count beyond +-k sigma (both sides, and each side) inside the central 1 - 1e-6 interval
    of its binomial distribution under N(0, 1) (false-failure rate 1e-6 per count); at 5 sigma
    about 5.7 draws are expected both sides together."""
    n = draws.size
    for count, p in (
        (np.count_nonzero(np.abs(draws) > k), 2 * stats.norm.sf(k)),
        (np.count_nonzero(draws > k), stats.norm.sf(k)),
        (np.count_nonzero(draws < -k), stats.norm.sf(k)),
    ):
        lo, hi = stats.binom.interval(1 - 1e-6, n, p)
        assert lo <= count <= hi, (k, count, n * p)


# -- the engine's outputs do not depend on how the samples are batched, chunked or threaded ---------
def _engine(name="lenet5", threads=None):
    torch.manual_seed(0)
    spec = make_spec(name, in_channels=1 if name == "lenet5" else 3, num_classes=10, input_size=8)
    analog = convert(build_model(spec).eval(), presets.load("pcm"))  # noise on: out_noise, PCM read noise
    analog.eval()
    torch.manual_seed(1)
    analog.program_analog_weights()
    analog.drift_analog_weights(3600.0)
    engine = FastAnalogForward(analog, threads=threads)
    shape = (1, 8, 8) if name == "lenet5" else (3, 8, 8)
    return engine, torch.randn(120, *shape, generator=torch.Generator().manual_seed(5))


def _batched(engine, x, batch, seed=3):
    engine.sync(torch.Generator().manual_seed(seed))
    return torch.cat([engine(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_outputs_do_not_depend_on_the_batch_size(name):
    engine, x = _engine(name)
    whole = _batched(engine, x, x.shape[0])
    for batch in (1, 7, 40):
        assert torch.equal(_batched(engine, x, batch), whole), batch
    assert not torch.equal(_batched(engine, x, 40, seed=4), whole)  # the seed does change the numbers


def test_outputs_do_not_depend_on_the_processing_chunks(monkeypatch):
    engine, x = _engine("resnet20")
    whole = _batched(engine, x, 60)
    monkeypatch.setattr(tile_module, "CHUNK_ELEMENTS", 1 << 12)  # a few images (rows) per chunk
    assert torch.equal(_batched(engine, x, 60), whole)


def test_outputs_do_not_depend_on_the_thread_count():
    one, x = _engine("resnet20", threads=1)
    two, _ = _engine("resnet20", threads=2)
    assert torch.equal(_batched(one, x, 60), _batched(two, x, 60))


def test_stacked_states_equal_one_by_one_at_any_batch_size():
    """Two states stacked in one pass over batches of 30 equal each state's own forward over one
    batch of 120 (the state-by-state CPU pass: bit-identical)."""
    engine, x = _engine("lenet5")
    states, references = [], []
    for seed in (11, 12):
        engine.sync(torch.Generator().manual_seed(seed))
        states.append(engine.capture())
        references.append(engine(x))
    states = []  # the same seeds again, their samples counted from 0
    for seed in (11, 12):
        engine.sync(torch.Generator().manual_seed(seed))
        states.append(engine.capture())
    blocks = [engine.forward_stacked(x[i : i + 30], states) for i in range(0, 120, 30)]
    for k in range(2):
        joined = torch.cat([b[k * 30 : (k + 1) * 30] for b in blocks])
        assert torch.equal(joined, references[k])


def test_torch_operations_draw_what_the_kernels_draw():
    """The engine without its compiled kernels (``fused=False``: the torch operations, what runs on
    a GPU) gives the same outputs bit for bit, noise on."""
    engine, x = _engine("resnet20")
    torch.manual_seed(0)
    plain = FastAnalogForward(engine.model, fused=False)
    assert torch.equal(_batched(engine, x, 120), _batched(plain, x, 120))
