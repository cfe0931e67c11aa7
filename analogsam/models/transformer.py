"""``vit-tiny``: a patch-embedding vision transformer (Dosovitskiy et al., ICLR 2021, arXiv 2010.11929).

The image is cut into ``patch_size`` x ``patch_size`` patches, each embedded linearly (a ``Conv2d``
with kernel and stride ``patch_size``, the same map as a Linear layer over flattened patches); a
learned class token is prepended and a learned position embedding added (both ``nn.Embedding``
tables, digital lookups); ``depth`` pre-norm encoder
blocks (``nn.TransformerEncoderLayer`` with ``norm_first=True``, ``batch_first=True``: multi-head
self-attention and a GELU MLP, each inside a residual, as in the paper's Eq. 2-3) follow; the class
token's final LayerNorm-ed state goes to a Linear head (Eq. 4). Dropout is 0: these nets are small
and short-trained, and the analog evaluation runs in eval mode anyway.

"Tiny" here is far below DeiT's ViT-Tiny (dim 192, 12 blocks): dim 64, 4 heads, MLP 128, 2 blocks,
4x4 patches for 28-32 pixel images (2x2 below 16 pixels): 72,074 parameters on 28x28 greyscale
images, 10 classes. The Q, K, V and output projections and the MLP are the crossbar weights; the
attention products (QKᵀ, softmax, ·V), LayerNorm and the embeddings are digital.
"""

from __future__ import annotations

import torch
from torch import nn

from analogsam.errors import InvalidParameterError


class VisionTransformer(nn.Module):
    """ViT (Dosovitskiy et al. 2021) for small images.

    Args:
        patch_size: side of the square patches (default 4, or 2 for images under 16 pixels); must
            divide ``input_size``.
        dim, depth, heads, mlp_dim: token width, encoder blocks, attention heads, hidden units of each
            block's MLP.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        *,
        patch_size: int | None = None,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_dim: int = 128,
    ):
        super().__init__()
        patch_size = patch_size or (4 if input_size >= 16 else 2)
        if input_size % patch_size:
            raise InvalidParameterError(
                f"vit-tiny: patch_size {patch_size} does not divide the image side "
                f"{input_size}; pick a divisor (e.g. 4 for 28 or 32, 2 for 8)"
            )
        if dim % heads:
            raise InvalidParameterError(f"vit-tiny: dim {dim} is not a multiple of heads {heads}")
        tokens = (input_size // patch_size) ** 2
        self.patch_embedding = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        # The class token and the position embedding are learned vectors that are looked up, not
        # multiplied: nn.Embedding layers (as BERT's and GPT-2's position embeddings are), so the
        # conversion sees them as digital lookups, not as stray parameters of this module.
        self.class_token = nn.Embedding(1, dim)
        self.position_embedding = nn.Embedding(tokens + 1, dim)  # position 0 is the class token's
        for table in (self.class_token, self.position_embedding):
            nn.init.normal_(table.weight, std=0.02)
        self.register_buffer("positions", torch.arange(tokens + 1), persistent=False)
        block = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=mlp_dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        # nested tensors only speed up padded batches, which images never are
        self.encoder = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        tokens = self.patch_embedding(x).flatten(2).transpose(1, 2)  # (B, patches, dim)
        first = self.class_token(self.positions[:1]).expand(len(tokens), -1, -1)
        tokens = torch.cat([first, tokens], dim=1) + self.position_embedding(self.positions)
        encoded = self.encoder(tokens)
        return self.head(self.norm(encoded[:, 0]))
