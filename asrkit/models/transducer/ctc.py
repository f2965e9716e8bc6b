"""Auxiliary CTC head on the encoder output. Legend: B batch, T frames, E encoder dim, V vocab."""

from __future__ import annotations

from torch import Tensor, nn


class CtcHead(nn.Module):
    """Dropout + Linear(E, V) + log_softmax; trained with CTC next to the transducer loss.

    Args:
        encoder_dim: E.
        vocab_size: V (blank shares the transducer's blank id).
        dropout: dropout applied to the encoder output before the projection.
    """

    def __init__(self, encoder_dim: int, vocab_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(encoder_dim, vocab_size)

    def forward(self, encoder_out: Tensor) -> Tensor:
        """encoder_out (B, T, E) -> log-probabilities (B, T, V)."""
        return self.output(self.dropout(encoder_out)).log_softmax(dim=-1)
