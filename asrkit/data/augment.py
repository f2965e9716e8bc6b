"""Feature-domain augmentation of training batches: echo, mel-axis warping (VTLP) and SpecAugment.

Both act on padded log-mel batches ``x (B, T, F)`` after loading, in the data-loader workers, so
they cost the training process nothing and leave stored features and exports untouched.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from asrkit.config import DataConfig

FeatureTransform = Callable[..., torch.Tensor]
"""``transform(x (B, T, F), supervision_segments=(B, 3) int32) -> x'`` (lhotse's SpecAugment signature)."""


class MelWarp:
    """Vocal tract length perturbation on log-mel features (after Jaitly & Hinton, 2013).

    Each utterance gets its own factor ``alpha ~ U(1 - max_warp, 1 + max_warp)`` and output bin ``k``
    takes the value at (fractional) input bin ``k / alpha``, linearly interpolated and clamped to the
    top bin: ``alpha > 1`` moves spectral peaks up, as a shorter vocal tract does, ``alpha < 1`` down.
    This makes a voice with other formant positions out of every training voice, the variation that
    unseen speakers (and unseen TTS voices) bring. Stretching the mel axis approximates warping the
    linear frequency axis before the mel filterbank. Constant frames (padding) stay constant.

    Args:
        max_warp: largest relative stretch, in (0, 0.5).
        generator: optional torch generator (default: the global torch RNG).
    """

    def __init__(self, max_warp: float = 0.1, generator: Optional[torch.Generator] = None) -> None:
        if not 0.0 < max_warp < 0.5:
            raise ValueError(f"max_warp must be in (0, 0.5), got {max_warp}")
        self.max_warp = max_warp
        self.generator = generator

    def factors(self, batch_size: int) -> torch.Tensor:
        """(B,) warp factors drawn for one batch."""
        u = torch.rand(batch_size, generator=self.generator)
        return 1.0 + (2.0 * u - 1.0) * self.max_warp

    def __call__(self, x: torch.Tensor, supervision_segments: Optional[torch.Tensor] = None,
                 alpha: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Warp ``x (B, T, F)``; ``alpha (B,)`` fixes the factors (drawn at random when None)."""
        batch, _, num_bins = x.shape
        alpha = self.factors(batch) if alpha is None else alpha.to(torch.float32)
        src = (torch.arange(num_bins, dtype=torch.float32).unsqueeze(0) / alpha.unsqueeze(1)).clamp(0, num_bins - 1)
        lo = src.floor().to(torch.int64)  # (B, F)
        hi = (lo + 1).clamp(max=num_bins - 1)
        w = (src - lo.to(torch.float32)).to(x.dtype).unsqueeze(1)  # (B, 1, F)
        gather = lambda idx: x.gather(2, idx.unsqueeze(1).expand(-1, x.size(1), -1))  # noqa: E731
        return gather(lo) * (1.0 - w) + gather(hi) * w


class LogMelEcho:
    """Echo -- decaying, delayed copies of the signal, as a room or a synthesizer's echo adds -- on log-mel features.

    A chosen utterance gets a delay ``d ~ U{1..max_delay}`` frames and an amplitude ``g ~ U(0, max_gain)``, and its
    mel energies become those of a feedback echo whose copies add incoherently (powers add):

        E'(t) = sum_k g^(2k) E(t - k d),   k = 0, 1, ... while g^(2k) >= 1e-3

    computed as ``log(sum(exp(x)))`` on the log energies. Copies carry speech into the frames after it, never into
    earlier ones, so padding at the end may fill with the echo's tail (the encoder masks it) and frames before the
    speech stay as they were. Power addition is exact on average for delays beyond the analysis window (25 ms);
    shorter ones also colour the spectrum (comb filtering), which this ignores.

    Args:
        prob: fraction of utterances that get an echo, in (0, 1].
        max_gain: largest echo amplitude relative to the direct sound, in (0, 1).
        max_delay: largest delay in frames (10 ms each), >= 1.
        generator: optional torch generator (default: the global torch RNG).
    """

    def __init__(self, prob: float = 0.5, max_gain: float = 0.8, max_delay: int = 8,
                 generator: Optional[torch.Generator] = None) -> None:
        if not 0.0 < prob <= 1.0:
            raise ValueError(f"echo prob must be in (0, 1], got {prob}")
        if not 0.0 < max_gain < 1.0:
            raise ValueError(f"echo max_gain must be in (0, 1), got {max_gain}")
        if max_delay < 1:
            raise ValueError(f"echo max_delay must be >= 1 frame, got {max_delay}")
        self.prob, self.max_gain, self.max_delay = prob, max_gain, max_delay
        self.generator = generator

    def draw(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) delays in frames and (B,) amplitudes for one batch; amplitude 0 = no echo."""
        chosen = torch.rand(batch_size, generator=self.generator) < self.prob
        gains = torch.rand(batch_size, generator=self.generator) * self.max_gain * chosen
        delays = torch.randint(1, self.max_delay + 1, (batch_size,), generator=self.generator)
        return delays, gains

    def __call__(self, x: torch.Tensor, supervision_segments: Optional[torch.Tensor] = None,
                 delays: Optional[torch.Tensor] = None, gains: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Echo ``x (B, T, F)`` (log energies); ``delays``/``gains`` (B,) fix the draw (random when None)."""
        if delays is None or gains is None:
            delays, gains = self.draw(x.size(0))
        out = x.clone()
        num_frames = x.size(1)
        for b in torch.nonzero(gains > 0).flatten().tolist():
            d, power = int(delays[b]), float(gains[b]) ** 2
            energy = x[b].double().exp()  # (T, F)
            total = energy.clone()
            k, weight = 1, power
            while weight >= 1e-3 and k * d < num_frames:
                total[k * d:] += weight * energy[:num_frames - k * d]
                k, weight = k + 1, weight * power
            out[b] = total.log().to(x.dtype)
        return out


class FeatureAugment:
    """Applies feature transforms in order (each with lhotse's SpecAugment call signature)."""

    def __init__(self, transforms: Sequence[FeatureTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, supervision_segments: Optional[torch.Tensor] = None) -> torch.Tensor:
        for transform in self.transforms:
            x = transform(x, supervision_segments=supervision_segments)
        return x


def build_feature_augment(cfg: DataConfig) -> Optional[FeatureAugment]:
    """The training-batch augmentation configured by ``cfg``: :class:`LogMelEcho` when ``cfg.echo_prob > 0``,
    then :class:`MelWarp` when ``cfg.mel_warp > 0``, then lhotse's SpecAugment when ``cfg.spec_augment``; None when
    all are off."""
    transforms: list[FeatureTransform] = []
    if cfg.echo_prob > 0:
        transforms.append(LogMelEcho(cfg.echo_prob, cfg.echo_max_gain, cfg.echo_max_delay))
    if cfg.mel_warp > 0:
        transforms.append(MelWarp(cfg.mel_warp))
    if cfg.spec_augment:
        from lhotse.dataset import SpecAugment

        transforms.append(SpecAugment(
            time_warp_factor=cfg.time_warp_factor or None,
            num_feature_masks=cfg.num_feature_masks,
            features_mask_size=cfg.feature_mask_size,
            num_frame_masks=cfg.num_frame_masks,
            frames_mask_size=cfg.frame_mask_size,
        ))
    return FeatureAugment(transforms) if transforms else None
