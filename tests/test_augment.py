"""Feature augmentation: echo, mel-axis warping (VTLP) and the composed training augmentation."""

from __future__ import annotations

import pytest
import torch

from asrkit.config import DataConfig
import math

from asrkit.data.augment import FeatureAugment, LogMelEcho, MelWarp, build_feature_augment
from asrkit.data.features import FEATURE_PADDING_VALUE


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
    every = build_feature_augment(DataConfig(spec_augment=True, mel_warp=0.1, echo_prob=0.3, echo_max_gain=0.6,
                                             echo_max_delay=5))
    assert [type(t).__name__ for t in every.transforms] == ["LogMelEcho", "MelWarp", "SpecAugment"]
    echo = every.transforms[0]
    assert (echo.prob, echo.max_gain, echo.max_delay) == (0.3, 0.6, 5)
    x = torch.randn(2, 50, 80)
    segments = torch.tensor([[0, 0, 50], [1, 0, 40]], dtype=torch.int32)
    assert both(x, supervision_segments=segments).shape == x.shape


def _click(frames: int = 30, at: int = 2, bins: int = 4) -> torch.Tensor:
    """One utterance of silence (the padding value) with a single loud frame (log energy 0) at ``at``."""
    x = torch.full((1, frames, bins), FEATURE_PADDING_VALUE)
    x[0, at] = 0.0
    return x


def test_echo_of_a_click_is_a_train_of_decaying_copies() -> None:
    y = LogMelEcho(1.0)(_click(), delays=torch.tensor([3]), gains=torch.tensor([0.5])).exp()[0, :, 0]
    # copies at 2 + 3k with power 0.25^k, until the power falls below 1e-3 (k = 5: 0.25^5 < 1e-3)
    for k in range(5):
        assert float(y[2 + 3 * k]) == pytest.approx(0.25**k, rel=1e-6), k
    assert float(y[2 + 3 * 5]) < 1e-8
    # nothing before the click, nothing between the copies
    assert float(y[:2].max()) < 1e-8 and float(y[3:5].max()) < 1e-8


def test_echo_adds_powers_of_the_signal_and_its_delayed_copy() -> None:
    x = torch.randn(1, 40, 80)
    y = LogMelEcho(1.0)(x, delays=torch.tensor([7]), gains=torch.tensor([0.2]))
    want = torch.logaddexp(x[0, 7:13], x[0, 0:6] + 2 * math.log(0.2))  # (the second copy starts at frame 14)
    assert torch.allclose(y[0, 7:13], want, atol=1e-5)
    assert torch.equal(y[0, :7], x[0, :7])


def test_echo_gain_zero_leaves_the_utterance_untouched() -> None:
    x = torch.randn(3, 20, 80)
    y = LogMelEcho(1.0)(x, delays=torch.tensor([2, 2, 2]), gains=torch.tensor([0.0, 0.7, 0.0]))
    assert torch.equal(y[0], x[0]) and torch.equal(y[2], x[2]) and not torch.equal(y[1], x[1])


def test_echo_draws_stay_in_range() -> None:
    echo = LogMelEcho(0.3, max_gain=0.6, max_delay=5, generator=torch.Generator().manual_seed(0))
    delays, gains = echo.draw(4000)
    assert 0.25 < float((gains > 0).float().mean()) < 0.35
    assert float(gains.max()) < 0.6 and int(delays.min()) == 1 and int(delays.max()) == 5


@pytest.mark.parametrize("kwargs, match", [({"prob": 0.0}, "prob"), ({"prob": 1.5}, "prob"),
                                           ({"max_gain": 1.0}, "max_gain"), ({"max_delay": 0}, "max_delay")])
def test_echo_rejects_bad_settings(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        LogMelEcho(**kwargs)
