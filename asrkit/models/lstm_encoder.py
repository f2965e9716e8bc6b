"""``lstm`` encoder: Conv2d subsampling + a stack of (bi)LSTM layers, the classic RNN-T course baseline.

Legend: B batch, T input frames (100 Hz), T' output frames (25 Hz), F feature bins, H hidden, D output dim.

The backward direction of a bidirectional layer runs on each utterance reversed *within its own length*
(a gather, no packed sequences), so padding frames never reach real frames and the graph exports to ONNX.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asrkit.models.common import Conv2dSubsampling4, FeatureNorm, conv2d_subsampling4_lengths, make_pad_mask


def reverse_padded(x: Tensor, lens: Tensor) -> Tensor:
    """Reverse each sequence of x (B, T, D) within its length ``lens`` (B,); padding frames stay in place."""
    t = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # (1, T)
    idx = torch.where(t < lens.unsqueeze(1), lens.unsqueeze(1) - 1 - t, t)  # (B, T)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.size(2)))


class LstmLayer(nn.Module):
    """One (bi)LSTM layer + Linear projection to D + Dropout, added to the input, then LayerNorm; (B,T,D) -> (B,T,D).

    The residual connection matters: without it, three stacked BiLSTM layers on the synthetic corpus stayed on
    CTC's all-blank plateau (transducer + CTC: 4000+ steps, 99 % WER; CTC alone with Adam 1e-3: still 4.4 nats
    per token after 600 steps), while the residual stack was down to 0.9 nats per token after 475 steps.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, bidirectional: bool, dropout: float) -> None:
        super().__init__()
        self.forward_lstm = nn.LSTM(in_dim, hidden_dim, batch_first=True)
        self.backward_lstm = nn.LSTM(in_dim, hidden_dim, batch_first=True) if bidirectional else None
        self.proj = nn.Linear(hidden_dim * (2 if bidirectional else 1), out_dim)
        self.norm = nn.LayerNorm(out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        """x (B, T, D_in), lens (B,) -> (B, T, D)."""
        out, _ = self.forward_lstm(x)
        backward = self.backward_lstm
        if backward is not None:
            rev, _ = backward(reverse_padded(x, lens))
            out = torch.cat([out, reverse_padded(rev, lens)], dim=-1)
        return self.norm(x + self.dropout(self.proj(out)))


class LstmEncoder(nn.Module):
    """Conv2dSubsampling4 (``T' = ((T-1)//2 - 1)//2``) then ``num_layers`` :class:`LstmLayer`.

    Args:
        feature_dim: F.
        hidden_dim: H per direction.
        num_layers: LSTM layers.
        bidirectional: whether each layer also runs backwards in time (not streamable).
        output_dim: D, projection size after every layer (``output_dim`` of the encoder).
        subsampling_channels: Conv2d channels of the front-end.
        dropout: dropout rate.
        feature_norm: ``"none"``, ``"utterance_mean"`` or ``"running_mean"`` (causal).
    """

    def __init__(
        self,
        feature_dim: int,
        hidden_dim: int = 320,
        num_layers: int = 4,
        bidirectional: bool = True,
        output_dim: int = 320,
        subsampling_channels: int = 64,
        dropout: float = 0.1,
        feature_norm: str = "none",
    ) -> None:
        super().__init__()
        self.feature_norm = FeatureNorm(feature_norm, feature_dim)
        self.subsampling = Conv2dSubsampling4(feature_dim, output_dim, subsampling_channels)
        self.layers = nn.ModuleList(
            [LstmLayer(output_dim, hidden_dim, output_dim, bidirectional, dropout) for _ in range(num_layers)]
        )
        self.output_dim = output_dim

    @torch.jit.unused
    def output_lengths(self, x_lens: Tensor) -> Tensor:
        """Encoder output frames for input lengths (B,) without running the encoder."""
        return conv2d_subsampling4_lengths(x_lens)

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, F), x_lens (B,) int64 -> (out (B, T', D) zero at padding, lens (B,) int64)."""
        x = self.feature_norm(x, x_lens)
        x, lens = self.subsampling(x, x_lens)
        pad_mask = make_pad_mask(lens, x.size(1)).unsqueeze(-1)
        for layer in self.layers:
            x = layer(x.masked_fill(pad_mask, 0.0), lens)
        return x.masked_fill(pad_mask, 0.0), lens
