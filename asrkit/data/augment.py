"""Feature-domain augmentation of training batches: mel-axis warping (VTLP) and SpecAugment.

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


class FeatureAugment:
    """Applies feature transforms in order (each with lhotse's SpecAugment call signature)."""

    def __init__(self, transforms: Sequence[FeatureTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, supervision_segments: Optional[torch.Tensor] = None) -> torch.Tensor:
        for transform in self.transforms:
            x = transform(x, supervision_segments=supervision_segments)
        return x


def build_feature_augment(cfg: DataConfig) -> Optional[FeatureAugment]:
    """The training-batch augmentation configured by ``cfg``: :class:`MelWarp` when ``cfg.mel_warp > 0``,
    then lhotse's SpecAugment when ``cfg.spec_augment``; None when both are off."""
    transforms: list[FeatureTransform] = []
    if cfg.mel_warp > 0:
        transforms.append(MelWarp(cfg.mel_warp))
    if cfg.spec_augment:
        from lhotse.dataset import SpecAugment

        # lhotse 1.33 divides by num_frame_masks (ZeroDivisionError at 0, although its docs say 0 disables time
        # masking); one mask drawn from widths [0, 1) frames masks nothing and draws the same random numbers.
        no_time_masks = cfg.num_frame_masks == 0
        transforms.append(SpecAugment(
            time_warp_factor=cfg.time_warp_factor or None,
            num_feature_masks=cfg.num_feature_masks,
            features_mask_size=cfg.feature_mask_size,
            num_frame_masks=1 if no_time_masks else cfg.num_frame_masks,
            frames_mask_size=1 if no_time_masks else cfg.frame_mask_size,
        ))
    return FeatureAugment(transforms) if transforms else None
