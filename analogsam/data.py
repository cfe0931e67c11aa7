"""Datasets from files on disk, never from a download at run time.

Every dataset is read from its standard on-disk format into memory as float tensors:

- ``fashion-mnist`` and ``mnist``: gzipped (or plain) IDX files, as published by Zalando / LeCun
  and as shipped by Debian's ``dataset-fashion-mnist`` package in ``/usr/share/datasets/fashion-mnist``;
- ``cifar10``: the python pickles of ``cifar-10-batches-py``;
- ``svhn``: ``train_32x32.mat`` / ``test_32x32.mat`` (cropped digits);
- ``digits``: scikit-learn's 8x8 digits, always available, for fast tests.

Where to look: an explicit ``root`` argument (``--data-root`` on the command line) is the only place
searched, so the data a run reads is the data asked for; without one, the first match among the
``ANALOGSAM_DATA`` environment variable and the standard places (``/usr/share/datasets``,
``~/.cache/analogsam``, ``./data``) wins. Inputs are normalised per channel with the training split's
mean and standard deviation; the validation split is a seeded random part of the training files.
"""

from __future__ import annotations

import difflib
import gzip
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from analogsam.errors import AnalogsamError, InvalidParameterError
from analogsam.validation import check_int, check_real

ENV_VAR = "ANALOGSAM_DATA"
STANDARD_ROOTS = (Path("/usr/share/datasets"), Path.home() / ".cache" / "analogsam", Path("data"))


class DatasetNotFoundError(AnalogsamError, FileNotFoundError):
    """A dataset's files are not in any of the places searched."""


class DatasetFormatError(AnalogsamError, ValueError):
    """A dataset file exists but is not in the format its reader expects."""


@dataclass
class ArrayDataset:
    """Inputs ``x`` (N, C, H, W) float32 and integer labels ``y`` (N,), held in memory."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int = 256, *, shuffle: bool = False, seed: int = 0,
                with_indices: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield ``(inputs, labels)`` (plus sample ``indices`` if asked) in batches.

        Shuffling uses its own generator seeded with ``seed``, so the order depends on nothing else.
        Slicing in-memory tensors is much cheaper than a ``DataLoader`` for data this size.
        """
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if with_indices:
                yield self.x[idx], self.y[idx], idx
            else:
                yield self.x[idx], self.y[idx]


@dataclass
class DatasetSplits:
    """A dataset ready for training: train / validation / test splits and what a model needs to know."""

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    source: str = ""

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    @property
    def input_size(self) -> int:
        return self.input_shape[1]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    num_classes: int
    folder_names: tuple[str, ...]
    files: tuple[str, ...]
    how_to_get: str
    reader: Callable[[Path], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] | None


# --- file-format readers ---------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (LeCun's MNIST format), gzipped or not, into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetFormatError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    body = data[4 + 4 * ndim:]
    if len(body) != expected:
        raise DatasetFormatError(f"{path}: header says shape {shape} ({expected} bytes) but holds {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as an IDX file, gzipped if ``path`` ends in ``.gz``."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _find_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.exists():
            return candidate
    raise DatasetNotFoundError(f"{folder} has no {stem}[.gz]")


def _read_idx_dataset(folder: Path):
    def images(stem):
        return read_idx(_find_file(folder, stem))[:, None, :, :]

    def labels(stem):
        return read_idx(_find_file(folder, stem)).astype(np.int64)

    return (images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte"),
            images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte"))


def _read_cifar10(folder: Path):
    def batch(name):
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        return np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(entry["labels"], dtype=np.int64)

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = batch("test_batch")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), x_test, y_test


def _read_svhn(folder: Path):
    from scipy.io import loadmat

    def split(name):
        mat = loadmat(folder / name)
        x = np.transpose(mat["X"], (3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)
        y = mat["y"].astype(np.int64).ravel()
        y[y == 10] = 0  # SVHN stores the digit 0 as label 10
        return x, y

    return (*split("train_32x32.mat"), *split("test_32x32.mat"))


def _read_digits(_folder: Path | None):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    y = digits.target.astype(np.int64)
    # A fixed 20% test split: the test set never changes with the training seed.
    order = np.random.RandomState(0).permutation(len(y))
    n_test = len(y) // 5
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


_IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "Zalando Fashion-MNIST, 60k/10k 28x28 greyscale, 10 classes (MIT)", 10,
        ("fashion-mnist", "FashionMNIST/raw", "fashion_mnist"), _IDX_FILES,
        "On Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` (installs to "
        "/usr/share/datasets/fashion-mnist); or copy the four IDX files from "
        "github.com/zalandoresearch/fashion-mnist into <root>/fashion-mnist/.",
        _read_idx_dataset),
    "mnist": DatasetInfo(
        "mnist", "LeCun MNIST handwritten digits, 60k/10k 28x28 greyscale, 10 classes", 10,
        ("mnist", "MNIST/raw"), _IDX_FILES,
        "Copy the four IDX files (train-images-idx3-ubyte.gz, ...) into <root>/mnist/.",
        _read_idx_dataset),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10, 50k/10k 32x32 colour, 10 classes", 10,
        ("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar10"),
        ("data_batch_1", "test_batch"),
        "Unpack cifar-10-python.tar.gz (www.cs.toronto.edu/~kriz/cifar.html) into <root>/ so that "
        "<root>/cifar-10-batches-py/data_batch_1 exists.",
        _read_cifar10),
    "svhn": DatasetInfo(
        "svhn", "Street View House Numbers (cropped digits), 73k/26k 32x32 colour, 10 classes", 10,
        ("svhn",), ("train_32x32.mat", "test_32x32.mat"),
        "Copy train_32x32.mat and test_32x32.mat (ufldl.stanford.edu/housenumbers) into <root>/svhn/.",
        _read_svhn),
    "digits": DatasetInfo(
        "digits", "scikit-learn 8x8 handwritten digits, 1797 images (1438 train / 359 test), 10 classes",
        10, (), (), "Ships with scikit-learn; nothing to install.", None),
}


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def search_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for dataset files, in order: ``root`` alone if given, else the environment
    variable's folder and the standard places."""
    if root is not None:
        return [Path(root)]
    roots = [Path(os.environ[ENV_VAR])] if os.environ.get(ENV_VAR) else []
    return roots + list(STANDARD_ROOTS)


def _holds(folder: Path, info: DatasetInfo) -> bool:
    return all((folder / f).exists() or (folder / f.removesuffix(".gz")).exists() for f in info.files)


def locate(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``name``'s files, or a ``DatasetNotFoundError`` saying where it looked.

    A root may be the dataset folder itself or a folder that contains it (e.g. ``<root>/mnist``)."""
    info = _info(name)
    looked = []
    for base in search_roots(root):
        for folder in (base, *(base / sub for sub in info.folder_names)):
            looked.append(folder)
            if _holds(folder, info):
                return folder
    places = ", ".join(str(p) for p in dict.fromkeys(looked))
    files = ", ".join(info.files)
    if root is not None:
        others = ", ".join([f"${ENV_VAR}", *map(str, STANDARD_ROOTS)])
        raise DatasetNotFoundError(
            f"dataset {name!r} is not in the data root {root} given (--data-root): looked for {files} in "
            f"{places}; a given root is the only place searched (without it: {others}). "
            f"How to get it: {info.how_to_get}")
    raise DatasetNotFoundError(
        f"dataset {name!r} not found: looked for {files} in {places}. How to get it: {info.how_to_get} "
        f"Then pass --data-root DIR (or set {ENV_VAR}=DIR) if it is not in a standard place.")


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidParameterError(f"unknown dataset {name!r}.{hint} Available: {', '.join(dataset_names())}")
    return DATASETS[name]


def _seeded_subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.RandomState(seed).permutation(n)[:limit])


def load_dataset(name: str, *, root: str | os.PathLike | None = None, val_fraction: float = 0.0,
                 split_seed: int = 0, train_limit: int | None = None,
                 test_limit: int | None = None) -> DatasetSplits:
    """Load dataset ``name`` into memory, normalised, with a seeded train/validation split.

    Args:
        name: one of :func:`dataset_names` (``fashion-mnist``, ``mnist``, ``cifar10``, ``svhn``, ``digits``).
        root: a folder holding the files (or a folder that contains the dataset's folder); when given,
            the only place searched (else ``$ANALOGSAM_DATA``, then the standard places).
        val_fraction: share of the training files held out for validation, in [0, 0.5].
        split_seed: seed of the validation split and of the subsets below.
        train_limit, test_limit: keep a seeded random subset of at most this many samples (quick studies).
    """
    info = _info(name)
    val_fraction = check_real("val_fraction", val_fraction, 0.0, 0.5)
    split_seed = check_int("split_seed", split_seed, low=0)
    train_limit = None if train_limit is None else check_int("train_limit", train_limit, low=1)
    test_limit = None if test_limit is None else check_int("test_limit", test_limit, low=1)
    folder = None if info.reader is None else locate(name, root)
    if info.reader is None:
        x_train, y_train, x_test, y_test = _read_digits(None)
        source = "sklearn.datasets.load_digits"
    else:
        try:
            x_train, y_train, x_test, y_test = info.reader(folder)
        except (OSError, KeyError, pickle.UnpicklingError) as err:
            raise DatasetFormatError(f"could not read dataset {name!r} from {folder}: {err}") from err
        source = str(folder)

    order = np.random.RandomState(split_seed).permutation(len(y_train))
    n_val = int(round(val_fraction * len(y_train)))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    train_idx = train_idx[_seeded_subset(len(train_idx), train_limit, split_seed)]
    test_idx = _seeded_subset(len(y_test), test_limit, split_seed)

    x_train_f = torch.from_numpy(x_train[train_idx].astype(np.float32) / 255.0)
    mean = x_train_f.mean(dim=(0, 2, 3))
    std = x_train_f.std(dim=(0, 2, 3)).clamp_min(1e-6)

    def prepare(x: np.ndarray, y: np.ndarray) -> ArrayDataset:
        xt = torch.from_numpy(x.astype(np.float32) / 255.0)
        xt = (xt - mean[None, :, None, None]) / std[None, :, None, None]
        return ArrayDataset(xt.contiguous(), torch.from_numpy(np.asarray(y, dtype=np.int64)))

    return DatasetSplits(
        name=name,
        train=prepare(x_train[train_idx], y_train[train_idx]),
        val=prepare(x_train[val_idx], y_train[val_idx]),
        test=prepare(x_test[test_idx], y_test[test_idx]),
        num_classes=info.num_classes,
        input_shape=tuple(int(s) for s in x_train.shape[1:]),
        mean=mean.tolist(), std=std.tolist(), source=source,
    )
