"""Stage "tokenizer": train sentencepiece on the training transcripts of a cut set."""

from __future__ import annotations

import logging
from pathlib import Path

from asrkit.data.datamodule import cut_text, load_cuts
from asrkit.data.tokenizer import train_tokenizer

log = logging.getLogger(__name__)


def prepare_tokenizer(
    cuts_path: Path, lang_dir: Path, vocab_size: int = 500, model_type: str = "unigram", force: bool = False
) -> Path:
    """Train ``{lang_dir}/bpe.model`` + ``tokens.txt`` from the transcripts in ``cuts_path``.

    Speed-perturbed copies (ids ending in ``_sp0.9``/``_sp1.1``) are skipped so each transcript counts once.
    Skipped when ``bpe.model`` exists unless ``force``.
    """
    lang_dir = Path(lang_dir)
    model = lang_dir / "bpe.model"
    if model.exists() and not force:
        log.info("%s exists: skipped", model)
        return model
    texts = (cut_text(c) for c in load_cuts(cuts_path) if "_sp" not in c.id)
    return train_tokenizer(texts, lang_dir, vocab_size=vocab_size, model_type=model_type)
