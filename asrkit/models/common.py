"""Building blocks shared by the encoders: padding masks, in-graph feature normalization, Conv2d subsampling.

Dimension legend: B batch, T frames, F feature bins, D model dim.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def make_pad_mask(lengths: Tensor, max_len: int = 0) -> Tensor:
    """Boolean mask that is True at PADDING positions.

    Args:
        lengths: (B,) int64 valid lengths.
        max_len: width of the mask; 0 means ``lengths.max()``.

    Returns:
        (B, max_len) bool, ``mask[b, t] = t >= lengths[b]``.
    """
    if max_len <= 0:
        max_len = int(lengths.max())
    steps = torch.arange(max_len, device=lengths.device, dtype=lengths.dtype)
    return steps.unsqueeze(0) >= lengths.unsqueeze(1)


class FeatureNorm(nn.Module):
    """Optional per-utterance mean normalization, the first op of every encoder.

    It lives inside the graph so exported models take raw fbank exactly as sherpa-onnx computes it; the mean is
    taken over each utterance's real frames only, so padding (sherpa-onnx pads with ln(1e-10) ~ -23.03) does not
    leak into it.

    Args:
        kind: ``"none"`` (identity) or ``"utterance_mean"``.
    """

    def __init__(self, kind: str = "none") -> None:
        super().__init__()
        if kind not in ("none", "utterance_mean"):
            raise ValueError(f"feature_norm must be 'none' or 'utterance_mean', got {kind!r}")
        self.kind = kind

    def forward(self, x: Tensor, x_lens: Tensor) -> Tensor:
        """x: (B, T, F) features, x_lens: (B,) -> (B, T, F) (padding frames are returned unchanged)."""
        if self.kind == "none":
            return x
        valid = (~make_pad_mask(x_lens, x.size(1))).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        count = valid.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1, 1)
        mean = (x * valid).sum(dim=1, keepdim=True) / count  # (B, 1, F)
        return x - mean * valid


def conv2d_subsampling4_lengths(x_lens: Tensor) -> Tensor:
    """Output lengths of :class:`Conv2dSubsampling4`: ``((T - 1) // 2 - 1) // 2`` (two kernel-3 stride-2 convs)."""
    return ((x_lens - 1) // 2 - 1) // 2


class Conv2dSubsampling4(nn.Module):
    """Two Conv2d(kernel 3, stride 2, no padding) + ReLU, then a Linear to ``out_dim``: 100 Hz -> 25 Hz.

    ``T' = ((T - 1) // 2 - 1) // 2`` (e.g. T=100 -> 24). Each output frame is computed only from input frames
    inside its own 7-frame window, so real output frames never see padding frames.

    Args:
        in_dim: F, feature bins.
        out_dim: D.
        channels: Conv2d channels.
    """

    def __init__(self, in_dim: int, out_dim: int, channels: int = 64) -> None:
        super().__init__()
        if in_dim < 7:
            raise ValueError(f"Conv2dSubsampling4 needs at least 7 feature bins, got {in_dim}")
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, stride=2),
            nn.ReLU(),
        )
        freq = ((in_dim - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * freq, out_dim)

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, T, F), x_lens: (B,) -> ((B, T', D), (B,)) with T' as in the class docstring."""
        y = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = y.shape
        y = self.out(y.transpose(1, 2).reshape(b, t, c * f))
        return y, conv2d_subsampling4_lengths(x_lens)
