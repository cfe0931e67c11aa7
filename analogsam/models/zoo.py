"""Reference architectures, each built by name from a small spec that a checkpoint stores.

A spec is a plain dict, e.g. ``{"name": "lenet5", "in_channels": 1, "num_classes": 10,
"input_size": 28}``; ``build_model(spec)`` rebuilds the same architecture, so a checkpoint holds
only data (state dict + spec), never pickled code.

- ``mlp``: fully connected, ReLU (``hidden`` widths).
- ``lenet5``: LeCun et al. 1998, with ReLU and max pooling as in most modern reproductions.
- ``resnet20`` / ``resnet32``: He et al. 2016 CIFAR ResNets (3 stages of 16/32/64 channels,
  option-A zero-padding shortcuts, 0.27M / 0.46M parameters).
- ``vgg8``: a small VGG (Simonyan & Zisserman 2015 style: 3x3 convs, BatchNorm, max pooling).
- ``dscnn``, ``mobilenet-tiny``: depthwise-separable CNNs, 1-D over image rows and 2-D
  (:mod:`analogsam.models.mobile`).
- ``vit-tiny``: a patch-embedding vision transformer (:mod:`analogsam.models.transformer`).
- ``lstm``: an LSTM classifier reading an image row by row (:mod:`analogsam.models.recurrent`).
- ``char-lm``: a character-level LSTM language model, logits (B, T, V) over its vocabulary
  (:mod:`analogsam.models.language`); the only model that reads text, and its spec holds the
  ``vocabulary`` (``DatasetSplits.vocabulary`` of ``load_dataset("text", ...)``).

Linear and Conv layers become analog tiles on conversion (grouped convolutions, attention projections
and recurrent gates through :mod:`analogsam.hardware.mapping`); normalisation, pooling and embeddings
stay digital.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.models.language import CharLM
from analogsam.models.mobile import DSCNN, MobileNetTiny
from analogsam.models.recurrent import LSTMClassifier
from analogsam.models.transformer import VisionTransformer


class MLP(nn.Module):
    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28, hidden: tuple[int, ...] = (256, 128)
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * input_size * input_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class LeNet5(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28):
        super().__init__()
        # padding=2 keeps LeCun's 32x32 geometry for 28x28 inputs; small inputs (8x8 digits) still work.
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5, padding=2 if input_size < 16 else 0),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, input_size, input_size)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # Option A (He et al. 2016, CIFAR): subsample and zero-pad channels, no extra weights.
        self.pad = planes - in_planes
        self.stride = stride

    def shortcut(self, x):
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, in_channels: int = 3, num_classes: int = 10, width: int = 16):
        super().__init__()
        if (depth - 2) % 6:
            raise InvalidParameterError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks, planes = [], width
        for stage, out_planes in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(_BasicBlock(planes, out_planes, stride))
                planes = out_planes
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(planes, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class VGG8(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        input_size: int = 32,
        widths: tuple[int, ...] = (64, 128, 256),
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for w in widths:  # two 3x3 convs per stage, then pool: 6 convs + 2 linear = 8 weight layers
            for _ in range(2):
                layers += [nn.Conv2d(channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
                channels = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = input_size // 2 ** len(widths)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * side * side, 256), nn.ReLU(), nn.Linear(256, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": lambda in_channels, num_classes, input_size, **kw: MLP(in_channels, num_classes, input_size, **kw),
    "lenet5": lambda in_channels, num_classes, input_size, **kw: LeNet5(in_channels, num_classes, input_size, **kw),
    "resnet20": lambda in_channels, num_classes, input_size=32, **kw: CifarResNet(20, in_channels, num_classes, **kw),
    "resnet32": lambda in_channels, num_classes, input_size=32, **kw: CifarResNet(32, in_channels, num_classes, **kw),
    "vgg8": lambda in_channels, num_classes, input_size, **kw: VGG8(in_channels, num_classes, input_size, **kw),
    "dscnn": lambda in_channels, num_classes, input_size, **kw: DSCNN(in_channels, num_classes, input_size, **kw),
    "mobilenet-tiny": lambda in_channels, num_classes, input_size, **kw: MobileNetTiny(
        in_channels, num_classes, input_size, **kw
    ),
    "vit-tiny": lambda in_channels, num_classes, input_size, **kw: VisionTransformer(
        in_channels, num_classes, input_size, **kw
    ),
    "lstm": lambda in_channels, num_classes, input_size, **kw: LSTMClassifier(
        in_channels, num_classes, input_size, **kw
    ),
    # in_channels and input_size (1 and the sequence length for text) do not shape a char-lm
    "char-lm": lambda in_channels, num_classes, input_size, vocabulary, **kw: CharLM(vocabulary, **kw),
}

#: Models that read token ids of a text and take its ``vocabulary``; every other model reads images.
_TEXT_MODELS = frozenset({"char-lm"})


def model_names() -> list[str]:
    """The model names :func:`build_model` takes, sorted."""
    return sorted(_BUILDERS)


def make_spec(name: str, *, in_channels: int, num_classes: int, input_size: int, **options: Any) -> dict:
    """A spec dict for ``build_model``; ``options`` are the architecture's own (e.g. ``hidden`` for mlp)."""
    return {
        "name": name,
        "in_channels": int(in_channels),
        "num_classes": int(num_classes),
        "input_size": int(input_size),
        **options,
    }


def build_model(spec: dict) -> nn.Module:
    """Build the architecture that ``spec`` describes (see :func:`make_spec`)."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in _BUILDERS:
        close = difflib.get_close_matches(str(name), _BUILDERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidParameterError(f"unknown model {name!r}.{hint} Available: {', '.join(model_names())}")
    _check_input_kind(name, spec)
    if "hidden" in spec:  # a checkpoint stores tuples as lists
        spec["hidden"] = tuple(spec["hidden"])
    if "widths" in spec:
        spec["widths"] = tuple(spec["widths"])
    try:
        return _BUILDERS[name](**spec)
    except TypeError as err:
        raise InvalidParameterError(f"bad options for model {name!r}: {err}") from err


def _check_input_kind(name: str, spec: dict) -> None:
    """A text model needs the vocabulary of the text it reads (one id per class); an image model takes none."""
    vocabulary = spec.get("vocabulary")
    if name in _TEXT_MODELS and not vocabulary:
        raise InvalidParameterError(
            f"model {name!r} reads text and needs its vocabulary: train it on the text "
            "dataset (--data text --data-root FILE), or put vocabulary=... in the spec"
        )
    if name not in _TEXT_MODELS and vocabulary is not None:
        raise InvalidParameterError(
            f"model {name!r} reads images, not text: train {', '.join(sorted(_TEXT_MODELS))} on the text dataset"
        )
    if vocabulary and len(vocabulary) != spec.get("num_classes", len(vocabulary)):
        raise InvalidParameterError(
            f"model {name!r}: num_classes {spec['num_classes']} differs from the "
            f"vocabulary's {len(vocabulary)} characters; build the spec with "
            "num_classes=len(vocabulary)"
        )
