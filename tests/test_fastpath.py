"""The fast analog forward reproduces aihwkit's C++ InferenceTile forward.

Noise off: equal to aihwkit's outputs except where a pre-ADC value sits within float32 rounding of
an ADC level boundary (aihwkit sums the dot products with OpenBLAS sgemv, the fast path with MKL):
then one output differs by one ADC step (a few per million outputs; allowed here: at most 2 per
10,000 outputs of the small models, and a flip inside the network moves that sample's logits).
Noise on: the same distribution (means and variances per output over many draws). Seeded: the
same generator state gives the same numbers.
"""

import math

import pytest
import torch
from aihwkit.inference.compensation.drift import (
    GlobalDriftCompensation,
    GlobalDriftCompensationWithExactReference,
    PerColumnDriftCompensation,
)
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.nn.conversion import _DEFAULT_MAPPED_CONVERSION_MAP, convert_to_analog
from aihwkit.simulator.configs import InferenceRPUConfig, TorchInferenceRPUConfig
from aihwkit.simulator.parameters.enums import (
    AnalogMVType,
    BoundManagementType,
    NoiseManagementType,
    WeightNoiseType,
)
from conformance import MAX_Z, compare_draws, repeated
from torch import nn

from analogsam.hardware.fast import FastAnalogForward, FastPathUnsupported, unsupported_reason

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_config(**settings) -> InferenceRPUConfig:
    """8-bit DAC/ADC, out_bound 10, omega 1, all forward noise off; ``settings`` as dotted paths."""
    cfg = InferenceRPUConfig()
    cfg.forward.out_noise = 0.0
    cfg.forward.inp_res = 1 / 254
    cfg.forward.out_res = 1 / 254
    cfg.forward.out_bound = 10.0
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.drift_compensation = None
    for path, value in settings.items():
        obj = cfg
        *parents, last = path.split(".")
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, last, value)
    return cfg


def linear_inputs(n: int, weight: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Mixed magnitudes, some all-zero rows, and rows aligned with a weight row's signs, whose
    outputs saturate (bound management)."""
    g = torch.Generator().manual_seed(seed)
    k = weight.shape[1]
    x = torch.randn(n, k, generator=g) * torch.rand(n, 1, generator=g) * 3
    x[:8] = 0.0
    rows = torch.arange(32) % weight.shape[0]
    sign = torch.sign(weight.detach()[rows])
    x[8:40] = sign * (0.5 + torch.rand(32, k, generator=g))
    x[40:56] = -x[8:24]  # saturating at the negative bound
    return x


def tiny_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 5),
    ).eval()


def conv_inputs(n: int = 300, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 8, 8, generator=g).clamp(min=0)  # zero patches, like image backgrounds
    x[: n // 4] *= 4  # strong inputs trigger bound management
    return x


def adc_step_mismatches(expected: torch.Tensor, actual: torch.Tensor) -> int:
    """Number of outputs that differ; fails unless the difference is tiny or rare."""
    diff = (expected - actual).abs()
    return int((diff > 1e-6 * expected.abs().max()).sum())


def assert_replays(analog: nn.Module, x: torch.Tensor, *, max_flip_fraction: float = 2e-4):
    assert unsupported_reason(analog) is None
    engine = FastAnalogForward(analog)
    engine.sync(torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = analog(x)
    actual = engine(x)
    assert actual.shape == expected.shape
    flips = adc_step_mismatches(expected, actual)
    assert flips <= max(2, max_flip_fraction * expected.numel()), (flips, expected.numel())
    close = (expected - actual).abs() <= 1e-6 * expected.abs().max()
    assert close.float().mean() > 1 - max_flip_fraction - 1e-9
    return engine, expected, actual


def saturating_rows(analog_linear, x):
    """How many inputs need bound management (noise-managed output exceeds out_bound)."""
    tile = next(analog_linear.analog_tiles())
    w = torch.as_tensor(tile.tile.get_weights())
    xs = x / x.abs().amax(1, keepdim=True).clamp(min=1e-12)
    return int(((xs @ w.T).abs() > 10.0).any(1).sum())


# ---------------------------------------------------------------------------------------------
# noise off: equal to aihwkit
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tiles", ["single", "multi"])
def test_linear_equals_aihwkit(tiles):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(48, 20), nn.ReLU(), nn.Linear(20, 7)).eval()
    size = 0 if tiles == "single" else 16  # 16: 3x2 tiles for layer 0, 2x1 for layer 1
    cfg = make_config(**{"mapping.max_input_size": size, "mapping.max_output_size": size})
    analog = convert_to_analog(model, cfg).eval()
    x = linear_inputs(3000, model[0].weight)
    if tiles == "single":
        assert saturating_rows(analog[0], x) > 20
    else:
        assert len(list(analog[0].analog_tiles())) == 6
    engine, _, _ = assert_replays(analog, x)
    # the first layer alone, where bound management acts
    with torch.no_grad():
        flips = adc_step_mismatches(analog[0](x), engine.network[0](x))
    assert flips <= 3


_VARIANTS = {
    "nm-none": {"forward.noise_management": NoiseManagementType.NONE},
    "nm-max": {"forward.noise_management": NoiseManagementType.MAX},
    "nm-constant": {"forward.noise_management": NoiseManagementType.CONSTANT, "forward.nm_thres": 2.0},
    "nm-thres": {"forward.nm_thres": 0.5},
    "bm-none": {"forward.bound_management": BoundManagementType.NONE},
    "bm-positive-test-only": {"forward.bm_test_negative_bound": False},
    "no-dac-adc": {"forward.inp_res": -1.0, "forward.out_res": -1.0},
    "no-out-bound": {"forward.out_bound": 0.0},
    "6-bit-out-bound-3": {"forward.out_res": 1 / 62, "forward.out_bound": 3.0},
    "out-scale": {"forward.out_scale": 2.5},
    "asymmetries": {"forward.inp_asymmetry": 0.1, "forward.out_asymmetry": 0.2},
    "perfect": {"forward.is_perfect": True},
    "ir-drop": {
        "forward.ir_drop": 1.0,
        "forward.ir_drop_g_ratio": 2e3,
        "forward.bound_management": BoundManagementType.NONE,
    },
    "ir-drop-strong-bm": {"forward.ir_drop": 5.0, "forward.ir_drop_g_ratio": 2e4},
    "analog-bias": {"mapping.digital_bias": False},
    "columnwise-scaling": {"mapping.weight_scaling_columnwise": True},
    "no-weight-scaling": {"mapping.weight_scaling_omega": 0.0},
    "input-range": {
        "pre_post.input_range.enable": True,
        "pre_post.input_range.learn_input_range": False,
        "pre_post.input_range.init_value": 1.5,
        "pre_post.input_range.init_from_data": 0,
    },
    "learned-out-scaling": {"mapping.learn_out_scaling": True, "mapping.out_scaling_columnwise": True},
}


@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_io_variants_equal_aihwkit(variant):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(40, 12)).eval()
    analog = convert_to_analog(model, make_config(**_VARIANTS[variant])).eval()
    if variant == "learned-out-scaling":
        tile = next(analog.analog_tiles())
        tile.out_scaling_alpha.data = torch.rand(12) + 0.5
    x = linear_inputs(1500, model[0].weight, seed=2)
    if variant == "no-dac-adc":  # no quantization: only float32 summation order differs
        engine = FastAnalogForward(analog)
        engine.sync(torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(engine(x), analog(x), rtol=1e-5, atol=1e-5)
    else:
        assert_replays(analog, x)
    if variant.startswith("ir-drop"):  # the effect being reproduced is not negligible
        plain = {k: v for k, v in _VARIANTS[variant].items() if not k.startswith("forward.ir_drop")}
        reference = convert_to_analog(model, make_config(**plain)).eval()
        with torch.no_grad():
            shift = (analog(x) - reference(x)).abs().mean() / reference(x).abs().mean()
        assert shift > 0.01, float(shift)


@pytest.mark.parametrize("layout", ["single", "multi", "mapped", "analog-bias", "input-range", "ir-drop"])
def test_conv2d_equals_aihwkit(layout):
    model = tiny_convnet()
    if layout == "single":
        analog = convert_to_analog(model, make_config()).eval()
    elif layout == "ir-drop":
        analog = convert_to_analog(model, make_config(**_VARIANTS["ir-drop-strong-bm"])).eval()
    elif layout == "analog-bias":  # the bias is a weight column driven by a constant input 1
        analog = convert_to_analog(model, make_config(**{"mapping.digital_bias": False})).eval()
    elif layout == "input-range":
        analog = convert_to_analog(model, make_config(**_VARIANTS["input-range"])).eval()
    elif layout == "multi":  # conv 2 (36 inputs, 6 outputs) on 3x2 tiles, split inside kernels
        cfg = make_config(**{"mapping.max_input_size": 16, "mapping.max_output_size": 4})
        analog = convert_to_analog(model, cfg).eval()
        assert len(list(analog[3].analog_tiles())) == 6
    else:  # AnalogConv2dMapped: indexed C++ convolution, channels split over tiles
        cfg = make_config(**{"mapping.max_input_size": 18, "mapping.max_output_size": 4})
        analog = convert_to_analog(model, cfg, conversion_map=_DEFAULT_MAPPED_CONVERSION_MAP).eval()
        assert type(analog[3]).__name__ == "AnalogConv2dMapped"
        assert len(list(analog[3].analog_tiles())) == 4
    assert_replays(analog, conv_inputs())


class _Residual(nn.Module):
    """A custom module (wrapped by aihwkit's AnalogWrapper) with a skip connection."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.head = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        return self.head(torch.flatten(torch.relu(self.bn(self.conv(x))) + x, 1))


def test_custom_module_runs_its_own_forward_and_is_left_untouched():
    torch.manual_seed(0)
    model = _Residual().eval()
    model.bn.running_mean.uniform_(-0.5, 0.5)
    analog = convert_to_analog(model, make_config()).eval()
    _, expected, _ = assert_replays(analog, conv_inputs(100))
    with torch.no_grad():  # the aihwkit model still computes what it did
        assert adc_step_mismatches(expected, analog(conv_inputs(100))) == 0
    assert type(analog.conv).__name__ == "AnalogConv2d"


@pytest.mark.parametrize(
    "compensation", [GlobalDriftCompensation, PerColumnDriftCompensation, GlobalDriftCompensationWithExactReference]
)
def test_drift_compensation_equals_aihwkit(compensation):
    """Programmed and drifted by aihwkit (torch RNG); the fast path recomputes the compensation."""
    cfg = make_config(
        noise_model=PCMLikeNoiseModel(prog_noise_scale=0.5, read_noise_scale=0.5), drift_compensation=compensation()
    )
    analog = convert_to_analog(tiny_convnet(), cfg).eval()
    engine = FastAnalogForward(analog)
    x = conv_inputs(200)
    for t in (0.0, 3600.0, 3.15e7):
        torch.manual_seed(3)
        analog.program_analog_weights()
        analog.drift_analog_weights(t)
        engine.sync(torch.Generator().manual_seed(0))
        for ours, tile in zip(engine.tiles, analog.analog_tiles()):
            torch.testing.assert_close(ours.alpha, tile.alpha.detach().reshape(ours.alpha.shape), rtol=2e-6, atol=0)
        with torch.no_grad():
            expected = analog(x)
        assert adc_step_mismatches(expected, engine(x)) <= 2
    assert float(engine.tiles[0].alpha.mean()) > 1.05  # a year of drift is being compensated


# ---------------------------------------------------------------------------------------------
# noise on: the same distribution
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "noise", ["out_noise", "w_noise_pcm_read", "w_noise_additive", "inp_noise", "stochastic_rounding"]
)
def test_noise_statistics_match_aihwkit(noise):
    settings = {
        "out_noise": {"forward.out_noise": 0.1},
        "w_noise_pcm_read": {"forward.w_noise": 0.05, "forward.w_noise_type": WeightNoiseType.PCM_READ},
        "w_noise_additive": {"forward.w_noise": 0.02, "forward.w_noise_type": WeightNoiseType.ADDITIVE_CONSTANT},
        "inp_noise": {"forward.inp_noise": 0.05},
        "stochastic_rounding": {
            "forward.inp_sto_round": True,
            "forward.out_sto_round": True,
            "forward.inp_res": 1 / 30,
            "forward.out_res": 1 / 30,
        },
    }[noise]
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(32, 8))
    analog = convert_to_analog(model, make_config(**settings)).eval()
    x = linear_inputs(64, model[0].weight, seed=5)
    engine = FastAnalogForward(analog)
    gen = torch.Generator().manual_seed(7)
    engine.sync(gen)
    stats = compare_draws(repeated(lambda: analog(x), 300), repeated(lambda: engine(x), 300))
    assert stats.noise > 1e-6  # the noise is there
    assert stats.max_z < MAX_Z
    assert abs(stats.variance_ratio - 1) < 0.08, stats.variance_ratio
    # per output, standard deviations agree within sampling error (chi-square, 300 draws)
    assert stats.median_relative_std(min_var=1e-6) < 0.1


def test_drift_compensation_statistics_match_aihwkit():
    """With output noise, alpha = baseline read-out / current read-out has aihwkit's distribution."""
    cfg = make_config(
        noise_model=PCMLikeNoiseModel(prog_noise_scale=0.0, read_noise_scale=0.0),
        drift_compensation=GlobalDriftCompensation(),
        **{"forward.out_noise": 0.2},
    )
    analog = convert_to_analog(nn.Sequential(nn.Linear(64, 16)), cfg).eval()
    engine = FastAnalogForward(analog)
    ours, theirs = [], []
    for i in range(150):
        torch.manual_seed(10)  # the same programmed/drifted weights every time
        analog.program_analog_weights()
        analog.drift_analog_weights(86400.0)
        theirs.append(float(next(analog.analog_tiles()).alpha))
        engine.sync(torch.Generator().manual_seed(i))  # the engine's numbers follow the seed
        ours.append(float(engine.tiles[0].alpha))
    a, b = torch.tensor(theirs), torch.tensor(ours)
    assert float(a.std()) > 1e-4
    assert abs(float(a.mean() - b.mean())) < 5 * math.sqrt((a.var() + b.var()) / len(a))
    assert 0.7 < float(b.std() / a.std()) < 1.4


# ---------------------------------------------------------------------------------------------
# seeding
# ---------------------------------------------------------------------------------------------


def test_same_seed_same_output_different_seed_different():
    cfg = make_config(
        noise_model=PCMLikeNoiseModel(), drift_compensation=GlobalDriftCompensation(), **{"forward.out_noise": 0.04}
    )
    analog = convert_to_analog(tiny_convnet(), cfg).eval()
    engine = FastAnalogForward(analog)
    x = conv_inputs(64)

    def program(engine):
        torch.manual_seed(0)
        analog.program_analog_weights()
        engine.sync(torch.Generator().manual_seed(100))  # draws the compensation baseline

    def run(engine, seed):
        torch.manual_seed(5)  # PCM read noise is drawn at every drift
        analog.drift_analog_weights(86400.0)
        engine.sync(torch.Generator().manual_seed(seed))
        return engine(x), [t.alpha.clone() for t in engine.tiles]

    program(engine)
    (y1, a1), (y2, a2), (y3, a3) = run(engine, 1), run(engine, 1), run(engine, 2)
    assert torch.equal(y1, y2) and all(torch.equal(p, q) for p, q in zip(a1, a2))
    assert not torch.equal(y1, y3) and not all(torch.equal(p, q) for p, q in zip(a1, a3))
    # a fresh engine replaying the same calls gives the same numbers
    fresh = FastAnalogForward(analog)
    program(fresh)
    assert torch.equal(run(fresh, 2)[0], y3)
    # aihwkit's own C++ forward is not reproducible: the reason for the fast path
    with torch.no_grad():
        assert not torch.equal(analog(x), analog(x))


# ---------------------------------------------------------------------------------------------
# refusals
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"forward.v_offset_std": 0.1}, "v_offset_std"),
        ({"forward.mv_type": AnalogMVType.POS_NEG_SEPARATE}, "mv_type"),
        ({"forward.noise_management": NoiseManagementType.AVERAGE_ABS_MAX}, "noise_management"),
        ({"forward.bound_management": BoundManagementType.ITERATIVE_WORST_CASE}, "bound_management"),
        ({"forward.out_noise_std": 0.1}, "out_noise_std"),
        ({"forward.out_nonlinearity": 0.5}, "out_nonlinearity"),
    ],
)
def test_unsupported_settings_are_named(settings, expected):
    analog = convert_to_analog(
        nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2)), make_config(**settings)
    ).eval()
    reason = unsupported_reason(analog)
    assert reason is not None and expected in reason and "'0'" in reason
    with pytest.raises(FastPathUnsupported, match=expected):
        FastAnalogForward(analog)


def test_torch_tiles_and_training_mode_are_refused():
    analog = convert_to_analog(nn.Sequential(nn.Linear(8, 4)), TorchInferenceRPUConfig()).eval()
    assert "InferenceTile" in unsupported_reason(analog)
    analog = convert_to_analog(nn.Sequential(nn.Linear(8, 4)), make_config())
    engine = FastAnalogForward(analog)
    engine.sync(torch.Generator())
    analog.train()
    with pytest.raises(RuntimeError, match="eval"):
        engine(torch.randn(2, 8))


def test_every_shipped_preset_is_supported_or_refused_by_name():
    devices = pytest.importorskip("analogsam.hardware.presets")
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    verdicts = {}
    for name in [row["name"] for row in devices.list_presets()]:
        preset = devices.load(name)
        analog = convert_to_analog(model, preset.rpu_config()).eval()
        reason = unsupported_reason(analog)
        verdicts[name] = reason
        if reason is None:
            engine = FastAnalogForward(analog)
            torch.manual_seed(0)
            analog.program_analog_weights()
            engine.sync(torch.Generator().manual_seed(0))
            assert engine(torch.randn(4, 1, 6, 6)).shape == (4, 3)
            # noise off, the preset's IO (DAC/ADC, bounds, management, IR drop, input ranges ...)
            # equals aihwkit's
            quiet = devices.load(name, io={"out_noise": 0.0, "w_noise": 0.0})
            analog = convert_to_analog(tiny_convnet(), quiet.rpu_config()).eval()
            assert_replays(analog, conv_inputs(100))
        else:
            assert "layer '0'" in reason and len(reason) < 200
    assert verdicts.get("pcm", "missing") is None
    assert all(reason is None for reason in verdicts.values()), verdicts  # all shipped presets today


@pytest.mark.parametrize(
    "settings",
    [
        {},  # the shipped presets' IO: abs-max noise management, iterative bound management
        {"forward.noise_management": NoiseManagementType.MAX, "forward.bm_test_negative_bound": False},
        {"forward.nm_thres": 0.5, "forward.out_res": 1 / 62, "forward.out_bound": 3.0},
        {"forward.out_bound": 0.0, "forward.out_scale": 2.5, "forward.inp_noise": 0.02},
    ],
)
def test_fused_kernels_equal_the_torch_operations(settings):
    """The compiled DAC/ADC kernels are a faster route to the very same numbers: with noise
    on and the same generator, every output is bit-identical to the torch operations'."""
    cfg = make_config(
        noise_model=PCMLikeNoiseModel(),
        drift_compensation=GlobalDriftCompensation(),
        **{"forward.out_noise": 0.04, **settings},
    )
    analog = convert_to_analog(tiny_convnet(), cfg).eval()  # stride 2, dilation 2, padding 1-2
    torch.manual_seed(0)
    analog.program_analog_weights()
    analog.drift_analog_weights(3600.0)
    x = conv_inputs(200)
    outputs = []
    for fused in (True, False):
        engine = FastAnalogForward(analog, fused=fused)
        engine.sync(torch.Generator().manual_seed(3))
        outputs.append(engine(x))
    assert torch.equal(outputs[0], outputs[1])
    assert outputs[0].abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# 1-D, grouped and depthwise convolutions (analogsam's mapping rewrites grouped ones into one
# AnalogConv1d/2d per group, through analogsam.hardware.conversion.convert and the presets)
# ---------------------------------------------------------------------------------------------


def depthwise_conv2d_net() -> nn.Module:
    """MobileNet style: stem, BatchNorm, depthwise 3x3 (stride 2), depthwise with multiplier 2,
    pointwise 1x1, pooling, classifier."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 12, 3, padding=2, dilation=2, groups=6, bias=False),
        nn.ReLU(),
        nn.Conv2d(12, 8, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4, 5),
    )
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics as a trained network has them
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def grouped_conv1d_net() -> nn.Module:
    """DS-CNN style on sequences: a Conv1d stem, a depthwise Conv1d, a pointwise Conv1d, a
    grouped Conv1d (4 groups), pooling, classifier."""
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv1d(3, 8, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(8, 8, 3, stride=2, padding=1, groups=8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Conv1d(8, 12, 1, bias=False),
        nn.ReLU(),
        nn.Conv1d(12, 8, 3, padding=1, groups=4),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(3),
        nn.Flatten(),
        nn.Linear(8 * 3, 5),
    ).eval()


def sequence_inputs(n: int = 300, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, generator=g).clamp(min=0)
    x[: n // 4] *= 4
    return x


_GROUPED_NETS = {
    "depthwise-conv2d": (depthwise_conv2d_net, lambda n: conv_inputs(n)),
    "grouped-conv1d": (grouped_conv1d_net, sequence_inputs),
}


def _convert_grouped(name: str, **overrides):
    from analogsam.hardware.conversion import convert

    build, inputs = _GROUPED_NETS[name]
    analog = convert(build(), "pcm", overrides=overrides)
    kinds = {type(m).__name__ for m in analog.modules()}
    assert {"GroupedConv", "AnalogLinear"} <= kinds and "Conv1d" not in kinds and "Conv2d" not in kinds
    return analog, inputs


@pytest.mark.parametrize("net", sorted(_GROUPED_NETS))
def test_grouped_networks_equal_aihwkit(net):
    """pcm with its forward noise off: programmed, drifted a day and drift-compensated by aihwkit
    (the same weights for both), then the fast engine's forward equals aihwkit's tiles'."""
    analog, inputs = _convert_grouped(net, **{"io.out_noise": 0.0})
    torch.manual_seed(3)
    analog.program_analog_weights()
    analog.drift_analog_weights(86400.0)
    assert_replays(analog, inputs(300))


@pytest.mark.parametrize("layout", ["analog-bias", "input-range", "learned-out-scaling", "unbatched", "mapped"])
def test_conv1d_equals_aihwkit(layout):
    """AnalogConv1d (aihwkit's indexed convolution) replayed as a 2-D convolution of height 1;
    AnalogConv1dMapped (input channels split over tile rows) likewise."""
    settings = {
        "analog-bias": {"mapping.digital_bias": False},
        "input-range": _VARIANTS["input-range"],
        "learned-out-scaling": {"mapping.learn_out_scaling": True},
        "unbatched": {},
        "mapped": {"mapping.max_input_size": 8, "mapping.max_output_size": 4},
    }[layout]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(3, 6, 4, stride=2, padding=3), nn.ReLU(), nn.Conv1d(6, 4, 3)).eval()
    if layout == "mapped":
        analog = convert_to_analog(model, make_config(**settings), conversion_map=_DEFAULT_MAPPED_CONVERSION_MAP).eval()
        assert type(analog[0]).__name__ == "AnalogConv1dMapped"
        assert len(list(analog[0].analog_tiles())) == 4  # channels (2, 1) x outputs (3, 3)
    else:
        analog = convert_to_analog(model, make_config(**settings)).eval()
        assert type(analog[0]).__name__ == "AnalogConv1d"
    if layout == "learned-out-scaling":
        with torch.no_grad():
            for tile in analog.analog_tiles():
                tile.out_scaling_alpha.uniform_(0.5, 2.0)
    x = sequence_inputs(200)
    if layout != "unbatched":
        assert_replays(analog, x)
        return
    engine = FastAnalogForward(analog)  # aihwkit needs a batch; one sample of it, unbatched
    engine.sync(torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = analog(x[:1])[0]
    assert adc_step_mismatches(expected, engine(x[0])) == 0


@pytest.mark.parametrize(
    "net, noise",
    [
        ("depthwise-conv2d", "out_noise"),
        ("grouped-conv1d", "out_noise"),
        ("depthwise-conv2d", "w_noise_pcm_read"),
        ("grouped-conv1d", "w_noise_additive"),
    ],
)
@pytest.mark.slow  # thousands of tile forwards
def test_grouped_network_noise_statistics_match_aihwkit(net, noise):
    """pcm's output noise (0.04), or added read noise: per network output, the fast engine's mean
    and variance over repeated forwards equal aihwkit's within the sampling error of the draws.
    (Without drift compensation, whose factor each side reads out once with its own noise draw:
    test_drift_compensation_statistics_match_aihwkit compares those.)"""
    overrides = {
        "out_noise": {},
        "w_noise_pcm_read": {"io.w_noise": 0.03, "io.w_noise_type": "pcm-read"},
        "w_noise_additive": {"io.w_noise": 0.02, "io.w_noise_type": "additive-constant"},
    }[noise]
    analog, inputs = _convert_grouped(net, **{"compensation.drift": "none", **overrides})
    torch.manual_seed(3)
    analog.program_analog_weights()
    analog.drift_analog_weights(3600.0)
    x = inputs(48)
    engine = FastAnalogForward(analog)
    engine.sync(torch.Generator().manual_seed(7))
    draws = 200
    stats = compare_draws(repeated(lambda: analog(x), draws), repeated(lambda: engine(x), draws))
    var_a, var_b = stats.var_a, stats.var_b
    assert stats.noise > 1e-6  # the noise is there
    # means: |difference| within 5 standard errors at every output (240 outputs)
    assert stats.max_z < MAX_Z
    # variances: the log of a ratio of two sample variances of `draws` draws has a standard
    # deviation of about sqrt(4 / (draws - 1)) per output; the samples' outputs are independent
    # draws (noise is drawn per vector), so the ratio of the sums is tested at 5 such deviations
    # over the square root of the number of samples
    log_sd = math.sqrt(4 / (draws - 1))
    ratio = stats.variance_ratio
    assert abs(math.log(ratio)) < 5 * log_sd / math.sqrt(len(x)), ratio
    # per output: the median log ratio (its standard error is 1.2533 sd / sqrt(outputs)) is ~0
    noisy = var_a > 1e-6 * float(var_a.max())
    log_ratios = (var_b[noisy] / var_a[noisy]).log()
    assert float(log_ratios.median().abs()) < 5 * 1.2533 * log_sd / math.sqrt(int(noisy.sum()))


def test_conv1d_refusals_name_the_layer_and_why():
    # AnalogConv1d over several tiles: aihwkit's own forward raises (no indexed TileModuleArray)
    model = nn.Sequential(nn.Conv1d(20, 4, 3), nn.Flatten(), nn.Linear(4 * 6, 2))
    analog = convert_to_analog(model, make_config(**{"mapping.max_input_size": 32})).eval()
    reason = unsupported_reason(analog)
    assert "layer '0' (AnalogConv1d)" in reason and "TileModuleArray" in reason and "tile.rows" in reason
    with pytest.raises(Exception, match="indexed"), torch.no_grad():
        analog(torch.randn(2, 20, 8))
    # per-column drift compensation: aihwkit multiplies the (N, C, L) output along L
    analog = convert_to_analog(model, make_config(drift_compensation=PerColumnDriftCompensation())).eval()
    assert "per-column drift compensation on AnalogConv1d" in unsupported_reason(analog)
