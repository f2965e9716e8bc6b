"""CTC greedy search for hybrid transducer + CTC models.

Shape legend: B utterances, T encoder frames, V vocabulary.
"""

from __future__ import annotations

import torch

from asrkit.decoding.hypothesis import SearchOutput


@torch.no_grad()
def ctc_greedy_search(
    ctc_log_probs: torch.Tensor,
    lens: torch.Tensor,
    blank_id: int = 0,
    return_timestamps: bool = False,
) -> list[list[int]] | SearchOutput:
    """Best-path CTC decoding: frame-wise arg-max, merge repeats, drop blanks.

    Args:
        ctc_log_probs: (B, T, V) output of ``model.ctc_log_probs``.
        lens: (B,) valid frames per utterance.
        blank_id: the CTC blank.
        return_timestamps: also return the first frame of each emitted token.

    Returns:
        ``B`` token-id lists, or a :class:`SearchOutput` when ``return_timestamps`` is set.
    """
    best = ctc_log_probs.argmax(dim=-1).tolist()
    tokens: list[list[int]] = []
    stamps: list[list[int]] = []
    for path, n in zip(best, lens.tolist()):
        toks, ts = [], []
        prev = blank_id
        for t, y in enumerate(path[: int(n)]):
            if y != blank_id and y != prev:
                toks.append(y)
                ts.append(t)
            prev = y
        tokens.append(toks)
        stamps.append(ts)
    if return_timestamps:
        return SearchOutput(tokens, stamps)
    return tokens
