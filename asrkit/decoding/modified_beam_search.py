"""Batched modified beam search (at most one symbol per frame).

Each frame, every hypothesis of an utterance is extended by every token (blank keeps it as
is), and the ``beam_size`` best (hypothesis, token) pairs survive; hypotheses with the same
token history are merged by adding their probabilities. Limiting the search to one symbol per
frame makes it batchable: all hypotheses of all utterances go through the predictor and the
joiner in one call per frame.

Shape legend: B utterances, T encoder frames, J joiner dim, V vocabulary, N hypotheses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from asrkit.decoding.context import history_key, initial_context, predictor_outputs, strip_context
from asrkit.decoding.hypothesis import Hypothesis, HypothesisList, SearchOutput

if TYPE_CHECKING:
    from asrkit.lm import TokenLMScorer


class PredictorCache:
    """Predictor outputs keyed by :func:`~asrkit.decoding.context.history_key`, so a context
    shared by several hypotheses (or unchanged since the last frame) is computed once."""

    def __init__(self, model: Any, device: torch.device | str) -> None:
        self.model = model
        self.device = device
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}

    def get(self, histories: list[list[int]]) -> torch.Tensor:
        """(N, J) predictor outputs for ``N`` token histories."""
        keys = [history_key(self.model, h) for h in histories]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            out = predictor_outputs(self.model, missing, self.device)
            for k, row in zip(missing, out):
                self._cache[k] = row
        return torch.stack([self._cache[k] for k in keys])


@dataclass
class BeamStream:
    """Modified-beam-search state of one utterance, carried from one block of encoder frames to the next.

    Attributes:
        beam: the live hypotheses (timestamps counted from the utterance's start).
        frames: encoder frames searched so far.
    """

    beam: HypothesisList
    frames: int = 0

    @classmethod
    def start(cls, model: Any) -> "BeamStream":
        """A fresh utterance for ``model`` (anything with ``blank_id`` and ``context_size``)."""
        context = initial_context(int(model.context_size), int(model.blank_id))
        return cls(HypothesisList([Hypothesis(context, 0.0)]))


@torch.no_grad()
def modified_beam_search_step(
    model: Any,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    streams: list[BeamStream],
    beam_size: int = 4,
    blank_penalty: float = 0.0,
    unk_id: int | None = None,
    lm: "TokenLMScorer | None" = None,
    lm_scale: float = 0.3,
    cache: PredictorCache | None = None,
) -> None:
    """Advance each utterance's beam over its next block of encoder frames (in place).

    Consecutive blocks give exactly the result of one call on all the frames, so a chunk-wise (streaming) decoder
    and :func:`modified_beam_search` share this loop.

    Args:
        model / beam_size / blank_penalty / unk_id / lm / lm_scale: as in :func:`modified_beam_search`.
        encoder_out: (B, T, J) the next frames of B utterances.
        encoder_out_lens: (B,) valid frames of each.
        streams: the B utterances' states (see :class:`BeamStream`).
        cache: predictor outputs to reuse (a fresh one if None).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    device = encoder_out.device
    blank_id = int(model.blank_id)
    context_size = int(model.context_size)
    lens = [int(n) for n in encoder_out_lens.tolist()]
    if cache is None:
        cache = PredictorCache(model, device)

    for t in range(max(lens, default=0)):
        rows = [b for b in range(len(streams)) if t < lens[b]]
        hyps = [list(streams[b].beam) for b in rows]
        flat = [h for hs in hyps for h in hs]
        owner = torch.tensor([b for b, hs in zip(rows, hyps) for _ in hs], dtype=torch.int64, device=device)
        logits = model.join(encoder_out[owner, t], cache.get([h.ys for h in flat]))  # (N, V)
        if blank_penalty != 0.0:
            logits[:, blank_id] -= blank_penalty
        scores = logits.float().log_softmax(dim=-1)
        scores += torch.tensor([h.log_prob for h in flat], device=device).unsqueeze(1)
        if lm is not None:
            # (N, V); 0 at blank. unk is never emitted (it keeps the hypothesis as blank does), so no LM cost.
            fused = lm.batch_log_probs([strip_context(h.ys, context_size) for h in flat]).to(device)
            if unk_id is not None:
                fused[:, unk_id] = 0.0
            scores += lm_scale * fused
        vocab = scores.size(1)
        start = 0
        for b, hs in zip(rows, hyps):
            chunk = scores[start:start + len(hs)].reshape(-1)
            start += len(hs)
            values, indices = chunk.topk(min(beam_size, chunk.numel()))
            frame = streams[b].frames + t
            new = HypothesisList()
            for value, index in zip(values.tolist(), indices.tolist()):
                parent, token = hs[index // vocab], index % vocab
                if token == blank_id or token == unk_id:
                    new.add(Hypothesis(parent.ys[:], value, parent.timestamp[:]))
                else:
                    new.add(Hypothesis(parent.ys + [token], value, parent.timestamp + [frame]))
            streams[b].beam = new

    for s, n in zip(streams, lens):
        s.frames += n


@torch.no_grad()
def modified_beam_search(
    model: Any,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    beam_size: int = 4,
    blank_penalty: float = 0.0,
    unk_id: int | None = None,
    return_timestamps: bool = False,
    lm: "TokenLMScorer | None" = None,
    lm_scale: float = 0.3,
) -> list[list[int]] | SearchOutput:
    """Modified beam search over a batch of utterances.

    Args:
        model: object with ``predict``, ``join``, ``blank_id``, ``context_size``.
        encoder_out: (B, T, J) output of ``model.encode``.
        encoder_out_lens: (B,) number of valid frames per utterance.
        beam_size: hypotheses kept per utterance (>= 1).
        blank_penalty: subtracted from the blank logit before the log-softmax.
        unk_id: if given, this token is treated like blank (the hypothesis is not extended).
        return_timestamps: also return per-token encoder frame indices.
        lm: shallow fusion with a token language model: every emitted token adds ``lm_scale`` times its LM
            log-probability to the hypothesis score, and the final choice adds the LM's end-of-sentence score.
        lm_scale: weight of ``lm`` (ignored without it).

    Returns:
        ``B`` token-id lists (best hypothesis by length-normalised log-probability), or a
        :class:`SearchOutput` when ``return_timestamps`` is set.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    streams = [BeamStream.start(model) for _ in range(encoder_out.size(0))]
    modified_beam_search_step(model, encoder_out, encoder_out_lens, streams, beam_size, blank_penalty, unk_id,
                              lm, lm_scale)
    return beam_result(model, streams, return_timestamps, lm, lm_scale)


def beam_result(
    model: Any,
    streams: list[BeamStream],
    return_timestamps: bool = False,
    lm: "TokenLMScorer | None" = None,
    lm_scale: float = 0.3,
) -> list[list[int]] | SearchOutput:
    """Best hypothesis of each finished utterance (length-normalised, plus the LM's end-of-sentence score when
    fusing): token lists, or a :class:`SearchOutput` with ``return_timestamps``."""
    context_size = int(model.context_size)
    end_score = None
    if lm is not None:
        def end_score(h: Hypothesis) -> float:
            return lm_scale * lm.eos_log_prob(strip_context(h.ys, context_size))
    best = [s.beam.best(length_norm=True, bonus=end_score) for s in streams]
    tokens = [strip_context(h.ys, context_size) for h in best]
    if return_timestamps:
        return SearchOutput(tokens, [h.timestamp for h in best])
    return tokens
