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

    Returns:
        The written paths (``pretrained.pt``, ``jit_script.pt``, the ONNX directory).

    Raises:
        ConfigError: unknown format (listing the valid ones) or selection flags.
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
    tokenizer_path = Path(lang_dir) / "bpe.model"
    model, config = load_selected_model(Path(exp_dir), selection, device="cpu")
    check_tokenizer_matches(Tokenizer.load(tokenizer_path), config.get("model", {}), tokenizer_path, exp_dir)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fmt in dict.fromkeys(formats):
        if fmt == "pretrained":
            written.append(export_pretrained(model, config, tokenizer_path, out / "pretrained.pt"))
        elif fmt == "torchscript":
            written.append(export_torchscript(model, out / "torchscript", tokenizer_path))
        else:
            written.append(export_onnx(model, out / "onnx", tokenizer_path, int8=int8))
        log.info("exported %s: %s", fmt, written[-1])
    return written
