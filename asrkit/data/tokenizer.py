"""SentencePiece tokenizer with the transducer's id conventions.

Ids: ``<blk>`` = 0 (the transducer blank, never produced by SentencePiece encoding),
``<sos/eos>`` = 1, ``<unk>`` = 2, then the learned pieces. The trained model is saved as
``bpe.model`` (whatever the model type, icefall's name) next to ``tokens.txt`` (``symbol id`` per line),
which is what sherpa-onnx reads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from asrkit.errors import DataError

log = logging.getLogger(__name__)

BLANK = "<blk>"
SOS_EOS = "<sos/eos>"
UNK = "<unk>"


def train_tokenizer(
    texts: Iterable[str],
    out_dir: Path,
    vocab_size: int = 500,
    model_type: Literal["unigram", "bpe"] = "unigram",
    character_coverage: float = 1.0,
) -> Path:
    """Train a SentencePiece model on ``texts`` and write ``bpe.model`` + ``tokens.txt`` into ``out_dir``.

    ``vocab_size`` is an upper bound: on a small vocabulary corpus SentencePiece may learn fewer
    pieces (``hard_vocab_limit=False``); the real size is in ``tokens.txt``.

    Example:
        >>> model = train_tokenizer(["YES NO", "GO STOP"], Path("data/lang"), vocab_size=30)
    """
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    transcript = out_dir / "transcript_words.txt"
    n = 0
    with open(transcript, "w", encoding="utf-8") as f:
        for text in texts:
            text = text.strip()
            if text:
                f.write(text + "\n")
                n += 1
    if n == 0:
        raise DataError(f"cannot train a tokenizer in {out_dir}: no non-empty transcripts were given")
    prefix = out_dir / "bpe"
    spm.SentencePieceTrainer.train(
        input=str(transcript),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        input_sentence_size=10_000_000,
        user_defined_symbols=[BLANK, SOS_EOS],
        unk_id=2,
        bos_id=-1,
        eos_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    tokenizer = Tokenizer.load(prefix.with_suffix(".model"))
    tokenizer.write_tokens_txt(out_dir / "tokens.txt")
    log.info("trained a %s tokenizer with %d tokens in %s", model_type, tokenizer.vocab_size, out_dir)
    return prefix.with_suffix(".model")


class Tokenizer:
    """Text <-> token ids. ``blank_id`` is 0 and is never produced by :meth:`encode`."""

    blank_id = 0

    def __init__(self, processor) -> None:
        self._sp = processor
        if self._sp.id_to_piece(0) != BLANK:
            raise DataError(f"tokenizer model has {self._sp.id_to_piece(0)!r} at id 0, expected {BLANK!r}")
        self.unk_id = self._sp.unk_id()

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Load ``bpe.model`` (or a directory containing it)."""
        import sentencepiece as spm

        path = Path(path)
        if path.is_dir():
            path = path / "bpe.model"
        if not path.is_file():
            raise DataError(f"tokenizer model {path} does not exist", hint="run `asrkit prepare tokenizer` first")
        processor = spm.SentencePieceProcessor()
        try:
            processor.load(str(path))
        except Exception as exc:  # sentencepiece raises OSError/RuntimeError with C++ text
            raise DataError(f"tokenizer model {path} cannot be read: {exc}") from None
        return cls(processor)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Tokenizer":
        """Load from the serialized model bytes (as stored in ``pretrained.pt``)."""
        import sentencepiece as spm

        processor = spm.SentencePieceProcessor()
        processor.load_from_serialized_proto(data)
        return cls(processor)

    def to_bytes(self) -> bytes:
        """The serialized SentencePiece model."""
        return self._sp.serialized_model_proto()

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def fingerprint(self) -> str:
        """sha256 of the token inventory (the pieces, in id order): equal for interchangeable tokenizers, whatever
        file they were loaded from. Training stores it in ``model.tokenizer_fingerprint``."""
        import hashlib

        return hashlib.sha256("\n".join(self.symbols).encode("utf-8")).hexdigest()

    @property
    def symbols(self) -> list[str]:
        """All symbols in id order (the contents of tokens.txt)."""
        return [self._sp.id_to_piece(i) for i in range(self.vocab_size)]

    def id_to_symbol(self, i: int) -> str:
        return self._sp.id_to_piece(i)

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Texts -> token ids (no blank)."""
        return self._sp.encode(list(texts), out_type=int)

    def decode(self, ids: list[list[int]]) -> list[str]:
        """Token ids -> texts. Blank ids are dropped."""
        return [self._sp.decode([t for t in seq if t != self.blank_id]) for seq in ids]

    def find_unknown(self, text: str) -> list[str]:
        """The characters of ``text`` that the model maps to ``<unk>`` (empty list when all are known)."""
        unknown = []
        for piece_ids, word in zip(self._sp.encode(text.split(), out_type=int), text.split()):
            if self.unk_id in piece_ids:
                unknown.extend(c for c in word if self._sp.piece_to_id(c) == self.unk_id and c not in unknown)
        return unknown

    def write_tokens_txt(self, path: Path) -> None:
        """Write ``symbol id`` per line (sherpa-onnx's tokens.txt)."""
        with open(path, "w", encoding="utf-8") as f:
            for i, sym in enumerate(self.symbols):
                f.write(f"{sym} {i}\n")


def check_tokenizer_matches(tokenizer: "Tokenizer", model_config: dict, source: str | Path, model: str) -> None:
    """Refuse a tokenizer other than the one the model was trained with (its ids would name other pieces).

    Args:
        tokenizer: the loaded tokenizer; ``source``: where it came from (for the message).
        model_config: the model's stored config section (``tokenizer_fingerprint`` is set by training; models
            trained before it existed have none and are not checked).
        model: what the model is (e.g. its experiment directory), for the message.

    Raises:
        ConfigError: naming both.
    """
    from asrkit.errors import ConfigError

    expected = (model_config or {}).get("tokenizer_fingerprint") or ""
    if expected and tokenizer.fingerprint != expected:
        raise ConfigError(f"{source} is not the tokenizer {model} was trained with (fingerprint "
                          f"{tokenizer.fingerprint[:12]}, the model's {expected[:12]})",
                          hint="pass the --lang-dir the model was trained with")
