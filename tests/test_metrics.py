"""Model outputs and metrics: every metric equals its formula on hand-sized tensors and aggregates
exactly over uneven batches; dict/tuple/HuggingFace-style outputs work through evaluation, training,
the optimizers and the probes; perplexity of a tiny language model through the fast engine, with a
report that says lower is better."""

import copy
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from analogsam.data import ArrayDataset, DatasetSplits
from analogsam.errors import InvalidParameterError
from analogsam.evaluation import evaluate, read_rows, summarize
from analogsam.evaluation.report import markdown_table, text_table, write_report
from analogsam.evaluation.settings import PassLayout
from analogsam.evaluation.store import RESULT_COLUMNS, ResultStore, write_rows
from analogsam.scoring import Metric, model_output, perplexity, resolve_metric, score, task_loss, top_k
from analogsam.training import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0], [0.0, 1.0, 0.5]])
LABELS = torch.tensor([0, 1, 0, 2])


def _ce(row, label):
    return math.log(sum(math.exp(v) for v in row)) - row[label]


# --- each metric is its formula --------------------------------------------------------------------


def test_accuracy_and_top_k_count_hits():
    assert resolve_metric("accuracy").value(LOGITS, LABELS) == 0.5  # rows 0 and 1 have their label on top
    assert resolve_metric("top2").value(LOGITS, LABELS) == 1.0  # row 2: 0 is second; row 3: 2 is second
    assert resolve_metric("top-1").value(LOGITS, LABELS) == 0.5
    assert top_k(3).value(LOGITS, LABELS) == 1.0


def test_cross_entropy_and_perplexity_of_class_logits():
    expected = np.mean([_ce(r.tolist(), int(y)) for r, y in zip(LOGITS, LABELS)])
    assert resolve_metric("cross_entropy").value(LOGITS, LABELS) == pytest.approx(expected, rel=1e-12)
    assert resolve_metric("loss").value(LOGITS, LABELS) == pytest.approx(expected, rel=1e-12)
    assert resolve_metric("perplexity").value(LOGITS, LABELS) == pytest.approx(math.exp(expected), rel=1e-12)


def test_perplexity_of_sequences_is_per_token_and_ignores_padding():
    logits = torch.stack([LOGITS, LOGITS.flip(0)])  # (B=2, T=4, V=3)
    targets = torch.tensor([[0, 1, 0, -100], [2, 0, -100, -100]])
    tokens = [(LOGITS[0], 0), (LOGITS[1], 1), (LOGITS[2], 0), (LOGITS.flip(0)[0], 2), (LOGITS.flip(0)[1], 0)]
    mean_ce = np.mean([_ce(r.tolist(), y) for r, y in tokens])
    assert perplexity().value(logits, targets) == pytest.approx(math.exp(mean_ce), rel=1e-12)
    # another pad index: the token 0 is padding now, -100 may not appear
    padded = torch.where(targets == -100, torch.tensor(0), targets)
    kept = [(r, y) for r, y in tokens if y != 0]
    assert perplexity(ignore_index=0).value(logits, padded) == pytest.approx(
        math.exp(np.mean([_ce(r.tolist(), y) for r, y in kept])), rel=1e-12
    )
    # token-level accuracy over the same five tokens: the argmax hits only at (0, 0) and (0, 1)
    assert resolve_metric("accuracy").value(logits, targets) == 2 / 5


def test_mse_and_r2_from_exact_sums():
    y = torch.tensor([1.0, 2.0, 4.0, 7.0])
    p = torch.tensor([[1.5], [2.0], [3.0], [8.0]])  # a (B, 1) head against (B,) targets
    sse = 0.25 + 0 + 1 + 1
    assert resolve_metric("mse").value(p, y) == pytest.approx(sse / 4, rel=1e-12)
    sst = float(((y - y.mean()) ** 2).sum())
    assert resolve_metric("r2").value(p, y) == pytest.approx(1 - sse / sst, rel=1e-12)


def test_a_user_callable_returns_sum_and_count():
    def hits_on_class_one(predictions, targets):
        return int((predictions.argmax(-1) == 1).sum()), len(targets)

    metric = resolve_metric(hits_on_class_one)
    assert metric.name == "hits_on_class_one" and metric.higher_is_better
    assert metric.value(LOGITS, LABELS) == 0.5  # rows 1 and 3


def test_batches_aggregate_exactly_as_one_big_batch():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(23, 7, 5, generator=g), torch.randint(0, 5, (23, 7), generator=g)
    labels[torch.rand(23, 7, generator=g) < 0.3] = -100  # uneven padding per sequence
    cuts = [0, 1, 9, 10, 23]  # uneven batches: 1, 8, 1, 13 sequences
    batches = [(logits[a:b], labels[a:b]) for a, b in zip(cuts, cuts[1:])]
    regression = torch.randn(23, generator=g), torch.randn(23, generator=g)
    reg_batches = [(regression[0][a:b], regression[1][a:b]) for a, b in zip(cuts, cuts[1:])]
    for name in ("accuracy", "top3", "cross_entropy", "perplexity"):
        whole = score(lambda x: x, [(logits, labels)], metric=name)
        split = score(lambda x: x, batches, metric=name)
        assert split.value == pytest.approx(whole.value, rel=1e-12), name
        assert split.loss == pytest.approx(whole.loss, rel=1e-6), name
    for name in ("mse", "r2"):
        whole = score(lambda x: x, [regression], metric=name)
        assert score(lambda x: x, reg_batches, metric=name).value == pytest.approx(whole.value, rel=1e-12), name
    # the naive mean of batch perplexities is not the same number
    naive = np.mean([perplexity().value(x, y) for x, y in batches])
    assert abs(naive - score(lambda x: x, batches, metric="perplexity").value) > 1e-3


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric, predictions, targets, words",
    [
        ("f1", LOGITS, LABELS, "unknown metric 'f1'"),
        ("topk", LOGITS, LABELS, "needs a number for k"),
        ("top0", LOGITS, LABELS, "k >= 1"),
        ("top5", LOGITS, LABELS, "at least 5 classes"),
        ("perplexity", torch.randn(4), LABELS, "metric 'perplexity' needs logits"),
        ("accuracy", torch.randn(4), torch.randn(4), "metric 'accuracy' needs class scores"),
        ("mse", LOGITS, LABELS, "metric 'mse' needs predictions of the targets' shape"),
        (lambda p, t: 1.0, LOGITS, LABELS, "must return a (sum, count) pair"),
    ],
)
def test_bad_metrics_are_refused_in_one_line(metric, predictions, targets, words):
    with pytest.raises(InvalidParameterError) as err:
        score(lambda x: x, [(predictions, targets)], metric=metric)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_bad_k_and_bad_ignore_index_are_refused():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InvalidParameterError, match="k >= 1"):
            top_k(bad)
    with pytest.raises(InvalidParameterError, match="ignore_index"):
        perplexity(ignore_index="pad")


# --- model outputs --------------------------------------------------------------------------------


class HFOutput:
    """What a HuggingFace model returns: an object with ``.logits`` (and more)."""

    def __init__(self, logits):
        self.logits, self.hidden_states = logits, None


class Wrapped(nn.Module):
    """``net`` returning its logits as ``kind``: a dict, a tuple, an output object or a Mapping."""

    def __init__(self, net, kind):
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x):
        logits = self.net(x)
        return {
            "dict": lambda: {"logits": logits, "aux": logits.sum()},
            "tuple": lambda: (logits, x),
            "hf": lambda: HFOutput(logits),
            "ordered": lambda: OrderedDict(loss=None, logits=logits),
            "scores": lambda: {"scores": logits},
        }[self.kind]()


def test_model_output_takes_the_prediction():
    t = torch.ones(2, 3)
    assert model_output(t) is t
    assert model_output({"logits": t}) is t and model_output(OrderedDict(logits=t)) is t
    assert model_output((t, None)) is t and model_output([[t], 1]) is t and model_output(HFOutput(t)) is t
    assert model_output({"scores": t}, lambda out: out["scores"]) is t
    with pytest.raises(InvalidParameterError, match="dict without 'logits'.*output_fn"):
        model_output({"scores": t})
    with pytest.raises(InvalidParameterError, match="not a tensor"):
        model_output(t, lambda out: out.tolist())
    with pytest.raises(InvalidParameterError, match="type str"):
        model_output("logits")


@pytest.mark.parametrize("kind", ["dict", "tuple", "hf", "ordered", "scores"])
def test_evaluate_reads_every_output_kind(digits_run, digits, kind):
    batches = list(digits.test.batches(200))
    plain = evaluate(
        digits_run.model, batches, "pcm", times="1s", repeats=1, layout=PassLayout(backend="fast"), progress=False
    )
    output_fn = (lambda out: out["scores"]) if kind == "scores" else None
    wrapped = evaluate(
        Wrapped(copy.deepcopy(digits_run.model), kind),
        batches,
        "pcm",
        times="1s",
        repeats=1,
        layout=PassLayout(backend="fast"),
        progress=False,
        run="MLP",
        output_fn=output_fn,
    )
    keys = ("accuracy", "loss", "digital_accuracy", "value", "metric")
    assert [{k: r[k] for k in keys} for r in wrapped] == [{k: r[k] for k in keys} for r in plain]
    assert plain[0]["metric"] == "accuracy" and plain[0]["value"] == plain[0]["accuracy"]


def _training_pair(digits, optimizer, **kwargs):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    common = dict(optimizer=optimizer, epochs=1, batch_size=64, lr=0.05, seed=0, progress=False)
    common.update(kwargs)
    plain = train(copy.deepcopy(net), digits, **common)
    wrapped = train(Wrapped(copy.deepcopy(net), "dict"), digits, **common)
    untimed = [[{k: v for k, v in m.items() if k != "seconds"} for m in run.metrics] for run in (plain, wrapped)]
    return untimed


@pytest.mark.parametrize(
    "optimizer, kwargs",
    [
        ("sgd", {}),
        ("sam", {}),
        ("adversarial", {"attack_steps": 2}),
        ("saf", {"epochs": 2, "saf_start": 1, "saf_history": 1}),
    ],
)
def test_training_and_optimizers_read_dict_outputs(digits, optimizer, kwargs):
    plain, wrapped = _training_pair(digits, optimizer, **kwargs)
    assert wrapped == plain and "train_accuracy" in plain[0]


# --- a tiny language model ------------------------------------------------------------------------

VOCAB, LENGTH = 6, 5


class TinyLM(nn.Module):
    """An embedding (a bias-free Linear on one-hot tokens: the fast engine feeds float inputs) and an
    output projection; returns ``{"logits": (B, T, V)}`` as HuggingFace models do."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(VOCAB, 8, bias=False)
        self.head = nn.Linear(8, VOCAB)

    def forward(self, tokens):
        hidden = torch.tanh(self.embed(nn.functional.one_hot(tokens.long(), VOCAB).float()))
        return {"logits": self.head(hidden)}


def _sequences(n, seed):
    """Token t+1 = token t + 1 (mod V): learnable; the last target of each sequence is padding."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (n, 1), generator=g)
    tokens = (start + torch.arange(LENGTH + 1)) % VOCAB
    x, y = tokens[:, :-1].clone(), tokens[:, 1:].clone()
    y[: n // 2, -1] = -100
    return ArrayDataset(x, y)


def _lm_data():
    return DatasetSplits("sequences", _sequences(96, 0), _sequences(0, 1), _sequences(40, 2), VOCAB, (1, 1, LENGTH))


@pytest.fixture(scope="module")
def lm_run():
    torch.manual_seed(0)
    return train(
        TinyLM(),
        _lm_data(),
        optimizer="sgd",
        epochs=6,
        batch_size=16,
        lr=0.5,
        seed=0,
        progress=False,
        metric="perplexity",
    )


def test_training_reports_perplexity(lm_run):
    first, last = lm_run.metrics[0], lm_run.metrics[-1]
    assert {"train_perplexity", "test_perplexity", "train_loss", "test_loss"} <= set(last)
    assert "test_accuracy" not in last and lm_run.config["metric"] == "perplexity"
    assert last["test_perplexity"] < first["test_perplexity"] < VOCAB * 1.5
    assert last["test_perplexity"] == pytest.approx(math.exp(last["test_loss"]), rel=1e-5)


def test_perplexity_over_time_on_the_fast_engine_and_a_report_that_says_lower_is_better(lm_run, tmp_path):
    data = list(_lm_data().test.batches(16))
    rows = evaluate(
        lm_run.model,
        data,
        "pcm",
        times="1s,1d",
        repeats=2,
        layout=PassLayout(backend="fast"),
        progress=False,
        metric="perplexity",
        run="lm",
    )
    assert {r["metric"] for r in rows} == {"perplexity"} and {r["backend"] for r in rows} == {"fast"}
    assert all(r["accuracy"] is None and r["digital_accuracy"] is None and not r["higher_is_better"] for r in rows)
    digital = score(lm_run.model.eval(), data, metric="perplexity").value
    assert rows[0]["digital_value"] == digital == lm_run.metrics[-1]["test_perplexity"]
    assert all(r["value"] == pytest.approx(math.exp(r["loss"]), rel=1e-5) for r in rows)
    worse = [{**r, "run": "worse", "value": r["value"] * 2} for r in rows]
    summary = summarize(rows + worse)
    assert "preset pcm (perplexity (lower is better), mean ± std over 2 repeats)" in text_table(summary, "pcm")
    table = markdown_table(summary, "pcm")
    best = [line for line in table.splitlines() if line.startswith("| lm ")][0]
    assert best.count("**") == 4  # the lower perplexity is the best at both times
    written = write_report(rows + worse, tmp_path)
    report = written["report"].read_text()
    assert "Perplexity (lower is better) on simulated analog hardware" in report
    assert "the lowest mean per time is in bold" in report and "perplexity_vs_time_pcm.png" in report
    assert (tmp_path / "perplexity_vs_time.png").stat().st_size > 0
    stored = read_rows(written["results"])
    assert [(r["metric"], r["value"], r["higher_is_better"]) for r in stored] == [
        (r["metric"], r["value"], r["higher_is_better"]) for r in rows + worse
    ]


def test_saf_buffers_sequence_outputs():
    from analogsam.optim import build_method

    torch.manual_seed(0)
    model = TinyLM()
    method = build_method(
        "saf",
        model,
        num_samples=96,
        num_classes=VOCAB,
        epochs=3,
        saf_start=1,
        saf_history=1,
        loss_fn=task_loss("perplexity"),
    )
    data = _lm_data().train
    for epoch in range(3):
        method.begin_epoch(epoch)
        for x, y, idx in data.batches(32, with_indices=True):
            loss, logits = method.train_step(x, y, idx)
            assert logits.shape == (len(x), LENGTH, VOCAB) and torch.isfinite(loss)
    assert method.logits_buffer.shape == (96, LENGTH, VOCAB, 2)
    reference, valid = method.reference_logits(torch.arange(4), epoch=2)
    assert bool(valid.all()) and reference.shape == (4, LENGTH, VOCAB)


def test_adversarial_kl_is_per_token_for_sequences():
    from analogsam.optim._common import kl_div_logits

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    per_token = [kl_div_logits(a[i, t][None], b[i, t][None]) for i in range(3) for t in range(4)]
    assert float(kl_div_logits(a, b)) == pytest.approx(float(torch.stack(per_token).mean()), rel=1e-6)
    torch.manual_seed(0)
    run = train(
        TinyLM(),
        _lm_data(),
        optimizer="adversarial",
        epochs=1,
        batch_size=32,
        seed=0,
        progress=False,
        metric="perplexity",
        attack_steps=2,
    )
    assert math.isfinite(run.metrics[0]["test_perplexity"])


def test_probes_measure_perplexity_and_drops_are_losses(lm_run):
    from analogsam.robustness import CurveSettings, analyze_model

    data = list(_lm_data().test.batches(20))
    out = analyze_model(
        lm_run.model,
        data,
        metric="perplexity",
        metrics=["average_sharpness"],
        curves=["weight_noise_relative"],
        robustness=CurveSettings(relative_etas=(0.0, 0.5), noise_draws=3),
        seed=0,
    )
    assert out["clean"]["perplexity"] == pytest.approx(score(lm_run.model, data, metric="perplexity").value)
    curve = out["curves"]["weight_noise_relative"]
    assert curve["metric"] == "perplexity" and "perplexity" in curve["rows"][0]
    assert out["drops"]["weight_noise_relative_drop@0.5"] == pytest.approx(
        curve["summary"][1]["mean"] - curve["clean_accuracy"]
    )
    assert out["drops"]["weight_noise_relative_drop@0.5"] > 0  # noise makes perplexity worse: a positive drop


def test_sharpness_of_a_dict_model_equals_the_plain_model(digits_run, digits):
    from analogsam.robustness import sharpness

    batches = list(digits.train.batches(128))[:2]
    plain = sharpness.average_sharpness(digits_run.model, batches, draws=3)
    wrapped = sharpness.average_sharpness(Wrapped(copy.deepcopy(digits_run.model), "hf"), batches, draws=3)
    assert wrapped.value == plain.value


# --- regression -----------------------------------------------------------------------------------


def test_regression_metrics_train_with_mean_squared_error():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(120, generator=g)
    data = DatasetSplits(
        "line", ArrayDataset(x[:80], y[:80]), ArrayDataset(x[:0], y[:0]), ArrayDataset(x[80:], y[80:]), 1, (1, 1, 3)
    )
    torch.manual_seed(0)
    run = train(
        nn.Linear(3, 1), data, optimizer="sgd", epochs=20, batch_size=16, lr=0.05, seed=0, progress=False, metric="r2"
    )
    last = run.metrics[-1]
    assert last["test_r2"] > 0.95 and last["train_r2"] > 0.9
    predicted = run.model(x[80:]).squeeze(-1)
    assert last["test_loss"] == pytest.approx(
        float(((predicted.detach() - y[80:]) ** 2).mean()), rel=1e-5
    )  # MSE, not CE
    assert task_loss("mse") is task_loss("r2")


# --- results.csv ------------------------------------------------------------------------------------


def test_accuracy_cells_are_keyed_by_their_metric(tmp_path):
    rows = [
        {
            "run": "a",
            "optimizer": "sgd",
            "model": "mlp",
            "dataset": "digits",
            "faults": "",
            "preset": "pcm",
            "preset_hash": "h",
            "t_seconds": 1.0,
            "repeat": 0,
            "seed": 7,
            "metric": "accuracy",
            "higher_is_better": True,
            "value": 0.9,
            "accuracy": 0.9,
            "loss": 0.3,
            "digital_value": 0.95,
            "digital_accuracy": 0.95,
            "n_samples": 10,
            "backend": "fast",
        }
    ]
    write_rows(tmp_path / "results.csv", rows, RESULT_COLUMNS)
    (row,) = read_rows(tmp_path / "results.csv")
    assert (row["metric"], row["value"], row["digital_value"], row["higher_is_better"]) == ("accuracy", 0.9, 0.95, True)
    store = ResultStore(tmp_path)
    assert store.done == {("a", "", "pcm", "h", 0, "accuracy")}
    preset = type("P", (), {"name": "pcm", "hash": "h"})()
    assert store.has("a", "", preset, 0) and not store.has("a", "", preset, 0, "top5")
    assert summarize(rows)[0]["mean"] == 0.9


def test_a_custom_metric_keeps_its_direction_in_reports():
    lower = Metric("errors", False, lambda p, t: (int((p.argmax(-1) != t).sum()), len(t)))
    rows = [
        {
            "run": run,
            "optimizer": "sgd",
            "faults": "",
            "preset": "pcm",
            "preset_hash": "h",
            "t_seconds": 1.0,
            "repeat": 0,
            "metric": "errors",
            "higher_is_better": False,
            "value": v,
            "digital_value": 0.1,
        }
        for run, v in (("a", 0.2), ("b", 0.3))
    ]
    table = markdown_table(summarize(rows), "pcm")
    assert "**0.2 ± 0**" in table and "**0.3" not in table
    assert lower.description == "errors (lower is better)"


# --- command line -----------------------------------------------------------------------------------


def test_cli_metric_flag(digits_run, digits, tmp_path, capsys):
    from analogsam.cli import main

    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--model",
                "mlp",
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "bad"),
                "--metric",
                "f1",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown metric 'f1'") and "\n" not in err
    assert (
        main(
            [
                "evaluate",
                str(digits_run.path),
                "--preset",
                "pcm",
                "--times",
                "1s",
                "--repeats",
                "1",
                "--metric",
                "top3",
                "--out",
                str(tmp_path / "top3"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "preset pcm (top-3 accuracy % (higher is better)" in capsys.readouterr().out
    rows = read_rows(tmp_path / "top3" / "results.csv")
    assert {r["metric"] for r in rows} == {"top3"} and all(r["accuracy"] is None for r in rows)
    top1 = score(digits_run.model.eval(), list(digits.test.batches(2000))).value
    assert all(r["digital_value"] >= top1 for r in rows)  # the label among the top 3 at least as often as on top
