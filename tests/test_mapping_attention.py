"""Attention onto tiles: the rewrite equals nn.MultiheadAttention and the transformer stacks built on it,
and on aihwkit's tiles the fast engine replays the converted transformer (noise off: equal up to
summation order; noise on: the same means and variances)."""

import copy
import itertools
import warnings

import pytest
import torch
from conformance import MAX_Z, compare_draws, repeated
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.evaluation import evaluate
from analogsam.evaluation.settings import PassLayout
from analogsam.hardware import presets as devices
from analogsam.hardware.conversion import convert
from analogsam.hardware.fast import FastAnalogForward, unsupported_reason
from analogsam.hardware.mapping import map_to_tiles
from analogsam.hardware.mapping.attention import PaddedTransformerEncoder, TiledMultiheadAttention
from analogsam.models import roles
from analogsam.optim import ASAM, adaptive_param_groups

pytestmark = pytest.mark.usefixtures("one_torch_thread")

E, HEADS, L, S, N = 8, 2, 4, 6, 3


def close(expected, actual):
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def attention_inputs(batch_first, kdim=E, vdim=E, seed=0):
    """(query, key, value) of a cross-attention: L queries, S keys and values, in the layout asked for."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(N, L, E, generator=g),
        torch.randn(N, S, kdim, generator=g),
        torch.randn(N, S, vdim, generator=g),
    )
    return (q, k, v) if batch_first else tuple(t.transpose(0, 1) for t in (q, k, v))


def masks(tgt, src, seed=1):
    """Every kind of mask torch accepts: padding bool/float, attention 2-D/3-D bool/float, both."""
    g = torch.Generator().manual_seed(seed)
    padding = torch.zeros(N, src, dtype=torch.bool)
    padding[0, src - 2 :] = True
    padding[2, 1:] = True
    attn = torch.rand(tgt, src, generator=g) < 0.3
    attn[:, 0] = False  # no row masked out entirely
    attn3 = torch.rand(N * HEADS, tgt, src, generator=g) < 0.3
    attn3[..., 0] = False
    return {
        "none": {},
        "padding-bool": {"key_padding_mask": padding},
        "padding-float": {"key_padding_mask": padding.float() * -3.0},
        "attn-2d-bool": {"attn_mask": attn},
        "attn-2d-float": {"attn_mask": torch.randn(tgt, src, generator=g)},
        "attn-3d-bool": {"attn_mask": attn3},
        "attn-3d-float": {"attn_mask": torch.randn(N * HEADS, tgt, src, generator=g)},
        "both": {"attn_mask": attn, "key_padding_mask": padding},
    }


def pair(seed=0, **options):
    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(E, HEADS, **options).eval()
    with torch.no_grad():  # non-zero biases, so misplaced ones show
        for name, p in mha.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
    return mha, TiledMultiheadAttention.from_torch(mha)


def assert_same_attention(mha, tiled, q, k, v, **kwargs):
    with torch.no_grad():
        expected, actual = mha(q, k, v, **kwargs), tiled(q, k, v, **kwargs)
    close(expected[0], actual[0])
    if expected[1] is None:
        assert actual[1] is None
    else:
        close(expected[1], actual[1])


_LAYOUTS = [
    dict(batch_first=bf, bias=bias, add_bias_kv=bkv, add_zero_attn=zero, **dims)
    for bf, bias, bkv, zero, dims in itertools.product(
        [True, False], [True, False], [False, True], [False, True], [{}, {"kdim": 5, "vdim": 7}]
    )
]


@pytest.mark.parametrize("options", _LAYOUTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_rewritten_attention_equals_torch_for_every_option(options):
    mha, tiled = pair(**options)
    q, k, v = attention_inputs(options["batch_first"], options.get("kdim", E), options.get("vdim", E))
    for mask in masks(L, S).values():
        for need_weights, average in [(True, True), (True, False), (False, True)]:
            assert_same_attention(mha, tiled, q, k, v, need_weights=need_weights, average_attn_weights=average, **mask)


@pytest.mark.parametrize("batch_first", [True, False])
def test_self_attention_equals_torchs_fused_path_causal_and_unbatched(batch_first):
    """Self-attention in eval mode is where torch runs its fused kernel; is_causal with its mask;
    unbatched (L, E) inputs; dropout off in eval."""
    mha, tiled = pair(batch_first=batch_first, dropout=0.5)
    x = sequence(batch_first, S)
    q = k = v = x  # the same tensor: torch's fused-path condition
    causal = nn.Transformer.generate_square_subsequent_mask(S)
    padding = masks(S, S)["padding-bool"]["key_padding_mask"]
    for kwargs in [
        {},
        {"key_padding_mask": padding},
        {"attn_mask": causal, "is_causal": True},
        {"attn_mask": causal, "is_causal": True, "need_weights": False},
        {"attn_mask": causal, "is_causal": True, "need_weights": False, "key_padding_mask": padding},
    ]:
        assert_same_attention(mha, tiled, q, k, v, **kwargs)
    x = torch.randn(S, E)
    for kwargs in [
        {},
        {"key_padding_mask": padding[0]},
        {"attn_mask": causal, "need_weights": False},
        {"average_attn_weights": False},
    ]:
        assert_same_attention(mha, tiled, x, x, x, **kwargs)


def test_weights_are_copied_onto_four_linear_layers():
    mha, tiled = pair()
    assert torch.equal(torch.cat([tiled.q_proj.weight, tiled.k_proj.weight, tiled.v_proj.weight]), mha.in_proj_weight)
    assert torch.equal(torch.cat([tiled.q_proj.bias, tiled.k_proj.bias, tiled.v_proj.bias]), mha.in_proj_bias)
    assert torch.equal(tiled.out_proj.weight, mha.out_proj.weight)
    assert all(type(m) is nn.Linear for m in tiled.children()) and len(list(tiled.children())) == 4
    assert list(dict(tiled.named_parameters(recurse=False))) == []  # nothing digital holds weights
    mha, tiled = pair(kdim=5, vdim=7, add_bias_kv=True)
    assert torch.equal(tiled.k_proj.weight, mha.k_proj_weight)
    assert [(m.in_features, m.out_features) for m in (tiled.q_proj, tiled.k_proj, tiled.v_proj, tiled.out_proj)] == [
        (E, E),
        (5, E),
        (7, E),
        (E, E),
    ]
    assert torch.equal(tiled.bias_k, mha.bias_k) and "bias_k" in dict(tiled.named_buffers())
    with pytest.raises(InvalidParameterError, match="is_causal"):
        tiled(*attention_inputs(False, 5, 7), is_causal=True)


# -- transformer stacks --------------------------------------------------------------------------------


def encoder(batch_first=True, norm_first=False, nested=True, layers=2):
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(E, HEADS, 16, dropout=0.1, batch_first=batch_first, norm_first=norm_first)
    with warnings.catch_warnings():  # torch says when a layer rules out its nested-tensor path
        warnings.simplefilter("ignore")
        stack = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(E), enable_nested_tensor=nested)
    with torch.no_grad():
        stack.norm.bias.uniform_(-1, 1)  # the padded positions' output after the nested path
    return stack.eval()


def sequence(batch_first, length=5, seed=4):
    x = torch.randn(N, length, E, generator=torch.Generator().manual_seed(seed))
    return x if batch_first else x.transpose(0, 1)


@pytest.mark.parametrize(
    "batch_first, norm_first, nested",
    [(True, False, True), (True, False, False), (False, False, True), (True, True, True)],
)
def test_rewritten_encoder_equals_torch(batch_first, norm_first, nested):
    stack = encoder(batch_first, norm_first, nested)
    mapped = map_to_tiles(copy.deepcopy(stack))
    assert not any(isinstance(m, nn.MultiheadAttention) for m in mapped.modules())
    assert all(type(layer.self_attn) is TiledMultiheadAttention for layer in mapped.layers)
    takes_nested_path = stack.use_nested_tensor
    assert (type(mapped) is PaddedTransformerEncoder) == takes_nested_path
    x = sequence(batch_first)
    padding = torch.zeros(N, 5, dtype=torch.bool)
    padding[0, 3:] = True
    padding[2, 1:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    for kwargs in [
        {},
        {"src_key_padding_mask": padding},
        {"mask": causal},
        {"mask": causal, "is_causal": True},
        {"mask": causal, "src_key_padding_mask": padding},
    ]:
        with torch.no_grad():
            close(stack(x, **kwargs), mapped(x, **kwargs))
    close(stack(x, src_key_padding_mask=padding), mapped(x, src_key_padding_mask=padding))  # grad on: no nesting
    if takes_nested_path:  # torch's nested path was taken: padded positions hold norm(0) = the norm's bias
        with torch.no_grad():
            out = stack(x, src_key_padding_mask=padding)
        padded = out[padding] if batch_first else out.transpose(0, 1)[padding]
        close(padded, stack.norm.bias.expand_as(padded))


def test_rewritten_decoder_and_transformer_equal_torch():
    torch.manual_seed(5)
    decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, HEADS, 16, batch_first=True), 2).eval()
    model = nn.Transformer(E, HEADS, 2, 2, 16, batch_first=False).eval()
    tgt, memory = sequence(True, 4, seed=6), sequence(True, 5, seed=7)
    tgt_mask = nn.Transformer.generate_square_subsequent_mask(4)
    padding = torch.zeros(N, 5, dtype=torch.bool)
    padding[1, 2:] = True
    mapped = map_to_tiles(copy.deepcopy(decoder))
    with torch.no_grad():
        for kwargs in [{}, {"tgt_mask": tgt_mask, "tgt_is_causal": True}, {"memory_key_padding_mask": padding}]:
            close(decoder(tgt, memory, **kwargs), mapped(tgt, memory, **kwargs))
    mapped = map_to_tiles(copy.deepcopy(model))
    assert sum(type(m) is TiledMultiheadAttention for m in mapped.modules()) == 2 + 2 * 2
    src, tgt = memory.transpose(0, 1), tgt.transpose(0, 1)
    with torch.no_grad():
        for kwargs in [{"tgt_mask": tgt_mask}, {"src_key_padding_mask": padding, "memory_key_padding_mask": padding}]:
            close(model(src, tgt, **kwargs), mapped(src, tgt, **kwargs))


# -- roles: attention weights are crossbar weights -------------------------------------------------------


def test_asam_scales_attention_projections_not_biases():
    layer = encoder(nested=False, layers=1).layers[0]
    names = [n for n, _ in roles.crossbar_weights(layer)]
    assert names == ["self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight"]
    assert [n for n, _ in roles.select_parameters(layer, "weights")] == names  # what weight noise and faults hit
    groups = adaptive_param_groups(layer)
    adaptive = {id(p) for g in groups if g["adaptive"] for p in g["params"]}
    params = dict(layer.named_parameters())
    assert id(params["self_attn.in_proj_weight"]) in adaptive and id(params["self_attn.in_proj_bias"]) not in adaptive
    assert not any(id(params[n]) in adaptive for n in params if "norm" in n or n.endswith("bias"))
    opt = ASAM(groups, torch.optim.SGD, lr=0.1, eta=0.01)
    t = {id(p): opt._scale(p, g) for g in opt.param_groups for p in g["params"]}
    w = params["self_attn.in_proj_weight"]
    assert torch.equal(t[id(w)], w.detach().abs() + 0.01) and t[id(params["self_attn.in_proj_bias"])] is None
    # separate Q/K/V matrices (kdim != embed_dim) too
    mha = nn.MultiheadAttention(E, HEADS, kdim=5, vdim=7, add_bias_kv=True)
    assert [n for n, _ in roles.crossbar_weights(mha)] == [
        "q_proj_weight",
        "k_proj_weight",
        "v_proj_weight",
        "out_proj.weight",
    ]
    # an embedding table is a lookup: digital, not perturbed as a crossbar weight, converted without a word
    model = nn.Sequential(nn.Embedding(10, E), nn.Flatten(), nn.Linear(2 * E, 3))
    assert [n for n, _ in roles.crossbar_weights(model)] == ["2.weight"]
    assert type(convert(model, "pcm")[0]) is nn.Embedding


# -- on aihwkit's tiles -------------------------------------------------------------------------------------


class PatchTransformer(nn.Module):
    """A tiny ViT-style classifier on (batch, tokens, features) inputs: logits (batch, classes)."""

    def __init__(self, features=8, width=16, classes=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Linear(features, width)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(width, 2, 32, dropout=0.0, batch_first=True), 2)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(1))


def quiet_pcm():
    return devices.load("pcm", io={"out_noise": 0.0, "w_noise": 0.0})


def programmed(analog, t=3600.0, seed=1):
    torch.manual_seed(seed)
    analog.program_analog_weights()
    analog.drift_analog_weights(t)
    engine = FastAnalogForward(analog)
    engine.sync(torch.Generator().manual_seed(0))
    return engine


def assert_fast_replays_noise_free(model, x, tiles):
    """Noise off: the fast engine equals aihwkit's model. A pre-ADC value within float32 summation
    error of a level boundary flips one ADC step about once per million outputs (tests/test_fastpath.py);
    inside a network such a flip moves the logits of its sample a little, so a few samples may differ."""
    analog = convert(model, quiet_pcm())
    assert unsupported_reason(analog) is None
    assert sum(1 for _ in analog.analog_tiles()) == tiles
    engine = programmed(analog)
    assert len(engine.tiles) == tiles  # every tile replayed, none left to aihwkit
    with torch.no_grad():
        expected = analog(x)
    actual = engine(x)
    assert actual.shape == expected.shape
    diff = (expected - actual).abs()
    moved = (diff > 1e-6 * expected.abs().max()).flatten(1).any(1)
    assert int(moved.sum()) <= max(2, 0.005 * len(x)), int(moved.sum())
    assert float(diff.max()) < 0.05 * float(expected.abs().max())
    return expected, actual


def assert_same_noise_statistics(model, x, draws=300):
    """Noise on (the pcm preset's output noise): per-output means and variances over repeated forwards
    agree within sampling error, as in tests/test_fastpath.py. Drift compensation off: its factor is
    one noisy read-out per tile, fixed over the forwards, drawn differently by each side
    (test_fastpath compares its distribution separately)."""
    analog = convert(model, devices.load("pcm", overrides={"compensation.drift": "none"}))
    engine = programmed(analog)
    stats = compare_draws(repeated(lambda: analog(x), draws), repeated(lambda: engine(x), draws))
    assert stats.noise > 1e-6  # the noise is there
    z, ratio, rel = stats.max_z, stats.variance_ratio, stats.median_relative_std()
    assert z < MAX_Z and abs(ratio - 1) < 0.1 and rel < 0.1, (z, ratio, rel)
    return z, ratio, rel


def token_inputs(n=64, tokens=6, features=8, seed=8):
    return torch.randn(n, tokens, features, generator=torch.Generator().manual_seed(seed))


def test_fast_engine_replays_the_converted_transformer_noise_free():
    # embed, head, and per layer q, k, v, out, linear1, linear2
    assert_fast_replays_noise_free(PatchTransformer().eval(), token_inputs(), tiles=2 + 2 * 6)


def test_fast_engine_noise_statistics_match_aihwkit_on_the_transformer():
    assert_same_noise_statistics(PatchTransformer().eval(), token_inputs(32))


def digits_sequences(digits, split="train"):
    """The 8x8 digits as sequences of 8 rows of 8 pixels."""
    part = getattr(digits, split)
    return part.x.reshape(len(part), 8, 8), part.y


def trained(model, digits, steps=150, lr=0.01):
    """A few Adam steps on 8x8 digits read row by row, so accuracy means something."""
    x, y = digits_sequences(digits)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


def assert_fast_rows(model, digits):
    """evaluate(..., backend="fast") on pcm: rows at 1 s and 1 year, accuracy near the digital one at 1 s."""
    x, y = digits_sequences(digits, "test")
    rows = evaluate(
        model, [(x, y)], "pcm", times=[1.0, 31536000.0], repeats=2, layout=PassLayout(backend="fast"), progress=False
    )
    assert len(rows) == 4 and {r["backend"] for r in rows} == {"fast"}
    digital = rows[0]["digital_accuracy"]
    at_1s = [r["accuracy"] for r in rows if r["t_seconds"] == 1.0]
    assert digital > 0.5 and all(abs(a - digital) < 0.1 for a in at_1s), (digital, rows)
    return rows


def test_evaluate_fast_rows_for_a_transformer(digits):
    model = trained(PatchTransformer(features=8, width=16, classes=10), digits)
    assert_fast_rows(model, digits)
