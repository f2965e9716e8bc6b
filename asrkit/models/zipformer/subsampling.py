"""Zipformer2 front-end: Conv2d subsampling 100 Hz -> 50 Hz plus one ConvNeXt block.

Legend: B batch, T input frames, T' = (T - 7) // 2 output frames, F feature bins, C channels, D output dim.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from asrkit.models.zipformer.scaling import (
    Balancer,
    BiasNorm,
    Dropout3,
    FloatLike,
    ScaleGrad,
    ScheduledFloat,
    SwooshL,
    SwooshR,
    Whiten,
    scaled_conv2d,
)


def subsampled_lengths(x_lens: Tensor) -> Tensor:
    """Frames after :class:`Conv2dSubsampling`: ``(T - 7) // 2`` (three valid-in-time 3x3 convs, one strided)."""
    return (x_lens - 7) // 2


# Input frames beyond 2 * chunk_size that one streaming chunk needs: 7 for the valid-in-time convs (rounded up to
# an odd count) plus 2 * 3 for the ConvNeXt's 3 frames of right context at the output rate.
STREAMING_EXTRA_INPUT_FRAMES = 13


def streaming_input_frames(chunk_size: int) -> int:
    """Input (100 Hz) frames :meth:`Conv2dSubsampling.streaming_forward` takes to emit ``chunk_size`` frames;
    consecutive chunks start ``2 * chunk_size`` frames apart and overlap by the rest."""
    return 2 * chunk_size + STREAMING_EXTRA_INPUT_FRAMES


class ConvNeXt(nn.Module):
    """ConvNeXt block on (B, C, T', F'): depthwise 7x7 -> pointwise x3 -> SwooshL -> pointwise, residual.

    Padding frames (``pad_mask``) are zeroed before the depthwise conv, so real frames see exactly the zero
    padding they would see if the utterance were alone.
    """

    def __init__(self, channels: int, hidden_ratio: int = 3, kernel_size: tuple[int, int] = (7, 7)) -> None:
        super().__init__()
        self.padding = ((kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2)
        hidden = channels * hidden_ratio
        self.layerdrop_rate = ScheduledFloat((0.0, 0.2), (20000.0, 0.015))
        self.depthwise_conv = nn.Conv2d(channels, channels, kernel_size, padding=self.padding, groups=channels)
        self.pointwise_conv1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.hidden_balancer = Balancer(hidden, channel_dim=-1, min_positive=0.3, max_positive=1.0, min_abs=0.75, max_abs=5.0)
        self.activation = SwooshL()
        self.pointwise_conv2 = scaled_conv2d(hidden, channels, kernel_size=1, initial_scale=0.01)
        self.out_balancer = Balancer(channels, channel_dim=1, min_positive=0.4, max_positive=0.6, min_abs=1.0, max_abs=6.0)
        self.out_whiten = Whiten(num_groups=1, whitening_limit=5.0, prob=(0.025, 0.25), grad_scale=0.01)

    def forward(self, x: Tensor, pad_mask: Optional[Tensor] = None) -> Tensor:
        """x (B, C, T', F'), pad_mask (B, T') True at padding -> (B, C, T', F')."""
        bypass = x
        if pad_mask is not None:
            x = x.masked_fill(pad_mask.unsqueeze(1).unsqueeze(-1), 0.0)
        # Channels-last throughout: the depthwise conv's backward is ~4x faster on CPU in that layout, and the
        # 1x1 convs become plain matmuls over the channel axis (same parameters as the Conv2d modules).
        x = self.depthwise_conv(x.contiguous(memory_format=torch.channels_last))
        return self._after_depthwise(bypass, x)

    def streaming_forward(self, x: Tensor, cache: Tensor, pad_mask: Tensor) -> tuple[Tensor, Tensor]:
        """One chunk plus R = 3 frames of right context: x (B, C, T'+R, F'), cache (B, C, R, F') the masked
        input frames just before the chunk (zeros at a stream's start), pad_mask (B, T'+R)
        -> (out (B, C, T', F'), new cache (B, C, R, F'))."""
        right = self.padding[0]
        t = x.size(2)
        bypass = x[:, :, : t - right]
        x = x.masked_fill(pad_mask.unsqueeze(1).unsqueeze(-1), 0.0)
        x_full = torch.cat([cache, x], dim=2)  # (B, C, R + T' + R, F')
        conv = self.depthwise_conv
        y = nn.functional.conv2d(x_full, conv.weight, conv.bias, padding=(0, self.padding[1]), groups=conv.groups)
        return self._after_depthwise(bypass, y), x_full[:, :, t - right : t]

    def _after_depthwise(self, bypass: Tensor, x: Tensor) -> Tensor:
        """Pointwise layers and the residual: depthwise-conv output x and input bypass, both (B, C, T', F')."""
        x = x.permute(0, 2, 3, 1)  # (B, T', F', C), contiguous
        c_hidden = self.pointwise_conv1.out_channels
        x = nn.functional.linear(x, self.pointwise_conv1.weight.reshape(c_hidden, -1), self.pointwise_conv1.bias)
        x = self.hidden_balancer(x)
        x = self.activation(x)
        x = nn.functional.linear(x, self.pointwise_conv2.weight.reshape(-1, c_hidden), self.pointwise_conv2.bias)
        x = x.permute(0, 3, 1, 2)  # (B, C, T', F')
        if not torch.jit.is_scripting() and self.training:
            rate = float(self.layerdrop_rate)
            if rate > 0.0:
                keep = (torch.rand(x.size(0), 1, 1, 1, device=x.device) > rate).to(x.dtype)
                x = x * keep
        x = bypass + x
        x = self.out_balancer(x)
        if not torch.jit.is_scripting() and self.training:
            x = self.out_whiten(x.transpose(1, 3)).transpose(1, 3)  # whitening wants channels last
        return x


class Conv2dSubsampling(nn.Module):
    """(B, T, F) fbank -> (B, (T-7)//2, D): three Conv2d (the second strided in time), ConvNeXt, Linear, BiasNorm.

    Args:
        in_channels: F (>= 7).
        out_channels: D, the first stack's dim.
        layer1_channels / layer2_channels / layer3_channels: conv widths (icefall: 8, 32, 128).
        dropout: output dropout (shared along time), may be scheduled.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        layer1_channels: int = 8,
        layer2_channels: int = 32,
        layer3_channels: int = 128,
        dropout: FloatLike = 0.1,
    ) -> None:
        super().__init__()
        if in_channels < 7:
            raise ValueError(f"Conv2dSubsampling needs at least 7 feature bins, got {in_channels}")
        self.conv = nn.Sequential(
            nn.Conv2d(1, layer1_channels, kernel_size=3, padding=(0, 1)),
            ScaleGrad(0.2),
            Balancer(layer1_channels, channel_dim=1, max_abs=1.0),
            SwooshR(),
            nn.Conv2d(layer1_channels, layer2_channels, kernel_size=3, stride=2),
            Balancer(layer2_channels, channel_dim=1, max_abs=4.0),
            SwooshR(),
            nn.Conv2d(layer2_channels, layer3_channels, kernel_size=3, stride=(1, 2)),
            Balancer(layer3_channels, channel_dim=1, max_abs=4.0),
            SwooshR(),
        )
        self.convnext = ConvNeXt(layer3_channels)
        self.out_width = ((in_channels - 1) // 2 - 1) // 2
        self.out = nn.Linear(self.out_width * layer3_channels, out_channels)
        self.out_whiten = Whiten(
            num_groups=1,
            whitening_limit=ScheduledFloat((0.0, 4.0), (20000.0, 8.0), default=4.0),
            prob=(0.025, 0.25),
            grad_scale=0.02,
        )
        self.out_norm = BiasNorm(out_channels)
        self.dropout = Dropout3(dropout, shared_dim=1)

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, F), x_lens (B,) -> ((B, T', D), (B,) with T' = (T - 7) // 2)."""
        lens = subsampled_lengths(x_lens)
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        steps = torch.arange(x.size(2), device=x.device)
        pad_mask = steps.unsqueeze(0) >= lens.unsqueeze(1)
        return self._output(self.convnext(x, pad_mask)), lens

    def streaming_forward(self, x: Tensor, x_lens: Tensor, cache: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One chunk of N output frames (evaluation only).

        Args:
            x: (B, 2N + 13, F) input frames ``2N k .. 2N k + 2N + 12`` of chunk k (see
                :func:`streaming_input_frames`), padded after a stream's last frame.
            x_lens: (B,) real frames in x.
            cache: (B, C, 3, F') from :meth:`get_init_states` or the previous chunk.

        Returns:
            (out (B, N, D), lens (B,) real output frames in [0, N], new cache).
        """
        lens = subsampled_lengths(x_lens).clamp(min=0)
        x = self.conv(x.unsqueeze(1))  # (B, C, N + 3, F')
        steps = torch.arange(x.size(2), device=x.device)
        pad_mask = steps.unsqueeze(0) >= lens.unsqueeze(1)
        x, cache = self.convnext.streaming_forward(x, cache, pad_mask)
        return self._output(x), lens.clamp(max=x.size(2)), cache

    def get_init_states(self, batch_size: int, device: torch.device) -> Tensor:
        """(B, C, 3, F') zeros: the ConvNeXt's left context at a stream's start (its zero padding)."""
        channels = self.convnext.depthwise_conv.in_channels
        return torch.zeros(batch_size, channels, self.convnext.padding[0], self.out_width, device=device)

    def _output(self, x: Tensor) -> Tensor:
        """ConvNeXt output (B, C, T', F') -> (B, T', D)."""
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        x = self.out_whiten(x)
        x = self.out_norm(x)
        return self.dropout(x)
