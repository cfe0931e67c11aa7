"""Dataset readers on small files written in the real formats."""

import pickle

import numpy as np
import pytest
import torch

from analogsam import data
from analogsam.data import DatasetFormatError, DatasetNotFoundError, load_dataset, read_idx, write_idx


def _write_idx_dataset(folder, n_train=30, n_test=12, size=28, gz=True):
    rng = np.random.RandomState(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.randint(0, 256, (n_train, size, size)),
        "train-labels-idx1-ubyte": rng.randint(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.randint(0, 256, (n_test, size, size)),
        "t10k-labels-idx1-ubyte": rng.randint(0, 10, n_test),
    }
    for stem, array in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), array)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, array)
    np.testing.assert_array_equal(read_idx(path), array)


def test_idx_rejects_other_files(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x89PNG....")
    with pytest.raises(DatasetFormatError, match="not an IDX file"):
        read_idx(path)
    truncated = tmp_path / "short"
    write_idx(truncated, np.zeros((4, 4), dtype=np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-3])
    with pytest.raises(DatasetFormatError, match="header says"):
        read_idx(truncated)


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_idx_dataset_from_root(tmp_path, name):
    arrays = _write_idx_dataset(tmp_path / name)
    splits = load_dataset(name, root=tmp_path)
    assert splits.train.x.shape == (30, 1, 28, 28) and splits.test.x.shape == (12, 1, 28, 28)
    np.testing.assert_array_equal(splits.test.y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    # normalised with the training split's statistics
    assert abs(splits.train.x.mean().item()) < 1e-5 and abs(splits.train.x.std().item() - 1) < 0.02
    raw = torch.from_numpy(arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255)
    expected = (raw - splits.mean[0]) / splits.std[0]
    torch.testing.assert_close(splits.test.x[:, 0], expected)


def test_env_var_root_and_uncompressed(tmp_path, monkeypatch):
    _write_idx_dataset(tmp_path / "mnist", gz=False)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    assert len(load_dataset("mnist").train) == 30


def test_cifar10_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.RandomState(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.randint(0, 256, (4, 3072)).astype(np.uint8), "labels": list(rng.randint(0, 10, 4))}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    splits = load_dataset("cifar10", root=tmp_path)
    assert splits.train.x.shape == (20, 3, 32, 32) and splits.input_shape == (3, 32, 32)
    assert len(splits.mean) == 3


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    folder = tmp_path / "svhn"
    folder.mkdir()
    rng = np.random.RandomState(2)
    for name, n in (("train_32x32.mat", 6), ("test_32x32.mat", 3)):
        savemat(
            folder / name,
            {
                "X": rng.randint(0, 256, (32, 32, 3, n)).astype(np.uint8),
                "y": np.array([[10], [1], [2], [3], [4], [5]][:n], dtype=np.uint8),
            },
        )
    splits = load_dataset("svhn", root=tmp_path)
    assert splits.train.x.shape == (6, 3, 32, 32)
    assert splits.train.y[0].item() == 0  # SVHN's label 10 is the digit 0


def test_missing_dataset_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "STANDARD_ROOTS", (tmp_path / "nowhere",))
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", root=tmp_path / "mine")
    message = str(err.value)
    assert str(tmp_path / "mine") in message and "nowhere" in message
    assert "--data-root" in message and "How to get it" in message


def test_unknown_dataset_suggests():
    with pytest.raises(ValueError, match="Did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")


def test_digits_split_is_seeded(digits):
    again = load_dataset("digits", val_fraction=0.2, split_seed=3)
    same = load_dataset("digits", val_fraction=0.2, split_seed=3)
    other = load_dataset("digits", val_fraction=0.2, split_seed=4)
    assert len(again.val) == round(0.2 * len(digits.train))
    assert torch.equal(again.val.y, same.val.y) and not torch.equal(again.val.x, other.val.x)
    assert torch.equal(again.test.y, other.test.y)  # the test split never moves


def test_batches_with_indices_cover_everything_once(digits):
    seen = torch.cat([idx for _, _, idx in digits.train.batches(100, shuffle=True, seed=1, with_indices=True)])
    assert sorted(seen.tolist()) == list(range(len(digits.train)))
    x, y, idx = next(digits.train.batches(5, shuffle=True, seed=1, with_indices=True))
    assert torch.equal(x, digits.train.x[idx]) and torch.equal(y, digits.train.y[idx])


def test_explicit_root_does_not_fall_back(tmp_path, monkeypatch):
    _write_idx_dataset(tmp_path / "standard" / "mnist")
    monkeypatch.setattr(data, "STANDARD_ROOTS", (tmp_path / "standard",))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    assert len(load_dataset("mnist").train) == 30  # the standard places serve a call without a root
    assert data.search_roots(tmp_path / "mine") == [tmp_path / "mine"]
    with pytest.raises(DatasetNotFoundError, match="the only place searched"):
        load_dataset("mnist", root=tmp_path / "mine")


@pytest.mark.parametrize(
    "options",
    [{"val_fraction": 0.6}, {"val_fraction": "0.1"}, {"train_limit": 0}, {"test_limit": 2.5}, {"split_seed": -1}],
)
def test_load_dataset_refuses_bad_options(options):
    from analogsam.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=next(iter(options))):
        load_dataset("digits", **options)
