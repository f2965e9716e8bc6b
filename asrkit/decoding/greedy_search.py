"""Batched greedy search for transducers.

Shape legend: B utterances, T encoder frames, J joiner dim, V vocabulary, C context size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from asrkit.decoding.context import initial_context, predictor_outputs, strip_context
from asrkit.decoding.hypothesis import SearchOutput


@dataclass
class GreedyStream:
    """Greedy-search state of one utterance, carried from one block of encoder frames to the next.

    Attributes:
        ys: token history including the initial predictor context.
        timestamps: encoder frame (counted from the utterance's start) of each emitted token.
        frames: encoder frames searched so far.
        decoder_out: (J,) predictor output after ``ys`` (None until the first block).
    """

    ys: list[int]
    timestamps: list[int] = field(default_factory=list)
    frames: int = 0
    decoder_out: torch.Tensor | None = None

    @classmethod
    def start(cls, model: Any) -> "GreedyStream":
        """A fresh utterance for ``model`` (anything with ``blank_id`` and ``context_size``)."""
        return cls(initial_context(int(model.context_size), int(model.blank_id)))


@torch.no_grad()
def greedy_search_step(
    model: Any,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    streams: list[GreedyStream],
    max_sym_per_frame: int = 1,
    blank_penalty: float = 0.0,
    unk_id: int | None = None,
) -> None:
    """Advance each utterance's greedy search over its next block of encoder frames (in place).

    Searching an utterance's frames in consecutive blocks gives exactly the result of one call on all of them,
    so a chunk-wise (streaming) decoder and :func:`greedy_search` share this loop.

    Args:
        model: as in :func:`greedy_search`.
        encoder_out: (B, T, J) the next frames of B utterances.
        encoder_out_lens: (B,) valid frames of each.
        streams: the B utterances' states (see :class:`GreedyStream`).
        max_sym_per_frame / blank_penalty / unk_id: as in :func:`greedy_search`.
    """
    if max_sym_per_frame < 1:
        raise ValueError(f"max_sym_per_frame must be >= 1, got {max_sym_per_frame}")
    if not streams:
        return
    device = encoder_out.device
    blank_id = int(model.blank_id)
    lens = [int(n) for n in encoder_out_lens.tolist()]
    fresh = [i for i, s in enumerate(streams) if s.decoder_out is None]
    if fresh:
        for i, row in zip(fresh, predictor_outputs(model, [streams[i].ys for i in fresh], device)):
            streams[i].decoder_out = row
    decoder_out = torch.stack([s.decoder_out for s in streams])  # (B, J)

    for t in range(max(lens, default=0)):
        rows = [i for i in range(len(streams)) if t < lens[i]]
        for _ in range(max_sym_per_frame):
            index = torch.tensor(rows, dtype=torch.int64, device=device)
            logits = model.join(encoder_out[index, t], decoder_out[index])  # (n, V)
            if blank_penalty != 0.0:
                logits[:, blank_id] -= blank_penalty
            best = logits.argmax(dim=-1).tolist()
            emitted = [(i, y) for i, y in zip(rows, best) if y != blank_id and y != unk_id]
            if not emitted:
                break
            for i, y in emitted:
                streams[i].ys.append(y)
                streams[i].timestamps.append(streams[i].frames + t)
            rows = [i for i, _ in emitted]
            index = torch.tensor(rows, dtype=torch.int64, device=device)
            new_out = predictor_outputs(model, [streams[i].ys for i in rows], device)
            decoder_out = decoder_out.index_copy(0, index, new_out.to(decoder_out.dtype))

    for i, s in enumerate(streams):
        s.decoder_out = decoder_out[i]
        s.frames += lens[i]


@torch.no_grad()
def greedy_search(
    model: Any,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    max_sym_per_frame: int = 1,
    blank_penalty: float = 0.0,
    unk_id: int | None = None,
    return_timestamps: bool = False,
) -> list[list[int]] | SearchOutput:
    """Greedy transducer search over a batch of utterances.

    At each frame the joiner picks its arg-max token; a non-blank token is appended to the
    hypothesis and the predictor is advanced, and the same frame is tried again until blank is
    chosen or ``max_sym_per_frame`` tokens were emitted on it. Utterances are processed
    together (only those still inside their length are joined at each frame), so the result
    is identical to decoding each utterance on its own.

    Args:
        model: object with ``predict``, ``join``, ``blank_id``, ``context_size`` (a
            ``Transducer`` or an exported model from :func:`asrkit.inference.load_model`).
        encoder_out: (B, T, J) output of ``model.encode``.
        encoder_out_lens: (B,) number of valid frames per utterance.
        max_sym_per_frame: most non-blank tokens emitted on one frame (>= 1).
        blank_penalty: subtracted from the blank logit (> 0 makes deletions less likely).
        unk_id: if given, this token is treated like blank (never emitted), as icefall and
            sherpa-onnx do.
        return_timestamps: also return, per token, the encoder frame where it was emitted.

    Returns:
        ``B`` token-id lists, or a :class:`SearchOutput` with ``tokens`` and ``timestamps``
        when ``return_timestamps`` is set.
    """
    if max_sym_per_frame < 1:
        raise ValueError(f"max_sym_per_frame must be >= 1, got {max_sym_per_frame}")
    streams = [GreedyStream.start(model) for _ in range(encoder_out.size(0))]
    greedy_search_step(model, encoder_out, encoder_out_lens, streams, max_sym_per_frame, blank_penalty, unk_id)
    return greedy_result(model, streams, return_timestamps)


def greedy_result(model: Any, streams: list[GreedyStream], return_timestamps: bool = False) -> list[list[int]] | SearchOutput:
    """The token lists (and, with ``return_timestamps``, a :class:`SearchOutput`) of finished utterances."""
    context_size = int(model.context_size)
    tokens = [strip_context(s.ys, context_size) for s in streams]
    if return_timestamps:
        return SearchOutput(tokens, [s.timestamps for s in streams])
    return tokens
