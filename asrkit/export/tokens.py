"""``tokens.txt`` (``symbol id`` per line, ``<blk>`` = 0) and text from token symbols.

sherpa-onnx reads this file to turn token ids into text; asrkit writes it next to every
exported model and falls back to it for detokenisation when no ``bpe.model`` is present.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from asrkit.errors import CheckpointError

WORD_BOUNDARY = "\u2581"  # SentencePiece's "▁" marks the start of a word
_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def write_tokens_txt(symbols: Sequence[str], path: str | Path) -> Path:
    """Write ``symbol id`` lines in id order; returns the path."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for i, sym in enumerate(symbols):
            f.write(f"{sym} {i}\n")
    return path


def read_tokens_txt(path: str | Path) -> list[str]:
    """Read ``tokens.txt`` into a list indexed by id.

    Raises:
        CheckpointError: the file is missing, a line is not ``symbol id``, or ids have gaps.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: tokens file not found")
    table: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise CheckpointError(f"{path}:{lineno}: expected 'symbol id', got {line!r}")
        table[int(parts[1])] = parts[0]
    if sorted(table) != list(range(len(table))):
        raise CheckpointError(f"{path}: token ids are not 0..{len(table) - 1} without gaps")
    return [table[i] for i in range(len(table))]


class TokenTable:
    """Detokeniser built from ``tokens.txt`` symbols (SentencePiece conventions).

    Args:
        symbols: symbol of each id.
        blank_id: id that never appears in text.
    """

    def __init__(self, symbols: Sequence[str], blank_id: int = 0) -> None:
        self.symbols = list(symbols)
        self.blank_id = blank_id
        self.unk_id = self.symbols.index("<unk>") if "<unk>" in self.symbols else None

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def decode(self, ids: list[list[int]]) -> list[str]:
        """Token ids -> texts: pieces are concatenated, ``▁`` becomes a space, byte pieces
        ``<0xAB>`` are joined into UTF-8."""
        return [self._decode_one(seq) for seq in ids]

    def _decode_one(self, seq: Sequence[int]) -> str:
        out = bytearray()
        for i in seq:
            if i == self.blank_id:
                continue
            sym = self.symbols[i]
            m = _BYTE.match(sym)
            out += bytes([int(m.group(1), 16)]) if m else sym.replace(WORD_BOUNDARY, " ").encode("utf-8")
        return " ".join(out.decode("utf-8", errors="replace").split())
