"""Pieces shared by the TorchScript and ONNX exports."""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


EXPORT_FILE_PATTERNS = ("*.onnx", "*.pt", "tokens.txt", "bpe.model")
"""What an export directory may hold (so replacing it as a whole loses nothing of the user's)."""


@contextmanager
def replaced_as_a_whole(dest: str | Path) -> Iterator[Path]:
    """Write an export directory's files into a hidden sibling directory, then put it in place of ``dest``.

    A process killed mid-export leaves ``dest`` as it was (or absent) and at most a hidden temporary directory
    (removed by the next export), never a mix of old and new files (sherpa-onnx, for one, reads the encoder of one export and the decoder of
    another without complaint). Yields the directory to write into.

    Raises:
        ExportError: ``dest`` exists and holds files no export writes (they would be lost).
    """
    dest = Path(dest)
    if dest.exists():
        foreign = [p.name for p in dest.iterdir()
                   if not p.is_file() or not any(fnmatch.fnmatch(p.name, pat) for pat in EXPORT_FILE_PATTERNS)]
        if foreign:
            raise ExportError(f"{dest} holds files that are not part of an export ({', '.join(sorted(foreign)[:3])})",
                              hint="export into a new or empty directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):  # left by an export that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(staging, dest)
    shutil.rmtree(old, ignore_errors=True)
