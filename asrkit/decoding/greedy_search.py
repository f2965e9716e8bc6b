"""Batched greedy search for transducers.

Shape legend: B utterances, T encoder frames, J joiner dim, V vocabulary, C context size.
"""

from __future__ import annotations

from typing import Any

import torch

from asrkit.decoding.context import initial_context, predictor_outputs, strip_context
from asrkit.decoding.hypothesis import SearchOutput


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
    batch_size = encoder_out.size(0)
    device = encoder_out.device
    blank_id = int(model.blank_id)
    context_size = int(model.context_size)
    lens = [int(n) for n in encoder_out_lens.tolist()]

    histories = [initial_context(context_size, blank_id) for _ in range(batch_size)]
    stamps: list[list[int]] = [[] for _ in range(batch_size)]
    if batch_size == 0:
        return SearchOutput([], []) if return_timestamps else []
    decoder_out = predictor_outputs(model, histories, device)  # (B, J)

    for t in range(max(lens, default=0)):
        rows = [i for i in range(batch_size) if t < lens[i]]
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
                histories[i].append(y)
                stamps[i].append(t)
            rows = [i for i, _ in emitted]
            index = torch.tensor(rows, dtype=torch.int64, device=device)
            new_out = predictor_outputs(model, [histories[i] for i in rows], device)
            decoder_out = decoder_out.index_copy(0, index, new_out.to(decoder_out.dtype))

    tokens = [strip_context(h, context_size) for h in histories]
    if return_timestamps:
        return SearchOutput(tokens, stamps)
    return tokens
