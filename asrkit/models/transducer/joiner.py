"""Joint network of the transducer. Legend: B batch, T frames, U tokens, E encoder dim, P predictor dim, J joiner
dim, V vocab."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Joiner(nn.Module):
    """``logits = output_linear(tanh(enc + pred))`` on inputs ALREADY projected to J.

    The projections ``encoder_proj: Linear(E, J)`` and ``decoder_proj: Linear(P, J)`` live here but are applied by
    :class:`~asrkit.models.transducer.model.Transducer` (``encode``/``predict``), so the pruned loss can project
    once and search can cache projected encoder/predictor outputs.

    Args:
        encoder_dim: E.
        predictor_dim: P.
        joiner_dim: J.
        vocab_size: V.
    """

    def __init__(self, encoder_dim: int, predictor_dim: int, joiner_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.decoder_proj = nn.Linear(predictor_dim, joiner_dim)
        self.output_linear = nn.Linear(joiner_dim, vocab_size)

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        """encoder_out (..., J), decoder_out (..., J) (broadcastable) -> logits (..., V)."""
        return self.output_linear(torch.tanh(encoder_out + decoder_out))
