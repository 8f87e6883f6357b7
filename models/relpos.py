"""DeBERTa-v2 relative positions computed once per model, not on every forward pass.

Every DeBERTa-v2 attention layer projects the whole relative-position table (``2 × position_buckets`` rows: 512
for mDeBERTa-v3-base) through its query and key weights on every forward pass, whatever the input, then copies
the result once per sequence in the batch (``.repeat``). For mDeBERTa-v3-base that is ≈ 14.5 GFLOP per forward,
more than the tokens themselves cost at 64 tokens and batch 1. At inference the table and the weights are fixed,
so ``cache_relative_positions`` computes each layer's projections once and stores them as non-persistent buffers
(they follow ``.to(device)``; they are never written to a checkpoint). The cached attention also broadcasts the
table over the batch instead of copying it, and multiplies only the table rows the input's relative positions
can reach (``2 × length - 1`` of the 512 for a short ticket) instead of all of them.

The scores are the stock ones up to float rounding (``tests/test_relpos.py`` compares logits on random inputs of
several lengths and batch sizes). Training is untouched: in training mode, or once ``train()`` has been called
(the weights may change), the layer falls back to the stock computation.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from transformers.models.deberta_v2.modeling_deberta_v2 import (
    DebertaV2Encoder,
    DisentangledSelfAttention,
    build_relative_position,
    build_rpos,
    scaled_size_sqrt,
)


class CachedPositionAttention(DisentangledSelfAttention):
    """``DisentangledSelfAttention`` reading its position projections from buffers set by ``cache_positions``."""

    cached_pos_key: torch.Tensor | None
    cached_pos_query: torch.Tensor | None

    @torch.no_grad()
    def cache_positions(self, rel_embeddings: torch.Tensor) -> None:
        """Project the (normalised) relative-position table once: (heads, 2 × span, head_dim) per direction."""
        table = rel_embeddings[: self.pos_ebd_size * 2, :].unsqueeze(0)
        key_proj = self.key_proj if self.share_att_key else getattr(self, "pos_key_proj", None)
        query_proj = self.query_proj if self.share_att_key else getattr(self, "pos_query_proj", None)
        pos_key = self._heads(key_proj(table)) if "c2p" in self.pos_att_type and key_proj is not None else None
        pos_query = self._heads(query_proj(table)) if "p2c" in self.pos_att_type and query_proj is not None else None
        self.register_buffer("cached_pos_key", pos_key, persistent=False)
        self.register_buffer("cached_pos_query", pos_query, persistent=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(1, rows, heads × head_dim) -> (heads, rows, head_dim)."""
        return x.view(x.size(1), self.num_attention_heads, -1).permute(1, 0, 2).contiguous()

    def train(self, mode: bool = True) -> CachedPositionAttention:
        if mode:  # the weights may change from here on: the cache would go stale
            self.cached_pos_key = self.cached_pos_query = None
        return super().train(mode)

    def disentangled_attention_bias(
        self,
        query_layer: torch.Tensor,
        key_layer: torch.Tensor,
        relative_pos: torch.Tensor | None,
        rel_embeddings: torch.Tensor,
        scale_factor: int,
    ) -> torch.Tensor | int:
        cached = (self.cached_pos_key is not None) or (self.cached_pos_query is not None)
        if self.training or not cached:
            return super().disentangled_attention_bias(
                query_layer, key_layer, relative_pos, rel_embeddings, scale_factor
            )
        if relative_pos is None:
            relative_pos = build_relative_position(
                query_layer, key_layer, bucket_size=self.position_buckets, max_position=self.max_relative_positions
            )
        if relative_pos.dim() == 2:
            relative_pos = relative_pos.unsqueeze(0).unsqueeze(0)
        elif relative_pos.dim() == 3:
            relative_pos = relative_pos.unsqueeze(1)
        elif relative_pos.dim() != 4:
            raise ValueError(f"Relative position ids must be of dim 2 or 3 or 4. {relative_pos.dim()}")
        span = self.pos_ebd_size
        relative_pos = relative_pos.to(device=query_layer.device, dtype=torch.long)
        heads = self.num_attention_heads
        batch = query_layer.size(0) // heads

        score: torch.Tensor | int = 0
        if "c2p" in self.pos_att_type and self.cached_pos_key is not None:
            index = torch.clamp(relative_pos + span, 0, span * 2 - 1).squeeze(0)
            index, table = _reachable(index, self.cached_pos_key)
            # (batch, heads, q, d) @ (1, heads, d, rows): the table broadcast over the batch, not copied
            c2p = torch.matmul(query_layer.view(batch, heads, *query_layer.shape[1:]), table.transpose(-1, -2))
            c2p = torch.gather(
                c2p.view(-1, *c2p.shape[2:]),
                dim=-1,
                index=index.expand([query_layer.size(0), query_layer.size(1), relative_pos.size(-1)]),
            )
            scale = scaled_size_sqrt(self.cached_pos_key, scale_factor)
            score = score + c2p / scale.to(dtype=c2p.dtype)
        if "p2c" in self.pos_att_type and self.cached_pos_query is not None:
            r_pos = build_rpos(query_layer, key_layer, relative_pos, self.max_relative_positions, self.position_buckets)
            index = torch.clamp(-r_pos + span, 0, span * 2 - 1).squeeze(0)
            index, table = _reachable(index, self.cached_pos_query)
            p2c = torch.matmul(key_layer.view(batch, heads, *key_layer.shape[1:]), table.transpose(-1, -2))
            p2c = torch.gather(
                p2c.view(-1, *p2c.shape[2:]),
                dim=-1,
                index=index.expand([query_layer.size(0), key_layer.size(-2), key_layer.size(-2)]),
            ).transpose(-1, -2)
            scale = scaled_size_sqrt(self.cached_pos_query, scale_factor)
            score = score + p2c / scale.to(dtype=p2c.dtype)
        return score


def _reachable(index: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Only the table rows ``index`` can reach: (index shifted to the slice, table[:, lo:hi+1])."""
    lo, hi = int(index.min()), int(index.max())
    return index - lo, table[:, lo : hi + 1]


def cache_relative_positions(model: nn.Module) -> int:
    """Switch every DeBERTa-v2 attention layer of ``model`` to cached position projections; returns how many.

    Call it on an inference model whose weights, device and dtype are final (after ``.to(...)``): the cache holds
    the projections in the weights' dtype. A model with no DeBERTa-v2 encoder is left as it is (returns 0).
    """
    count = 0
    with torch.no_grad():
        for encoder in (m for m in model.modules() if isinstance(m, DebertaV2Encoder)):
            if not encoder.relative_attention:
                continue
            rel_embeddings = encoder.get_rel_embedding()
            for layer in encoder.layer:
                attention = getattr(layer.attention, "self", None)
                if not isinstance(attention, DisentangledSelfAttention):
                    continue
                attention.__class__ = CachedPositionAttention
                cast(CachedPositionAttention, attention).cache_positions(rel_embeddings)
                count += 1
    return count
