"""Feature augmentation: mel-axis warping (VTLP) and the composed training augmentation."""

from __future__ import annotations

import pytest
import torch

from asrkit.config import DataConfig
from asrkit.data.augment import FeatureAugment, MelWarp, build_feature_augment


def _peak_batch(peak_bin: int, batch: int = 3, frames: int = 5, bins: int = 80) -> torch.Tensor:
    """Log-mel-like frames with one spectral peak (a "formant") at ``peak_bin``."""
    k = torch.arange(bins, dtype=torch.float32)
    frame = -10.0 + 8.0 * torch.exp(-0.5 * ((k - peak_bin) / 2.0) ** 2)
    return frame.expand(batch, frames, bins).clone()


def test_warp_factor_one_is_identity() -> None:
    x = torch.randn(2, 7, 80)
    assert torch.equal(MelWarp(0.1)(x, alpha=torch.ones(2)), x)


def test_warp_moves_spectral_peaks_by_the_factor() -> None:
    x = _peak_batch(40)
    y = MelWarp(0.2)(x, alpha=torch.tensor([1.1, 0.9, 1.0]))
    peaks = y[:, 0].argmax(dim=-1).tolist()
    assert peaks == [44, 36, 40]  # 40 * 1.1, 40 * 0.9, unchanged


def test_warp_interpolates_linearly_and_clamps_at_the_top_bin() -> None:
    x = torch.arange(10, dtype=torch.float32).expand(1, 2, 10).clone()  # value = bin index
    y = MelWarp(0.3)(x, alpha=torch.tensor([0.8]))
    # output bin k reads input bin k / 0.8, clamped to 9
    want = (torch.arange(10, dtype=torch.float32) / 0.8).clamp(max=9)
    assert torch.allclose(y[0, 0], want, atol=1e-6)


def test_padding_frames_stay_padding() -> None:
    pad = -23.0259
    x = torch.full((2, 6, 80), pad)
    x[0, :3] = torch.randn(3, 80)
    y = MelWarp(0.15)(x)
    assert torch.allclose(y[0, 3:], x[0, 3:], atol=1e-5) and torch.allclose(y[1], x[1], atol=1e-5)


def test_random_factors_stay_in_range_and_differ_per_utterance() -> None:
    warp = MelWarp(0.1, generator=torch.Generator().manual_seed(0))
    alpha = warp.factors(1000)
    assert alpha.min() >= 0.9 and alpha.max() <= 1.1
    assert alpha.std() > 0.05  # uniform on [0.9, 1.1] has std 0.058


@pytest.mark.parametrize("bad", [0.0, -0.1, 0.5])
def test_warp_rejects_bad_ranges(bad: float) -> None:
    with pytest.raises(ValueError, match="max_warp"):
        MelWarp(bad)


def test_build_feature_augment_composes_what_the_config_enables() -> None:
    assert build_feature_augment(DataConfig(spec_augment=False, mel_warp=0.0)) is None
    only_warp = build_feature_augment(DataConfig(spec_augment=False, mel_warp=0.1))
    assert isinstance(only_warp, FeatureAugment) and [type(t) for t in only_warp.transforms] == [MelWarp]
    both = build_feature_augment(DataConfig(spec_augment=True, mel_warp=0.1))
    assert [type(t).__name__ for t in both.transforms] == ["MelWarp", "SpecAugment"]
    x = torch.randn(2, 50, 80)
    segments = torch.tensor([[0, 0, 50], [1, 0, 40]], dtype=torch.int32)
    assert both(x, supervision_segments=segments).shape == x.shape


def _spec_only(**overrides) -> FeatureAugment:
    cfg = DataConfig(spec_augment=True, mel_warp=0.0, num_feature_masks=0, time_warp_factor=0, **overrides)
    return build_feature_augment(cfg)


def test_zero_frame_masks_disables_time_masking() -> None:
    """lhotse's SpecAugment divides by num_frame_masks; 0 must mean "no time masks", not a crash."""
    x = torch.randn(3, 200, 80)
    segments = torch.tensor([[0, 0, 200], [1, 0, 150], [2, 0, 120]], dtype=torch.int32)
    no_masks = _spec_only(num_frame_masks=0)
    for _ in range(20):
        assert torch.equal(no_masks(x, supervision_segments=segments), x)
    # the same transform with time masks does change some frames (p=0.9 per utterance, widths up to 19 frames)
    masked = _spec_only(num_frame_masks=2, frame_mask_size=20)
    assert any(not torch.equal(masked(x, supervision_segments=segments), x) for _ in range(20))
