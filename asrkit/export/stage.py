"""Stage "export": select (and average) checkpoints of an experiment and export them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asrkit.errors import ConfigError

log = logging.getLogger(__name__)

FORMATS = ("pretrained", "torchscript", "onnx")


def export_model(
    exp_dir: str | Path,
    selection: Any,
    lang_dir: str | Path,
    formats: Sequence[str],
    output_dir: str | Path,
    int8: bool = True,
    streaming: bool = False,
    chunk_size: int | None = None,
    left_context_frames: int | None = None,
) -> list[Path]:
    """Export the model chosen by ``selection`` in each of ``formats``.

    Args:
        exp_dir: the experiment directory (checkpoints with the resolved config inside).
        selection: an ``asrkit.training.selection.Selection`` (epoch/iter/avg/averaged model).
        lang_dir: directory holding the ``bpe.model`` the model was trained with.
        formats: any of ``pretrained``, ``torchscript``, ``onnx``.
        output_dir: ``pretrained.pt`` goes here, TorchScript into ``<output_dir>/torchscript``,
            ONNX into ``<output_dir>/onnx``.
        int8: ONNX: also write ``*.int8.onnx``.
        streaming: export the chunk-wise API of a causal model instead: TorchScript into
            ``<output_dir>/torchscript-streaming/jit_script_streaming.pt``, ONNX for sherpa-onnx's OnlineRecognizer
            into ``<output_dir>/onnx-streaming`` (``pretrained`` has no streaming variant).
        chunk_size / left_context_frames: streaming: the decoding-time chunking fixed in the files (50 Hz frames;
            ``None``: the model's first configured values).

    Returns:
        The written paths (``pretrained.pt``, ``jit_script.pt``, the ONNX directory; streaming:
        ``jit_script_streaming.pt``, the streaming ONNX directory).

    Raises:
        ConfigError: unknown format (listing the valid ones) or selection flags; streaming: a non-causal model,
            ``pretrained``, or chunking the model cannot stream with.
        CheckpointError: missing/corrupt checkpoints. ExportError: an export failed.
    """
    from asrkit.data.tokenizer import Tokenizer, check_tokenizer_matches
    from asrkit.export.onnx import export_onnx
    from asrkit.export.pretrained import export_pretrained
    from asrkit.export.torchscript import export_torchscript
    from asrkit.training.selection import load_selected_model

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown export format(s) {', '.join(map(repr, unknown))}",
                          hint=f"valid formats: {', '.join(FORMATS)}")
    if not formats:
        raise ConfigError("no export format given", hint=f"valid formats: {', '.join(FORMATS)}")
    if streaming and "pretrained" in formats:
        raise ConfigError("--streaming: pretrained.pt has no streaming variant (asrkit decode --streaming runs the "
                          "checkpoints directly)", hint="use --format torchscript or --format onnx with --streaming")
    if not streaming and (chunk_size is not None or left_context_frames is not None):
        raise ConfigError("--chunk-size/--left-context-frames only apply to a --streaming export")
    tokenizer_path = Path(lang_dir) / "bpe.model"
    model, config = load_selected_model(Path(exp_dir), selection, device="cpu")
    check_tokenizer_matches(Tokenizer.load(tokenizer_path), config.get("model", {}), tokenizer_path, exp_dir)
    out = Path(output_dir)
    if streaming:
        _check_streamable(model, chunk_size, left_context_frames)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fmt in dict.fromkeys(formats):
        if streaming:
            written.append(_export_streaming(model, fmt, out, tokenizer_path, int8, chunk_size, left_context_frames))
        elif fmt == "pretrained":
            written.append(export_pretrained(model, config, tokenizer_path, out / "pretrained.pt"))
        elif fmt == "torchscript":
            written.append(export_torchscript(model, out / "torchscript", tokenizer_path))
        else:
            written.append(export_onnx(model, out / "onnx", tokenizer_path, int8=int8))
        log.info("exported %s: %s", fmt, written[-1])
    return written


def _check_streamable(model: Any, chunk_size: int | None, left_context_frames: int | None) -> None:
    """Fail before writing anything when ``model`` cannot stream with this chunking.

    Raises:
        ConfigError: the encoder is not a causal zipformer, or the chunking is invalid.
    """
    import copy

    encoder = getattr(model, "encoder", None)
    if not getattr(encoder, "causal", False) or not hasattr(encoder, "set_decoding_chunk"):
        raise ConfigError(
            f"--streaming export needs a causal zipformer; this model's encoder is a non-causal "
            f"{type(encoder).__name__} (model.encoder.zipformer.causal: false)",
            hint="train a streaming preset such as recipes/zipformer-xs-streaming.yaml")
    probe = copy.deepcopy(encoder)
    probe.set_decoding_chunk(chunk_size, left_context_frames)
    probe.streaming_chunk_config()


def _export_streaming(model: Any, fmt: str, out: Path, tokenizer_path: Path, int8: bool,
                      chunk_size: int | None, left_context_frames: int | None) -> Path:
    from asrkit.export.onnx_streaming import export_onnx_streaming
    from asrkit.export.torchscript_streaming import export_torchscript_streaming

    if fmt == "torchscript":
        return export_torchscript_streaming(model, out / "torchscript-streaming", tokenizer_path, chunk_size,
                                            left_context_frames)
    return export_onnx_streaming(model, out / "onnx-streaming", tokenizer_path, int8=int8, chunk_size=chunk_size,
                                 left_context_frames=left_context_frames)
