"""Stages "tokenizer" and "lm": a sentencepiece tokenizer and a token n-gram language model from the training
transcripts of a cut set."""

from __future__ import annotations

import logging
from pathlib import Path

from asrkit.data.datamodule import cut_text, load_cuts
from asrkit.data.tokenizer import Tokenizer, train_tokenizer

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
    return train_tokenizer(_transcripts(cuts_path), lang_dir, vocab_size=vocab_size, model_type=model_type)


def _transcripts(cuts_path: Path) -> list[str]:
    """The non-empty transcripts of ``cuts_path``, once each: speed-perturbed copies (ids ending in
    ``_sp0.9``/``_sp1.1``) are skipped."""
    return [t for c in load_cuts(cuts_path) if "_sp" not in c.id and (t := cut_text(c))]


def lm_path(lang_dir: Path, order: int) -> Path:
    """Where ``asrkit prepare lm`` writes the token n-gram model of ``order``: ``{lang_dir}/lm-{order}gram.arpa``."""
    return Path(lang_dir) / f"lm-{order}gram.arpa"


def prepare_lm(
    cuts_path: Path, lang_dir: Path, order: int = 3, dev_cuts: Path | None = None, force: bool = False
) -> Path:
    """Estimate a Kneser-Ney n-gram model over the tokenizer's pieces from the transcripts in ``cuts_path`` and
    write it to :func:`lm_path` (ARPA). Every piece of the tokenizer (but blank) is in its vocabulary. Logs the
    per-token perplexity on the training transcripts and, when given, on ``dev_cuts``.
    Skipped when the file exists unless ``force``.

    Raises:
        DataError: no tokenizer in ``lang_dir``, or no transcripts in ``cuts_path``.
    """
    from asrkit.errors import DataError
    from asrkit.lm import estimate_kneser_ney, perplexity

    out = lm_path(lang_dir, order)
    if out.exists() and not force:
        log.info("%s exists: skipped", out)
        return out
    tokenizer = Tokenizer.load(lang_dir)

    def pieces(path: Path) -> list[list[str]]:
        return [[tokenizer.id_to_symbol(t) for t in ids] for ids in tokenizer.encode(_transcripts(path))]

    train = pieces(cuts_path)
    if not train:
        raise DataError(f"{cuts_path} has no transcripts to estimate a language model from")
    vocabulary = [s for i, s in enumerate(tokenizer.symbols) if i != tokenizer.blank_id]
    lm = estimate_kneser_ney(train, order, vocabulary)
    lm.write_arpa(out)
    log.info("%d-gram token LM from %d transcripts: %d n-grams, perplexity %.2f (training text) -> %s",
             order, len(train), len(lm.log_probs), perplexity(lm, train), out)
    if dev_cuts is not None:
        log.info("perplexity on %s: %.2f", dev_cuts, perplexity(lm, pieces(dev_cuts)))
    return out
