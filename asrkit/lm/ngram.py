"""Backoff n-gram language models: the ARPA format and its scoring rule.

An :class:`NgramLM` holds what an ARPA file holds: for every listed n-gram ``g`` its log-probability
``log P(g[-1] | g[:-1])`` and, for n-grams that are contexts of longer ones, a backoff weight. A word ``w`` after a
context ``h`` is scored as

    log P(w | h) = logprob[h + (w,)]                  if h + (w,) is listed
                 = backoff[h] + log P(w | h[1:])       otherwise (backoff[h] = 0 when h is not listed)

which is how SRILM, KenLM and kaldilm read the same file. Log-probabilities are kept in natural log here; the file
holds log10. asrkit trains token-level models (words are tokenizer pieces, :mod:`asrkit.lm.kneser_ney`), but any
ARPA model whose words are the tokenizer's pieces (e.g. KenLM's ``lmplz`` on piece-segmented text) loads the same way.
"""

from __future__ import annotations

import gzip
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from asrkit.errors import DataError

BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
LN10 = math.log(10.0)
ARPA_FLOOR_LOG10 = -99.0
"""The log10 probability ARPA writers give to impossible words (``<s>`` as a predicted word)."""

Ngram = tuple[str, ...]


class NgramLM:
    """A backoff n-gram model.

    Args:
        order: the longest n-gram length.
        log_probs: ``{ngram: natural-log P(ngram[-1] | ngram[:-1])}`` for every listed n-gram.
        backoffs: ``{context: natural-log backoff weight}``; missing contexts back off with weight 0.
    """

    def __init__(self, order: int, log_probs: dict[Ngram, float], backoffs: dict[Ngram, float]) -> None:
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        self.order = order
        self.log_probs = log_probs
        self.backoffs = backoffs
        self.vocabulary = tuple(g[0] for g in log_probs if len(g) == 1)
        self._floor = log_probs.get((UNK,), ARPA_FLOOR_LOG10 * LN10)

    def log_prob(self, context: Sequence[str], word: str) -> float:
        """Natural-log ``P(word | context)``; only the last ``order - 1`` words of ``context`` matter. A word the
        model does not list scores as ``<unk>`` (or log10 = -99 when the model has no ``<unk>``)."""
        context = tuple(context)[max(0, len(context) - (self.order - 1)):]
        penalty = 0.0
        while True:
            lp = self.log_probs.get(context + (word,))
            if lp is not None:
                return penalty + lp
            if not context:
                return penalty + self._floor
            penalty += self.backoffs.get(context, 0.0)
            context = context[1:]

    def sentence_log_prob(self, words: Sequence[str]) -> float:
        """Natural-log probability of a whole sentence: ``<s>`` before it, ``</s>`` scored after it."""
        history: list[str] = [BOS]
        total = 0.0
        for w in list(words) + [EOS]:
            total += self.log_prob(history, w)
            history.append(w)
        return total

    def children(self) -> dict[Ngram, list[tuple[str, float]]]:
        """``{context: [(word, natural-log prob), ...]}`` for every listed n-gram of order >= 2 (and ``()`` for
        the unigrams): what a full-vocabulary scorer needs to overwrite its backed-off vector."""
        out: dict[Ngram, list[tuple[str, float]]] = {}
        for g, lp in self.log_probs.items():
            out.setdefault(g[:-1], []).append((g[-1], lp))
        return out

    # -- ARPA I/O ------------------------------------------------------------------------------------------------

    def write_arpa(self, path: str | Path) -> Path:
        """Write the model as an ARPA file (gzip-compressed when ``path`` ends in ``.gz``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        by_order: list[list[Ngram]] = [[] for _ in range(self.order)]
        for g in self.log_probs:
            by_order[len(g) - 1].append(g)
        tmp = path.with_name(path.name + ".tmp")
        with _open_text(tmp, "wt") as f:
            f.write("\n\\data\\\n")
            for n, grams in enumerate(by_order, start=1):
                f.write(f"ngram {n}={len(grams)}\n")
            for n, grams in enumerate(by_order, start=1):
                f.write(f"\n\\{n}-grams:\n")
                for g in sorted(grams):
                    lp = max(self.log_probs[g] / LN10, ARPA_FLOOR_LOG10)
                    line = f"{lp:.7g}\t{' '.join(g)}"
                    if g in self.backoffs:
                        line += f"\t{self.backoffs[g] / LN10:.7g}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")
        tmp.replace(path)
        return path

    @classmethod
    def read_arpa(cls, path: str | Path) -> "NgramLM":
        """Load an ARPA file (plain or ``.gz``).

        Raises:
            DataError: the file is missing or not an ARPA model (naming the file and line).
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"language model {path} does not exist", hint="run `asrkit prepare lm` first")
        log_probs: dict[Ngram, float] = {}
        backoffs: dict[Ngram, float] = {}
        declared: dict[int, int] = {}
        section = None  # None before \data\, 0 inside \data\, n inside \n-grams:
        try:
            with _open_text(path, "rt") as f:
                for lineno, raw in enumerate(f, start=1):
                    line = raw.strip()
                    if not line:
                        continue
                    if line == "\\data\\":
                        section = 0
                    elif line == "\\end\\":
                        break
                    elif (m := re.fullmatch(r"\\(\d+)-grams:", line)) is not None:
                        section = int(m.group(1))
                    elif section == 0 and line.startswith("ngram "):
                        n, count = line[len("ngram "):].split("=")
                        declared[int(n)] = int(count)
                    elif section:
                        fields = line.split()
                        if len(fields) not in (section + 1, section + 2):
                            raise DataError(f"{path}:{lineno}: expected a log-probability, {section} word(s) and "
                                            f"an optional backoff weight, got {line[:80]!r}")
                        g = tuple(fields[1:section + 1])
                        log_probs[g] = float(fields[0]) * LN10
                        if len(fields) == section + 2:
                            backoffs[g] = float(fields[-1]) * LN10
        except (UnicodeDecodeError, OSError, ValueError) as exc:
            raise DataError(f"language model {path} cannot be read as an ARPA file: {exc}") from None
        if section is None or not declared:
            raise DataError(f"language model {path} is not an ARPA file (no \\data\\ section)")
        found = {n: sum(1 for g in log_probs if len(g) == n) for n in declared}
        if found != declared:
            raise DataError(f"language model {path} is truncated or inconsistent: the header declares "
                            f"{declared} n-grams per order, the file lists {found}")
        return cls(max(declared), log_probs, backoffs)


def _open_text(path: Path, mode: str):
    if path.name.endswith(".gz") or path.name.endswith(".gz.tmp"):
        return gzip.open(path, mode, encoding="utf-8")
    return open(path, mode.replace("t", ""), encoding="utf-8")


def perplexity(lm: NgramLM, sentences: Iterable[Sequence[str]]) -> float:
    """Per-word perplexity over ``sentences`` (``</s>`` counted as a word, as SRILM's ``ppl``)."""
    total, words = 0.0, 0
    for s in sentences:
        total += lm.sentence_log_prob(s)
        words += len(s) + 1
    return math.exp(-total / max(words, 1))
