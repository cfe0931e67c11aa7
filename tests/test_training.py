"""The digital training loop learns, logs, checkpoints as plain data, and stops cleanly on NaN."""

import csv

import pytest
import torch

from analogsam.data import ArrayDataset, DatasetSplits
from analogsam.optim import NonFiniteError
from analogsam.runs import load_run
from analogsam.training import accuracy, train


def test_training_learns_digits(digits_run):
    assert digits_run.metrics[-1]["test_accuracy"] > 0.9  # chance is 0.1
    assert digits_run.metrics[-1]["train_loss"] < digits_run.metrics[0]["train_loss"]


def test_log_and_checkpoint(digits_run, digits):
    folder = digits_run.path
    rows = list(csv.DictReader(open(folder / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    assert {"train_loss", "train_accuracy", "test_accuracy", "lr", "seconds"} <= set(rows[0])
    ckpt = torch.load(folder / "checkpoint.pt", weights_only=True)  # plain data only: never runs code
    assert set(ckpt) >= {"state_dict", "model_spec", "config", "metrics"}
    assert ckpt["config"]["optimizer"] == "sgd" and ckpt["model_spec"]["name"] == "mlp"
    loaded = load_run(folder)
    x = digits.test.x[:50]
    torch.testing.assert_close(loaded.model(x), digits_run.model.eval()(x))
    assert accuracy(loaded.model, digits.test.batches(100))[0] == pytest.approx(float(rows[-1]["test_accuracy"]))


def test_same_seed_same_weights(digits):
    a = train("mlp", digits, optimizer="sgd", epochs=1, seed=3, progress=False)
    b = train("mlp", digits, optimizer="sgd", epochs=1, seed=3, progress=False)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_nan_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    poisoned_x = digits.train.x.clone()
    poisoned_x[-40:] = float("nan")
    data = DatasetSplits(
        "digits",
        ArrayDataset(poisoned_x, digits.train.y),
        digits.val,
        digits.test,
        digits.num_classes,
        digits.input_shape,
    )
    with pytest.raises(NonFiniteError, match="epoch 1"):
        train("mlp", data, optimizer="sgd", epochs=2, progress=False, out=tmp_path / "nan")
    assert not (tmp_path / "nan" / "checkpoint.pt").exists()  # no NaN weights were saved


def test_load_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        load_run(tmp_path)
