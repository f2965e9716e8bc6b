"""Model presets as keyword-only factory functions returning :class:`~asrkit.models.config.ModelConfig`.

Zipformer s/m/l reproduce icefall's published LibriSpeech configurations (parameter counts with vocab 500,
predictor/joiner dim 512 and context 2 are asserted in ``tests/test_models_zipformer.py``); ``*_xs`` presets
are sized to train on 2 CPU cores.

Example::

    cfg = zipformer_s(vocab_size=500)
"""

from __future__ import annotations

from asrkit.models.config import (
    ConformerLiteConfig,
    EncoderConfig,
    JoinerConfig,
    LstmEncoderConfig,
    ModelConfig,
    PredictorConfig,
    ZipformerConfig,
)


def _model(
    encoder: EncoderConfig, *, vocab_size: int, feature_dim: int, dim: int, ctc_head: bool = False
) -> ModelConfig:
    return ModelConfig(
        feature_dim=feature_dim,
        vocab_size=vocab_size,
        encoder=encoder,
        predictor=PredictorConfig(type="stateless", embedding_dim=dim, context_size=2),
        joiner=JoinerConfig(dim=dim),
        ctc_head=ctc_head,
    )


def zipformer_xs(
    *, vocab_size: int = 500, feature_dim: int = 80, feature_norm: str = "utterance_mean", ctc_head: bool = True
) -> ModelConfig:
    """A ~2.5M-parameter Zipformer2 transducer (one layer per stack) sized for training on 2 CPU cores; same
    feature normalization and CTC head as :func:`conformer_lite_xs` so the two compare fairly."""
    z = ZipformerConfig(
        downsampling_factor=(1, 2, 4, 8, 4, 2),
        num_encoder_layers=(1, 1, 1, 1, 1, 1),
        encoder_dim=(64, 96, 96, 128, 96, 96),
        encoder_unmasked_dim=(64, 64, 64, 96, 64, 64),
        feedforward_dim=(192, 256, 256, 384, 256, 256),
        num_heads=(4, 4, 4, 4, 4, 4),
        cnn_module_kernel=(31, 31, 15, 15, 15, 31),
        # a 16-channel front-end: at 64 it alone costs more FLOPs than the whole conformer_lite_xs encoder, and 16
        # instead of 32 makes a training step 17 % cheaper at the same loss per step (docs/experiments.md)
        subsampling_channels=16,
    )
    enc = EncoderConfig(type="zipformer", feature_norm=feature_norm, zipformer=z)  # type: ignore[arg-type]
    return _model(enc, vocab_size=vocab_size, feature_dim=feature_dim, dim=256, ctc_head=ctc_head)


def zipformer_s(*, vocab_size: int = 500, feature_dim: int = 80, feature_norm: str = "none") -> ModelConfig:
    """icefall's Zipformer "small" (23.3M parameters with vocab 500)."""
    z = ZipformerConfig(
        num_encoder_layers=(2, 2, 2, 2, 2, 2),
        encoder_dim=(192, 256, 256, 256, 256, 256),
        encoder_unmasked_dim=(192, 192, 192, 192, 192, 192),
        feedforward_dim=(512, 768, 768, 768, 768, 768),
        num_heads=(4, 4, 4, 8, 4, 4),
        cnn_module_kernel=(31, 31, 15, 15, 15, 31),
    )
    enc = EncoderConfig(type="zipformer", feature_norm=feature_norm, zipformer=z)  # type: ignore[arg-type]
    return _model(enc, vocab_size=vocab_size, feature_dim=feature_dim, dim=512)


def zipformer_m(*, vocab_size: int = 500, feature_dim: int = 80, feature_norm: str = "none") -> ModelConfig:
    """icefall's Zipformer "medium", the default (65.5M parameters with vocab 500)."""
    enc = EncoderConfig(type="zipformer", feature_norm=feature_norm, zipformer=ZipformerConfig())  # type: ignore[arg-type]
    return _model(enc, vocab_size=vocab_size, feature_dim=feature_dim, dim=512)


def zipformer_l(*, vocab_size: int = 500, feature_dim: int = 80, feature_norm: str = "none") -> ModelConfig:
    """icefall's Zipformer "large" (148.4M parameters with vocab 500)."""
    z = ZipformerConfig(
        num_encoder_layers=(2, 2, 4, 5, 4, 2),
        encoder_dim=(192, 256, 512, 768, 512, 256),
        encoder_unmasked_dim=(192, 192, 256, 320, 256, 192),
        feedforward_dim=(512, 768, 1536, 2048, 1536, 768),
        num_heads=(4, 4, 4, 8, 4, 4),
        cnn_module_kernel=(31, 31, 15, 15, 15, 31),
    )
    enc = EncoderConfig(type="zipformer", feature_norm=feature_norm, zipformer=z)  # type: ignore[arg-type]
    return _model(enc, vocab_size=vocab_size, feature_dim=feature_dim, dim=512)


def conformer_lite_xs(
    *, vocab_size: int = 500, feature_dim: int = 80, feature_norm: str = "utterance_mean", ctc_head: bool = True
) -> ModelConfig:
    """A ~2.5M-parameter conformer transducer (the baseline that trains at >100 audio-s/s on 2 cores)."""
    c = ConformerLiteConfig(
        dim=144, num_layers=4, num_heads=4, feedforward_dim=432, cnn_module_kernel=15, subsampling_channels=64
    )
    enc = EncoderConfig(type="conformer_lite", feature_norm=feature_norm, conformer_lite=c)  # type: ignore[arg-type]
    return _model(enc, vocab_size=vocab_size, feature_dim=feature_dim, dim=256, ctc_head=ctc_head)


def lstm_xs(
    *, vocab_size: int = 500, feature_dim: int = 80, feature_norm: str = "utterance_mean", ctc_head: bool = True
) -> ModelConfig:
    """A ~3.3M-parameter BiLSTM encoder + LSTM predictor transducer (the classic RNN-T of Graves 2012 and of
    RNN-T course models; the predictor sees the whole label history, not the last two tokens). The CTC head is on
    by default: without it the LSTM predictor learns the label prior long before the encoder learns to listen."""
    lstm = LstmEncoderConfig(hidden_dim=192, num_layers=3, bidirectional=True, output_dim=192, subsampling_channels=32)
    enc = EncoderConfig(type="lstm", feature_norm=feature_norm, lstm=lstm)  # type: ignore[arg-type]
    model = _model(enc, vocab_size=vocab_size, feature_dim=feature_dim, dim=256, ctc_head=ctc_head)
    model.predictor = PredictorConfig(type="lstm", embedding_dim=256, lstm_hidden_dim=256, lstm_num_layers=1)
    return model


PRESETS = {
    "zipformer-xs": zipformer_xs,
    "zipformer-s": zipformer_s,
    "zipformer-m": zipformer_m,
    "zipformer-l": zipformer_l,
    "conformer-lite-xs": conformer_lite_xs,
    "lstm-xs": lstm_xs,
}
"""Preset name -> factory (names as a CLI/recipe would spell them)."""
