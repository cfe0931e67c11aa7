"""The text dataset (any UTF-8 file, split by position into next-character sequences) and char-lm on it."""

from pathlib import Path

import pytest
import torch

from analogsam.data import DatasetFormatError, DatasetNotFoundError, load_dataset, load_text
from analogsam.errors import InvalidParameterError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GPL3 = Path("/usr/share/common-licenses/GPL-3")  # ships with every Debian system

VERSE = "the quick brown fox jumps over the lazy dog.\n"


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "verse.txt"
    path.write_text(VERSE * 40, encoding="utf-8")  # 1800 characters
    return path


def test_windows_are_next_character_pairs_split_by_position(tmp_path):
    path = tmp_path / "abc.txt"
    text = "".join(chr(ord("a") + i % 26) for i in range(101))  # abc...z repeated, 101 characters
    path.write_text(text)
    data = load_dataset("text", root=path, seq_len=10, test_fraction=0.2, val_fraction=0.1)
    assert data.name == "text" and data.vocabulary == "abcdefghijklmnopqrstuvwxyz" and data.num_classes == 26
    assert data.input_shape == (10,) and data.in_channels == 1 and data.input_size == 10
    # 101 characters: train the first 71, validation the next 10, test the last 20
    assert (len(data.train), len(data.val), len(data.test)) == (7, 0, 1)
    ids = torch.tensor([ord(c) - ord("a") for c in text])
    assert torch.equal(data.train.x[0], ids[:10]) and torch.equal(data.train.y[0], ids[1:11])
    assert torch.equal(data.train.x[6], ids[60:70]) and torch.equal(data.train.y[6], ids[61:71])
    assert torch.equal(data.test.x[0], ids[81:91]) and torch.equal(data.test.y[0], ids[82:92])
    assert data.train.x.dtype == data.train.y.dtype == torch.int64
    x, y = next(data.train.batches(4))
    assert x.shape == y.shape == (4, 10)
    # load_text is the same reader
    same = load_text(path, seq_len=10, test_fraction=0.2, val_fraction=0.1)
    assert torch.equal(same.train.x, data.train.x) and torch.equal(same.test.y, data.test.y)


def test_a_given_vocabulary_encodes_another_text_with_the_same_ids(tmp_path, text_file):
    data = load_text(text_file, seq_len=16)
    other = tmp_path / "other.txt"
    other.write_text("a lazy fox. " * 20)
    again = load_text(other, seq_len=16, vocabulary=data.vocabulary)
    assert again.vocabulary == data.vocabulary and again.num_classes == data.num_classes
    assert again.train.x[0, 0].item() == data.vocabulary.index("a")
    other.write_text("a lazy fox! " * 20)
    with pytest.raises(DatasetFormatError, match="outside the vocabulary given .*'!'"):
        load_text(other, seq_len=16, vocabulary=data.vocabulary)


def test_limits_keep_seeded_subsets_of_sequences(text_file):
    full = load_text(text_file, seq_len=16)
    small = load_text(text_file, seq_len=16, train_limit=5, test_limit=2, split_seed=3)
    assert len(small.train) == 5 and len(small.test) == 2
    rows = {tuple(r) for r in full.train.x.tolist()}
    assert all(tuple(r) in rows for r in small.train.x.tolist())
    assert torch.equal(small.train.x, load_text(text_file, seq_len=16, train_limit=5, split_seed=3).train.x)


def test_text_errors_name_the_file_and_what_to_do(tmp_path, text_file):
    with pytest.raises(DatasetNotFoundError, match="--data-root FILE"):
        load_dataset("text")
    with pytest.raises(DatasetNotFoundError, match="is a folder"):
        load_dataset("text", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="no text file at"):
        load_dataset("text", root=tmp_path / "missing.txt")
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    with pytest.raises(DatasetFormatError, match="is not UTF-8 text .*iconv"):
        load_dataset("text", root=binary)
    with pytest.raises(DatasetFormatError, match="fewer than seq_len \\+ 1"):
        load_dataset("text", root=text_file, seq_len=500)
    for options, name in (
        ({"seq_len": 0}, "seq_len"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 0.7}, "test_fraction"),
        ({"val_fraction": 0.6}, "val_fraction"),
    ):
        with pytest.raises(InvalidParameterError, match=name):
            load_dataset("text", root=text_file, **options)
    with pytest.raises(InvalidParameterError, match="options of the text dataset only"):
        load_dataset("digits", seq_len=32)
    with pytest.raises(InvalidParameterError, match="unknown option 'seq_length'"):
        load_dataset("text", root=text_file, seq_length=32)


def test_text_is_a_dataset_name():
    from analogsam.data import dataset_names

    assert "text" in dataset_names()
    with pytest.raises(InvalidParameterError, match="Did you mean 'text'"):
        load_dataset("txt")


@pytest.mark.skipif(not GPL3.exists(), reason="no Debian common-licenses here")
def test_a_debian_text_is_a_bigger_corpus():
    data = load_dataset("text", root=GPL3, seq_len=64)
    n = len(GPL3.read_text())
    assert len(data.test) == (round(0.1 * n) - 1) // 64 and len(data.train) == (n - round(0.1 * n) - 1) // 64
    assert data.vocabulary == "".join(sorted(set(GPL3.read_text()))) and "\n" in data.vocabulary


@pytest.mark.slow  # trains on a text
def test_char_lm_trains_on_a_text_and_its_checkpoint_decodes(tmp_path, text_file):
    from analogsam.runs import load_run, run_test_data
    from analogsam.training import train

    data = load_text(text_file, seq_len=32)
    run = train(
        "char-lm",
        data,
        optimizer="adamw",
        epochs=4,
        batch_size=8,
        lr=1e-2,
        weight_decay=0.0,
        seed=0,
        progress=False,
        out=tmp_path / "lm",
        data_options={"root": text_file, "seq_len": 32},
    )
    losses = [m["train_loss"] for m in run.metrics]
    assert losses[-1] < 0.6 * losses[0], losses  # per-token cross-entropy
    assert run.metrics[-1]["test_accuracy"] > 0.5  # next-character accuracy on the text's last part
    assert run.model_spec["vocabulary"] == data.vocabulary and run.model_spec["num_classes"] == data.num_classes

    loaded = load_run(tmp_path / "lm")
    assert loaded.model.vocabulary == data.vocabulary
    assert loaded.config["data_options"] == {"seq_len": 32}  # the file's path is no part of the run's identity
    test = run_test_data(loaded, root=text_file)
    assert torch.equal(test.x, data.test.x)
    logits = loaded.model(test.x)
    assert logits.shape == (len(test), 32, data.num_classes)
    # it learnt the verse: greedy decoding after "the quick " continues it
    assert loaded.model.generate("the quick ", 9, temperature=0) == "the quick brown fox"


def test_every_token_is_a_sample_of_the_optimizers(text_file):
    # SAF keeps each sample's logits from an earlier epoch: here one row per token
    from analogsam.training import train

    data = load_text(text_file, seq_len=32)
    run = train(
        "char-lm",
        data,
        optimizer="saf",
        epochs=2,
        batch_size=16,
        lr=0.5,
        seed=0,
        progress=False,
        saf_history=1,
        saf_start=1,
    )
    assert all(torch.isfinite(torch.tensor(m["train_loss"])) for m in run.metrics)
    assert run.metrics[-1]["train_loss"] < run.metrics[0]["train_loss"]


@pytest.mark.slow  # trains on a text
def test_char_lm_from_the_command_line(tmp_path, text_file, capsys):
    from analogsam.cli import main
    from analogsam.runs import load_run

    out = tmp_path / "cli-lm"
    assert (
        main(
            [
                "train",
                "--model",
                "char-lm",
                "--data",
                "text",
                "--data-root",
                str(text_file),
                "--seq-len",
                "24",
                "--optimizer",
                "adamw",
                "--lr",
                "0.01",
                "--epochs",
                "2",
                "--batch-size",
                "8",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "wrote run folder" in capsys.readouterr().out
    run = load_run(out)
    assert run.config["dataset"] == "text" and run.config["data_options"]["seq_len"] == 24
    assert run.metrics[-1]["train_loss"] < run.metrics[0]["train_loss"]
    assert (
        main(
            [
                "train",
                "--model",
                "lenet5",
                "--data",
                "text",
                "--data-root",
                str(text_file),
                "--out",
                str(tmp_path / "bad"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "reads images, not text" in capsys.readouterr().err
