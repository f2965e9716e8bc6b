"""Pieces shared by the TorchScript and ONNX exports."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from asrkit.errors import ExportError


def model_metadata(model: torch.nn.Module) -> dict[str, Any]:
    """Search-relevant facts about a Transducer, stored with every export."""
    from asrkit.decoding.context import uses_full_history

    return {
        "blank_id": int(model.blank_id),
        "vocab_size": int(model.vocab_size),
        "context_size": int(model.context_size),
        "recurrent_predictor": bool(uses_full_history(model)),
        "has_ctc_head": getattr(model, "ctc_head", None) is not None,
    }


def write_tokenizer_files(tokenizer_path: str | Path, out_dir: Path, vocab_size: int) -> list[str]:
    """Copy ``bpe.model`` into ``out_dir`` and write ``tokens.txt``; returns the symbols.

    Raises:
        ExportError: the tokenizer's size differs from the model's vocabulary.
        DataError: the tokenizer cannot be read.
    """
    from asrkit.data.tokenizer import Tokenizer
    from asrkit.export.tokens import write_tokens_txt

    src = Path(tokenizer_path)
    if src.is_dir():
        src = src / "bpe.model"
    tokenizer = Tokenizer.load(src)
    if tokenizer.vocab_size != vocab_size:
        raise ExportError(
            f"tokenizer {src} has {tokenizer.vocab_size} tokens but the model's vocab_size is {vocab_size}",
            hint="export with the tokenizer the model was trained with",
        )
    if src.resolve() != (out_dir / "bpe.model").resolve():
        shutil.copyfile(src, out_dir / "bpe.model")
    write_tokens_txt(tokenizer.symbols, out_dir / "tokens.txt")
    return tokenizer.symbols
