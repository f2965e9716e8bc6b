"""Prediction networks (icefall calls them "decoders"): the label-history side of the transducer.

Dimension legend: B batch, U tokens, V vocab, D predictor output dim.

Left-context convention (owned here, used identically by training and search): the history before the first
real input token is token ``-1``, which maps to a ZERO embedding. Training feeds ``[blank, y_1, ..., y_U]`` with
``need_pad=True`` (the predictor prepends ``context_size - 1`` tokens ``-1``); search starts from
:meth:`StatelessPredictor.initial_context` = ``[-1, ..., -1, blank]`` with ``need_pad=False``. This is exactly the
context sherpa-onnx starts decoding with, so exported models decode like the PyTorch search.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PAD_TOKEN: int = -1
"""Token id of "no history"; embedded as a zero vector."""


class TokenEmbedding(nn.Embedding):
    """``nn.Embedding`` that maps negative ids (``-1`` = no history) to zero vectors: (B, U) int64 -> (B, U, D)."""

    def forward(self, y: Tensor) -> Tensor:
        keep = (y >= 0).unsqueeze(-1).to(self.weight.dtype)
        return F.embedding(y.clamp(min=0), self.weight) * keep


class StatelessPredictor(nn.Module):
    """Embedding + grouped Conv1d over the last ``context_size`` tokens + ReLU (Ghodsi et al. 2020 / icefall).

    Args:
        vocab_size: V.
        embedding_dim: D (also the output dim).
        blank_id: id of blank; an ordinary learned embedding (used as start-of-sequence).
        context_size: number of tokens the output depends on (1 = bigram-free: embedding only).
        conv_group_size: channels per Conv1d group (icefall: 4, i.e. ``groups = D // 4``).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        blank_id: int = 0,
        context_size: int = 2,
        conv_group_size: int = 4,
    ) -> None:
        super().__init__()
        if context_size < 1:
            raise ValueError(f"context_size must be >= 1, got {context_size}")
        if embedding_dim % conv_group_size != 0:
            raise ValueError(
                f"embedding_dim ({embedding_dim}) must be divisible by conv_group_size ({conv_group_size})"
            )
        self.embedding = TokenEmbedding(vocab_size, embedding_dim)
        self.blank_id = blank_id
        self.vocab_size = vocab_size
        self.context_size = context_size
        self.output_dim = embedding_dim
        # context_size == 1 has nothing to convolve: Identity keeps forward uniform (and TorchScript-able)
        # without creating parameters that would never receive gradients (DDP rejects those).
        self.conv: nn.Module = (
            nn.Conv1d(
                embedding_dim,
                embedding_dim,
                kernel_size=context_size,
                groups=embedding_dim // conv_group_size,
                bias=False,
            )
            if context_size > 1
            else nn.Identity()
        )

    def initial_context(self, batch_size: int, device: torch.device) -> Tensor:
        """The first search context: (B, context_size) int64 ``[-1, ..., -1, blank]`` (use with need_pad=False)."""
        ctx = torch.full((batch_size, self.context_size), PAD_TOKEN, dtype=torch.int64, device=device)
        ctx[:, -1] = self.blank_id
        return ctx

    def forward(self, y: Tensor, need_pad: bool = True) -> Tensor:
        """Predictor outputs.

        Args:
            y: (B, U) int64 token ids (``-1`` = no history -> zero embedding).
            need_pad: True in training: ``context_size - 1`` tokens ``-1`` are prepended so output ``u`` depends on
                ``y[u-context+1 .. u]`` and U outputs come back. False in search: ``y`` already holds
                ``context_size`` tokens per position and (B, U - context_size + 1, D) comes back.

        Returns:
            (B, U, D) with need_pad, else (B, U - context_size + 1, D).
        """
        emb = self.embedding(y).permute(0, 2, 1)  # (B, D, U)
        if need_pad:
            # zero-padding the embeddings == prepending tokens -1 (whose embedding is zero)
            emb = F.pad(emb, (self.context_size - 1, 0))
        emb = self.conv(emb).permute(0, 2, 1)  # (B, U', D)
        return torch.relu(emb)


class LstmPredictor(nn.Module):
    """Embedding + LSTM prediction network (the classic RNN-T predictor).

    Training uses :meth:`forward` on the whole history; search advances one token at a time with
    :meth:`step`, carrying ``(h, c)`` each of shape (num_layers, B, H) (zeros from :meth:`initial_state`).
    The sequence starts from ``blank`` as start-of-sequence; ``context_size`` is 1.

    Args:
        vocab_size: V.
        embedding_dim: embedding size.
        hidden_dim: H, LSTM size and output dim.
        num_layers: stacked LSTM layers.
        blank_id: id of blank.
        dropout: dropout on the embedding and the LSTM output.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_dim: int,
        num_layers: int = 1,
        blank_id: int = 0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embedding = TokenEmbedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.blank_id = blank_id
        self.vocab_size = vocab_size
        self.context_size = 1
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.output_dim = hidden_dim

    def initial_context(self, batch_size: int, device: torch.device) -> Tensor:
        """(B, 1) int64 filled with blank: the first input of search."""
        return torch.full((batch_size, 1), self.blank_id, dtype=torch.int64, device=device)

    def initial_state(self, batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Zero ``(h, c)``, each (num_layers, B, H)."""
        z = torch.zeros(self.num_layers, batch_size, self.hidden_dim, device=device)
        return z, z.clone()

    def forward(self, y: Tensor, need_pad: bool = True) -> Tensor:
        """y: (B, U) int64 (``-1`` -> zero embedding) -> (B, U, H), from a zero state.

        ``need_pad`` is accepted for interface parity with :class:`StatelessPredictor` and has no effect.
        """
        out, _ = self.lstm(self.dropout(self.embedding(y)))
        return self.dropout(out)

    def step(self, y: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One or more steps from ``state``: y (B, U) int64 -> ((B, U, H), new (h, c))."""
        out, (h, c) = self.lstm(self.dropout(self.embedding(y)), state)
        return self.dropout(out), (h, c)
