"""Recurrent layers onto tiles: the rewrite equals nn.LSTM / nn.GRU / nn.RNN in every variant, and on
aihwkit's tiles the fast engine replays a converted LSTM and GRU classifier (noise off: equal up to
summation order; noise on: the same means and variances)."""

import copy
import itertools

import pytest
import torch
from test_mapping_attention import (
    assert_fast_replays_noise_free,
    assert_fast_rows,
    assert_same_noise_statistics,
    token_inputs,
    trained,
)
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from analogsam.errors import InvalidParameterError
from analogsam.hardware.mapping import map_to_tiles
from analogsam.hardware.mapping.recurrent import TiledRNN
from analogsam.models import roles
from analogsam.optim import ASAM, adaptive_param_groups

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IN, HIDDEN, PROJ, T, N = 5, 6, 3, 7, 4

KINDS = {
    "lstm": lambda **kw: nn.LSTM(IN, HIDDEN, **kw),
    "lstm-proj": lambda **kw: nn.LSTM(IN, HIDDEN, proj_size=PROJ, **kw),
    "gru": lambda **kw: nn.GRU(IN, HIDDEN, **kw),
    "rnn-tanh": lambda **kw: nn.RNN(IN, HIDDEN, **kw),
    "rnn-relu": lambda **kw: nn.RNN(IN, HIDDEN, nonlinearity="relu", **kw),
}


def close(expected, actual):
    """Outputs, states and packed sequences equal to float tolerance, structure and all."""
    if isinstance(expected, PackedSequence):
        assert isinstance(actual, PackedSequence)
        assert torch.equal(expected.batch_sizes, actual.batch_sizes)
        assert torch.equal(expected.sorted_indices, actual.sorted_indices)
        close(expected.data, actual.data)
    elif isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for e, a in zip(expected, actual):
            close(e, a)
    else:
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def pair(kind, seed=0, **options):
    torch.manual_seed(seed)
    rnn = KINDS[kind](**options).eval()
    return rnn, TiledRNN.from_torch(rnn)


def states(kind, layers, directions, batch=N, seed=1):
    g = torch.Generator().manual_seed(seed)
    lead = (layers * directions,) + ((batch,) if batch else ())
    h0 = torch.randn(*lead, PROJ if kind == "lstm-proj" else HIDDEN, generator=g)
    if kind.startswith("lstm"):
        return h0, torch.randn(*lead, HIDDEN, generator=g)
    return h0


_VARIANTS = list(itertools.product(sorted(KINDS), [1, 2], [False, True], [False, True], [True, False]))


@pytest.mark.parametrize("kind, layers, bidirectional, batch_first, bias", _VARIANTS)
def test_rewritten_rnn_equals_torch(kind, layers, bidirectional, batch_first, bias):
    rnn, tiled = pair(
        kind,
        num_layers=layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        bias=bias,
        dropout=0.5 if layers > 1 else 0.0,
    )  # inter-layer dropout: off in eval
    directions = 2 if bidirectional else 1
    x = torch.randn(N, T, IN, generator=torch.Generator().manual_seed(2))
    seq = x if batch_first else x.transpose(0, 1)
    hx = states(kind, layers, directions)
    lengths = torch.tensor([T, 3, 5, 1])
    packed = pack_padded_sequence(seq, lengths, batch_first=batch_first, enforce_sorted=False)
    with torch.no_grad():
        for args in [
            (seq,),
            (seq, hx),
            (x[0],),
            (x[0], states(kind, layers, directions, batch=0)),
            (packed,),
            (packed, hx),
        ]:
            close(rnn(*args), tiled(*args))


def test_weights_sit_in_one_linear_per_layer_direction_and_matrix():
    rnn, tiled = pair("lstm-proj", num_layers=2, bidirectional=True)
    children = dict(tiled.named_children())
    assert sorted(children) == sorted(
        f"{p}_l{k}{s}" for p in ("ih", "hh", "hr") for k in (0, 1) for s in ("", "_reverse")
    )
    assert all(type(m) is nn.Linear for m in children.values())
    assert torch.equal(children["ih_l1_reverse"].weight, rnn.weight_ih_l1_reverse)
    assert torch.equal(children["hh_l0"].bias, rnn.bias_hh_l0)
    assert children["hr_l0"].bias is None and torch.equal(children["hr_l0"].weight, rnn.weight_hr_l0)
    assert (children["ih_l1"].in_features, children["ih_l1"].out_features) == (2 * PROJ, 4 * HIDDEN)
    assert list(tiled.named_parameters(recurse=False)) == []
    _, gru = pair("gru")
    assert (gru.hh_l0.in_features, gru.hh_l0.out_features) == (HIDDEN, 3 * HIDDEN)
    tiled.flatten_parameters()  # what forwards written for cuDNN call


def test_wrong_inputs_are_named():
    _, lstm = pair("lstm")
    x = torch.randn(T, N, IN)
    with pytest.raises(InvalidParameterError, match="input_size=5"):
        lstm(torch.randn(T, N, IN + 1))
    with pytest.raises(InvalidParameterError, match=r"\(h0, c0\)"):
        lstm(x, torch.zeros(1, N, HIDDEN))
    with pytest.raises(InvalidParameterError, match="c0 has shape"):
        lstm(x, (torch.zeros(1, N, HIDDEN), torch.zeros(2, N, HIDDEN)))
    _, gru = pair("gru")
    with pytest.raises(InvalidParameterError, match="one tensor h0"):
        gru(x, (torch.zeros(1, N, HIDDEN),))


# -- inside a network, and roles ----------------------------------------------------------------------


class SequenceClassifier(nn.Module):
    """A recurrent classifier on (batch, steps, features): the last step's output -> logits (batch, classes)."""

    def __init__(self, kind="lstm", features=8, hidden=16, classes=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        layer = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = layer(features, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, x):
        self.rnn.flatten_parameters()
        return self.head(self.rnn(x)[0][:, -1])


def test_rewritten_network_equals_torch():
    for kind in ("lstm", "gru"):
        model = SequenceClassifier(kind).eval()
        mapped = map_to_tiles(copy.deepcopy(model))
        assert type(mapped.rnn) is TiledRNN and mapped.rnn.analogsam_rewrite == "recurrent"
        with torch.no_grad():
            close(model(token_inputs()), mapped(token_inputs()))


def test_asam_scales_recurrent_weights_not_biases():
    model = SequenceClassifier("lstm")
    names = [n for n, _ in roles.crossbar_weights(model)]
    assert names == [f"rnn.weight_{p}_l{k}{s}" for k in (0, 1) for s in ("", "_reverse") for p in ("ih", "hh")] + [
        "head.weight"
    ]
    assert [n for n, _ in roles.select_parameters(model, "weights")] == names  # what weight noise and faults hit
    groups = adaptive_param_groups(model)
    adaptive = {id(p) for g in groups if g["adaptive"] for p in g["params"]}
    params = dict(model.named_parameters())
    assert {n for n, p in params.items() if id(p) in adaptive} == set(names)
    opt = ASAM(groups, torch.optim.SGD, lr=0.1, eta=0.01)
    t = {id(p): opt._scale(p, g) for g in opt.param_groups for p in g["params"]}
    w = params["rnn.weight_hh_l1_reverse"]
    assert torch.equal(t[id(w)], w.detach().abs() + 0.01) and t[id(params["rnn.bias_hh_l1_reverse"])] is None
    lstm_proj = nn.LSTM(IN, HIDDEN, proj_size=PROJ)
    assert [n for n, _ in roles.crossbar_weights(lstm_proj)] == ["weight_ih_l0", "weight_hh_l0", "weight_hr_l0"]


# -- on aihwkit's tiles -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_fast_engine_replays_the_converted_recurrent_network_noise_free(kind):
    # per layer and direction ih and hh, and the head
    assert_fast_replays_noise_free(SequenceClassifier(kind).eval(), token_inputs(), tiles=2 * 2 * 2 + 1)


@pytest.mark.slow  # thousands of tile forwards
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_fast_engine_noise_statistics_match_aihwkit_on_recurrent_networks(kind):
    assert_same_noise_statistics(SequenceClassifier(kind).eval(), token_inputs(16, tokens=3))


def test_evaluate_fast_rows_for_an_lstm(digits):
    model = trained(SequenceClassifier("lstm", features=8, hidden=16, classes=10), digits)
    assert_fast_rows(model, digits)
