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


FEATURE_NORM_KINDS = ("none", "utterance_mean", "running_mean")

RUNNING_MEAN_PRIOR_FRAMES = 100.0
"""Weight, in frames (1 s at 100 Hz), of the learned prior mean in ``running_mean`` normalization."""
RUNNING_MEAN_PRIOR_INIT = -6.0
"""Initial prior mean: about the mean log-mel level of speech in lhotse's fbank (-6.2 on egs/synth's dev voices,
-6.6 on its flite ones). ScaledAdam scales each update by the parameter's size, so a zero start would not move."""


class FeatureNorm(nn.Module):
    """Optional per-utterance mean normalization, the first op of every encoder.

    It lives inside the graph so exported models take raw fbank exactly as sherpa-onnx computes it; the mean is
    taken over each utterance's real frames only, so padding (sherpa-onnx pads with ln(1e-10) ~ -23.03) does not
    leak into it.

    * ``utterance_mean``: every frame minus the mean of the whole utterance (offline models only).
    * ``running_mean``: causal, for streaming: frame t minus the mean of frames 0..t, pulled towards a learned
      prior mean ``prior`` (F,) that weighs as :data:`RUNNING_MEAN_PRIOR_FRAMES` frames, so the first frames are
      not normalized by themselves alone. A stream carries the running sum (:meth:`streaming_forward`); Kaldi's
      online CMN does the same with a global prior.

    Args:
        kind: one of :data:`FEATURE_NORM_KINDS`.
        feature_dim: F (the size of ``running_mean``'s prior).
    """

    def __init__(self, kind: str = "none", feature_dim: int = 80) -> None:
        super().__init__()
        if kind not in FEATURE_NORM_KINDS:
            raise ValueError(f"feature_norm must be one of {', '.join(FEATURE_NORM_KINDS)}, got {kind!r}")
        self.kind = kind
        self.prior_frames = RUNNING_MEAN_PRIOR_FRAMES
        if kind == "running_mean":
            self.prior = nn.Parameter(torch.full((feature_dim,), RUNNING_MEAN_PRIOR_INIT))
        else:
            self.register_parameter("prior", None)

    def forward(self, x: Tensor, x_lens: Tensor) -> Tensor:
        """x: (B, T, F) features, x_lens: (B,) -> (B, T, F) (padding frames are returned unchanged)."""
        if self.kind == "none":
            return x
        if self.kind == "running_mean":
            start = torch.zeros(x.size(0), x.size(2), dtype=x.dtype, device=x.device)
            return self._running(x, x_lens, start, torch.zeros_like(x_lens))[0]
        valid = (~make_pad_mask(x_lens, x.size(1))).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        count = valid.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1, 1)
        mean = (x * valid).sum(dim=1, keepdim=True) / count  # (B, 1, F)
        return x - mean * valid

    def streaming_forward(
        self, x: Tensor, x_lens: Tensor, frame_sum: Tensor, frames_before: Tensor, shift: int
    ) -> tuple[Tensor, Tensor]:
        """``running_mean`` on one window of a stream: the frames of :meth:`forward` on the whole stream.

        Args:
            x: (B, W, F) frames ``frames_before .. frames_before + W - 1`` of each stream.
            x_lens: (B,) real frames in x.
            frame_sum: (B, F) sum of the stream's frames before x (zeros at its start).
            frames_before: (B,) int64, how many frames that sum holds.
            shift: frames of x the next window does not repeat (its start is ``shift`` frames later).

        Returns:
            (normalized x (B, W, F), the sum to pass with the next window (B, F)).
        """
        y, masked = self._running(x, x_lens, frame_sum, frames_before)
        return y, frame_sum + masked[:, :shift].sum(dim=1)

    def _running(self, x: Tensor, x_lens: Tensor, frame_sum: Tensor, frames_before: Tensor) -> tuple[Tensor, Tensor]:
        """(x minus its running mean, x with padding zeroed) for frames following ``frames_before`` frames summing
        to ``frame_sum``; x (B, T, F), x_lens (B,), frame_sum (B, F), frames_before (B,)."""
        prior = self.prior
        assert prior is not None
        valid = (~make_pad_mask(x_lens, x.size(1))).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        masked = x * valid
        sums = frame_sum.unsqueeze(1) + masked.cumsum(dim=1)  # (B, T, F)
        counts = frames_before.to(x.dtype).unsqueeze(1) + valid.squeeze(-1).cumsum(dim=1)  # (B, T)
        weight = self.prior_frames
        mean = (sums + weight * prior) / (counts + weight).unsqueeze(-1)
        return x - mean * valid, masked


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
