"""Zipformer2 attention pieces: compact relative positional encoding, shared attention weights, the value
stage (``SelfAttention``) and non-linear attention.

Layout is time-major as in the paper's reference code. Legend: T frames, B batch, D embed dim, H heads,
P pos_dim. Attention weights are (H, B, T_query, T_key).
"""

from __future__ import annotations

import math
import random
from typing import Optional

import torch
from torch import Tensor, nn

from asrkit.models.zipformer.scaling import (
    Balancer,
    Dropout2,
    FloatLike,
    ScheduledFloat,
    Whiten,
    penalize_abs_values_gt,
    scaled_linear,
    whitening_schedule,
)


class CompactRelPositionalEncoding(nn.Module):
    """Fourier features of a compressed relative offset, for offsets ``-(T-1) .. T-1``.

    The offset is first compressed logarithmically and through ``atan`` so that large offsets (1000 vs 1001)
    become nearly indistinguishable while small ones stay sharp; then ``cos/sin`` at P/2 integer frequencies
    give a P-dim vector whose last element is a constant 1 (a bias). The embedding of an offset does not depend
    on T, so it is computed on the fly (no cache; cheap, TorchScript/ONNX friendly).

    Args:
        embed_dim: P (even).
        dropout_rate: dropout on the embeddings.
        length_factor: >= 1; larger values give less resolution to small offsets.
    """

    def __init__(self, embed_dim: int, dropout_rate: FloatLike, length_factor: float = 1.0) -> None:
        super().__init__()
        if embed_dim % 2 != 0:
            raise ValueError(f"pos_dim must be even, got {embed_dim}")
        self.embed_dim = embed_dim
        self.length_factor = length_factor
        self.dropout = Dropout2(dropout_rate)

    def forward(self, x: Tensor, left_context_len: int = 0) -> Tensor:
        """x (T, B, *) -> (1, left_context_len + 2T - 1, P), rows ordered by offset ``-(T-1+left) .. T-1``.

        Offsets are key minus query position. ``left_context_len`` cached keys precede the T queries in streaming
        (see :meth:`RelPositionMultiheadAttentionWeights.streaming_forward`), which adds more negative offsets.
        """
        t = x.size(0)
        offsets = torch.arange(-(t - 1 + left_context_len), t, device=x.device, dtype=torch.float32).unsqueeze(1)
        freqs = torch.arange(1, self.embed_dim // 2 + 1, device=x.device, dtype=torch.float32)
        compression = self.embed_dim**0.5
        compressed = compression * offsets.sign() * ((offsets.abs() + compression).log() - math.log(compression))
        length_scale = self.length_factor * self.embed_dim / (2.0 * math.pi)
        angle = (compressed / length_scale).atan() * freqs  # (N, P/2)
        pe = torch.stack([angle.cos(), angle.sin()], dim=-1).reshape(angle.size(0), self.embed_dim)
        pe = torch.cat([pe[:, :-1], torch.ones_like(pe[:, -1:])], dim=1)  # last dim is a constant bias
        return self.dropout(pe.to(x.dtype).unsqueeze(0))


def rel_to_abs_index(t: int, device: torch.device, t_key: int = -1) -> Tensor:
    """(T, T_key) index into the relative axis of :class:`CompactRelPositionalEncoding` (length T + T_key - 1):
    entry [i, j] selects offset ``j - (T_key - T) - i``, key j minus query i when the T queries are the last T
    of the T_key keys (``t_key < 0``: T_key = T)."""
    if t_key < 0:
        t_key = t
    i = torch.arange(t, device=device).unsqueeze(1)
    j = torch.arange(t_key, device=device).unsqueeze(0)
    return (t - 1) - i + j


class RelPositionMultiheadAttentionWeights(nn.Module):
    """Multi-head attention *weights* with relative positions, computed once and shared by the layer's two
    :class:`SelfAttention` modules and its :class:`NonlinAttention`.

    ``score[h, b, i, j] = q_i . k_j + p_i . linear_pos(pe(j - i))``; masked scores are set to -1000 (not -inf,
    so fully masked rows stay finite).

    Args:
        embed_dim: D.
        pos_dim: P.
        num_heads: H.
        query_head_dim: query/key dim per head.
        pos_head_dim: positional query dim per head.
        pos_emb_skip_rate: probability of dropping the positional term in a training step.
    """

    def __init__(
        self,
        embed_dim: int,
        pos_dim: int,
        num_heads: int,
        query_head_dim: int,
        pos_head_dim: int,
        pos_emb_skip_rate: FloatLike = ScheduledFloat((0.0, 0.5), (4000.0, 0.0)),
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query_head_dim = query_head_dim
        self.pos_head_dim = pos_head_dim
        self.pos_emb_skip_rate = pos_emb_skip_rate
        in_proj_dim = (2 * query_head_dim + pos_head_dim) * num_heads
        # initial_scale takes over the usual head_dim**-0.5 factor, split between query and key.
        self.in_proj = scaled_linear(embed_dim, in_proj_dim, initial_scale=query_head_dim**-0.25)
        self.whiten_keys = Whiten(num_groups=num_heads, whitening_limit=whitening_schedule(3.0), prob=(0.025, 0.25), grad_scale=0.025)
        # The weights are invariant to a constant added to the keys, so the key bias gets no true gradient;
        # with Adam-like optimizers round-off can still make it drift; this rare balancer keeps it centred.
        self.balance_keys = Balancer(
            query_head_dim * num_heads, channel_dim=-1, min_positive=0.4, max_positive=0.6, min_abs=0.0, max_abs=100.0, prob=0.025
        )
        self.linear_pos = scaled_linear(pos_dim, num_heads * pos_head_dim, bias=False, initial_scale=0.05)

    def forward(
        self,
        x: Tensor,
        pos_emb: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        attn_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """x (T, B, D), pos_emb (1, 2T-1, P), key_padding_mask (B, T) / attn_mask (T, T) True = masked
        -> weights (H, B, T, T), rows summing to 1."""
        q, k, p = self._project(x)
        return self._weights(q, k, p, pos_emb, key_padding_mask, attn_mask)

    def streaming_forward(
        self, x: Tensor, pos_emb: Tensor, cached_key: Tensor, key_padding_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One chunk with L cached keys: x (T, B, D), pos_emb (1, L+2T-1, P), cached_key (L, B, H*query_head_dim),
        key_padding_mask (B, L+T) True = masked -> (weights (H, B, T, L+T), new cached_key (L, B, H*query_head_dim))."""
        q, k, p = self._project(x)
        left = cached_key.size(0)
        k = torch.cat([cached_key, k], dim=0)
        return self._weights(q, k, p, pos_emb, key_padding_mask, None), k[k.size(0) - left :]

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (T, B, D) -> (query (H, B, T, d), key (T, B, H*d), positional query (H, B, T, pd))."""
        x = self.in_proj(x)
        t, b, _ = x.shape
        h = self.num_heads
        qd = self.query_head_dim * h
        q = x[..., :qd].reshape(t, b, h, self.query_head_dim).permute(2, 1, 0, 3)
        k = x[..., qd : 2 * qd]
        p = x[..., 2 * qd :].reshape(t, b, h, self.pos_head_dim).permute(2, 1, 0, 3)
        if not torch.jit.is_scripting() and self.training:
            k = self.whiten_keys(self.balance_keys(k))
        return q, k, p

    def _weights(
        self,
        q: Tensor,
        k: Tensor,
        p: Tensor,
        pos_emb: Tensor,
        key_padding_mask: Optional[Tensor],
        attn_mask: Optional[Tensor],
    ) -> Tensor:
        """q (H, B, T, d), k (S, B, H*d) for the S >= T keys whose last T are the queries, p (H, B, T, pd),
        pos_emb (1, T+S-1, P), masks (B, S) / (T, S) -> weights (H, B, T, S)."""
        h, b, t, _ = q.shape
        s = k.size(0)
        k = k.reshape(s, b, h, self.query_head_dim).permute(2, 1, 3, 0)  # (H, B, d, S)
        scores = torch.matmul(q, k)  # (H, B, T, S)

        pos = self.linear_pos(pos_emb)  # (1, T+S-1, H*pd)
        pos = pos.reshape(-1, t + s - 1, h, self.pos_head_dim).permute(2, 0, 3, 1)  # (H, 1, pd, T+S-1)
        pos_scores = torch.matmul(p, pos)  # (H, B, T, T+S-1)
        index = rel_to_abs_index(t, q.device, s).expand(h, b, t, s)
        pos_scores = torch.gather(pos_scores, 3, index)
        if not torch.jit.is_scripting() and self.training:
            # Early in training the positional term is dropped on some steps (scaled by 0 rather than skipped, so
            # every parameter stays in the graph and DDP needs no find_unused_parameters).
            if random.random() < float(self.pos_emb_skip_rate):
                pos_scores = pos_scores * 0.0
        scores = scores + pos_scores

        if not torch.jit.is_scripting() and self.training:
            if random.random() < 0.1:
                scores = penalize_abs_values_gt(scores, limit=25.0, penalty=1.0e-4)

        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask, -1000.0)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask.unsqueeze(1), -1000.0)
        return scores.softmax(dim=-1)


class SelfAttention(nn.Module):
    """Value stage of attention using precomputed weights: in_proj to H*value_head_dim, weighted sum, out_proj."""

    def __init__(self, embed_dim: int, num_heads: int, value_head_dim: int) -> None:
        super().__init__()
        self.in_proj = nn.Linear(embed_dim, num_heads * value_head_dim)
        self.out_proj = scaled_linear(num_heads * value_head_dim, embed_dim, initial_scale=0.05)
        self.whiten = Whiten(num_groups=1, whitening_limit=whitening_schedule(7.5, ratio=3.0), prob=(0.025, 0.25), grad_scale=0.01)

    def forward(self, x: Tensor, attn_weights: Tensor) -> Tensor:
        """x (T, B, D), attn_weights (H, B, T, T) -> (T, B, D)."""
        return self._attend(self.in_proj(x), attn_weights)

    def streaming_forward(self, x: Tensor, attn_weights: Tensor, cached_val: Tensor) -> tuple[Tensor, Tensor]:
        """x (T, B, D), attn_weights (H, B, T, L+T), cached_val (L, B, H*value_head_dim) values of the L frames
        before the chunk -> (out (T, B, D), new cached_val (L, B, H*value_head_dim))."""
        left = cached_val.size(0)
        v = torch.cat([cached_val, self.in_proj(x)], dim=0)
        return self._attend(v, attn_weights), v[v.size(0) - left :]

    def _attend(self, v: Tensor, attn_weights: Tensor) -> Tensor:
        """v (S, B, H*vd) values, attn_weights (H, B, T, S) -> (T, B, D)."""
        s, b, _ = v.shape
        h, _, t, _ = attn_weights.shape
        v = v.reshape(s, b, h, -1).permute(2, 1, 0, 3)  # (H, B, S, vd)
        out = torch.matmul(attn_weights, v).permute(2, 1, 0, 3).reshape(t, b, -1)
        return self.whiten(self.out_proj(out))


class NonlinAttention(nn.Module):
    """Non-linear attention: like a convolution module whose "convolution" is multiplication by the first
    head's attention weights. ``out = W_o((A @ (x * tanh(s))) * y)`` with s, x, y projections of the input.

    Args:
        channels: D.
        hidden_channels: width of s, x, y (icefall: 3D/4).
    """

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.in_proj = nn.Linear(channels, 3 * hidden_channels)
        # Well-trained instances have |s| >~ 3 before the tanh; a large min_abs pushes toward that regime.
        self.balancer = Balancer(
            hidden_channels,
            channel_dim=-1,
            min_positive=ScheduledFloat((0.0, 0.25), (20000.0, 0.05)),
            max_positive=ScheduledFloat((0.0, 0.75), (20000.0, 0.95)),
            min_abs=0.5,
            max_abs=5.0,
        )
        self.out_proj = scaled_linear(hidden_channels, channels, initial_scale=0.05)
        self.whiten1 = Whiten(num_groups=1, whitening_limit=whitening_schedule(5.0), prob=(0.025, 0.25), grad_scale=0.01)
        self.whiten2 = Whiten(num_groups=1, whitening_limit=whitening_schedule(5.0, ratio=3.0), prob=(0.025, 0.25), grad_scale=0.01)

    def forward(self, x: Tensor, attn_weights: Tensor) -> Tensor:
        """x (T, B, D), attn_weights (1, B, T, T) -> (T, B, D)."""
        v, y = self._gated_values(x)
        return self._attend(v, y, attn_weights)

    def streaming_forward(self, x: Tensor, attn_weights: Tensor, cached_v: Tensor) -> tuple[Tensor, Tensor]:
        """x (T, B, D), attn_weights (1, B, T, L+T), cached_v (L, B, hidden) gated values of the L frames before
        the chunk -> (out (T, B, D), new cached_v (L, B, hidden))."""
        v, y = self._gated_values(x)
        left = cached_v.size(0)
        v = torch.cat([cached_v, v], dim=0)
        return self._attend(v, y, attn_weights), v[v.size(0) - left :]

    def _gated_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (T, B, D) -> (values v * tanh(s) (T, B, hidden), output gate y (T, B, hidden))."""
        s, v, y = self.in_proj(x).chunk(3, dim=-1)
        s = torch.tanh(self.balancer(s))
        return self.whiten1(v) * s, y

    def _attend(self, v: Tensor, y: Tensor, attn_weights: Tensor) -> Tensor:
        """v (S, B, hidden), y (T, B, hidden), attn_weights (h, B, T, S) -> (T, B, D)."""
        s, b, _ = v.shape
        t = y.size(0)
        h = attn_weights.size(0)
        v = v.reshape(s, b, h, -1).permute(2, 1, 0, 3)  # (h, B, S, hidden/h)
        v = torch.matmul(attn_weights, v).permute(2, 1, 0, 3).reshape(t, b, -1)
        return self.whiten2(self.out_proj(v * y))
