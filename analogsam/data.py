"""Datasets from files on disk, never from a download at run time.

Every dataset is read from its standard on-disk format into memory as float tensors:

- ``fashion-mnist`` and ``mnist``: gzipped (or plain) IDX files, as published by Zalando / LeCun
  and as shipped by Debian's ``dataset-fashion-mnist`` package in ``/usr/share/datasets/fashion-mnist``;
- ``cifar10``: the python pickles of ``cifar-10-batches-py``;
- ``svhn``: ``train_32x32.mat`` / ``test_32x32.mat`` (cropped digits);
- ``digits``: scikit-learn's 8x8 digits, always available, for fast tests;
- ``text``: any UTF-8 text file the user names (:func:`load_text`), cut into next-character
  prediction sequences for a character-level language model.

Where to look: an explicit ``root`` argument (``--data-root`` on the command line) is the only place
searched, so the data a run reads is the data asked for; without one, the first match among the
``ANALOGSAM_DATA`` environment variable and the standard places (``/usr/share/datasets``,
``~/.cache/analogsam``, ``./data``) wins. Inputs are normalised per channel with the training split's
mean and standard deviation; the validation split is a seeded random part of the training files.
A text is the one exception: its file is always named explicitly, and it is split by position.
"""

from __future__ import annotations

import difflib
import gzip
import os
import pickle
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
    """Inputs ``x`` and integer labels ``y``, held in memory: images (N, C, H, W) float32 with one label
    each (N,), or token ids (N, T) with one target per position (N, T) for a text."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def batches(
        self, batch_size: int = 256, *, shuffle: bool = False, seed: int = 0, with_indices: bool = False
    ) -> Iterator[tuple[torch.Tensor, ...]]:
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
            idx = order[start : start + batch_size]
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
    input_shape: tuple[int, ...]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    source: str = ""
    #: A text's characters in id order (``num_classes`` of them); empty for images.
    vocabulary: str = ""

    @property
    def in_channels(self) -> int:
        """An image's channels; 1 for a text (a sequence of token ids)."""
        return self.input_shape[0] if len(self.input_shape) == 3 else 1

    @property
    def input_size(self) -> int:
        """An image's side; a text's sequence length."""
        return self.input_shape[1] if len(self.input_shape) == 3 else self.input_shape[-1]


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

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (LeCun's MNIST format), gzipped or not, into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetFormatError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    body = data[4 + 4 * ndim :]
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

    return (
        images("train-images-idx3-ubyte"),
        labels("train-labels-idx1-ubyte"),
        images("t10k-images-idx3-ubyte"),
        labels("t10k-labels-idx1-ubyte"),
    )


def _read_cifar10(folder: Path):
    def batch(name):
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        return np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(
            entry["labels"], dtype=np.int64
        )

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


_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        "Zalando Fashion-MNIST, 60k/10k 28x28 greyscale, 10 classes (MIT)",
        10,
        ("fashion-mnist", "FashionMNIST/raw", "fashion_mnist"),
        _IDX_FILES,
        "On Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` (installs to "
        "/usr/share/datasets/fashion-mnist); or copy the four IDX files from "
        "github.com/zalandoresearch/fashion-mnist into <root>/fashion-mnist/.",
        _read_idx_dataset,
    ),
    "mnist": DatasetInfo(
        "mnist",
        "LeCun MNIST handwritten digits, 60k/10k 28x28 greyscale, 10 classes",
        10,
        ("mnist", "MNIST/raw"),
        _IDX_FILES,
        "Copy the four IDX files (train-images-idx3-ubyte.gz, ...) into <root>/mnist/.",
        _read_idx_dataset,
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        "CIFAR-10, 50k/10k 32x32 colour, 10 classes",
        10,
        ("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar10"),
        ("data_batch_1", "test_batch"),
        "Unpack cifar-10-python.tar.gz (www.cs.toronto.edu/~kriz/cifar.html) into <root>/ so that "
        "<root>/cifar-10-batches-py/data_batch_1 exists.",
        _read_cifar10,
    ),
    "svhn": DatasetInfo(
        "svhn",
        "Street View House Numbers (cropped digits), 73k/26k 32x32 colour, 10 classes",
        10,
        ("svhn",),
        ("train_32x32.mat", "test_32x32.mat"),
        "Copy train_32x32.mat and test_32x32.mat (ufldl.stanford.edu/housenumbers) into <root>/svhn/.",
        _read_svhn,
    ),
    "digits": DatasetInfo(
        "digits",
        "scikit-learn 8x8 handwritten digits, 1797 images (1438 train / 359 test), 10 classes",
        10,
        (),
        (),
        "Ships with scikit-learn; nothing to install.",
        None,
    ),
}


#: The dataset name of a text file read by :func:`load_text`, and the options only it takes.
TEXT = "text"
TEXT_OPTIONS = ("seq_len", "test_fraction", "vocabulary")


def dataset_names() -> list[str]:
    """The dataset names :func:`load_dataset` takes, sorted."""
    return sorted([*DATASETS, TEXT])


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
            f"How to get it: {info.how_to_get}"
        )
    raise DatasetNotFoundError(
        f"dataset {name!r} not found: looked for {files} in {places}. How to get it: {info.how_to_get} "
        f"Then pass --data-root DIR (or set {ENV_VAR}=DIR) if it is not in a standard place."
    )


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        close = difflib.get_close_matches(name, dataset_names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidParameterError(f"unknown dataset {name!r}.{hint} Available: {', '.join(dataset_names())}")
    return DATASETS[name]


def _seeded_subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.RandomState(seed).permutation(n)[:limit])


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
    **text_options,
) -> DatasetSplits:
    """Load dataset ``name`` into memory, normalised, with a seeded train/validation split.

    Args:
        name: one of :func:`dataset_names` (``fashion-mnist``, ``mnist``, ``cifar10``, ``svhn``, ``digits``,
            ``text``).
        root: a folder holding the files (or a folder that contains the dataset's folder); when given,
            the only place searched (else ``$ANALOGSAM_DATA``, then the standard places). For ``text``:
            the text file itself (see :func:`load_text`).
        val_fraction: share of the training files held out for validation, in [0, 0.5].
        split_seed: seed of the validation split and of the subsets below.
        train_limit, test_limit: keep a seeded random subset of at most this many samples (quick studies).
        text_options: for ``text`` only, :func:`load_text`'s ``seq_len``, ``test_fraction`` and
            ``vocabulary``.
    """
    text_options = {k: v for k, v in text_options.items() if v is not None}  # None: the default
    unknown = sorted(set(text_options) - set(TEXT_OPTIONS))
    if unknown:
        raise InvalidParameterError(
            f"load_dataset() got unknown option {unknown[0]!r}; the text dataset also takes {', '.join(TEXT_OPTIONS)}"
        )
    if name == TEXT:
        return load_text(
            root,
            val_fraction=val_fraction,
            split_seed=split_seed,
            train_limit=train_limit,
            test_limit=test_limit,
            **text_options,
        )
    if text_options:
        raise InvalidParameterError(
            f"{', '.join(sorted(text_options))}: options of the text dataset only, "
            f"not of {name!r}; drop them or use --data text"
        )
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
        mean=mean.tolist(),
        std=std.tolist(),
        source=source,
    )


# --- a text corpus for character-level language models ----------------------------------------------


def load_text(
    path: str | os.PathLike | None,
    *,
    seq_len: int = 64,
    val_fraction: float = 0.0,
    test_fraction: float = 0.1,
    vocabulary: str | None = None,
    split_seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> DatasetSplits:
    """A UTF-8 text file as next-character prediction data (``load_dataset("text", root=path)``).

    Nothing is downloaded: ``path`` is any text file (e.g. a book, or Debian's
    ``/usr/share/common-licenses/GPL-3``). The text is split by position, the last ``test_fraction``
    of its characters the test split and the ``val_fraction`` before it the validation split (a
    random split would put overlapping context on both sides). Each split is cut into consecutive,
    non-overlapping windows of ``seq_len + 1`` characters sharing their end points; a window gives
    the inputs ``x`` = its first ``seq_len`` ids and the targets ``y`` = its last ``seq_len`` (the next
    character of each input), both (N, seq_len) ``int64`` in an :class:`ArrayDataset`.

    Args:
        vocabulary: the characters, in id order. Default: every distinct character of the whole file,
            sorted by code point, so the test split has no unknown character. Pass a model's own
            vocabulary (``CharLM.vocabulary``) to encode another text for it; a character outside it
            is an error.
        train_limit, test_limit: keep a seeded random subset (``split_seed``) of at most this many
            sequences.

    Returns a :class:`DatasetSplits` named ``text`` whose ``vocabulary`` holds the characters,
    ``num_classes`` their number and ``input_shape`` ``(seq_len,)``.
    """
    if path is None:
        raise DatasetNotFoundError(
            "dataset 'text' reads the UTF-8 text file you name and never searches: pass "
            "root=FILE (--data-root FILE), e.g. /usr/share/common-licenses/GPL-3"
        )
    path = Path(path)
    seq_len = check_int("seq_len", seq_len, low=1)
    val_fraction = check_real("val_fraction", val_fraction, 0.0, 0.5)
    test_fraction = check_real("test_fraction", test_fraction, 0.0, 0.5)
    split_seed = check_int("split_seed", split_seed, low=0)
    train_limit = None if train_limit is None else check_int("train_limit", train_limit, low=1)
    test_limit = None if test_limit is None else check_int("test_limit", test_limit, low=1)
    if test_fraction == 0.0:
        raise InvalidParameterError(
            "test_fraction must be above 0 (the text's last part is the test split); use e.g. 0.1"
        )
    text = _read_text(path)
    vocabulary = "".join(sorted(set(text))) if vocabulary is None else str(vocabulary)
    ids = _encode(text, vocabulary, path)

    n = len(ids)
    test_start = n - int(round(test_fraction * n))
    val_start = test_start - int(round(val_fraction * n))
    parts = {"train": ids[:val_start], "val": ids[val_start:test_start], "test": ids[test_start:]}
    for part in ("train", "test"):
        if len(parts[part]) < seq_len + 1:
            raise DatasetFormatError(
                f"{path}: its {part} part holds {len(parts[part])} characters, fewer than seq_len + 1 = "
                f"{seq_len + 1} for one sequence; use a longer text, a smaller seq_len or another test_fraction"
            )
    train, val, test = (_windows(parts[p], seq_len) for p in ("train", "val", "test"))
    train = _subset(train, _seeded_subset(len(train), train_limit, split_seed))
    test = _subset(test, _seeded_subset(len(test), test_limit, split_seed))
    return DatasetSplits(
        name=TEXT,
        train=train,
        val=val,
        test=test,
        num_classes=len(vocabulary),
        input_shape=(seq_len,),
        source=str(path),
        vocabulary=vocabulary,
    )


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise DatasetNotFoundError(
            f"dataset 'text' reads one file, but {path} is a folder: pass the text file "
            "itself as root (--data-root FILE)"
        )
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise DatasetNotFoundError(
            f"no text file at {path}: pass an existing UTF-8 file as root (--data-root FILE)"
        ) from err
    except UnicodeDecodeError as err:
        raise DatasetFormatError(
            f"{path} is not UTF-8 text (byte {err.start} cannot be decoded); convert it, e.g. `iconv -t utf-8`"
        ) from err
    except OSError as err:
        raise DatasetFormatError(f"cannot read {path}: {err.strerror or err}; check its permissions") from err


def _encode(text: str, vocabulary: str, path: Path) -> torch.Tensor:
    if not vocabulary or len(set(vocabulary)) != len(vocabulary):
        raise InvalidParameterError("vocabulary must be a non-empty string of distinct characters")
    index = {c: i for i, c in enumerate(vocabulary)}
    missing = sorted(set(text) - index.keys())
    if missing:
        raise DatasetFormatError(
            f"{path} holds {len(missing)} characters outside the vocabulary given (e.g. "
            f"{missing[0]!r}): evaluate on the text the model was trained on, or retrain"
        )
    return torch.tensor([index[c] for c in text], dtype=torch.long)


def _windows(ids: torch.Tensor, seq_len: int) -> ArrayDataset:
    """Consecutive windows of seq_len + 1 ids, each overlapping the next by one: (inputs, next ids)."""
    count = max(0, (len(ids) - 1) // seq_len)
    windows = ids[: count * seq_len + 1].unfold(0, seq_len + 1, seq_len) if count else ids.new_zeros((0, seq_len + 1))
    return ArrayDataset(windows[:, :-1].contiguous(), windows[:, 1:].contiguous())


def _subset(data: ArrayDataset, keep: np.ndarray) -> ArrayDataset:
    if len(keep) == len(data):
        return data
    index = torch.from_numpy(keep)
    return ArrayDataset(data.x[index], data.y[index])
