"""Zipformer2 encoder (Yao et al., "Zipformer: A faster and better encoder for automatic speech recognition",
arXiv 2310.11230): fbank at 100 Hz -> Conv2d front-end (50 Hz) -> six stacks at 50, 25, 12.5, 6.25, 12.5, 25 Hz
-> output downsampling to 25 Hz.

Legend: B batch, T input frames, T' = (T - 7) // 2 front-end frames, T'' = (T' + 1) // 2 output frames,
F feature bins, E = max(encoder_dim) output dim.
"""

from __future__ import annotations

import random
from typing import Optional

import torch
from torch import Tensor, nn

from asrkit.errors import ConfigError
from asrkit.models.common import FeatureNorm
from asrkit.models.zipformer.layer import DownsampledZipformerStack, SimpleDownsample, ZipformerStack
from asrkit.models.zipformer.scaling import FloatLike, ScheduledFloat
from asrkit.models.zipformer.subsampling import (
    STREAMING_EXTRA_INPUT_FRAMES,
    Conv2dSubsampling,
    streaming_input_frames,
    subsampled_lengths,
)

# Batch axis of each per-layer state of Zipformer2EncoderLayer.get_init_states (key, nonlin_attn, val1, val2,
# conv1, conv2); the two front-end states (embed cache, processed lengths) have it first.
LAYER_STATE_BATCH_DIMS = (1, 1, 1, 1, 0, 0)


def convert_num_channels(x: Tensor, num_channels: int) -> Tensor:
    """Truncate or zero-pad the last axis of x to ``num_channels`` (moving between stacks of different dims)."""
    if num_channels <= x.size(-1):
        return x[..., :num_channels]
    pad = torch.zeros(x.shape[:-1] + (num_channels - x.size(-1),), dtype=x.dtype, device=x.device)
    return torch.cat([x, pad], dim=-1)


def stack_states(streams: list[list[Tensor]], batch_dims: list[int]) -> list[Tensor]:
    """Batch the state lists of single streams along each state's batch axis (``batch_dims``)."""
    return [torch.cat([s[i] for s in streams], dim=d) for i, d in enumerate(batch_dims)]


def unstack_states(states: list[Tensor], batch_dims: list[int]) -> list[list[Tensor]]:
    """Split batched states into per-stream lists (the inverse of :func:`stack_states`)."""
    batch = states[-1].size(0)
    return [[s.narrow(d, b, 1) for s, d in zip(states, batch_dims)] for b in range(batch)]


def chunk_attention_mask(seq_len: int, chunk_size: int, left_context_chunks: int, device: torch.device) -> Tensor:
    """(T, T) bool mask, True = may NOT attend: key chunk after the query's chunk, or more than
    ``left_context_chunks`` chunks before it (``left_context_chunks < 0``: unlimited)."""
    chunk = torch.arange(seq_len, device=device) // chunk_size
    query = chunk.unsqueeze(1)
    key = chunk.unsqueeze(0)
    mask = key > query
    if left_context_chunks >= 0:
        mask = mask | (key < query - left_context_chunks)
    return mask


class Zipformer2(nn.Module):
    """The Zipformer2 encoder, ``forward(x (B,T,F), x_lens (B,)) -> ((B,T'',E), (B,))``.

    Args:
        feature_dim: F.
        downsampling_factor: per-stack downsampling relative to 50 Hz, e.g. (1, 2, 4, 8, 4, 2).
        encoder_dim / num_encoder_layers / encoder_unmasked_dim / feedforward_dim / num_heads /
            cnn_module_kernel: per-stack tuples (same length as downsampling_factor).
        query_head_dim / value_head_dim / pos_head_dim / pos_dim: attention sizes (all stacks).
        subsampling_channels: channels C of the front-end's last Conv2d and ConvNeXt; the first two convs get
            max(4, C // 16) and max(8, C // 4) channels (icefall: C = 128 -> 8, 32, 128).
        dropout: final feed-forward/front-end dropout (scheduled from 0.3 down to it over 20k batches).
        causal: chunk-causal convolutions and chunked attention.
        chunk_size / left_context_frames: at 50 Hz; training samples one of each per batch, evaluation uses
            the first entries. -1 = full context / unlimited left context.
        feature_norm: ``"none"``, ``"utterance_mean"`` or ``"running_mean"`` (causal).
        warmup_batches: batches over which stacks are warmed up one after another (layer-skip schedules).
    """

    def __init__(
        self,
        feature_dim: int,
        downsampling_factor: tuple[int, ...],
        encoder_dim: tuple[int, ...],
        num_encoder_layers: tuple[int, ...],
        encoder_unmasked_dim: tuple[int, ...],
        feedforward_dim: tuple[int, ...],
        num_heads: tuple[int, ...],
        cnn_module_kernel: tuple[int, ...],
        query_head_dim: int = 32,
        value_head_dim: int = 12,
        pos_head_dim: int = 4,
        pos_dim: int = 48,
        subsampling_channels: int = 128,
        dropout: float = 0.1,
        causal: bool = False,
        chunk_size: tuple[int, ...] = (-1,),
        left_context_frames: tuple[int, ...] = (-1,),
        feature_norm: str = "none",
        warmup_batches: float = 4000.0,
    ) -> None:
        super().__init__()
        n = len(downsampling_factor)
        self.downsampling_factor = list(downsampling_factor)
        self.num_encoder_layers = list(num_encoder_layers)
        self.encoder_dim = list(encoder_dim)
        self.encoder_unmasked_dim = list(encoder_unmasked_dim)
        self.cnn_module_kernel = list(cnn_module_kernel)
        self.causal = causal
        self.chunk_size = list(chunk_size)
        self.left_context_frames = list(left_context_frames)
        self.output_dim = max(encoder_dim)
        scheduled_dropout: FloatLike = ScheduledFloat((0.0, 0.3), (20000.0, dropout))

        self.feature_norm = FeatureNorm(feature_norm, feature_dim)
        self.feature_dim = feature_dim
        # icefall's front-end widths are (8, 32, 128); smaller models scale all three together.
        self.encoder_embed = Conv2dSubsampling(
            feature_dim,
            encoder_dim[0],
            layer1_channels=max(4, subsampling_channels // 16),
            layer2_channels=max(8, subsampling_channels // 4),
            layer3_channels=subsampling_channels,
            dropout=scheduled_dropout,
        )
        self.embed_state_channels = self.encoder_embed.convnext.depthwise_conv.in_channels
        self.lookahead_frames = STREAMING_EXTRA_INPUT_FRAMES  # input frames a chunk call shares with the next
        state_rows, width = self.encoder_embed.convnext.padding[0], self.encoder_embed.out_width
        self.norm_state_channels = -(-feature_dim // (state_rows * width)) if feature_norm == "running_mean" else 0
        stacks = []
        for i in range(n):
            layer_kwargs = dict(
                embed_dim=encoder_dim[i],
                pos_dim=pos_dim,
                num_heads=num_heads[i],
                query_head_dim=query_head_dim,
                pos_head_dim=pos_head_dim,
                value_head_dim=value_head_dim,
                feedforward_dim=feedforward_dim[i],
                dropout=scheduled_dropout,
                cnn_module_kernel=cnn_module_kernel[i],
                causal=causal,
            )
            stack: nn.Module = ZipformerStack(
                num_encoder_layers[i],
                layer_kwargs,
                pos_dim=pos_dim,
                # stacks warm up one after another, the front-end first
                warmup_begin=warmup_batches * (i + 1) / (n + 1),
                warmup_end=warmup_batches * (i + 2) / (n + 1),
                final_layerdrop_rate=0.035 * (downsampling_factor[i] ** 0.5),
            )
            if downsampling_factor[i] != 1:
                stack = DownsampledZipformerStack(stack, dim=encoder_dim[i], downsample=downsampling_factor[i])
            stacks.append(stack)
        self.encoders = nn.ModuleList(stacks)
        self.downsample_output = SimpleDownsample(2)

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, F) fbank, x_lens (B,) int64 -> (out (B, T'', E) zero at padding, lens (B,))."""
        x = self.feature_norm(x, x_lens)
        x, lens = self.encoder_embed(x, x_lens)  # (B, T', D0)
        t = x.size(1)
        pad_mask = torch.arange(t, device=x.device).unsqueeze(0) >= lens.unsqueeze(1)
        x = x.permute(1, 0, 2)  # (T', B, D0)

        chunk_size, left_chunks = self._chunk_config()
        attn_mask: Optional[Tensor] = None
        if chunk_size > 0:
            attn_mask = chunk_attention_mask(t, chunk_size, left_chunks, x.device)

        feature_masks: list[Optional[Tensor]] = [None for _ in self.encoder_dim]
        if not torch.jit.is_scripting() and self.training:
            feature_masks = self._feature_masks(x)

        outputs: list[Tensor] = []
        for i, module in enumerate(self.encoders):
            x = convert_num_channels(x, self.encoder_dim[i])
            x = module(x, chunk_size, feature_masks[i], attn_mask, pad_mask, lens)
            outputs.append(x)

        x = self._full_dim_output(outputs)
        x = self.downsample_output(x, lens)
        out_lens = (lens + 1) // 2
        out_mask = torch.arange(x.size(0), device=x.device).unsqueeze(0) >= out_lens.unsqueeze(1)  # (B, T'')
        x = x.permute(1, 0, 2).masked_fill(out_mask.unsqueeze(-1), 0.0)
        return x, out_lens

    def streaming_forward(
        self, x: Tensor, x_lens: Tensor, states: list[Tensor]
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """One chunk of N = ``chunk_size`` frames (at 50 Hz) for a batch of streams of any ages (evaluation only).

        The chunk-wise outputs, concatenated, equal :meth:`forward`'s on the whole utterance with the same
        ``chunk_size`` / ``left_context_frames`` (its chunk-causal attention mask).

        Args:
            x: (B, 2N + 13, F) input frames ``2N k .. 2N k + 2N + 12`` of each stream's chunk k (chunks overlap
                by 13 frames: the front end's look-ahead), padded after a stream's last frame.
            x_lens: (B,) real frames in x (< 2N + 13 only in a stream's last chunk).
            states: from :meth:`get_init_states` (or :meth:`stack_states`) or the previous call.

        Returns:
            (out (B, N/2, E) zero at padding, out_lens (B,), new states).
        """
        if self.feature_norm.kind == "utterance_mean":
            raise RuntimeError("streaming needs feature_norm 'none' or 'running_mean' (an utterance mean is not known "
                               "in advance)")
        processed_lens = states[-1]
        embed_state = states[-2]
        frame_sum = embed_state  # unused unless running_mean
        if self.feature_norm.kind == "running_mean":
            embed_state, frame_sum = self._split_embed_state(embed_state)
            shift = x.size(1) - self.lookahead_frames  # 2N
            x, frame_sum = self.feature_norm.streaming_forward(x, x_lens, frame_sum, 2 * processed_lens, shift)
        x, lens, embed_cache = self.encoder_embed.streaming_forward(x, x_lens, embed_state)  # (B, N, D0)
        if self.feature_norm.kind == "running_mean":
            embed_cache = self._join_embed_state(embed_cache, frame_sum)
        x = x.permute(1, 0, 2)  # (N, B, D0)
        new_states: list[Tensor] = []
        outputs: list[Tensor] = []
        offset = 0
        for i, module in enumerate(self.encoders):
            n = 6 * self.num_encoder_layers[i]
            x = convert_num_channels(x, self.encoder_dim[i])
            x, module_states = module.streaming_forward(x, states[offset : offset + n], processed_lens, lens)
            offset += n
            new_states += module_states
            outputs.append(x)

        x = self._full_dim_output(outputs)
        x = self.downsample_output(x, lens)
        out_lens = (lens + 1) // 2
        out_mask = torch.arange(x.size(0), device=x.device).unsqueeze(0) >= out_lens.unsqueeze(1)
        x = x.permute(1, 0, 2).masked_fill(out_mask.unsqueeze(-1), 0.0)
        new_states += [embed_cache, processed_lens + lens]
        return x, out_lens, new_states

    def _split_embed_state(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """``running_mean`` keeps its running frame sum (B, F) in extra channels of the front-end state (so the
        state list keeps sherpa-onnx's zipformer2 layout): (B, C + k, 3, F') -> ((B, C, 3, F'), (B, F))."""
        channels = self.embed_state_channels
        frame_sum = state[:, channels:].reshape(state.size(0), -1)[:, : self.feature_dim]
        return state[:, :channels], frame_sum

    def _join_embed_state(self, embed_cache: Tensor, frame_sum: Tensor) -> Tensor:
        """The inverse of :meth:`_split_embed_state`: (B, C, 3, F') and (B, F) -> (B, C + k, 3, F')."""
        b, _, rows, width = embed_cache.shape
        spare = torch.zeros(b, self.norm_state_channels * rows * width - frame_sum.size(1), dtype=frame_sum.dtype,
                            device=frame_sum.device)
        packed = torch.cat([frame_sum, spare], dim=1).reshape(b, self.norm_state_channels, rows, width)
        return torch.cat([embed_cache, packed], dim=1)

    @torch.jit.unused
    def set_decoding_chunk(self, chunk_size: Optional[int] = None, left_context_frames: Optional[int] = None) -> None:
        """Replace the decoding-time (first) ``chunk_size`` / ``left_context_frames`` entries (``None``: keep);
        both :meth:`forward` in evaluation mode (simulated streaming) and :meth:`streaming_forward` use them.

        Raises:
            ConfigError: the model is not causal, or a value is invalid (naming the option).
        """
        if not self.causal:
            raise ConfigError("--chunk-size/--left-context-frames need a causal model (model.encoder.zipformer."
                              "causal: true)", hint="train a streaming preset such as recipes/zipformer-xs-streaming.yaml")
        max_ds = max(self.downsampling_factor)
        if chunk_size is not None:
            if chunk_size == 0 or chunk_size < -1 or (chunk_size > 0 and chunk_size % max_ds):
                raise ConfigError(f"--chunk-size: {chunk_size} must be -1 or a positive multiple of "
                                  f"max(downsampling_factor) = {max_ds}")
            self.chunk_size = [chunk_size] + self.chunk_size[1:]
        if left_context_frames is not None:
            if left_context_frames < -1:
                raise ConfigError(f"--left-context-frames: {left_context_frames} must be -1 (unlimited) or >= 0")
            self.left_context_frames = [left_context_frames] + self.left_context_frames[1:]

    @torch.jit.unused
    def streaming_chunk_config(self) -> tuple[int, int]:
        """(chunk_size, left_context_frames) at 50 Hz that streaming uses: the first entries of the config (the
        decoding-time values), the left context rounded to whole chunks (>= 1), as in :meth:`forward`'s mask.

        Raises:
            ConfigError: the model is not causal, or the chunk size / left context cannot stream.
        """
        key = "model.encoder.zipformer"
        if not self.causal:
            raise ConfigError(f"{key}.causal: streaming needs a causal model", hint="train with causal: true")
        chunk, left = self.chunk_size[0], self.left_context_frames[0]
        step = max(self.downsampling_factor)
        step = step if step % 2 == 0 else 2 * step
        if chunk <= 0 or chunk % step:
            raise ConfigError(
                f"{key}.chunk_size: streaming needs a positive multiple of {step} frames (output downsampling 2 and "
                f"max(downsampling_factor)), got {chunk}"
            )
        if left < 0:
            raise ConfigError(f"{key}.left_context_frames: streaming needs a finite left context, got {left}")
        if self.feature_norm.kind == "utterance_mean":
            raise ConfigError(
                "model.encoder.feature_norm: streaming needs 'none' or 'running_mean' (an utterance mean is not "
                "known in advance)"
            )
        return chunk, max(left // chunk, 1) * chunk

    @torch.jit.unused
    def streaming_input_frames(self) -> tuple[int, int]:
        """(frames per chunk call, frames between chunk starts) at the input rate for :meth:`streaming_forward`."""
        chunk, _ = self.streaming_chunk_config()
        return streaming_input_frames(chunk), 2 * chunk

    @torch.jit.unused
    def get_init_states(self, batch_size: int = 1, device: torch.device = torch.device("cpu")) -> list[Tensor]:
        """States of ``batch_size`` fresh streams: a flat list, TorchScript/ONNX friendly.

        For each layer of each stack, in order (L = left_context_frames / downsampling factor of the stack,
        H heads, D the stack's dim, K its kernel): ``cached_key`` (L, B, H * query_head_dim),
        ``cached_nonlin_attn`` (1, B, L, 3D/4), ``cached_val1`` and ``cached_val2`` (L, B, H * value_head_dim),
        ``cached_conv1`` and ``cached_conv2`` (B, D, K//2); then the front end's ``embed_states``
        (B, C, 3, F'), with ``feature_norm: running_mean`` (B, C + k, 3, F') whose last k channels hold the running
        frame sum (B, F) (k = ceil(F / (3 F'))), and ``processed_lens`` (B,) int64 (50 Hz frames already seen,
        which mask cached slots a young stream has not filled yet).
        """
        _, left = self.streaming_chunk_config()
        states: list[Tensor] = []
        for module in self.encoders:
            states += module.get_init_states(left, batch_size, device)
        embed = self.encoder_embed.get_init_states(batch_size, device)
        if self.feature_norm.kind == "running_mean":
            embed = self._join_embed_state(embed, torch.zeros(batch_size, self.feature_dim, device=device))
        states.append(embed)
        states.append(torch.zeros(batch_size, dtype=torch.int64, device=device))
        return states

    @torch.jit.unused
    def state_batch_dims(self) -> list[int]:
        """The batch axis of each tensor of :meth:`get_init_states`."""
        return list(LAYER_STATE_BATCH_DIMS) * sum(self.num_encoder_layers) + [0, 0]

    @torch.jit.unused
    def stack_states(self, streams: list[list[Tensor]]) -> list[Tensor]:
        """Batch the states of single streams (each from a batch-1 :meth:`get_init_states` or
        :meth:`unstack_states`) into one state list for :meth:`streaming_forward`."""
        return stack_states(streams, self.state_batch_dims())

    @torch.jit.unused
    def unstack_states(self, states: list[Tensor]) -> list[list[Tensor]]:
        """Split batched states into per-stream lists (the inverse of :meth:`stack_states`)."""
        return unstack_states(states, self.state_batch_dims())

    @torch.jit.unused
    def output_lengths(self, x_lens: Tensor) -> Tensor:
        """Encoder output frames for input lengths (B,) without running the encoder: ((T - 7) // 2 + 1) // 2."""
        return (subsampled_lengths(x_lens) + 1) // 2

    def _chunk_config(self) -> tuple[int, int]:
        """(chunk_size, left_context_chunks) at 50 Hz; (-1, -1) when not causal or full context."""
        if not self.causal:
            return -1, -1
        chunk_size = self.chunk_size[0]
        left_frames = self.left_context_frames[0]
        if not torch.jit.is_scripting() and self.training:
            chunk_size = random.choice(self.chunk_size)
            left_frames = random.choice(self.left_context_frames)
        if chunk_size <= 0:
            return -1, -1
        if left_frames < 0:
            return chunk_size, -1
        return chunk_size, max(left_frames // chunk_size, 1)

    def _feature_masks(self, x: Tensor) -> list[Optional[Tensor]]:
        """Per-stack (1, B, D) masks zeroing dims beyond ``encoder_unmasked_dim`` on random sequences (the upper
        half of the extra dims on ~12.5% of sequences, the rest on ~25%), so lower dims carry most information
        and the stacks of different widths agree on it."""
        b = x.size(1)
        p = 0.125
        mask1 = (torch.rand(1, b, 1, device=x.device) > p).to(x.dtype)
        mask2 = mask1 * (torch.rand(1, b, 1, device=x.device) > p).to(x.dtype)
        masks: list[Optional[Tensor]] = []
        for dim, unmasked in zip(self.encoder_dim, self.encoder_unmasked_dim):
            m = torch.ones(1, b, dim, dtype=x.dtype, device=x.device)
            mid = unmasked + (dim - unmasked) // 2
            m[:, :, unmasked:mid] = m[:, :, unmasked:mid] * mask1
            m[:, :, mid:] = m[:, :, mid:] * mask2
            masks.append(m)
        return masks

    def _full_dim_output(self, outputs: list[Tensor]) -> Tensor:
        """Output of dim E = max(encoder_dim): the last stack's channels, completed with higher channels from the
        most recent stack that has them."""
        pieces = [outputs[-1]]
        cur = self.encoder_dim[-1]
        for i in range(len(outputs) - 2, -1, -1):
            d = self.encoder_dim[i]
            if d > cur:
                pieces.append(outputs[i][..., cur:d])
                cur = d
        return torch.cat(pieces, dim=-1)
