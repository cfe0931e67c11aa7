"""Depthwise-separable CNNs, the shape of the MLPerf Tiny keyword-spotting and visual-wake-words nets.

A depthwise-separable convolution (Howard et al. 2017, "MobileNets", arXiv 1704.04861) factors a
k x k convolution into a depthwise one (``groups = channels``: one k x k filter per channel) and a
1 x 1 "pointwise" one that mixes the channels, each followed by BatchNorm and ReLU. Both are plain
``nn.Conv1d`` / ``nn.Conv2d`` layers; the depthwise ones are grouped convolutions, which the hardware
mapping puts on tiles group by group.

- :class:`DSCNN` (``dscnn``): the keyword-spotting DS-CNN of Zhang et al. 2017 ("Hello Edge",
  arXiv 1711.07128) as used by MLPerf Tiny (Banbury et al. 2021, arXiv 2106.07597): a strided conv
  stem, ``blocks`` depthwise-separable blocks of ``width`` channels, global average pooling and a
  Linear classifier (without MLPerf's two dropout layers, which eval mode switches off anyway).
  Here it is 1-D (``nn.Conv1d``) over time: an image is read as H time steps of C·W features
  (:mod:`analogsam.models.inputs`), as a spectrogram is read as frames of frequency features; a
  (B, T, F) sequence is taken as it is. With the defaults (width 64, 4 blocks) it has
  27,914 parameters on 28x28 greyscale images, 10 classes.
- :class:`MobileNetTiny` (``mobilenet-tiny``): MobileNet v1 (Howard et al. 2017, Table 1) scaled for
  28-32 pixel images: a 3x3 stem with stride 1 instead of 2 (as CIFAR adaptations do), the first
  ``blocks`` rows of the paper's table of depthwise-separable blocks (all 13: the full MobileNet), the
  width multiplier α (0.25, as in MLPerf Tiny's visual wake words net), average pooling and a Linear
  classifier. With the defaults (α = 0.25, 7 blocks, up to 128 channels) it has 38,474 parameters on
  28x28 greyscale images, 10 classes.
"""

from __future__ import annotations

from torch import nn

from analogsam.errors import InvalidParameterError
from analogsam.models.inputs import as_sequence

#: MobileNet v1's depthwise-separable blocks (Howard et al. 2017, Table 1): (output channels, stride).
MOBILENET_V1_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def _separable(
    conv: type, norm: type, channels: int, out_channels: int, kernel_size: int, stride: int
) -> nn.Sequential:
    """Depthwise conv + BN + ReLU, then pointwise conv + BN + ReLU (Howard et al. 2017, Fig. 3)."""
    return nn.Sequential(
        conv(channels, channels, kernel_size, stride=stride, padding=kernel_size // 2, groups=channels, bias=False),
        norm(channels),
        nn.ReLU(),
        conv(channels, out_channels, 1, bias=False),
        norm(out_channels),
        nn.ReLU(),
    )


class DSCNN(nn.Module):
    """Keyword-spotting DS-CNN (Zhang et al. 2017; MLPerf Tiny), 1-D over time.

    Args:
        in_channels, input_size: the images it reads (C x H x W with H = W = input_size): H time steps
            of C·W features. Ignored when ``features`` is given.
        features: read (B, T, features) sequences instead (any 1-D input with ``features`` channels).
        width: channels of the stem and of every block (64 in MLPerf Tiny's DS-CNN).
        blocks: depthwise-separable blocks (4 in MLPerf Tiny's).
        stem_kernel: time steps the strided stem convolution spans (MLPerf's stem is 10 frames x 4
            features with stride 2; here it spans every feature and ``stem_kernel`` steps, stride 2).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        *,
        features: int | None = None,
        width: int = 64,
        blocks: int = 4,
        stem_kernel: int = 5,
    ):
        super().__init__()
        self.features = int(features) if features is not None else in_channels * input_size
        self.stem = nn.Sequential(
            nn.Conv1d(self.features, width, stem_kernel, stride=2, padding=stem_kernel // 2, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*(_separable(nn.Conv1d, nn.BatchNorm1d, width, width, 3, 1) for _ in range(blocks)))
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        x = as_sequence(x, self.features, "dscnn").transpose(1, 2)  # (B, F, T): features are the channels
        return self.classifier(self.pool(self.blocks(self.stem(x))).flatten(1))


class MobileNetTiny(nn.Module):
    """MobileNet v1 (Howard et al. 2017) for small images: stem stride 1, the first ``blocks`` blocks, α.

    Args:
        width_multiplier: α, scaling every layer's channels (at least 8 channels each).
        blocks: how many rows of :data:`MOBILENET_V1_BLOCKS` to use, 1 to 13.
        stem_stride: the stem's stride (2 in the paper for 224x224 inputs; 1 keeps 28-32 pixel images
            from shrinking to 1x1 before the last blocks).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        input_size: int = 32,
        *,
        width_multiplier: float = 0.25,
        blocks: int = 7,
        stem_stride: int = 1,
    ):
        super().__init__()
        if not 1 <= blocks <= len(MOBILENET_V1_BLOCKS):
            raise InvalidParameterError(
                f"mobilenet-tiny: blocks must be 1 to {len(MOBILENET_V1_BLOCKS)} "
                f"(rows of MobileNet v1's table), got {blocks}"
            )

        def scaled(channels: int) -> int:
            return max(8, int(round(channels * width_multiplier)))

        channels = scaled(32)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )
        layers = []
        for out_channels, stride in MOBILENET_V1_BLOCKS[:blocks]:
            layers.append(_separable(nn.Conv2d, nn.BatchNorm2d, channels, scaled(out_channels), 3, stride))
            channels = scaled(out_channels)
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.blocks(self.stem(x))).flatten(1))
