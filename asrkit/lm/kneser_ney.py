"""Interpolated Kneser-Ney estimation of a backoff n-gram model (Chen & Goodman 1998, one discount per order).

For an n-gram order ``k`` with counts ``c`` (raw counts at the highest order; continuation counts -- the number of
distinct words seen before the n-gram -- below it, except for n-grams that start with ``<s>``, which nothing can
precede and which keep their raw counts):

    P(w | h) = max(c(h w) - D_k, 0) / c(h .) + D_k * N(h .) / c(h .) * P(w | h[1:])

with ``c(h .)`` the total and ``N(h .)`` the number of distinct words after ``h``, and ``D_k = n1 / (n1 + 2 n2)``
from the counts-of-counts of order ``k``. The unigram level interpolates with the uniform distribution over the
vocabulary, so every word (every tokenizer piece, seen or not) gets a probability. Because the unseen-word mass of
context ``h`` is exactly ``D_k N(h .) / c(h .)`` times the lower order, the model is stored losslessly in backoff
(ARPA) form: listed n-grams keep their interpolated probability and ``h`` gets that factor as its backoff weight.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from asrkit.lm.ngram import BOS, EOS, LN10, ARPA_FLOOR_LOG10, Ngram, NgramLM

DEFAULT_DISCOUNT = 0.5
"""Discount used for an order whose counts-of-counts cannot estimate one (no n-gram seen once or twice)."""


def _discount(counts: Counter) -> float:
    """Ney's estimate ``n1 / (n1 + 2 n2)`` from how many n-grams have count 1 and 2, kept inside (0, 1)."""
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    if n1 == 0 or n2 == 0:
        return DEFAULT_DISCOUNT
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)


def _raw_counts(sentences: Iterable[Sequence[str]], order: int) -> list[Counter]:
    """``counts[k - 1][g]``: occurrences of every k-gram of ``<s> words </s>``, k = 1..order."""
    counts = [Counter() for _ in range(order)]
    for words in sentences:
        padded = (BOS, *words, EOS)
        for k in range(1, order + 1):
            for i in range(len(padded) - k + 1):
                counts[k - 1][padded[i:i + k]] += 1
    return counts


def _kn_counts(raw: list[Counter]) -> list[Counter]:
    """The counts each order is estimated from: raw at the highest order, continuation counts below it."""
    order = len(raw)
    out = [Counter() for _ in range(order)]
    out[-1] = raw[-1]
    for k in range(order - 1, 0, -1):  # k = the length of the n-grams of level k - 1
        continuation: Counter = Counter()
        for g in raw[k]:
            continuation[g[1:]] += 1  # one more distinct word before g[1:]
        level = out[k - 1]
        for g, c in raw[k - 1].items():
            level[g] = c if g[0] == BOS else continuation[g]
    # the unigram <s> is never predicted: drop it (its probability is the ARPA floor)
    out[0].pop((BOS,), None)
    return out


def estimate_kneser_ney(
    sentences: Iterable[Sequence[str]], order: int = 3, vocabulary: Iterable[str] = ()
) -> NgramLM:
    """Estimate an interpolated Kneser-Ney model.

    Args:
        sentences: word sequences (no ``<s>``/``</s>``; they are added).
        order: the longest n-gram (>= 1).
        vocabulary: words to give a probability even if never seen (e.g. all tokenizer pieces); ``</s>`` and
            the words of ``sentences`` are always in it.

    Returns:
        the model, with every vocabulary word listed as a unigram and ``<s>`` at the ARPA floor.

    Raises:
        ValueError: ``order < 1`` or no sentences.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    raw = _raw_counts(sentences, order)
    if not raw[0]:
        raise ValueError("no sentences to estimate a language model from")
    counts = _kn_counts(raw)
    words = ({g[0] for g in raw[0]} | set(vocabulary) | {EOS}) - {BOS}

    log_probs: dict[Ngram, float] = {}
    backoffs: dict[Ngram, float] = {}
    lower: dict[Ngram, float] = {}  # probabilities of the level below, natural domain

    # unigrams: discounted continuation counts + the freed mass spread uniformly
    d = _discount(counts[0])
    total = sum(counts[0].values())
    freed = d * len(counts[0]) / total
    for w in words:
        p = max(counts[0].get((w,), 0) - d, 0.0) / total + freed / len(words)
        lower[(w,)] = p
        log_probs[(w,)] = math.log(p)
    log_probs[(BOS,)] = ARPA_FLOOR_LOG10 * LN10

    for k in range(2, order + 1):
        level = counts[k - 1]
        d = _discount(level)
        context_total: defaultdict[Ngram, int] = defaultdict(int)
        context_types: defaultdict[Ngram, int] = defaultdict(int)
        for g, c in level.items():
            context_total[g[:-1]] += c
            context_types[g[:-1]] += 1
        current: dict[Ngram, float] = {}
        for g, c in level.items():
            h = g[:-1]
            gamma = d * context_types[h] / context_total[h]
            p = max(c - d, 0.0) / context_total[h] + gamma * _backed_off(lower, backoffs, g[1:])
            current[g] = p
            log_probs[g] = math.log(p)
        for h, total_h in context_total.items():
            backoffs[h] = math.log(d * context_types[h] / total_h)
        lower.update(current)
    return NgramLM(order, log_probs, backoffs)


def _backed_off(probs: dict[Ngram, float], backoffs: dict[Ngram, float], g: Ngram) -> float:
    """``P(g[-1] | g[:-1])`` of the model estimated so far (natural domain), backing off as ARPA does."""
    weight = 1.0
    while g not in probs:
        weight *= math.exp(backoffs.get(g[:-1], 0.0))
        g = g[1:]
    return weight * probs[g]
