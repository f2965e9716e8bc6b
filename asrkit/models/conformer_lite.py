"""``conformer_lite``: a small conformer encoder, the first-cut baseline the Zipformer is compared against.

Legend: B batch, T input frames (100 Hz), T' output frames (25 Hz), F feature bins, D model dim, H heads.

Pipeline: [utterance mean norm] -> Conv2dSubsampling4 (``T' = ((T-1)//2 - 1)//2``) -> N conformer blocks
(FFN/2, MHSA with key padding mask, convolution module, FFN/2, LayerNorm). There are no positional encodings: the
depthwise convolution in every block gives the attention relative position information, and the model stays
independent of absolute length. Padding frames are zeroed before every convolution and masked as attention keys,
so they never change real frames' outputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from asrkit.models.common import Conv2dSubsampling4, FeatureNorm, conv2d_subsampling4_lengths, make_pad_mask


class FeedForward(nn.Module):
    """LayerNorm -> Linear(D, ff) -> SiLU -> Dropout -> Linear(ff, D) -> Dropout; (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention written with plain matmuls (exports cleanly to ONNX).

    Args:
        dim: D (divisible by ``num_heads``).
        num_heads: H.
        dropout: dropout on attention weights and on the output.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.norm = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_dropout = nn.Dropout(dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        """x (B, T, D), pad_mask (B, T) bool True at padding -> (B, T, D)."""
        b, t, d = x.shape
        qkv = self.in_proj(self.norm(x)).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, T, hd)
        scores = torch.matmul(q, k.transpose(2, 3)) * (1.0 / math.sqrt(self.head_dim))  # (B, H, T, T)
        scores = scores.masked_fill(pad_mask.unsqueeze(1).unsqueeze(2), float("-inf"))
        weights = self.attn_dropout(scores.softmax(dim=-1))
        out = torch.matmul(weights, v).permute(0, 2, 1, 3).reshape(b, t, d)
        return self.dropout(self.out_proj(out))


class ConvModule(nn.Module):
    """Conformer convolution module: LN -> pointwise(2D)+GLU -> depthwise conv -> LN -> SiLU -> pointwise -> Dropout.

    Padding frames are zeroed right before the depthwise convolution (the only op mixing frames), and the
    normalization after it is per-frame LayerNorm, so no statistic is taken over padding.
    """

    def __init__(self, dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"cnn_module_kernel must be odd, got {kernel_size}")
        self.norm_in = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm_mid = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        """x (B, T, D), pad_mask (B, T) -> (B, T, D)."""
        y = nn.functional.glu(self.pointwise_in(self.norm_in(x)), dim=-1)
        y = y.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        y = nn.functional.silu(self.norm_mid(y))
        return self.dropout(self.pointwise_out(y))


class ConformerBlock(nn.Module):
    """Macaron block: x + FF/2, + MHSA, + Conv, + FF/2, then LayerNorm; (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, num_heads: int, feedforward_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.ff1 = FeedForward(dim, feedforward_dim, dropout)
        self.attn = SelfAttention(dim, num_heads, dropout)
        self.conv = ConvModule(dim, kernel_size, dropout)
        self.ff2 = FeedForward(dim, feedforward_dim, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, pad_mask)
        x = x + self.conv(x, pad_mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class ConformerLiteEncoder(nn.Module):
    """Conformer encoder, 100 Hz fbank -> 25 Hz vectors.

    Args:
        feature_dim: F.
        dim: D, model and output dim (``output_dim``).
        num_layers: conformer blocks.
        num_heads: attention heads.
        feedforward_dim: hidden size of each feed-forward module.
        cnn_module_kernel: odd depthwise kernel size.
        subsampling_channels: Conv2d channels of the front-end.
        dropout: dropout rate.
        feature_norm: ``"none"``, ``"utterance_mean"`` or ``"running_mean"`` (causal; see
            :class:`~asrkit.models.common.FeatureNorm`).
    """

    def __init__(
        self,
        feature_dim: int,
        dim: int = 144,
        num_layers: int = 6,
        num_heads: int = 4,
        feedforward_dim: int = 576,
        cnn_module_kernel: int = 15,
        subsampling_channels: int = 64,
        dropout: float = 0.1,
        feature_norm: str = "none",
    ) -> None:
        super().__init__()
        self.feature_norm = FeatureNorm(feature_norm, feature_dim)
        self.subsampling = Conv2dSubsampling4(feature_dim, dim, subsampling_channels)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            [ConformerBlock(dim, num_heads, feedforward_dim, cnn_module_kernel, dropout) for _ in range(num_layers)]
        )
        self.output_dim = dim

    @torch.jit.unused
    def output_lengths(self, x_lens: Tensor) -> Tensor:
        """Encoder output frames for input lengths (B,) without running the encoder."""
        return conv2d_subsampling4_lengths(x_lens)

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, F), x_lens (B,) int64 -> (out (B, T', D) zero at padding, lens (B,) int64)."""
        x = self.feature_norm(x, x_lens)
        x, lens = self.subsampling(x, x_lens)
        pad_mask = make_pad_mask(lens, x.size(1))
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x, pad_mask)
        return x.masked_fill(pad_mask.unsqueeze(-1), 0.0), lens
