"""Model configuration dataclasses (loaded strictly from YAML by :func:`asrkit.utils.dataclass_io.from_dict`).

A recipe's ``model:`` section looks like::

    model:
      feature_dim: 80
      encoder:
        type: zipformer            # zipformer | conformer_lite | lstm
        feature_norm: none         # none | utterance_mean | running_mean (causal, for streaming)
        zipformer: {encoder_dim: [192, 256, 256, 256, 256, 256], ...}
      predictor: {type: stateless, embedding_dim: 512, context_size: 2}
      joiner: {dim: 512}
      ctc_head: false

Every dimension lives in exactly one field: the encoder's output dimension is derived from its own sub-config
(:func:`encoder_output_dim`), the predictor's from ``predictor``, and the joiner's from ``joiner.dim``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ZipformerConfig:
    """Zipformer2 encoder (Yao et al. 2023, arXiv 2310.11230).

    Per-stack tuples must all have the same length (the number of stacks); a tuple of length one is broadcast.
    Defaults are icefall's "medium" model.
    """

    downsampling_factor: tuple[int, ...] = (1, 2, 4, 8, 4, 2)
    num_encoder_layers: tuple[int, ...] = (2, 2, 3, 4, 3, 2)
    encoder_dim: tuple[int, ...] = (192, 256, 384, 512, 384, 256)
    encoder_unmasked_dim: tuple[int, ...] = (192, 192, 256, 256, 256, 192)
    feedforward_dim: tuple[int, ...] = (512, 768, 1024, 1536, 1024, 768)
    num_heads: tuple[int, ...] = (4, 4, 4, 8, 4, 4)
    cnn_module_kernel: tuple[int, ...] = (31, 31, 15, 15, 15, 31)
    query_head_dim: int = 32
    value_head_dim: int = 12
    pos_head_dim: int = 4
    pos_dim: int = 48
    subsampling_channels: int = 128
    """Channels C of the front-end's last Conv2d and ConvNeXt (icefall's ``layer3_channels``); its first two
    Conv2d get max(4, C // 16) and max(8, C // 4) channels (C = 128 gives icefall's 8, 32, 128)."""
    dropout: float = 0.1
    """Final dropout rate inside layers (scheduled from a higher value early in training)."""
    causal: bool = False
    chunk_size: tuple[int, ...] = (16, 32, 64, -1)
    """Causal models only: training samples one chunk size (frames at 50 Hz) per batch; evaluation, decoding
    and export use the FIRST entry. -1 = full context. Positive sizes must be multiples of
    max(downsampling_factor)."""
    left_context_frames: tuple[int, ...] = (64, 128, 256, -1)
    """Causal models only: training samples one left context (frames at 50 Hz) per batch; evaluation uses the
    first entry. -1 = unlimited."""


@dataclass
class ConformerLiteConfig:
    """A small conformer (no relative positions; the convolution module supplies position information)."""

    dim: int = 144
    num_layers: int = 6
    num_heads: int = 4
    feedforward_dim: int = 576
    cnn_module_kernel: int = 15
    subsampling_channels: int = 64
    dropout: float = 0.1


@dataclass
class LstmEncoderConfig:
    """Conv2d subsampling followed by a stack of (bi)LSTM layers, each followed by a projection."""

    hidden_dim: int = 320
    num_layers: int = 4
    bidirectional: bool = True
    output_dim: int = 320
    subsampling_channels: int = 64
    dropout: float = 0.1


@dataclass
class EncoderConfig:
    """Which encoder to build and its settings.

    ``feature_norm: utterance_mean`` subtracts each utterance's per-bin mean over its real frames as the first op of
    the graph, so exported models still take raw fbank (as sherpa-onnx computes it). ``running_mean`` subtracts
    the mean of the frames so far instead (with a learned prior), which a stream can compute: the normalization of
    causal models (:class:`asrkit.models.common.FeatureNorm`).
    """

    type: Literal["zipformer", "conformer_lite", "lstm"] = "zipformer"
    feature_norm: Literal["none", "utterance_mean", "running_mean"] = "none"
    zipformer: ZipformerConfig = field(default_factory=ZipformerConfig)
    conformer_lite: ConformerLiteConfig = field(default_factory=ConformerLiteConfig)
    lstm: LstmEncoderConfig = field(default_factory=LstmEncoderConfig)


@dataclass
class PredictorConfig:
    """The prediction network (icefall's "decoder").

    ``stateless``: Embedding(V, embedding_dim) + grouped Conv1d over the last ``context_size`` tokens
    (``conv_group_size`` channels per group) + ReLU; output dim = ``embedding_dim``.
    ``lstm``: Embedding(V, embedding_dim) + LSTM(``lstm_hidden_dim`` x ``lstm_num_layers``);
    output dim = ``lstm_hidden_dim``; ``context_size`` is ignored (treated as 1).
    """

    type: Literal["stateless", "lstm"] = "stateless"
    embedding_dim: int = 512
    context_size: int = 2
    conv_group_size: int = 4
    lstm_hidden_dim: int = 512
    lstm_num_layers: int = 1
    dropout: float = 0.1


@dataclass
class JoinerConfig:
    """Joint network: ``output_linear(tanh(encoder_proj(enc) + decoder_proj(pred)))``."""

    dim: int = 512


@dataclass
class ModelConfig:
    """A complete transducer (encoder + predictor + joiner [+ CTC head])."""

    feature_dim: int = 80
    vocab_size: int = 500
    blank_id: int = 0
    tokenizer_fingerprint: str = ""
    """Set by training from the tokenizer (:attr:`asrkit.data.tokenizer.Tokenizer.fingerprint`), like vocab_size;
    later stages refuse another tokenizer. "" in recipes."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    joiner: JoinerConfig = field(default_factory=JoinerConfig)
    ctc_head: bool = False
