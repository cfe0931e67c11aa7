"""How the sequence models of the zoo read their inputs.

An image batch (B, C, H, W) is read row by row: the H rows are the time steps and each row's C·W
pixels are that step's features (pixel (c, h, w) is feature c·W + w of step h), the usual way of
feeding an image to a recurrent net ("row-sequential MNIST") and the 1-D analogue of a keyword-spotting
spectrogram (time frames x frequency features). A batch that is already a sequence, (B, T, F), passes
unchanged.
"""

from __future__ import annotations

import torch

from analogsam.errors import InvalidParameterError


def as_sequence(x: torch.Tensor, features: int, where: str) -> torch.Tensor:
    """``x`` as a (B, T, F) batch: images (B, C, H, W) read row by row, sequences (B, T, F) as given.

    ``features`` is the F the model was built for; ``where`` names the model in the error.
    """
    if x.dim() == 4:
        b, c, h, w = x.shape
        x = x.permute(0, 2, 1, 3).reshape(b, h, c * w)
    elif x.dim() != 3:
        raise InvalidParameterError(
            f"{where} takes images (B, C, H, W) or sequences (B, T, F); got a "
            f"{x.dim()}-D input of shape {tuple(x.shape)}"
        )
    if x.shape[-1] != features:
        raise InvalidParameterError(
            f"{where} was built for {features} features per step (C x W of an image "
            f"row) but got {x.shape[-1]}; build it with the input's in_channels "
            "and input_size"
        )
    return x
