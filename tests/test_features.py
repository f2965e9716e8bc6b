import numpy as np
import torch

from asrkit.data.features import FEATURE_PADDING_VALUE, compute_fbank, fbank_config, pad_features


def test_fbank_shape_and_settings():
    cfg = fbank_config()
    assert (cfg.dither, cfg.snip_edges, cfg.low_freq, cfg.high_freq, cfg.num_filters) == (0.0, False, 20.0, -400.0, 80)
    samples = (0.1 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    feats = compute_fbank(samples, 16000)
    assert feats.shape == (100, 80) and feats.dtype == torch.float32
    # a 440 Hz tone puts its energy in the low mel bins
    assert feats[:, :20].mean() > feats[:, 60:].mean() + 5
    # deterministic (dither 0)
    assert torch.equal(feats, compute_fbank(samples, 16000))


def test_pad_features():
    a, b = torch.ones(5, 80), torch.zeros(3, 80)
    x, lens = pad_features([a, b])
    assert x.shape == (2, 5, 80) and lens.tolist() == [5, 3]
    assert torch.all(x[1, 3:] == FEATURE_PADDING_VALUE) and torch.all(x[1, :3] == 0)
