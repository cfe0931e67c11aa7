"""Evaluation on a device: ``device=`` and ``--device``.

On every machine: the CPU keeps today's numbers, a device this machine lacks or a backend that cannot
run on the GPU is refused in one line before any work, and the torch operations the GPU runs
(``fused=False``) equal the CPU kernels on a preset's network. Where torch sees a CUDA GPU: the fast
engine there against the CPU (same weights and seeds: equal up to summation order with noise off,
the same means and variances with noise on), seeded, and an evaluation end to end.
"""

import copy
import functools

import pytest
import torch
from conformance import MAX_Z, compare_draws, repeated
from torch import nn

import analogsam.evaluation.backends as backends
import analogsam.hardware.fast as fast
from analogsam.cli import main
from analogsam.device import DeviceUnavailableError, resolve_device
from analogsam.errors import AnalogsamError, InvalidParameterError
from analogsam.evaluation import evaluate
from analogsam.evaluation.settings import PassLayout
from analogsam.hardware import presets as devices
from analogsam.hardware.conversion import convert
from analogsam.hardware.fast import FastAnalogForward
from analogsam.models import build_model, make_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


def small_convnet() -> nn.Module:
    """Conv (padding, dilation), BatchNorm, pooling, conv (stride), Linear: on 1 x 8 x 8 digits."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=2, dilation=2),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 10),
    ).eval()


def programmed(model: nn.Module, preset, t: float = 86400.0, seed: int = 3) -> nn.Module:
    """``model`` converted for ``preset``, programmed and drifted to ``t`` by aihwkit (on the CPU)."""
    analog = convert(model, preset)
    torch.manual_seed(seed)
    analog.program_analog_weights()
    analog.drift_analog_weights(t)
    return analog


def images(digits, n: int) -> torch.Tensor:
    x = digits.test.x[:n]
    return x.view(len(x), 1, 8, 8)


# -- every machine -----------------------------------------------------------------------------------


def test_devices_are_resolved_or_refused_in_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "gpu0", "mps"):
        with pytest.raises(AnalogsamError) as refused:
            resolve_device(bad)
        assert bad in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(DeviceUnavailableError) as refused:
        resolve_device(f"cuda:{torch.cuda.device_count()}")
    assert "\n" not in str(refused.value) and "auto" in str(refused.value)


def test_the_cpu_device_keeps_the_default_numbers(digits_run, digits):
    batches = [(digits.test.x[:150], digits.test.y[:150])]
    common = dict(times="1s,1d", repeats=2, seed=5, progress=False)
    default = evaluate(digits_run, batches, "pcm", **common)
    on_cpu = evaluate(digits_run, batches, "pcm", layout=PassLayout(device="cpu"), **common)
    assert on_cpu == default
    assert {r["backend"] for r in on_cpu} == {"fast"}
    with_a_torch_device = evaluate(digits_run, batches, "pcm", layout=PassLayout(device=torch.device("cpu")), **common)
    assert with_a_torch_device == default


@no_cuda
def test_cuda_without_a_gpu_is_refused_before_any_work(digits_run, digits, tmp_path):
    batches = [(digits.test.x[:50], digits.test.y[:50])]
    with pytest.raises(DeviceUnavailableError) as refused:
        evaluate(digits_run, batches, "pcm", times="1s", repeats=1, progress=False, layout=PassLayout(device="cuda"))
    assert "\n" not in str(refused.value) and "--device cpu" in str(refused.value)


@no_cuda
@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "{run}", "--times", "1s", "--repeats", "1", "--quiet"],
        ["compare", "{run}", "--out", "{tmp}/cmp", "--quiet"],
        ["run", "--data", "digits", "--model", "mlp", "--epochs", "1", "--out", "{tmp}/study", "--quiet"],
        ["analyze", "{run}", "--out", "{tmp}/ana", "--quick", "--quiet"],
        ["inspect", "mlp"],
    ],
)
def test_every_command_refuses_device_cuda_without_a_gpu(command, digits_run, tmp_path, capsys):
    argv = [a.format(run=digits_run.path, tmp=tmp_path) for a in command] + ["--device", "cuda"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("error: device 'cuda'") and "--device cpu" in line
    assert list(tmp_path.iterdir()) == []  # refused before training or writing anything


def test_aihwkit_on_an_explicit_gpu_is_refused_and_auto_there_never_falls_back_to_the_cpu(digits_run, monkeypatch):
    """The refusals happen before anything touches the GPU, so they are checked here with a GPU
    pretended (resolve_device answering cuda)."""
    monkeypatch.setattr(backends, "resolve_device", lambda device: torch.device("cuda"))
    analog = convert(digits_run.model, "pcm")
    with pytest.raises(InvalidParameterError) as refused:
        backends.make_backend(analog, "aihwkit", "cuda")
    message = str(refused.value)
    assert "\n" not in message and "backend='aihwkit'" in message and "device='cpu'" in message
    reason = "layer 'x': a setting the fast engine does not reproduce"
    monkeypatch.setattr(fast, "unsupported_reason", lambda model: reason)
    with pytest.raises(fast.FastPathUnsupported) as refused:
        backends.make_backend(analog, "auto", "cuda")
    message = str(refused.value)
    assert "\n" not in message and reason in message and "device='cpu'" in message
    # "auto" leaves the choice to analogsam: aihwkit's tiles are then measured where they run, the
    # CPU, as on a machine without a GPU (with the fallback's one-line warning)
    assert backends.check_backend_device("aihwkit", "auto") == torch.device("cpu")
    assert backends.check_backend_device("fast", "auto") == torch.device("cuda")
    assert type(backends.make_backend(analog, "aihwkit", "auto")) is backends.AihwkitBackend
    with pytest.warns(backends.BackendFallbackWarning):
        fallback = backends.make_backend(analog, "auto", "auto")
    assert type(fallback) is backends.AihwkitBackend and fallback.device == torch.device("cpu")


def test_the_torch_operations_a_gpu_runs_equal_the_cpu_kernels(digits):
    """On the CPU, ``fused=False`` (what runs on CUDA) gives bit-identical numbers to the compiled
    kernels, on a convolutional network converted for the shipped PCM preset, with its noise on."""
    analog = programmed(small_convnet(), "pcm")
    x = images(digits, 200)
    outputs = []
    for fused in (True, False):
        engine = FastAnalogForward(analog, fused=fused, device="cpu")
        engine.sync(torch.Generator().manual_seed(1), baseline_generator=torch.Generator().manual_seed(2))
        outputs.append(engine(x))
    assert torch.equal(outputs[0], outputs[1])
    engine.sync(torch.Generator().manual_seed(9), baseline_generator=torch.Generator().manual_seed(2))
    assert not torch.equal(engine(x), outputs[1])  # the noise is on: the equality above is not vacuous


def test_the_report_names_the_engines_of_the_device(monkeypatch):
    import analogsam.device
    from analogsam.hardware import format_layer_report, layer_report

    on_cpu = layer_report(small_convnet(), "pcm", device="cpu")
    assert on_cpu == layer_report(small_convnet(), "pcm") and on_cpu.device == "cpu"
    assert "engine: fast (" in format_layer_report(on_cpu)
    monkeypatch.setattr(analogsam.device, "resolve_device", lambda device: torch.device("cuda"))  # a GPU pretended
    assert format_layer_report(layer_report(small_convnet(), "pcm", device="cuda")).splitlines()[-1].endswith("on cuda")
    monkeypatch.setattr(fast, "unsupported_reason", lambda model: "a setting it does not reproduce")
    explicit, auto = (layer_report(small_convnet(), "pcm", device=d) for d in ("cuda", "auto"))
    assert {r["engine"] for r in explicit if r["placement"] == "analog"} == {"none"}
    assert "engine: none on cuda" in format_layer_report(explicit)
    assert {r["engine"] for r in auto if r["placement"] == "analog"} == {"aihwkit"}  # measured on the CPU


def _cuda_pretended(monkeypatch):
    """Patches under which the engine's CUDA branches run on this CPU with fake tensors.

    PyTorch's fake tensors carry a device and no data: every operation checks that its operands
    share a device, so a tensor the CUDA path left on the CPU fails here as it would on a GPU.
    What they cannot run is patched: aihwkit's C++ reads run outside the fake mode (real CPU
    tensors, as on a GPU machine), the engine's seed is not read from the generator (a CUDA
    generator needs a GPU), its table is not cached on the fake device, and the steps whose control flow reads data (the zero-vector short cut; bound management,
    switched off by the preset instead) are skipped."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    import analogsam.hardware.fast.aihwkit_adapter as adapter
    import analogsam.hardware.fast.engine as engine
    import analogsam.hardware.fast.noise as noise
    import analogsam.hardware.fast.tile as tile

    def outside(read):
        def run(*args):
            with unset_fake_temporarily():
                return read(*args)

        return run

    for name in ("weights", "mapping_scales", "out_scaling", "digital_bias", "programmed_weights", "initial_alpha"):
        monkeypatch.setattr(adapter.TileReader, name, outside(getattr(adapter.TileReader, name)))
    input_range = adapter.TileReader.input_range

    def real_input_range(self):  # read on the CPU, as the tile does (its .item() reads data)
        t = outside(input_range)(self)
        if t is not None:
            value = outside(t.item)()
            t.item = lambda: value
        return t

    monkeypatch.setattr(adapter.TileReader, "input_range", real_input_range)
    for name in ("readout_vectors", "reference_output"):
        monkeypatch.setattr(adapter.DriftCompensation, name, outside(getattr(adapter.DriftCompensation, name)))
    monkeypatch.setattr(
        engine,
        "copy",
        type(
            "copy",
            (),
            {
                "copy": staticmethod(__import__("copy").copy),
                "deepcopy": staticmethod(outside(__import__("copy").deepcopy)),
            },
        ),
    )
    monkeypatch.setattr(engine, "resolve_device", torch.device)
    monkeypatch.setattr(engine, "seed_of", lambda generator: 0)
    monkeypatch.setattr(noise, "seed_of", lambda generator: 1)
    monkeypatch.setattr(noise, "_table_on", lambda device: torch.from_numpy(noise.table()).to(device))
    monkeypatch.setattr(tile.Tile, "_zero_mask", lambda self, nonpositive, count=None: None)


class _CudaGenerator:
    device = torch.device("cuda")


def _networks():
    from aihwkit.inference.compensation.drift import (
        GlobalDriftCompensationWithExactReference,
        PerColumnDriftCompensation,
    )
    from aihwkit.nn.conversion import _DEFAULT_MAPPED_CONVERSION_MAP, convert_to_analog

    no_bm = {"bound_management": "none", "w_noise": 0.02, "w_noise_type": "pcm-read"}
    preset = devices.load("pcm", io=no_bm)
    for name, channels, size in (("lenet5", 1, 28), ("vit-tiny", 1, 28)):
        torch.manual_seed(0)
        model = build_model(make_spec(name, in_channels=channels, num_classes=10, input_size=size)).eval()
        yield name, programmed(model, preset), torch.randn(3, channels, size, size)
    base = preset.rpu_config()
    variants = {  # per-column and exact-reference compensation, analog bias, input range, split tiles
        "per-column": {"drift_compensation": PerColumnDriftCompensation()},
        "exact-reference": {"drift_compensation": GlobalDriftCompensationWithExactReference()},
        "analog-bias": {"mapping.digital_bias": False},
        "input-range": {
            "pre_post.input_range.enable": True,
            "pre_post.input_range.learn_input_range": False,
            "pre_post.input_range.init_value": 1.5,
            "pre_post.input_range.init_from_data": 0,
        },
        "tile-array": {"mapping.max_input_size": 16, "mapping.max_output_size": 4},
        "mapped": {"mapping.max_input_size": 16, "mapping.max_output_size": 4},
    }
    for name, settings in variants.items():
        cfg = copy.deepcopy(base)
        for path, value in settings.items():
            *parents, last = path.split(".")
            setattr(functools.reduce(getattr, parents, cfg), last, value)
        extra = {"conversion_map": _DEFAULT_MAPPED_CONVERSION_MAP} if name == "mapped" else {}
        analog = convert_to_analog(small_convnet(), cfg, **extra).eval()
        torch.manual_seed(0)
        analog.program_analog_weights()
        analog.drift_analog_weights(3600.0)
        yield name, analog, torch.randn(3, 1, 8, 8)


def test_the_cuda_forward_keeps_every_tensor_on_the_device(monkeypatch):
    """The engine on ``cuda`` with fake tensors (see :func:`_cuda_pretended`): weights, periphery,
    drift compensation, digital modules (a transformer's buffers too) and outputs all on the
    device, and the aihwkit network left on the CPU."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    _cuda_pretended(monkeypatch)
    for name, analog, x in _networks():
        with FakeTensorMode(allow_non_fake_inputs=True):
            engine = FastAnalogForward(analog, device="cuda")
            engine.sync(_CudaGenerator(), baseline_generator=_CudaGenerator())
            for tile in engine.tiles:
                state = [tile.weights.w, tile.input_range, tile.post_scale, tile.alpha, tile.out_scaling, tile.bias]
                assert all(t is None or t.device.type == "cuda" for t in state), (name, tile.name)
            out = engine(x)
        assert out.device.type == "cuda" and out.shape[0] == len(x), name
        assert all(t.device.type == "cpu" for t in [*analog.parameters(), *analog.buffers()]), name


# -- a CUDA GPU --------------------------------------------------------------------------------------


def _engines(analog, seed: int = 0):
    """The same programmed network on the CPU (fused kernels) and on CUDA, synced with generators
    of the same seeds."""
    engines = {}
    for device in ("cpu", "cuda"):
        engine = FastAnalogForward(analog, device=device)
        engine.sync(
            torch.Generator(device=device).manual_seed(seed),
            baseline_generator=torch.Generator(device=device).manual_seed(seed + 1),
        )
        engines[device] = engine
    return engines


@needs_cuda
@pytest.mark.parametrize("noise", ["off", "on"])
@pytest.mark.parametrize("net", ["mlp", "convnet"])
def test_cuda_equals_the_cpu_up_to_summation_order(net, noise, digits_run, digits):
    """Noise off, and noise on: the engine's generator draws the same numbers on both devices
    (:mod:`analogsam.hardware.fast.noise`), so only the summation order differs."""
    preset = devices.load("pcm", io={"out_noise": 0.0, "w_noise": 0.0}) if noise == "off" else devices.load("pcm")
    if net == "mlp":
        analog, x = programmed(digits_run.model, preset), digits.test.x
    else:
        analog, x = programmed(small_convnet(), preset), images(digits, len(digits.test.x))
    engines = _engines(analog)
    cpu = engines["cpu"](x)
    gpu = engines["cuda"](x)
    assert gpu.device.type == "cuda"
    gpu = gpu.cpu()
    differ = (cpu - gpu).abs() > 1e-5 * cpu.abs().max()
    # an output one ADC step apart where a pre-ADC value sits within float32 rounding of a level
    # boundary (the GPU sums in another order); it moves that sample's later outputs
    samples = int(differ.any(1).sum())
    assert samples <= max(2, 0.01 * len(x)), (samples, len(x))
    assert int(differ.sum()) <= max(3, 3e-3 * cpu.numel())
    torch.testing.assert_close(gpu[~differ.any(1)], cpu[~differ.any(1)], rtol=1e-5, atol=1e-5)
    # the aihwkit network stays on the CPU, and still runs there
    assert all(p.device.type == "cpu" for p in analog.parameters())
    with torch.no_grad():
        analog(x[:4])


@needs_cuda
@pytest.mark.parametrize("noise", ["pcm", "out_noise"])
def test_cuda_forward_draws_have_the_cpu_means_and_variances(noise, digits):
    """The forward noise alone (no drift compensation, whose one read-out per programming moves
    every output together): per output, the same means and variances over 300 draws."""
    from aihwkit.nn.conversion import convert_to_analog

    preset = devices.load("pcm") if noise == "pcm" else devices.load("pcm", io={"out_noise": 0.1})
    cfg = preset.rpu_config()
    cfg.drift_compensation = None
    analog = convert_to_analog(small_convnet(), cfg).eval()
    torch.manual_seed(3)
    analog.program_analog_weights()
    analog.drift_analog_weights(86400.0)
    x = images(digits, 64)
    engines = _engines(analog)
    stats = compare_draws(repeated(lambda: engines["cpu"](x), 300), repeated(lambda: engines["cuda"](x).cpu(), 300))
    assert stats.noise > 1e-6  # the noise is there
    assert stats.max_z < MAX_Z
    assert abs(stats.variance_ratio - 1) < 0.05, stats.variance_ratio
    assert stats.median_relative_std(min_var=1e-6) < 0.1


@needs_cuda
def test_cuda_drift_compensation_has_the_cpu_distribution(digits):
    """alpha = baseline read-out / current read-out, over 200 programmings' read-outs (a fresh
    engine each: the baseline is read once per programming)."""
    analog = programmed(small_convnet(), "pcm")
    alphas = {}
    for device in ("cpu", "cuda"):
        draws = []
        for i in range(200):
            engine = FastAnalogForward(analog, device=device)
            engine.sync(
                torch.Generator(device=device).manual_seed(2 * i),
                baseline_generator=torch.Generator(device=device).manual_seed(2 * i + 1),
            )
            draws.append(torch.stack([t.alpha.reshape(()).cpu() for t in engine.tiles]))
        alphas[device] = torch.stack(draws)
    a, b = alphas["cpu"], alphas["cuda"]
    assert float(a.std(0).min()) > 1e-3  # the read-outs are noisy
    z = (a.mean(0) - b.mean(0)).abs() / ((a.var(0) + b.var(0)) / len(a)).sqrt()
    assert float(z.max()) < 5.0, z
    ratio = b.std(0) / a.std(0)
    assert 0.75 < float(ratio.min()) and float(ratio.max()) < 1.33, ratio


@needs_cuda
def test_cuda_is_seeded_and_refuses_a_cpu_generator(digits):
    analog = programmed(small_convnet(), "pcm")
    x = images(digits, 100)
    outputs = [_engines(analog, seed=4)["cuda"](x) for _ in range(2)]
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], _engines(analog, seed=5)["cuda"](x))
    engine = FastAnalogForward(analog, device="cuda")
    with pytest.raises(ValueError, match="generator"):
        engine.sync(torch.Generator().manual_seed(0))


@needs_cuda
def test_evaluate_on_cuda_measures_what_the_cpu_measures(digits_run, digits):
    batches = [(digits.test.x, digits.test.y)]
    common = dict(times="1s,1d", repeats=4, seed=2, progress=False)
    cpu = evaluate(digits_run, batches, "pcm", layout=PassLayout(device="cpu"), **common)
    gpu = evaluate(digits_run, batches, "pcm", layout=PassLayout(device="cuda"), **common)
    assert {r["backend"] for r in gpu} == {"fast-cuda"}
    assert [r["seed"] for r in gpu] == [r["seed"] for r in cpu]
    for a, b in zip(cpu, gpu):
        assert abs(a["digital_value"] - b["digital_value"]) <= 1 / len(digits.test.y)
        assert abs(a["value"] - b["value"]) < 0.03  # the same draws, another summation order
    with pytest.raises(InvalidParameterError, match="aihwkit"):
        evaluate(digits_run, batches, "pcm", layout=PassLayout(device="cuda", backend="aihwkit"), **common)
