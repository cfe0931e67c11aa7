"""Many programmings per pass: the fast engine's stacked forward (repeats x times in one pass)
against the one-by-one forward, in the engine and through ``evaluate``/``sweep``."""

import dataclasses

import pytest
import torch

from analogsam.errors import InvalidParameterError
from analogsam.evaluation import evaluate, sweep
from analogsam.evaluation.settings import PassLayout
from analogsam.evaluation.store import ResultStore, read_rows
from analogsam.hardware import presets
from analogsam.hardware.conversion import convert
from analogsam.hardware.fast import FastAnalogForward
from analogsam.hardware.fast import tile as tile_module
from analogsam.models import build_model, make_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUIET = {"io": {"out_noise": 0.0, "w_noise": 0.0}}  # every forward noise source of the pcm preset off
TIMES = (1.0, 86400.0)


def _model(name: str):
    """A small LeNet-5 (8x8 inputs), ResNet-20 (BatchNorm with non-trivial running statistics) or MLP."""
    torch.manual_seed(0)
    if name == "mlp":
        spec, shape = make_spec("mlp", in_channels=1, num_classes=10, input_size=8), (1, 8, 8)
    elif name == "lenet5":
        spec, shape = make_spec("lenet5", in_channels=1, num_classes=10, input_size=8), (1, 8, 8)
    else:
        spec, shape = make_spec("resnet20", in_channels=3, num_classes=10, input_size=8), (3, 8, 8)
    model = build_model(spec).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model, torch.randn(40, *shape, generator=torch.Generator().manual_seed(1))


def _states_and_references(engine, analog, x, repeats=2):
    """Captured states of ``repeats`` programmings x TIMES, and the one-by-one forward of each."""
    states, references = [], []
    for capture in (True, False):  # the same programmings, drifts and generators twice
        for r in range(repeats):
            torch.manual_seed(r)
            analog.program_analog_weights()
            engine.sync(torch.Generator().manual_seed(100 + r))  # the compensation baseline
            for i, t in enumerate(TIMES):
                analog.drift_analog_weights(t)
                engine.sync(torch.Generator().manual_seed(10 * r + i))
                if capture:
                    states.append(engine.capture())
                else:
                    references.append(engine(x))
    return states, references


@pytest.mark.slow  # tens of seconds
@pytest.mark.parametrize("name", ["lenet5", "resnet20", "mlp"])
@pytest.mark.parametrize("noise", ["off", "on"])
@pytest.mark.parametrize("batched", [True, False])
def test_stacked_forward_equals_one_by_one_up_to_summation_order(name, noise, batched):
    model, x = _model(name)
    analog = convert(model, presets.load("pcm", **(QUIET if noise == "off" else {})))
    engine = FastAnalogForward(analog)
    states, references = _states_and_references(engine, analog, x)
    stacked = engine.forward_stacked(x, states, batched=batched)
    assert stacked.shape == (len(states) * len(x), 10)
    for k, (block, reference) in enumerate(zip(stacked.chunk(len(states)), references)):
        torch.testing.assert_close(block, reference, rtol=1e-5, atol=1e-5, msg=f"state {k}")
        assert int((block.argmax(1) != reference.argmax(1)).sum()) <= 1
        if not batched:  # state by state the digital layers see the same batches: bit for bit
            assert torch.equal(block, reference), f"state {k}"
    # the states differ (programming, drift, noise): a stacked forward that reused one would not pass
    assert not torch.allclose(references[0], references[-1])
    # the engine's own state is the last sync's again
    torch.testing.assert_close(engine(x), references[-1]) if noise == "off" else engine(x)


@pytest.mark.slow  # tens of seconds
@pytest.mark.parametrize("name", ["dscnn", "vit-tiny", "lstm"])
@pytest.mark.parametrize("batched", [True, False])
def test_stacked_forward_of_grouped_attention_and_recurrent_layers(name, batched):
    """Grouped 1-D convolutions, attention and an LSTM: each analog layer finds the stacked samples."""
    torch.manual_seed(0)
    analog = convert(
        build_model(make_spec(name, in_channels=1, num_classes=10, input_size=8)).eval(), presets.load("pcm")
    )
    engine = FastAnalogForward(analog)
    x = torch.randn(30, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    states, references = _states_and_references(engine, analog, x)
    for block, reference in zip(engine.forward_stacked(x, states, batched=batched).chunk(len(states)), references):
        torch.testing.assert_close(block, reference, rtol=1e-5, atol=1e-5)
        assert batched or torch.equal(block, reference)


@pytest.mark.parametrize("name, dac", [("lenet5", "_conv_dac"), ("mlp", "_rows_dac")])
@pytest.mark.parametrize("batched", [True, False])
def test_first_layer_quantizes_the_inputs_once_for_every_state(monkeypatch, name, dac, batched):
    model, x = _model(name)
    analog = convert(model, presets.load("pcm"))
    engine = FastAnalogForward(analog)
    states, _ = _states_and_references(engine, analog, x)
    calls = []
    real = getattr(tile_module.Tile, dac)
    monkeypatch.setattr(tile_module.Tile, dac, lambda self, v: calls.append(self.name) or real(self, v))
    engine(x)
    one_by_one = list(calls)
    calls.clear()
    engine.forward_stacked(x, states, batched=batched)
    first, *later = one_by_one  # one call per analog layer (one chunk each)
    assert calls.count(first) == 1  # shared by the 4 states
    assert later and all(calls.count(name) == len(states) for name in later)  # per state: inputs differ


def _rows_without_noise_floats(rows):
    return [{k: v for k, v in r.items() if k not in ("value", "accuracy", "loss")} for r in rows]


@pytest.mark.slow  # seconds of evaluation
@pytest.mark.parametrize("noise", ["off", "on"])
def test_evaluate_stacked_rows_equal_the_one_by_one_rows(digits, noise, tmp_path):
    model, _ = _model("lenet5")
    batches = list(digits.test.batches(150))
    kwargs = dict(
        times=list(TIMES),
        repeats=3,
        seed=4,
        progress=False,
        overrides=QUIET if noise == "off" else None,
    )
    one = PassLayout(backend="fast")
    one_by_one = evaluate(model, batches, "pcm", layout=one, store=ResultStore(tmp_path / "one"), **kwargs)
    stacked = evaluate(
        model,
        batches,
        "pcm",
        layout=PassLayout(backend="fast", repeats_per_pass=2),
        store=ResultStore(tmp_path / "stacked"),
        **kwargs,
    )  # passes of 2 and 1 repeats
    assert _rows_without_noise_floats(stacked) == _rows_without_noise_floats(one_by_one)
    stored = {name: read_rows(ResultStore(tmp_path / name).path) for name in ("one", "stacked")}
    assert len(stored["one"]) == 6
    assert _rows_without_noise_floats(stored["stacked"]) == _rows_without_noise_floats(stored["one"])
    # on the CPU the stacked pass runs state by state after the shared first layer: bit for bit
    assert stacked == one_by_one


@pytest.mark.slow  # trains on digits
def test_a_killed_stacked_evaluation_resumes_to_the_same_rows(digits, tmp_path, monkeypatch):
    from analogsam.evaluation import backends

    model, _ = _model("lenet5")
    batches = list(digits.test.batches(200))
    layout = PassLayout(backend="fast", repeats_per_pass=2, batch_size=200)  # two batches of the 359 images a pass
    kwargs = dict(times=list(TIMES), repeats=3, seed=0, progress=False, layout=layout)
    reference = evaluate(model, batches, "pcm", **kwargs)

    store = ResultStore(tmp_path / "results")
    real = backends.FastBackend.forward_stacked
    passes = []

    def killed_in_the_second_pass(self, x, states):
        passes.append(len(states))
        if len(passes) > 2:  # the second pass's first batch
            raise KeyboardInterrupt
        return real(self, x, states)

    monkeypatch.setattr(backends.FastBackend, "forward_stacked", killed_in_the_second_pass)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, batches, "pcm", store=store, **kwargs)
    assert sorted({r["repeat"] for r in read_rows(store.path)}) == [0, 1]  # the first pass's cells
    monkeypatch.setattr(backends.FastBackend, "forward_stacked", real)
    resumed = evaluate(model, batches, "pcm", store=ResultStore(tmp_path / "results"), **kwargs)
    assert [r["repeat"] for r in resumed] == [2, 2]  # only the missing cell was measured
    stored = read_rows(store.path)
    key = lambda r: (int(r["repeat"]), float(r["t_seconds"]))  # noqa: E731
    assert [(key(r), int(r["seed"]), float(r["accuracy"])) for r in sorted(stored, key=key)] == [
        (key(r), r["seed"], pytest.approx(r["accuracy"])) for r in reference
    ]


def test_sweep_passes_repeats_per_pass_and_checks_it(digits_run, digits):
    batches = lambda run: list(digits.test.batches(200))  # noqa: E731
    kwargs = dict(batches_for=batches, times=[1.0], repeats=2, progress=False, backend="fast", overrides=QUIET)
    stacked = sweep([digits_run], ["pcm"], repeats_per_pass=2, **kwargs)
    one_by_one = sweep([digits_run], ["pcm"], **kwargs)
    assert _rows_without_noise_floats(stacked) == _rows_without_noise_floats(one_by_one)
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(InvalidParameterError, match="repeats_per_pass"):
            sweep([digits_run], ["pcm"], repeats_per_pass=bad, **kwargs)
        with pytest.raises(InvalidParameterError, match="repeats_per_pass"):
            evaluate(digits_run, batches(None), "pcm", layout=PassLayout(repeats_per_pass=bad), progress=False)


def test_cli_flag_reaches_the_sweep(tmp_path, monkeypatch):
    import analogsam.evaluation
    from analogsam import cli

    seen = {}
    parser = cli.build_parser()  # (it reads the API's defaults)
    monkeypatch.setattr(analogsam.evaluation, "sweep", lambda *a, **kw: seen.update(kw) or [])
    for flags, expected in ((["--repeats-per-pass", "5"], 5), ([], None)):
        args = parser.parse_args(["compare", "run_a", "--out", str(tmp_path), *flags])
        cli._sweep(args, ["run_a"], ["pcm"], tmp_path)
        assert seen["repeats_per_pass"] == expected


def test_a_backend_without_stacking_measures_one_state_at_a_time(digits):
    model, _ = _model("lenet5")
    batches = list(digits.test.batches(200))
    kwargs = dict(times=[1.0], repeats=2, seed=0, progress=False, overrides=QUIET)
    rows = evaluate(model, batches, "pcm", layout=PassLayout(backend="aihwkit", repeats_per_pass=2), **kwargs)
    assert [r["backend"] for r in rows] == ["aihwkit", "aihwkit"]
    assert rows == evaluate(
        model, batches, "pcm", layout=PassLayout(backend="aihwkit"), **kwargs
    )  # no forward noise: the same numbers


class _TwoBranches(torch.nn.Module):
    """Two analog layers read the input, an analog layer between them: each state's generator
    must still draw a, c, b in this order, state by state as in its own forward. Returns a
    HuggingFace-style dict with a tuple inside."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = torch.nn.Linear(64, 16), torch.nn.Linear(64, 10), torch.nn.Linear(16, 10)

    def forward(self, x):
        x = x.flatten(1)
        logits = self.c(torch.relu(self.a(x))) + self.b(x)
        return {"logits": logits, "extra": (logits.sum(1), None)}


def test_state_by_state_keeps_each_generators_order_and_joins_structured_outputs():
    torch.manual_seed(0)
    analog = convert(_TwoBranches().eval(), presets.load("pcm"))
    engine = FastAnalogForward(analog)
    x = torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    states, references = _states_and_references(engine, analog, x)
    out = engine.forward_stacked(x, states, batched=False)
    assert set(out) == {"logits", "extra"} and out["extra"][1] is None
    for block, sums, reference in zip(out["logits"].chunk(len(states)), out["extra"][0].chunk(len(states)), references):
        assert torch.equal(block, reference["logits"]) and torch.equal(sums, reference["extra"][0])


@pytest.mark.parametrize("name", ["lenet5", "mlp"])
def test_shared_quantization_with_input_noise_is_bit_identical(name):
    """Input noise is added to the shared DAC output in place: every state but the last works on a
    copy, so each state's outputs equal its one-by-one forward bit for bit (state by state)."""
    model, x = _model(name)
    analog = convert(model, presets.load("pcm"))
    engine = FastAnalogForward(analog)
    for t in engine.tiles:  # (no preset has input noise: the engine's replay of it, here against itself)
        t.spec = dataclasses.replace(t.spec, inp_noise=0.05)
    assert all(t.fused_dac for t in engine.tiles)
    states, references = _states_and_references(engine, analog, x)
    stacked = engine.forward_stacked(x, states, batched=False)
    for k, (block, reference) in enumerate(zip(stacked.chunk(len(states)), references)):
        assert torch.equal(block, reference), f"state {k}"
    assert not torch.equal(references[0], references[1])  # the states' noise differs
