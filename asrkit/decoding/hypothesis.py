"""Hypothesis containers shared by the beam searches."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple


class SearchOutput(NamedTuple):
    """Result of a search called with ``return_timestamps=True``.

    Attributes:
        tokens: per utterance, the recognised token ids (no blanks, no context padding).
        timestamps: per utterance, the encoder frame index at which each token was emitted
            (same length as the matching ``tokens`` entry).
    """

    tokens: list[list[int]]
    timestamps: list[list[int]]


@dataclass
class Hypothesis:
    """One partial transcript in a beam.

    Attributes:
        ys: token history *including* the initial predictor context (see
            :func:`asrkit.decoding.context.initial_context`).
        log_prob: total log-probability of all alignments merged into this hypothesis.
        timestamp: encoder frame of each emitted token (excluding the context prefix).
    """

    ys: list[int]
    log_prob: float
    timestamp: list[int] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(self.ys)


class HypothesisList:
    """A set of hypotheses keyed by token history; adding an existing history merges the
    two by summing their probabilities (log-add), as different alignments of the same text."""

    def __init__(self, hyps: list[Hypothesis] | None = None) -> None:
        self._data: dict[tuple[int, ...], Hypothesis] = {}
        for h in hyps or []:
            self.add(h)

    def add(self, hyp: Hypothesis) -> None:
        old = self._data.get(hyp.key)
        if old is None:
            self._data[hyp.key] = hyp
        else:
            # Same text reached through another alignment: sum the probabilities, and keep the
            # timestamps of the more probable alignment.
            hi, lo = max(old.log_prob, hyp.log_prob), min(old.log_prob, hyp.log_prob)
            if hyp.log_prob > old.log_prob:
                old.timestamp = hyp.timestamp
            old.log_prob = hi + math.log1p(math.exp(lo - hi)) if lo > -math.inf else hi

    def remove(self, hyp: Hypothesis) -> None:
        del self._data[hyp.key]

    def best(self, length_norm: bool = False, bonus: Callable[[Hypothesis], float] | None = None) -> Hypothesis:
        """The most probable hypothesis. With ``length_norm`` the score is divided by
        ``len(ys)``, the initial predictor context included, to offset the bias towards short
        outputs; icefall and sherpa-onnx normalise the same way, so the three pick the same
        hypothesis from the same beam. ``bonus(h)`` is added to a hypothesis's log-probability
        before normalising (e.g. a language model's end-of-sentence score)."""

        def score(h: Hypothesis) -> float:
            total = h.log_prob + (bonus(h) if bonus is not None else 0.0)
            return total / len(h.ys) if length_norm else total

        return max(self._data.values(), key=score)

    def topk(self, k: int) -> HypothesisList:
        """A new list with the ``k`` most probable hypotheses."""
        ranked = sorted(self._data.values(), key=lambda h: h.log_prob, reverse=True)
        return HypothesisList(ranked[:k])

    def above(self, threshold: float) -> HypothesisList:
        """A new list with the hypotheses whose log-probability exceeds ``threshold``."""
        return HypothesisList([h for h in self._data.values() if h.log_prob > threshold])

    def __iter__(self):
        return iter(list(self._data.values()))

    def __len__(self) -> int:
        return len(self._data)
