"""train(init_from=RUN): quantization-aware training and SAQ started from a trained full-precision run
(ziplab/SAQ's --pretrained), its record, its reuse key and its refusals."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from analogsam.errors import InvalidParameterError
from analogsam.quantization import quantized_layers
from analogsam.quantization.liq import CLIP_INIT
from analogsam.runs import CHECKPOINT, load_run
from analogsam.storage import file_digest
from analogsam.training import train, train_or_reuse

DATA = {"train_limit": 300, "test_limit": 100}


@pytest.fixture(scope="module")
def fp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("start") / "fp"
    return train("mlp", "digits", epochs=2, out=out, progress=False, data_options=DATA, seed=3)


def test_a_quantized_run_starts_from_the_trained_weights_with_clips_from_them(fp_run):
    trained = {n: p.detach().clone() for n, p in fp_run.model.named_parameters()}
    # lr 1e-12 leaves every weight and clip where the start put it: the first forward's clip rule is all that acts
    run = train(init_from=fp_run.path, model=None, data="digits", quantize="w8a8", epochs=1, lr=1e-12,
                progress=False, data_options=DATA, seed=0)  # fmt: skip
    layers = quantized_layers(run.model)
    assert len(layers) == 3
    for name, layer in layers:
        torch.testing.assert_close(layer.weight, trained[f"{name}.weight"], rtol=0, atol=1e-8)
        assert float(layer.weight_clip.detach()) == pytest.approx(
            CLIP_INIT * float(trained[f"{name}.weight"].abs().max()), rel=1e-6
        )
    record = run.config["init_from"]
    assert record["run"] == str(fp_run.path)
    assert record["checkpoint"] == file_digest(fp_run.path / CHECKPOINT)
    assert record["test_accuracy"] == fp_run.metrics[-1]["test_accuracy"]
    # the quantized start is as accurate as the trained network it came from, within what 8 bits lose
    assert run.metrics[-1]["test_accuracy"] > fp_run.metrics[-1]["test_accuracy"] - 0.05
    # the start's folder is untouched: its checkpoint is still full precision
    assert "quantization" not in load_run(fp_run.path).config


def test_init_from_with_saq_and_the_l1_penalty_trains(fp_run):
    run = train(init_from=fp_run.path, model="mlp", data="digits", quantize="w4a4", optimizer="saq",
                activation_l1=1e-3, epochs=1, lr=0.01, progress=False, data_options=DATA)  # fmt: skip
    assert run.config["optimizer"] == "saq" and run.config["init_from"]["run"] == str(fp_run.path)
    assert all(float(layer.weight_clip.detach().abs()) > 0 for _, layer in quantized_layers(run.model))


def test_init_from_refusals(fp_run, tmp_path):
    with pytest.raises(InvalidParameterError, match="holds a 'mlp' network, not 'lenet5'"):
        train("lenet5", "digits", init_from=fp_run.path, quantize="w8a8", epochs=1, progress=False, data_options=DATA)
    quantized = train(init_from=fp_run.path, model=None, data="digits", quantize="w8a8", epochs=1,
                      out=tmp_path / "q", progress=False, data_options=DATA)  # fmt: skip
    with pytest.raises(InvalidParameterError, match="is a quantized run; start from a full-precision run"):
        train(init_from=quantized.path, model=None, data="digits", quantize="w4a4", epochs=1, progress=False)
    with pytest.raises(InvalidParameterError, match="model=None needs init_from"):
        train(None, "digits", epochs=1, progress=False)


def test_train_or_reuse_retrains_when_the_start_changes(tmp_path):
    start = tmp_path / "fp"
    train("mlp", "digits", epochs=1, out=start, progress=False, data_options=DATA, seed=1)
    kwargs = dict(model=None, data="digits", init_from=start, quantize="w8a8", epochs=1, progress=False,
                  data_options=DATA)  # fmt: skip
    first = train_or_reuse(tmp_path / "q", **kwargs)
    assert not first.reused and train_or_reuse(tmp_path / "q", **kwargs).reused
    moved = tmp_path / "moved"
    shutil.copytree(start, moved)  # the same start elsewhere: still the same run
    assert train_or_reuse(tmp_path / "q", **(kwargs | {"init_from": moved})).reused
    train("mlp", "digits", epochs=1, out=start, progress=False, data_options=DATA, seed=2)  # another start
    assert not train_or_reuse(tmp_path / "q", **kwargs).reused


def test_cli_train_init_from(fp_run, tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run(
        [sys.executable, "-m", "analogsam", "train", "--data", "digits", "--init-from", str(fp_run.path),
         "--quantize", "w4a4", "--epochs", "1", "--train-limit", "300", "--test-limit", "100", "--out", str(out),
         "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "mlp" and config["init_from"]["run"] == str(fp_run.path)
    assert config["quantization"]["weight_bits"] == 4
