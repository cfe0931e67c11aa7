"""Attention onto tiles: ``nn.MultiheadAttention`` as four ``Linear`` projections and digital products.

An analog accelerator keeps the weight matrices of attention on crossbars and computes the
activation-activation products digitally: Q·Kᵀ and A·V multiply two activations, so there is no
stationary matrix to program (Spoon et al., "Toward software-equivalent accuracy on transformer-based
deep neural networks with analog memory devices", Frontiers in Computational Neuroscience 2021;
Büchel et al., "Gradient descent-based programming of analog in-memory computing cores", IEDM 2022;
aihwkit's own analog BERT examples convert only the Linear layers). :class:`TiledMultiheadAttention`
therefore holds

- **analog**: ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj``, one ``nn.Linear`` each (so each its
  own set of tiles), with the rows of ``in_proj_weight`` / ``in_proj_bias`` (or ``q/k/v_proj_weight``
  when ``kdim``/``vdim`` differ from ``embed_dim``) and ``out_proj``'s weight and bias;
- **digital**: the split into heads, Q·Kᵀ/√d, the masks, softmax, ·V and the merge of heads, and
  ``bias_k``/``bias_v`` (learned key/value rows appended to K and V, not a matrix-vector product;
  kept as buffers, since this module exists for inference on a converted copy).

It is a drop-in replacement for ``nn.MultiheadAttention.forward`` (same arguments, same returns,
the arithmetic of ``torch.nn.functional.multi_head_attention_forward``): ``batch_first`` both ways,
unbatched inputs, ``attn_mask`` bool or float, 2-D or 3-D, ``key_padding_mask``, ``need_weights``
and ``average_attn_weights``, ``is_causal``, ``add_bias_kv`` and ``add_zero_attn``; dropout acts on
the attention weights in training mode only, as in torch.

``nn.TransformerEncoderLayer`` and ``nn.TransformerEncoder`` read attributes of their ``self_attn``
to decide whether to run torch's fused kernels, which take ``in_proj_weight`` and would bypass the
analog projections. The module exposes ``in_proj_weight = in_proj_bias = None`` and
``_qkv_same_embed_dim = False`` (true: Q, K and V have separate matrices now), which sends the
encoder layer down its regular path (``self_attn.in_proj_bias is None``). An encoder built with
``enable_nested_tensor`` (torch's default) would still turn padded batches into nested tensors, which
``Linear`` tiles cannot take; :class:`PaddedTransformerEncoder` runs it on padded tensors instead and
reproduces what the nested path returns (zeros at padded positions before the final norm).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analogsam.errors import InvalidParameterError
from analogsam.hardware.mapping.base import Rewrite, map_to_tiles


def _additive_mask(mask: Tensor | None, name: str, dtype: torch.dtype) -> Tensor | None:
    """A bool mask (True = masked out) as 0 / -inf of ``dtype``; a float mask as it is (added to the
    attention logits), as ``torch.nn.functional._canonical_mask`` does."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask, float("-inf"))
    if not torch.is_floating_point(mask):
        raise InvalidParameterError(f"attention {name} has dtype {mask.dtype}: pass a bool or a floating-point mask")
    return mask


def _copy_of(tensor: Tensor | None) -> nn.Parameter | None:
    return None if tensor is None else nn.Parameter(tensor.detach().clone(), requires_grad=tensor.requires_grad)


def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding copies of ``weight`` (out, in) and ``bias``, on their device and dtype."""
    out_features, in_features = weight.shape
    layer = nn.Linear(in_features, out_features, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    layer.weight = _copy_of(weight)
    if bias is not None:
        layer.bias = _copy_of(bias)
    return layer


class TiledMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` with Q, K, V and output projections in four ``nn.Linear`` children and
    the attention products digital (see the module docstring). Build it with :meth:`from_torch`."""

    # Read by nn.TransformerEncoderLayer / nn.TransformerEncoder before they pick torch's fused
    # kernels: with in_proj_bias None they take the regular path, which calls this module.
    in_proj_weight = None
    in_proj_bias = None
    _qkv_same_embed_dim = False

    def __init__(
        self,
        q_proj: nn.Linear,
        k_proj: nn.Linear,
        v_proj: nn.Linear,
        out_proj: nn.Linear,
        *,
        num_heads: int,
        batch_first: bool = False,
        dropout: float = 0.0,
        bias_k: Tensor | None = None,
        bias_v: Tensor | None = None,
        add_zero_attn: bool = False,
    ):
        super().__init__()
        self.embed_dim = q_proj.out_features
        self.kdim, self.vdim = k_proj.in_features, v_proj.in_features
        self.num_heads = num_heads
        self.head_dim = self.embed_dim // num_heads
        if self.head_dim * num_heads != self.embed_dim:
            raise InvalidParameterError(
                f"attention embed_dim {self.embed_dim} is not divisible by "
                f"num_heads {num_heads}: choose num_heads dividing it"
            )
        self.batch_first = batch_first
        self.dropout = dropout
        self.add_zero_attn = add_zero_attn
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = q_proj, k_proj, v_proj, out_proj
        if (bias_k is None) != (bias_v is None):
            raise InvalidParameterError("attention bias_k and bias_v: give both or neither")
        self.register_buffer("bias_k", None if bias_k is None else bias_k.detach().clone())
        self.register_buffer("bias_v", None if bias_v is None else bias_v.detach().clone())

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> TiledMultiheadAttention:
        """The same attention, with copies of ``mha``'s weights (``in_proj_weight`` split into its
        Q, K, V rows, or ``q/k/v_proj_weight``) and its training flag."""
        e = mha.embed_dim
        if mha._qkv_same_embed_dim:
            weights = (mha.in_proj_weight[:e], mha.in_proj_weight[e : 2 * e], mha.in_proj_weight[2 * e :])
        else:
            weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
        if mha.in_proj_bias is None:
            biases = (None, None, None)
        else:
            biases = (mha.in_proj_bias[:e], mha.in_proj_bias[e : 2 * e], mha.in_proj_bias[2 * e :])
        q, k, v = (_linear(w, b) for w, b in zip(weights, biases))
        out = _linear(mha.out_proj.weight, mha.out_proj.bias)
        module = cls(
            q,
            k,
            v,
            out,
            num_heads=mha.num_heads,
            batch_first=mha.batch_first,
            dropout=mha.dropout,
            bias_k=mha.bias_k,
            bias_v=mha.bias_v,
            add_zero_attn=mha.add_zero_attn,
        )
        return module.train(mha.training)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """``nn.MultiheadAttention.forward``: ``(attn_output, attn_weights or None)``, the same shapes."""
        if query.is_nested or key.is_nested or value.is_nested:
            raise InvalidParameterError(
                "TiledMultiheadAttention got a nested tensor: pass padded tensors with a key_padding_mask"
            )
        batched = query.dim() == 3
        key_padding_mask = _additive_mask(key_padding_mask, "key_padding_mask", query.dtype)
        attn_mask = _additive_mask(attn_mask, "attn_mask", query.dtype)
        if batched and self.batch_first:
            if key is query and value is query:
                # self-attention: one (L, N, E) copy for the three projections, which would each
                # copy the transposed view again to read it as rows
                query = key = value = query.transpose(0, 1).contiguous()
            else:
                query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        elif not batched:
            query, key, value = (t.unsqueeze(1) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        tgt_len, bsz, _ = query.shape

        # torch's rule: a causal hint with no padding mask and no weights to return goes to
        # scaled_dot_product_attention as is_causal; otherwise the mask itself is used.
        if is_causal and attn_mask is None:
            raise InvalidParameterError(
                "attention is_causal=True needs the causal attn_mask too "
                "(nn.Transformer.generate_square_subsequent_mask)"
            )
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask = None
        elif key_padding_mask is not None:
            is_causal = False

        # analog: the projections, each on its own tiles
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        attn_mask = self._checked_attn_mask(attn_mask, bsz, tgt_len, k.shape[0])
        out, weights = self._attend(q, k, v, attn_mask, key_padding_mask, need_weights, average_attn_weights, is_causal)
        out = self.out_proj(out)  # analog
        if not batched:
            return out.squeeze(1), None if weights is None else weights.squeeze(0)
        return (out.transpose(0, 1) if self.batch_first else out), weights

    def _attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        need_weights: bool,
        average_attn_weights: bool,
        is_causal: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """The digital part, from the projected (L, N, E) / (S, N, E) tensors to the heads' merged
        output (L, N, E) and the attention weights: bias_k/v and zero keys appended, heads split,
        masks merged, softmax(QKᵀ/√d + mask)·V, in the order of ``multi_head_attention_forward``."""
        tgt_len, bsz, _ = q.shape
        heads, head_dim = self.num_heads, self.head_dim
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.repeat(1, bsz, 1)])
            v = torch.cat([v, self.bias_v.repeat(1, bsz, 1)])
            attn_mask, key_padding_mask = self._one_more_key(attn_mask, key_padding_mask)
        q = q.reshape(tgt_len, bsz * heads, head_dim).transpose(0, 1)
        k = k.reshape(k.shape[0], bsz * heads, head_dim).transpose(0, 1)
        v = v.reshape(v.shape[0], bsz * heads, head_dim).transpose(0, 1)
        if self.add_zero_attn:
            zeros = k.new_zeros(bsz * heads, 1, head_dim)
            k, v = torch.cat([k, zeros], dim=1), torch.cat([v, zeros], dim=1)
            attn_mask, key_padding_mask = self._one_more_key(attn_mask, key_padding_mask)
        src_len = k.shape[1]
        if key_padding_mask is not None:
            expected = (bsz, src_len)
            if tuple(key_padding_mask.shape) != expected:
                raise InvalidParameterError(
                    f"attention key_padding_mask has shape {tuple(key_padding_mask.shape)}, "
                    f"expected (batch, source length) = {expected}"
                )
            key_padding_mask = (
                key_padding_mask.view(bsz, 1, 1, src_len).expand(-1, heads, -1, -1).reshape(bsz * heads, 1, src_len)
            )
            attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask
        dropout_p = self.dropout if self.training else 0.0

        if not need_weights:
            if attn_mask is not None:
                attn_mask = (
                    attn_mask.unsqueeze(0) if attn_mask.shape[0] == 1 else attn_mask.view(bsz, heads, -1, src_len)
                )
            out = F.scaled_dot_product_attention(
                q.view(bsz, heads, tgt_len, head_dim),
                k.view(bsz, heads, src_len, head_dim),
                v.view(bsz, heads, src_len, head_dim),
                attn_mask,
                dropout_p,
                is_causal,
            )
            return out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, self.embed_dim), None
        q_scaled = q * math.sqrt(1.0 / float(head_dim))
        if attn_mask is not None:
            weights = torch.baddbmm(attn_mask, q_scaled, k.transpose(-2, -1))
        else:
            weights = torch.bmm(q_scaled, k.transpose(-2, -1))
        weights = torch.softmax(weights, dim=-1)
        if dropout_p > 0.0:
            weights = F.dropout(weights, p=dropout_p)
        out = torch.bmm(weights, v).transpose(0, 1).reshape(tgt_len, bsz, self.embed_dim)
        weights = weights.view(bsz, heads, tgt_len, src_len)
        return out, (weights.mean(dim=1) if average_attn_weights else weights)

    def _checked_attn_mask(self, mask: Tensor | None, bsz: int, tgt_len: int, src_len: int) -> Tensor | None:
        """``attn_mask`` as (1 or batch·heads, L, S), its shape checked as torch checks it."""
        if mask is None:
            return None
        if mask.dim() == 2:
            if tuple(mask.shape) != (tgt_len, src_len):
                raise InvalidParameterError(
                    f"attention attn_mask has shape {tuple(mask.shape)}, expected "
                    f"(target length, source length) = {(tgt_len, src_len)}"
                )
            return mask.unsqueeze(0)
        if mask.dim() == 3:
            expected = (bsz * self.num_heads, tgt_len, src_len)
            if tuple(mask.shape) != expected:
                raise InvalidParameterError(
                    f"attention attn_mask has shape {tuple(mask.shape)}, expected "
                    f"(batch*num_heads, target length, source length) = {expected}"
                )
            return mask
        raise InvalidParameterError(f"attention attn_mask has {mask.dim()} dimensions: pass a 2-D or 3-D mask")

    @staticmethod
    def _one_more_key(attn_mask: Tensor | None, key_padding_mask: Tensor | None):
        """The masks with one unmasked key appended (for ``bias_k`` or ``add_zero_attn``)."""
        return (
            None if attn_mask is None else F.pad(attn_mask, (0, 1)),
            None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1)),
        )


class PaddedTransformerEncoder(nn.TransformerEncoder):
    """``nn.TransformerEncoder`` that never converts its input into a nested tensor.

    With ``enable_nested_tensor`` (torch's default), an eval-mode encoder given a
    ``src_key_padding_mask`` runs on a nested tensor of the unpadded tokens and pads the result with
    zeros before its final ``norm``: the tokens' outputs are those of the padded computation with the
    same mask, the padded positions' are 0. Analog ``Linear`` tiles take no nested tensors, so this
    encoder runs the padded computation and sets the padded positions to 0 under the same conditions
    as torch's ``TransformerEncoder.forward`` would have nested the batch.
    """

    @classmethod
    def from_torch(cls, encoder: nn.TransformerEncoder) -> PaddedTransformerEncoder:
        """``encoder``'s layers and norm (shared, not copied) in this class."""
        padded = cls.__new__(cls)
        padded.__dict__.update(encoder.__dict__)
        padded._modules = dict(encoder._modules)
        padded.nests_padded_batches = encoder.use_nested_tensor
        padded.use_nested_tensor = False
        return padded

    def forward(
        self,
        src: Tensor,
        mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool | None = None,
    ) -> Tensor:
        """``nn.TransformerEncoder.forward`` on padded tensors (see the class docstring). ``is_causal``
        None is passed on as False, where torch would test ``mask`` for causality: the mask itself is
        then applied, which gives the same numbers."""
        padding = _additive_mask(src_key_padding_mask, "src_key_padding_mask", src.dtype)
        output = src
        for layer in self.layers:
            output = layer(output, src_mask=mask, src_key_padding_mask=padding, is_causal=bool(is_causal))
        if self._torch_would_nest(src, mask, padding):
            keep = padding.logical_not()  # (batch, sequence)
            if not self.layers[0].self_attn.batch_first:
                keep = keep.transpose(0, 1)
            output = output.masked_fill(~keep.unsqueeze(-1), 0.0)
        if self.norm is not None:
            output = self.norm(output)
        return output

    def _torch_would_nest(self, src: Tensor, mask: Tensor | None, padding: Tensor | None) -> bool:
        """The conditions of ``nn.TransformerEncoder.forward`` for its nested-tensor path."""
        fastpath = getattr(torch.backends, "mha", None)  # the switch exists from torch 2.1 on
        if not self.nests_padded_batches or padding is None or (fastpath and not fastpath.get_fastpath_enabled()):
            return False
        if self.layers[0].training or src.dim() != 3 or mask is not None or torch.is_autocast_enabled():
            return False
        if torch.is_grad_enabled() and (src.requires_grad or any(p.requires_grad for p in self.layers[0].parameters())):
            return False
        keep = padding.logical_not().to(torch.uint8)
        left_aligned = bool((keep.cummin(dim=1).values == keep).all())
        return left_aligned or not getattr(self, "mask_check", True)


def _map_children(module: nn.Module) -> nn.Module:
    """``module`` with its children mapped by :data:`~analogsam.hardware.mapping.REWRITES` (a rewrite's
    result is not visited again by :func:`map_to_tiles`, so the encoder maps its layers itself)."""
    for key, child in list(module._modules.items()):
        if child is not None:
            module._modules[key] = map_to_tiles(child)
    return module


MULTIHEAD_ATTENTION = Rewrite(
    name="multihead-attention",
    applies=lambda m: type(m) is nn.MultiheadAttention,
    rewrite=TiledMultiheadAttention.from_torch,
    description="Q, K, V and output projections analog (one Linear each); QKᵀ/√d, masks, softmax, ·V digital",
)

TRANSFORMER_ENCODER = Rewrite(
    name="transformer-encoder",
    applies=lambda m: type(m) is nn.TransformerEncoder and m.use_nested_tensor,
    rewrite=lambda m: _map_children(PaddedTransformerEncoder.from_torch(m)),
    description="the encoder stack on padded tensors instead of nested ones (analog tiles take no nested "
    "tensors); its layers mapped as usual",
)
