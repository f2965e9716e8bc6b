"""Log-mel filterbank features, computed exactly as sherpa-onnx computes them at inference.

Settings (also documented in docs/export.md): 80 mel bins, 25 ms window, 10 ms shift, dither 0,
``snip_edges=False`` (T = round(num_samples / 160)), low_freq 20 Hz, high_freq -400 (Nyquist - 400 Hz),
povey window, samples in [-1, 1], no CMVN. Training (lhotse ``Fbank``) and inference
(:func:`compute_fbank`) share :func:`fbank_config`, so the two can never drift apart.
"""

from __future__ import annotations

import math

import numpy as np
import torch

NUM_MEL_BINS = 80
SAMPLE_RATE = 16000
FRAME_SHIFT_S = 0.01
FRAME_SHIFT_SAMPLES = int(SAMPLE_RATE * FRAME_SHIFT_S)  # 160
FEATURE_PADDING_VALUE = math.log(1e-10)  # what sherpa-onnx pads batches with (about -23.03)


def fbank_config(num_mel_bins: int = NUM_MEL_BINS):
    """The lhotse ``FbankConfig`` used for training and inference."""
    from lhotse.features.kaldi.extractors import FbankConfig

    return FbankConfig(
        sampling_rate=SAMPLE_RATE,
        frame_length=0.025,
        frame_shift=FRAME_SHIFT_S,
        dither=0.0,
        snip_edges=False,
        low_freq=20.0,
        high_freq=-400.0,
        num_filters=num_mel_bins,
    )


def fbank_extractor(num_mel_bins: int = NUM_MEL_BINS):
    """A lhotse ``Fbank`` feature extractor with :func:`fbank_config` settings."""
    from lhotse import Fbank

    return Fbank(fbank_config(num_mel_bins))


_EXTRACTOR = None


def compute_fbank(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Compute fbank features of one mono waveform.

    Args:
        samples: (N,) float32 samples in [-1, 1].
        sample_rate: must be 16000 (resample first with ``asrkit.data.audio.resample``).

    Returns:
        (T, 80) float32 tensor, T = round(N / 160) (kaldi's frame count without snipped edges): T = 0 for fewer
        than 80 samples.
    """
    global _EXTRACTOR
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"compute_fbank expects {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
    if _EXTRACTOR is None:
        _EXTRACTOR = fbank_extractor()
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    num_frames = (samples.size + FRAME_SHIFT_SAMPLES // 2) // FRAME_SHIFT_SAMPLES
    if num_frames == 0:
        return torch.zeros((0, NUM_MEL_BINS), dtype=torch.float32)
    if samples.size < FRAME_SHIFT_SAMPLES:
        # lhotse's extractor fails on less than one hop; such audio is far below any model's minimum input, so
        # zero-padding its single frame only has to keep it computable
        samples = np.pad(samples, (0, FRAME_SHIFT_SAMPLES - samples.size))
    feats = _EXTRACTOR.extract(samples.reshape(1, -1), SAMPLE_RATE)[:num_frames]
    return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))


def pad_features(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a list of (T_i, F) features into a batch.

    Returns:
        x: (B, T_max, F) padded with :data:`FEATURE_PADDING_VALUE`; x_lens: (B,) int64.
    """
    lens = torch.tensor([f.shape[0] for f in features], dtype=torch.int64)
    x = torch.full(
        (len(features), int(lens.max()), features[0].shape[1]), FEATURE_PADDING_VALUE, dtype=torch.float32
    )
    for i, f in enumerate(features):
        x[i, : f.shape[0]] = f
    return x, lens
