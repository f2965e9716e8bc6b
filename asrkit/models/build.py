"""Config -> model, through tiny registries (``ENCODERS``, ``PREDICTORS``).

Example::

    from asrkit.models import build_transducer, presets
    model = build_transducer(presets.conformer_lite_xs(vocab_size=500))
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from asrkit.errors import ConfigError
from asrkit.models.config import ModelConfig
from asrkit.models.transducer import CtcHead, Joiner, LstmPredictor, StatelessPredictor, Transducer


def _build_conformer_lite(cfg: ModelConfig) -> nn.Module:
    from asrkit.models.conformer_lite import ConformerLiteEncoder

    c = cfg.encoder.conformer_lite
    return ConformerLiteEncoder(
        feature_dim=cfg.feature_dim,
        dim=c.dim,
        num_layers=c.num_layers,
        num_heads=c.num_heads,
        feedforward_dim=c.feedforward_dim,
        cnn_module_kernel=c.cnn_module_kernel,
        subsampling_channels=c.subsampling_channels,
        dropout=c.dropout,
        feature_norm=cfg.encoder.feature_norm,
    )


def _build_lstm(cfg: ModelConfig) -> nn.Module:
    from asrkit.models.lstm_encoder import LstmEncoder

    c = cfg.encoder.lstm
    return LstmEncoder(
        feature_dim=cfg.feature_dim,
        hidden_dim=c.hidden_dim,
        num_layers=c.num_layers,
        bidirectional=c.bidirectional,
        output_dim=c.output_dim,
        subsampling_channels=c.subsampling_channels,
        dropout=c.dropout,
        feature_norm=cfg.encoder.feature_norm,
    )


def _build_zipformer(cfg: ModelConfig) -> nn.Module:
    from asrkit.models.zipformer import build_zipformer

    return build_zipformer(cfg.encoder.zipformer, feature_dim=cfg.feature_dim, feature_norm=cfg.encoder.feature_norm)


def _build_stateless(cfg: ModelConfig) -> nn.Module:
    p = cfg.predictor
    return StatelessPredictor(
        vocab_size=cfg.vocab_size,
        embedding_dim=p.embedding_dim,
        blank_id=cfg.blank_id,
        context_size=p.context_size,
        conv_group_size=p.conv_group_size,
    )


def _build_lstm_predictor(cfg: ModelConfig) -> nn.Module:
    p = cfg.predictor
    return LstmPredictor(
        vocab_size=cfg.vocab_size,
        embedding_dim=p.embedding_dim,
        hidden_dim=p.lstm_hidden_dim,
        num_layers=p.lstm_num_layers,
        blank_id=cfg.blank_id,
        dropout=p.dropout,
    )


ENCODERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "zipformer": _build_zipformer,
    "conformer_lite": _build_conformer_lite,
    "lstm": _build_lstm,
}
PREDICTORS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "stateless": _build_stateless,
    "lstm": _build_lstm_predictor,
}


def _lookup(registry: dict[str, Callable[[ModelConfig], nn.Module]], key: str, value: str) -> Callable:
    if value not in registry:
        raise ConfigError(f"{key}: unknown type {value!r}", hint=f"valid choices: {', '.join(sorted(registry))}")
    return registry[value]


def validate_model_config(cfg: ModelConfig) -> None:
    """Raise ConfigError naming the key when a model config value is out of range."""
    checks = [
        ("model.feature_dim", cfg.feature_dim >= 7, "must be >= 7"),
        ("model.vocab_size", cfg.vocab_size >= 2, "must be >= 2 (blank + at least one token)"),
        ("model.blank_id", 0 <= cfg.blank_id < cfg.vocab_size, f"must be in [0, vocab_size={cfg.vocab_size})"),
        ("model.predictor.context_size", cfg.predictor.context_size >= 1, "must be >= 1"),
        ("model.joiner.dim", cfg.joiner.dim >= 1, "must be >= 1"),
    ]
    p = cfg.predictor
    if p.type == "stateless":
        checks.append(
            (
                "model.predictor.embedding_dim",
                p.conv_group_size >= 1 and p.embedding_dim % p.conv_group_size == 0,
                f"must be divisible by predictor.conv_group_size ({p.conv_group_size})",
            )
        )
    if cfg.encoder.type == "conformer_lite":
        c = cfg.encoder.conformer_lite
        checks += [
            ("model.encoder.conformer_lite.dim", c.dim % c.num_heads == 0, f"must be divisible by num_heads ({c.num_heads})"),
            ("model.encoder.conformer_lite.cnn_module_kernel", c.cnn_module_kernel % 2 == 1, "must be odd"),
        ]
    for key, ok, what in checks:
        if not ok:
            raise ConfigError(f"{key}: {what}")


def build_transducer(cfg: ModelConfig) -> Transducer:
    """Build the :class:`Transducer` described by ``cfg``.

    Raises:
        ConfigError: unknown encoder/predictor type (the message lists valid choices) or invalid values.
    """
    build_encoder = _lookup(ENCODERS, "model.encoder.type", cfg.encoder.type)
    build_predictor = _lookup(PREDICTORS, "model.predictor.type", cfg.predictor.type)
    validate_model_config(cfg)
    encoder = build_encoder(cfg)
    predictor = build_predictor(cfg)
    joiner = Joiner(encoder.output_dim, predictor.output_dim, cfg.joiner.dim, cfg.vocab_size)
    ctc_head = CtcHead(encoder.output_dim, cfg.vocab_size) if cfg.ctc_head else None
    return Transducer(encoder, predictor, joiner, ctc_head)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())
