"""Streaming ONNX export for sherpa-onnx's ``OnlineRecognizer`` (its zipformer2 transducer).

Files in ``out_dir`` (beside ``tokens.txt`` and ``bpe.model``):

* ``encoder.onnx``: one chunk. Inputs ``x`` (N, T, 80) float32, then the encoder states in the order of
  ``Zipformer2.get_init_states``: per layer ``cached_key_i`` (L_s, N, H_s * query_head_dim),
  ``cached_nonlin_attn_i`` (1, N, L_s, 3 D_s / 4), ``cached_val1_i`` / ``cached_val2_i`` (L_s, N, H_s *
  value_head_dim), ``cached_conv1_i`` / ``cached_conv2_i`` (N, D_s, K_s // 2), then ``embed_states``
  (N, 128, 3, 19) and ``processed_lens`` (N,) int64. Outputs ``encoder_out`` (N, T'', J) (the joiner's encoder
  projection folded in) and ``new_<state>`` for every state, in the same order. There is no ``x_lens``:
  sherpa-onnx only runs full windows of T frames. sherpa-onnx makes the initial front-end state with 128
  channels (icefall's width), so a narrower front end reads the first channels and returns the rest as zeros;
  ``feature_norm: running_mean`` keeps its running feature sum in the channels after the front end's own.
* ``decoder.onnx`` / ``joiner.onnx``: as the offline export (:func:`asrkit.export.onnx.export_decoder_joiner`).
* ``*.int8.onnx``: the three files with int8 weights.

Encoder metadata (what sherpa-onnx reads, comma-separated lists per stack): ``model_type=zipformer2``,
``version``, ``T`` (input frames per call: 2 N_c + 13), ``decode_chunk_len`` (input frames between calls: 2 N_c),
``num_encoder_layers``, ``encoder_dims``, ``query_head_dims``, ``value_head_dims``, ``num_heads``,
``cnn_module_kernels``, ``left_context_len`` (cached frames per stack); plus asrkit's ``chunk_size`` and
``left_context_frames`` (50 Hz) and model facts. Every file is loaded back and checked before the export is
declared done: sherpa-onnx ends the process on a missing key.

Legend: N streams, T input frames per call, N_c chunk size (50 Hz), T'' = N_c / 2 output frames, L_s cached
frames, H_s heads, D_s dim and K_s kernel of stack s, J joiner dim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from asrkit.errors import ExportError
from asrkit.export.common import replaced_as_a_whole, write_tokenizer_files
from asrkit.export.onnx import (
    DECODER_META_REQUIRED,
    IO_NAMES,
    JOINER_META_REQUIRED,
    _add_metadata,
    _export,
    _read_metadata,
    check_tokens_file,
    finish_onnx_export,
    prepare_onnx_export,
    validate_onnx_file,
)

SHERPA_EMBED_CHANNELS = 128
"""Channels of the front-end state sherpa-onnx allocates (icefall's Conv2dSubsampling width)."""

LAYER_STATE_NAMES = ("cached_key", "cached_nonlin_attn", "cached_val1", "cached_val2", "cached_conv1", "cached_conv2")

STREAMING_ENCODER_META_REQUIRED = (
    "model_type", "version", "T", "decode_chunk_len", "num_encoder_layers", "encoder_dims", "query_head_dims",
    "value_head_dims", "num_heads", "cnn_module_kernels", "left_context_len",
)


def state_names(num_layers: int) -> list[str]:
    """Names of the encoder's state inputs for ``num_layers`` layers in all (outputs add a ``new_`` prefix)."""
    names = [f"{name}_{i}" for i in range(num_layers) for name in LAYER_STATE_NAMES]
    return names + ["embed_states", "processed_lens"]


class _StreamingEncoder(nn.Module):
    """``forward(x, *states) -> (encoder_out, *new_states)`` on full windows, sherpa-onnx's calling convention."""

    def __init__(self, streaming: nn.Module, embed_channels: int) -> None:
        super().__init__()
        self.streaming = streaming
        self.embed_channels = embed_channels

    def forward(self, x: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        cached = list(states)
        cached[-2] = cached[-2][:, : self.embed_channels]
        x_lens = torch.zeros_like(cached[-1]) + x.size(1)  # every window is full; (N,) keeps N dynamic
        out, _, new_states = self.streaming.streaming_encode(x, x_lens, cached)
        extra = SHERPA_EMBED_CHANNELS - self.embed_channels
        new_states[-2] = nn.functional.pad(new_states[-2], (0, 0, 0, 0, 0, extra))
        return (out, *new_states)


def _first_layer(stack: nn.Module) -> nn.Module:
    from asrkit.models.zipformer.layer import Zipformer2EncoderLayer

    return next(m for m in stack.modules() if isinstance(m, Zipformer2EncoderLayer))


def encoder_metadata(streaming: nn.Module) -> dict[str, str]:
    """sherpa-onnx's zipformer2 encoder metadata for a :class:`StreamingTransducer` (values as strings)."""
    encoder = streaming.encoder
    stacks = list(encoder.encoders)
    heads = [int(_first_layer(s).self_attn_weights.num_heads) for s in stacks]
    query = [int(_first_layer(s).self_attn_weights.query_head_dim) for s in stacks]
    value = [int(_first_layer(s).self_attn1.in_proj.out_features) // h for s, h in zip(stacks, heads)]
    left = [streaming.left_context_frames // ds for ds in encoder.downsampling_factor]

    def join(values: list[int]) -> str:
        return ",".join(str(int(v)) for v in values)

    return {
        "model_type": "zipformer2",
        "version": "1",
        "T": str(streaming.window),
        "decode_chunk_len": str(streaming.shift),
        "num_encoder_layers": join(encoder.num_encoder_layers),
        "encoder_dims": join(encoder.encoder_dim),
        "query_head_dims": join(query),
        "value_head_dims": join(value),
        "num_heads": join(heads),
        "cnn_module_kernels": join(encoder.cnn_module_kernel),
        "left_context_len": join(left),
        "chunk_size": str(streaming.chunk_size),
        "left_context_frames": str(streaming.left_context_frames),
        "streaming": "1",
    }


def sherpa_init_states(streaming: nn.Module, batch_size: int = 1) -> list[Tensor]:
    """Fresh encoder states as sherpa-onnx makes them (front-end state widened to 128 channels)."""
    states = streaming.get_init_states(batch_size)
    embed = states[-2]
    states[-2] = nn.functional.pad(embed, (0, 0, 0, 0, 0, SHERPA_EMBED_CHANNELS - embed.size(1)))
    return states


def streaming_io_names(num_layers: int) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of the streaming ``encoder.onnx``."""
    states = state_names(num_layers)
    return ["x", *states], ["encoder_out", *[f"new_{n}" for n in states]]


def validate_streaming_onnx_export(out_dir: str | Path, int8: bool = False) -> dict[str, dict[str, str]]:
    """Load the three files of a streaming ONNX export with onnxruntime and check names and metadata.

    Returns:
        ``{"encoder": metadata, "decoder": ..., "joiner": ...}``.

    Raises:
        ExportError: a file is missing or unloadable, has other inputs/outputs, or lacks metadata sherpa-onnx
            requires.
    """
    out = Path(out_dir)
    suffix = ".int8.onnx" if int8 else ".onnx"
    encoder_path = out / f"encoder{suffix}"
    try:  # the layer count names the state inputs; an unreadable file is reported by validate_onnx_file
        layers = _read_metadata(encoder_path).get("num_encoder_layers", "")
    except Exception:
        layers = ""
    num_layers = sum(int(v) for v in layers.split(",") if v.strip().isdigit())
    meta = validate_onnx_file(encoder_path, streaming_io_names(num_layers), STREAMING_ENCODER_META_REQUIRED)
    found = {"encoder": meta}
    for name, keys in (("decoder", DECODER_META_REQUIRED), ("joiner", JOINER_META_REQUIRED)):
        found[name] = validate_onnx_file(out / f"{name}{suffix}", IO_NAMES[name], keys)
    check_tokens_file(out, found["decoder"])
    return found


def export_onnx_streaming(
    model: nn.Module,
    out_dir: str | Path,
    tokenizer_path: str | Path,
    int8: bool = True,
    chunk_size: Optional[int] = None,
    left_context_frames: Optional[int] = None,
    feature_dim: int = 80,
) -> Path:
    """Export a causal transducer for sherpa-onnx's ``OnlineRecognizer``: chunk-wise ``encoder.onnx`` with
    explicit states, ``decoder.onnx``, ``joiner.onnx`` (and ``*.int8.onnx``), ``tokens.txt``.

    Args:
        model: a ``Transducer`` with a causal Zipformer2 encoder and a stateless predictor (not modified).
        out_dir: output directory (created).
        tokenizer_path: the ``bpe.model`` the model was trained with.
        int8: also write dynamically quantised ``*.int8.onnx`` files.
        chunk_size / left_context_frames: decoding-time chunking in 50 Hz frames, fixed in the file (``None``:
            the first entries of the model's config).
        feature_dim: fbank bins the encoder takes (sherpa-onnx computes 80).

    Returns:
        ``out_dir``.

    Raises:
        ConfigError: the model cannot stream with this chunking (not causal, ...).
        ExportError: recurrent predictor, a front end wider than 128 channels, an export failure, or an export
            that does not validate.
        MissingDependencyError: onnx/onnxruntime are not installed.
    """
    from asrkit.models.transducer.streaming import StreamingTransducer

    encoder = getattr(model, "encoder", None)
    if not hasattr(encoder, "set_decoding_chunk") or not encoder.causal:
        from asrkit.errors import ConfigError

        raise ConfigError(f"a {type(encoder).__name__} encoder cannot stream: --streaming export needs a zipformer "
                          "trained with causal: true", hint="train a streaming preset (recipes/zipformer-xs-streaming.yaml)")
    net, common = prepare_onnx_export(
        model, comment="asrkit streaming transducer (encoder_out includes the joiner encoder projection)")
    net.encoder.set_decoding_chunk(chunk_size, left_context_frames)
    streaming = StreamingTransducer(net).eval()
    states = streaming.get_init_states(2)
    embed_channels = int(states[-2].size(1))
    if embed_channels > SHERPA_EMBED_CHANNELS:
        extra = int(net.encoder.norm_state_channels)
        norm = f" ({extra} of them the running feature sum of feature_norm: running_mean)" if extra else ""
        raise ExportError(f"the encoder's front-end state has {embed_channels} channels{norm}; sherpa-onnx's "
                          f"streaming zipformer allocates {SHERPA_EMBED_CHANNELS}",
                          hint=f"use subsampling_channels <= {SHERPA_EMBED_CHANNELS - extra}"
                               + (" or feature_norm: none" if extra else ""))
    num_layers = sum(net.encoder.num_encoder_layers)
    inputs, outputs = streaming_io_names(num_layers)
    batch_dims = list(streaming.state_batch_dims)
    dynamic_axes = {"x": {0: "N"}, "encoder_out": {0: "N"}}
    for name, dim in zip(inputs[1:], batch_dims):
        dynamic_axes[name] = {dim: "N"}
        dynamic_axes[f"new_{name}"] = {dim: "N"}
    if net.encoder.encoder_embed.out_width != ((feature_dim - 1) // 2 - 1) // 2:
        raise ExportError(f"the encoder does not take {feature_dim} fbank bins", hint="pass the model's feature_dim")
    x = torch.randn(2, streaming.window, feature_dim)
    wrapper = _StreamingEncoder(streaming, embed_channels).eval()
    with torch.no_grad():
        example = sherpa_init_states(streaming, 2)
        joiner_dim = int(wrapper(x, *example)[0].size(-1))
    with replaced_as_a_whole(out_dir) as out:  # a killed export leaves the previous one intact
        write_tokenizer_files(tokenizer_path, out, common["vocab_size"])
        _export(wrapper, (x, *example), out / "encoder.onnx", "encoder", dynamic_axes, io_names=(inputs, outputs))
        _add_metadata(out / "encoder.onnx", {**common, **encoder_metadata(streaming), "feature_dim": feature_dim,
                                             "joiner_dim": joiner_dim})
        finish_onnx_export(net, out, common, int8, validate_streaming_onnx_export)
    return Path(out_dir)
