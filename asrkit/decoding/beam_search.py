"""Graves-style transducer beam search (several symbols per frame, one utterance at a time).

For each frame, hypotheses are popped best-first from a working set ``A``: ending the frame
with blank moves the hypothesis to the output set ``B``; each of the best non-blank tokens
puts an extended hypothesis back into ``A``. The frame is finished once ``B`` holds
``beam_size`` hypotheses better than anything left in ``A``. This explores more alignments
than :func:`~asrkit.decoding.modified_beam_search.modified_beam_search` but cannot be batched.

Shape legend: B utterances, T encoder frames, J joiner dim, V vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch

from asrkit.decoding.context import initial_context, strip_context
from asrkit.decoding.hypothesis import Hypothesis, HypothesisList, SearchOutput
from asrkit.decoding.modified_beam_search import PredictorCache


def _search_one(
    model: Any,
    encoder_out: torch.Tensor,
    beam_size: int,
    blank_penalty: float,
    max_expansions_per_frame: int,
    unk_id: int | None,
) -> Hypothesis:
    """Beam search over one utterance's (T, J) encoder output; returns the best hypothesis."""
    blank_id = int(model.blank_id)
    context_size = int(model.context_size)
    cache = PredictorCache(model, encoder_out.device)
    done = HypothesisList([Hypothesis(initial_context(context_size, blank_id), 0.0)])
    for t in range(encoder_out.size(0)):
        frame = encoder_out[t:t + 1]  # (1, J)
        todo, done = done, HypothesisList()
        for _ in range(max_expansions_per_frame):
            y_star = todo.best()
            todo.remove(y_star)
            logits = model.join(frame, cache.get([y_star.ys]))[0]  # (V,)
            if blank_penalty != 0.0:
                logits[blank_id] -= blank_penalty
            log_probs = logits.float().log_softmax(dim=-1)
            stay = log_probs[blank_id]
            if unk_id is not None:  # <unk> is treated like blank: its mass goes to "no emission"
                stay = torch.logaddexp(stay, log_probs[unk_id])
            done.add(Hypothesis(y_star.ys[:], y_star.log_prob + float(stay), y_star.timestamp[:]))
            values, tokens = log_probs.topk(min(beam_size + 1, log_probs.numel()))
            for value, token in zip(values.tolist(), tokens.tolist()):
                if token != blank_id and token != unk_id:
                    todo.add(Hypothesis(y_star.ys + [token], y_star.log_prob + value, y_star.timestamp + [t]))
            if len(todo) == 0:
                break
            better = done.above(todo.best().log_prob)
            if len(better) >= beam_size:
                done = better
                break
        done = done.topk(beam_size)
    return done.best(length_norm=True)


@torch.no_grad()
def beam_search(
    model: Any,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    beam_size: int = 4,
    blank_penalty: float = 0.0,
    max_expansions_per_frame: int = 100,
    unk_id: int | None = None,
    return_timestamps: bool = False,
) -> list[list[int]] | SearchOutput:
    """Graves-style beam search, run utterance by utterance.

    Args:
        model: object with ``predict``, ``join``, ``blank_id``, ``context_size``.
        encoder_out: (B, T, J) output of ``model.encode``.
        encoder_out_lens: (B,) number of valid frames per utterance.
        beam_size: hypotheses kept per frame (>= 1).
        blank_penalty: subtracted from the blank logit before the log-softmax.
        max_expansions_per_frame: safety bound on hypotheses popped per frame (an untrained
            model with flat outputs would otherwise expand for a very long time).
        unk_id: if given, this token is treated like blank (never emitted).
        return_timestamps: also return per-token encoder frame indices.

    Returns:
        ``B`` token-id lists, or a :class:`SearchOutput` when ``return_timestamps`` is set.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    best = [
        _search_one(model, encoder_out[b, : int(n)], beam_size, blank_penalty, max_expansions_per_frame, unk_id)
        for b, n in enumerate(encoder_out_lens.tolist())
    ]
    context_size = int(model.context_size)
    tokens = [strip_context(h.ys, context_size) for h in best]
    if return_timestamps:
        return SearchOutput(tokens, [h.timestamp for h in best])
    return tokens
