"""Shallow fusion: an n-gram model over tokenizer pieces scoring every token a transducer search may emit.

Shape legend: V model vocabulary (tokens.txt), N hypotheses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from asrkit.lm.ngram import BOS, EOS, Ngram, NgramLM


class TokenLMScorer:
    """Full-vocabulary log-probabilities of a token n-gram model, in the model's token ids.

    ``log_probs(history)`` is the (V,) vector ``log P_lm(token | history)`` for every token id, 0 at ``blank_id``
    (blank emits nothing, so the LM has nothing to say about it). Vectors are built once per distinct context (the
    last ``order - 1`` pieces) by backing off: the vector of the shorter context plus the backoff weight, with the
    listed n-grams of the context written over it.

    Args:
        lm: the n-gram model; its words are tokenizer pieces.
        symbols: the piece of every token id (``Tokenizer.symbols``; tokens.txt order).
        blank_id: the blank token's id.
    """

    def __init__(self, lm: NgramLM, symbols: Sequence[str], blank_id: int = 0) -> None:
        self.lm = lm
        self.blank_id = blank_id
        self.symbols = list(symbols)
        self._ids = {s: i for i, s in enumerate(self.symbols)}
        self._children = lm.children()
        self._cache: dict[Ngram, torch.Tensor] = {}
        self.covered = sum(1 for s in self.symbols if (s,) in lm.log_probs)
        """How many of the tokens the model lists (the rest score as ``<unk>`` or the floor)."""

    def context(self, tokens: Sequence[int]) -> Ngram:
        """The LM context after emitting ``tokens`` (ids, no blanks): ``<s>`` and the last pieces."""
        keep = self.lm.order - 1
        if keep == 0:
            return ()
        words = (BOS, *(self.symbols[t] for t in tokens[max(0, len(tokens) - keep):]))
        return words[max(0, len(words) - keep):]

    def log_probs(self, tokens: Sequence[int]) -> torch.Tensor:
        """(V,) natural-log ``P(token | tokens)`` for every token id (0 for blank)."""
        return self._vector(self.context(tokens))

    def batch_log_probs(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """(N, V) :meth:`log_probs` of N token histories."""
        return torch.stack([self.log_probs(h) for h in histories])

    def eos_log_prob(self, tokens: Sequence[int]) -> float:
        """Natural-log ``P(</s> | tokens)``: the LM's cost of ending the utterance here."""
        return self.lm.log_prob(self.context(tokens), EOS)

    def _vector(self, ctx: Ngram) -> torch.Tensor:
        cached = self._cache.get(ctx)
        if cached is not None:
            return cached
        if ctx:
            vec = self._vector(ctx[1:]) + self.lm.backoffs.get(ctx, 0.0)
        else:
            vec = torch.tensor([self.lm.log_prob((), s) for s in self.symbols], dtype=torch.float32)
        listed = [(self._ids[w], lp) for w, lp in self._children.get(ctx, ()) if w in self._ids]
        if ctx and listed:
            ids, lps = zip(*listed)
            vec[list(ids)] = torch.tensor(lps, dtype=torch.float32)
        vec[self.blank_id] = 0.0
        self._cache[ctx] = vec
        return vec
