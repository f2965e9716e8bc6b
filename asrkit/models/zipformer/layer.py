"""Zipformer2 encoder layer and the stacks built from it (plain and down/up-sampled).

Layout is time-major. Legend: T frames (at the stack's input rate), B batch, D embed dim, H heads.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from asrkit.models.zipformer.attention import (
    CompactRelPositionalEncoding,
    NonlinAttention,
    RelPositionMultiheadAttentionWeights,
    SelfAttention,
)
from asrkit.models.zipformer.modules import BypassModule, ConvolutionModule, FeedforwardModule
from asrkit.models.zipformer.scaling import (
    Balancer,
    BiasNorm,
    FloatLike,
    ScheduledFloat,
    Whiten,
    whitening_schedule,
)


def _times(x: Tensor, keep: Optional[Tensor]) -> Tensor:
    """``x * keep`` where keep is an optional per-sequence (B, 1) 0/1 mask."""
    if keep is None:
        return x
    return x * keep


class Zipformer2EncoderLayer(nn.Module):
    """One Zipformer2 block (paper fig. 3):

    FF1 -> non-linear attention -> self-attention 1 -> conv 1 -> FF2 -> mid bypass -> self-attention 2 ->
    conv 2 -> FF3 -> BiasNorm -> bypass, with residual connections around every module. The attention
    weights are computed once and shared by both self-attention modules and the non-linear attention.

    In training, attention/conv/FF2/FF3 outputs are dropped for whole sequences with scheduled probabilities
    (high early, ~0 later): this stops any one module from dominating while the others are still useless.

    Args:
        embed_dim: D.
        pos_dim: positional-encoding dim P.
        num_heads: H.
        query_head_dim / pos_head_dim / value_head_dim: per-head dims.
        feedforward_dim: hidden dim of FF2 (FF1 uses 3/4 of it, FF3 5/4).
        dropout: dropout rate inside feed-forward modules (may be scheduled).
        cnn_module_kernel: odd kernel size of both convolution modules.
        causal: chunk-causal convolutions.
    """

    def __init__(
        self,
        embed_dim: int,
        pos_dim: int,
        num_heads: int,
        query_head_dim: int,
        pos_head_dim: int,
        value_head_dim: int,
        feedforward_dim: int,
        dropout: FloatLike = 0.1,
        cnn_module_kernel: int = 31,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.cnn_module_kernel = cnn_module_kernel
        self.bypass = BypassModule(embed_dim, skip_rate=ScheduledFloat((0.0, 0.5), (4000.0, 0.02), default=0.0))
        self.bypass_mid = BypassModule(embed_dim)
        self.attention_skip_rate = ScheduledFloat((0.0, 0.2), (4000.0, 0.05), (16000.0, 0.0), default=0.0)
        self.conv_skip_rate = ScheduledFloat((0.0, 0.2), (4000.0, 0.05), (16000.0, 0.0), default=0.0)
        self.ff2_skip_rate = ScheduledFloat((0.0, 0.1), (4000.0, 0.01), (50000.0, 0.0))
        self.ff3_skip_rate = ScheduledFloat((0.0, 0.1), (4000.0, 0.01), (50000.0, 0.0))

        self.self_attn_weights = RelPositionMultiheadAttentionWeights(
            embed_dim, pos_dim=pos_dim, num_heads=num_heads, query_head_dim=query_head_dim, pos_head_dim=pos_head_dim
        )
        self.self_attn1 = SelfAttention(embed_dim, num_heads, value_head_dim)
        self.self_attn2 = SelfAttention(embed_dim, num_heads, value_head_dim)
        self.feed_forward1 = FeedforwardModule(embed_dim, (feedforward_dim * 3) // 4, dropout)
        self.feed_forward2 = FeedforwardModule(embed_dim, feedforward_dim, dropout)
        self.feed_forward3 = FeedforwardModule(embed_dim, (feedforward_dim * 5) // 4, dropout)
        self.nonlin_attention = NonlinAttention(embed_dim, hidden_channels=3 * embed_dim // 4)
        self.conv_module1 = ConvolutionModule(embed_dim, cnn_module_kernel, causal=causal)
        self.conv_module2 = ConvolutionModule(embed_dim, cnn_module_kernel, causal=causal)
        self.norm = BiasNorm(embed_dim)

        self.balancer1 = Balancer(embed_dim, channel_dim=-1, min_positive=0.45, max_positive=0.55, min_abs=0.2, max_abs=4.0)
        self.balancer_na = Balancer(
            embed_dim, channel_dim=-1, min_positive=0.3, max_positive=0.7,
            min_abs=ScheduledFloat((0.0, 0.004), (4000.0, 0.02)), prob=0.05,
        )
        # Keep FF2/FF3 outputs from staying tiny (a rare failure); low probability: it may act slowly.
        self.balancer_ff2 = Balancer(
            embed_dim, channel_dim=-1, min_positive=0.3, max_positive=0.7,
            min_abs=ScheduledFloat((0.0, 0.0), (4000.0, 0.1), default=0.0), max_abs=2.0, prob=0.05,
        )
        self.balancer_ff3 = Balancer(
            embed_dim, channel_dim=-1, min_positive=0.3, max_positive=0.7,
            min_abs=ScheduledFloat((0.0, 0.0), (4000.0, 0.2), default=0.0), max_abs=4.0, prob=0.05,
        )
        self.whiten = Whiten(num_groups=1, whitening_limit=whitening_schedule(4.0, ratio=3.0), prob=(0.025, 0.25), grad_scale=0.01)
        self.balancer2 = Balancer(embed_dim, channel_dim=-1, min_positive=0.45, max_positive=0.55, min_abs=0.1, max_abs=4.0)

    def forward(
        self,
        src: Tensor,
        pos_emb: Tensor,
        chunk_size: int = -1,
        attn_mask: Optional[Tensor] = None,
        src_key_padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """src (T, B, D), pos_emb (1, 2T-1, P), attn_mask (T, T), src_key_padding_mask (B, T) -> (T, B, D)."""
        src_orig = src
        attn_weights = self.self_attn_weights(src, pos_emb, src_key_padding_mask, attn_mask)
        src = src + self.feed_forward1(src)

        attn_keep: Optional[Tensor] = None
        conv_keep: Optional[Tensor] = None
        ff2_keep: Optional[Tensor] = None
        ff3_keep: Optional[Tensor] = None
        if not torch.jit.is_scripting() and self.training:
            attn_keep = _sequence_keep(src, float(self.attention_skip_rate))
            conv_keep = _sequence_keep(src, float(self.conv_skip_rate))
            ff2_keep = _sequence_keep(src, float(self.ff2_skip_rate))
            ff3_keep = _sequence_keep(src, float(self.ff3_skip_rate))

        na = self.balancer_na(self.nonlin_attention(src, attn_weights[0:1]))
        src = src + _times(na, attn_keep)
        src = src + _times(self.self_attn1(src, attn_weights), attn_keep)
        src = src + _times(self.conv_module1(src, src_key_padding_mask, chunk_size), conv_keep)
        src = src + _times(self.balancer_ff2(self.feed_forward2(src)), ff2_keep)

        src = self.bypass_mid(src_orig, src)

        src = src + _times(self.self_attn2(src, attn_weights), attn_keep)
        src = src + _times(self.conv_module2(src, src_key_padding_mask, chunk_size), conv_keep)
        src = src + _times(self.balancer_ff3(self.feed_forward3(src)), ff3_keep)

        src = self.norm(self.balancer1(src))
        src = self.bypass(src_orig, src)
        return self.whiten(self.balancer2(src))


    def streaming_forward(
        self,
        src: Tensor,
        pos_emb: Tensor,
        cached_key: Tensor,
        cached_nonlin_attn: Tensor,
        cached_val1: Tensor,
        cached_val2: Tensor,
        cached_conv1: Tensor,
        cached_conv2: Tensor,
        key_padding_mask: Tensor,
        src_key_padding_mask: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One chunk of T frames after L cached ones (evaluation only; states as in :meth:`get_init_states`).

        Args:
            src: (T, B, D) the chunk.
            pos_emb: (1, L+2T-1, P) from ``CompactRelPositionalEncoding(src, L)``.
            cached_*: this layer's states.
            key_padding_mask: (B, L+T) True at cached frames that do not exist yet and at padding.
            src_key_padding_mask: (B, T) True at padding frames of the chunk.

        Returns:
            (out (T, B, D), the six new states).
        """
        src_orig = src
        attn_weights, cached_key = self.self_attn_weights.streaming_forward(src, pos_emb, cached_key, key_padding_mask)
        src = src + self.feed_forward1(src)

        na, na_cache = self.nonlin_attention.streaming_forward(
            src, attn_weights[0:1], cached_nonlin_attn[0].transpose(0, 1)
        )
        src = src + self.balancer_na(na)
        attn1, cached_val1 = self.self_attn1.streaming_forward(src, attn_weights, cached_val1)
        src = src + attn1
        conv1, cached_conv1 = self.conv_module1.streaming_forward(src, cached_conv1, src_key_padding_mask)
        src = src + conv1
        src = src + self.balancer_ff2(self.feed_forward2(src))

        src = self.bypass_mid(src_orig, src)

        attn2, cached_val2 = self.self_attn2.streaming_forward(src, attn_weights, cached_val2)
        src = src + attn2
        conv2, cached_conv2 = self.conv_module2.streaming_forward(src, cached_conv2, src_key_padding_mask)
        src = src + conv2
        src = src + self.balancer_ff3(self.feed_forward3(src))

        src = self.norm(self.balancer1(src))
        src = self.bypass(src_orig, src)
        src = self.whiten(self.balancer2(src))
        return src, cached_key, na_cache.transpose(0, 1).unsqueeze(0), cached_val1, cached_val2, cached_conv1, cached_conv2

    def get_init_states(self, left_context_len: int, batch_size: int, device: torch.device) -> list[Tensor]:
        """Zero states of a fresh stream with L = ``left_context_len`` cached frames, in this order:

        - ``cached_key`` (L, B, H * query_head_dim): attention keys;
        - ``cached_nonlin_attn`` (1, B, L, hidden): gated values of the non-linear attention;
        - ``cached_val1``, ``cached_val2`` (L, B, H * value_head_dim): values of the two self-attentions;
        - ``cached_conv1``, ``cached_conv2`` (B, D, K//2): gated inputs of the two convolution modules.
        """
        attn = self.self_attn_weights
        key_dim = attn.num_heads * attn.query_head_dim
        value_dim = self.self_attn1.in_proj.out_features
        hidden = self.nonlin_attention.hidden_channels
        conv = self.conv_module1.in_proj.out_features // 2
        kernel = self.cnn_module_kernel
        return [
            torch.zeros(left_context_len, batch_size, key_dim, device=device),
            torch.zeros(1, batch_size, left_context_len, hidden, device=device),
            torch.zeros(left_context_len, batch_size, value_dim, device=device),
            torch.zeros(left_context_len, batch_size, value_dim, device=device),
            torch.zeros(batch_size, conv, kernel // 2, device=device),
            torch.zeros(batch_size, conv, kernel // 2, device=device),
        ]


def _sequence_keep(x: Tensor, rate: float) -> Optional[Tensor]:
    """(B, 1) 0/1 mask dropping whole sequences of x (T, B, D) with probability ``rate`` (None if rate is 0)."""
    if rate == 0.0:
        return None
    return (torch.rand(x.size(1), 1, device=x.device) > rate).to(x.dtype)


class ZipformerStack(nn.Module):
    """``num_layers`` :class:`Zipformer2EncoderLayer` at one frame rate, sharing one positional encoding.

    Layer skipping warms up layer by layer: layer i's skip rate falls from 0.5 to ``final_layerdrop_rate`` over
    its own slice of [warmup_begin, warmup_end] batches, so lower layers start learning first.
    """

    def __init__(
        self,
        num_layers: int,
        layer_kwargs: dict,
        pos_dim: int,
        warmup_begin: float,
        warmup_end: float,
        initial_layerdrop_rate: float = 0.5,
        final_layerdrop_rate: float = 0.05,
    ) -> None:
        super().__init__()
        self.encoder_pos = CompactRelPositionalEncoding(pos_dim, dropout_rate=0.15, length_factor=1.0)
        self.layers = nn.ModuleList([Zipformer2EncoderLayer(**layer_kwargs) for _ in range(num_layers)])
        self.num_layers = num_layers
        delta = (warmup_end - warmup_begin) / num_layers
        for i, layer in enumerate(self.layers):
            begin = warmup_begin + i * delta
            layer.bypass.skip_rate = ScheduledFloat(
                (begin, initial_layerdrop_rate), (begin + delta, final_layerdrop_rate), default=0.0
            )

    def forward(
        self,
        src: Tensor,
        chunk_size: int = -1,
        feature_mask: Optional[Tensor] = None,
        attn_mask: Optional[Tensor] = None,
        src_key_padding_mask: Optional[Tensor] = None,
        lengths: Optional[Tensor] = None,
    ) -> Tensor:
        """src (T, B, D); feature_mask broadcastable to src; attn_mask (T, T); src_key_padding_mask (B, T);
        ``lengths`` is unused (signature shared with :class:`DownsampledZipformerStack`) -> (T, B, D)."""
        pos_emb = self.encoder_pos(src)
        out = src
        if feature_mask is not None:
            out = out * feature_mask
        for layer in self.layers:
            out = layer(out, pos_emb, chunk_size, attn_mask, src_key_padding_mask)
            if feature_mask is not None:
                out = out * feature_mask
        return out

    def streaming_forward(
        self, src: Tensor, states: list[Tensor], processed_lens: Tensor, lengths: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        """One chunk (evaluation only): src (T, B, D); ``states`` the 6 tensors per layer of
        :meth:`get_init_states`; processed_lens (B,) frames of each stream before this chunk and lengths (B,)
        real frames in it, both at this stack's rate -> (out (T, B, D), new states).

        Cached slots before a stream's first frame (young streams) and chunk frames at or after ``lengths`` are
        masked as keys, exactly as the chunk mask and the padding mask do in :meth:`forward`."""
        t = src.size(0)
        left = states[0].size(0)
        src_key_padding_mask = torch.arange(t, device=src.device).unsqueeze(0) >= lengths.unsqueeze(1)  # (B, T)
        missing = torch.arange(left, device=src.device).unsqueeze(0) < (left - processed_lens).unsqueeze(1)
        key_padding_mask = torch.cat([missing, src_key_padding_mask], dim=1)  # (B, L+T)
        pos_emb = self.encoder_pos(src, left)
        out = src
        new_states: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            out, key, nonlin_attn, val1, val2, conv1, conv2 = layer.streaming_forward(
                out, pos_emb, states[6 * i], states[6 * i + 1], states[6 * i + 2], states[6 * i + 3],
                states[6 * i + 4], states[6 * i + 5], key_padding_mask, src_key_padding_mask,
            )
            new_states += [key, nonlin_attn, val1, val2, conv1, conv2]
        return out, new_states

    def get_init_states(self, left_context_len: int, batch_size: int, device: torch.device) -> list[Tensor]:
        """Zero states of fresh streams: each layer's :meth:`Zipformer2EncoderLayer.get_init_states`, in order;
        ``left_context_len`` at this stack's rate."""
        states: list[Tensor] = []
        for layer in self.layers:
            states += layer.get_init_states(left_context_len, batch_size, device)
        return states


class SimpleDownsample(nn.Module):
    """Downsample time by ``downsample`` with a learned softmax-weighted average of each group of frames.

    Frames at or after each sequence's length are first replaced by its last real frame (what the right-padding
    of a lone sequence would contain), so padding never leaks into real output frames.
    """

    def __init__(self, downsample: int) -> None:
        super().__init__()
        self.downsample = downsample
        self.bias = nn.Parameter(torch.zeros(downsample))

    def forward(self, src: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """src (T, B, C), lengths (B,) -> ((T + ds - 1) // ds, B, C)."""
        t, b, c = src.shape
        ds = self.downsample
        if lengths is not None:
            steps = torch.arange(t, device=src.device).unsqueeze(1)  # (T, 1)
            idx = torch.minimum(steps, (lengths - 1).clamp(min=0).unsqueeze(0))  # (T, B)
            src = torch.gather(src, 0, idx.unsqueeze(-1).expand(t, b, c))
        d_len = (t + ds - 1) // ds
        pad = d_len * ds - t
        src = torch.cat([src, src[t - 1 :].expand(pad, b, c)], dim=0)
        weights = self.bias.softmax(dim=0).unsqueeze(-1).unsqueeze(-1)  # (ds, 1, 1)
        return (src.reshape(d_len, ds, b, c) * weights).sum(dim=1)


def upsample(src: Tensor, factor: int) -> Tensor:
    """Repeat each frame ``factor`` times: (T, B, C) -> (T * factor, B, C)."""
    t, b, c = src.shape
    return src.unsqueeze(1).expand(t, factor, b, c).reshape(t * factor, b, c)


class DownsampledZipformerStack(nn.Module):
    """A :class:`ZipformerStack` run at 1/``downsample`` of the input frame rate, upsampled back and mixed
    with its input through a learned bypass (the "U-Net"-like middle stacks of Zipformer)."""

    def __init__(self, stack: ZipformerStack, dim: int, downsample: int) -> None:
        super().__init__()
        self.downsample_factor = downsample
        self.downsample = SimpleDownsample(downsample)
        self.encoder = stack
        self.num_layers = stack.num_layers
        self.out_combiner = BypassModule(dim)

    def forward(
        self,
        src: Tensor,
        chunk_size: int = -1,
        feature_mask: Optional[Tensor] = None,
        attn_mask: Optional[Tensor] = None,
        src_key_padding_mask: Optional[Tensor] = None,
        lengths: Optional[Tensor] = None,
    ) -> Tensor:
        """Same contract as :meth:`ZipformerStack.forward`; ``lengths`` (B,) are at the input frame rate."""
        ds = self.downsample_factor
        x = self.downsample(src, lengths)
        if attn_mask is not None:
            attn_mask = attn_mask[::ds, ::ds]
        if src_key_padding_mask is not None:
            src_key_padding_mask = src_key_padding_mask[:, ::ds]
        x = self.encoder(x, chunk_size // ds if chunk_size > 0 else -1, feature_mask, attn_mask, src_key_padding_mask)
        x = upsample(x, ds)[: src.size(0)]
        return self.out_combiner(src, x)

    def streaming_forward(
        self, src: Tensor, states: list[Tensor], processed_lens: Tensor, lengths: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        """Same contract as :meth:`ZipformerStack.streaming_forward`, lengths at the input rate; the chunk's
        length T must be a multiple of the downsampling factor (chunks start on group boundaries)."""
        ds = self.downsample_factor
        x = self.downsample(src, lengths)
        x, states = self.encoder.streaming_forward(x, states, processed_lens // ds, (lengths + ds - 1) // ds)
        x = upsample(x, ds)[: src.size(0)]
        return self.out_combiner(src, x), states

    def get_init_states(self, left_context_len: int, batch_size: int, device: torch.device) -> list[Tensor]:
        """The inner stack's states; ``left_context_len`` at the input rate (a multiple of the factor)."""
        return self.encoder.get_init_states(left_context_len // self.downsample_factor, batch_size, device)
