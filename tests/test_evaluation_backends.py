"""The backend interface: both backends program, drift and forward; the fast one follows the seeding
protocol exactly; backend choice, fallback notice and refusal."""

import warnings

import pytest
import torch

import analogsam.hardware.fast as fast
from analogsam.errors import AnalogsamError, InvalidParameterError
from analogsam.evaluation import derive_seed, evaluate
from analogsam.evaluation.backends import AihwkitBackend, Backend, BackendFallbackWarning, FastBackend, make_backend
from analogsam.evaluation.settings import PassLayout
from analogsam.hardware import programming as physics
from analogsam.hardware.conversion import convert

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def analog(digits_run):
    return convert(digits_run.model, "pcm")


@pytest.mark.parametrize("name, kind", [("fast", FastBackend), ("aihwkit", AihwkitBackend), ("auto", FastBackend)])
def test_each_backend_programs_drifts_and_forwards(analog, digits, name, kind):
    backend = make_backend(analog, name)
    assert type(backend) is kind and isinstance(backend, Backend)
    x, y = digits.test.x[:64], digits.test.y[:64]
    backend.program(11)
    backend.drift(86400.0, 11)
    logits = backend.forward(x)
    assert logits.shape == (64, 10)
    assert (logits.argmax(1) == y).float().mean() > 0.8  # a 95% MLP stays far above chance on pcm at 1 d


def test_fast_backend_follows_the_seeding_protocol(digits_run, digits):
    """program(seed) / drift(t, seed) draw exactly what the protocol derives from the repeat seed."""
    x, seed, t = digits.test.x[:100], 123, 3600.0
    backend = make_backend(convert(digits_run.model, "pcm"), "fast")
    backend.program(seed)
    backend.drift(t, seed)
    ours = backend.forward(x)

    model = convert(digits_run.model, "pcm")
    engine = fast.FastAnalogForward(model)
    tiles = physics.inference_tiles(model)
    torch.manual_seed(seed)
    physics.program_tiles(tiles)  # every tile at once
    baseline = torch.Generator().manual_seed(derive_seed(seed, "program"))
    torch.manual_seed(derive_seed(seed, "drift", t))
    physics.drift_tiles(tiles, t)
    engine.sync(torch.Generator().manual_seed(derive_seed(seed, "forward", t)), baseline_generator=baseline)
    assert torch.equal(ours, engine(x))


def test_drift_needs_a_programming(analog):
    with pytest.raises(RuntimeError, match="program"):
        make_backend(analog, "aihwkit").drift(1.0, 0)


def test_backend_names_are_checked(analog):
    with pytest.raises(InvalidParameterError, match="backend must be one of 'auto', 'fast', 'aihwkit', got 'gpu'"):
        make_backend(analog, "gpu")


def test_auto_falls_back_with_a_one_line_notice_and_fast_refuses(analog, monkeypatch):
    reason = "aihwkit 9.9.9 is installed; the fast engine mirrors aihwkit 1.1.0"
    monkeypatch.setattr(fast, "unsupported_reason", lambda model: reason)
    with pytest.warns(BackendFallbackWarning) as caught:
        backend = make_backend(analog, "auto")
    assert type(backend) is AihwkitBackend
    (notice,) = [str(w.message) for w in caught]
    assert reason in notice and "\n" not in notice
    with pytest.raises(AnalogsamError, match="9.9.9") as refused:
        make_backend(analog, "fast")
    assert isinstance(refused.value, fast.FastPathUnsupported) and "\n" not in str(refused.value)


def test_rows_name_the_backend_that_measured_them(digits_run, digits):
    batches = [(digits.test.x[:100], digits.test.y[:100])]
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackendFallbackWarning)  # every shipped preset runs on the fast engine
        rows = evaluate(digits_run, batches, "pcm", times="1s", repeats=1, progress=False)
    assert rows[0]["backend"] == "fast"
    rows = evaluate(
        digits_run, batches, "pcm", times="1s", repeats=1, progress=False, layout=PassLayout(backend="aihwkit")
    )
    assert rows[0]["backend"] == "aihwkit"


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["pcm", "pcm-hermes", "rram-wan2022", "rram-cmo", "hwa-standard", "ideal"])
def test_fast_backend_measures_what_aihwkit_measures_on_every_shipped_preset(digits_run, digits, preset):
    """``evaluate`` with the fast backend (every tile programmed and drifted at once, the engine's
    own forward noise) against aihwkit's tiles (tile by tile, C++ forward), 8 repeats at 1 s and
    1 d: per time, the mean accuracies agree within 5 standard errors of their difference (each
    side's spread over its repeats; false-failure rate about 6e-7 per time under a normal
    approximation) plus one test sample (the accuracy's granularity)."""
    batches = [(digits.test.x, digits.test.y)]
    common = dict(times="1s,1d", repeats=8, seed=5, progress=False)
    rows = {
        b: evaluate(digits_run, batches, preset, layout=PassLayout(backend=b), **common) for b in ("fast", "aihwkit")
    }
    n = len(digits.test.y)
    for t in sorted({r["t_seconds"] for r in rows["fast"]}):
        a = torch.tensor([r["value"] for r in rows["aihwkit"] if r["t_seconds"] == t], dtype=torch.float64)
        b = torch.tensor([r["value"] for r in rows["fast"] if r["t_seconds"] == t], dtype=torch.float64)
        assert len(a) == len(b) == 8
        se = float((a.var() / len(a) + b.var() / len(b)).sqrt())
        assert abs(float(a.mean() - b.mean())) <= 5 * se + 1 / n, (preset, t, a.tolist(), b.tolist())
