"""The chunk-wise inference API of a causal transducer, one module for eager PyTorch and TorchScript alike.

:class:`StreamingTransducer` wraps a ``Transducer`` whose encoder has ``streaming_forward`` (a causal Zipformer2)
with the decoding-time chunk size and left context fixed: ``streaming_encode`` runs one chunk for a batch of
streams, ``get_init_states`` makes fresh states, ``predict`` / ``join`` are the transducer's. It scripts as is
(``torch.jit.script``), so :mod:`asrkit.decoding.streaming` drives an exported file exactly as it drives the
eager model.

Shape legend: B streams, W input frames per chunk call, F feature bins, N chunk size (50 Hz), J joiner dim.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class StreamingTransducer(nn.Module):
    """Chunk-wise encode / predict / join of a causal transducer.

    Attributes (plain ints and lists, readable on the scripted module too): ``chunk_size`` and
    ``left_context_frames`` (50 Hz), ``window`` (input frames per :meth:`streaming_encode` call) and ``shift``
    (input frames between chunk starts), ``state_batch_dims`` (the batch axis of each state), ``blank_id``,
    ``context_size``, ``vocab_size``, ``recurrent_predictor``.

    Args:
        model: a ``Transducer`` with a causal Zipformer2 encoder (its first ``chunk_size`` /
            ``left_context_frames`` entries are used; see ``Zipformer2.set_decoding_chunk``).

    Raises:
        ConfigError: the encoder cannot stream.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        encoder = model.encoder
        if not hasattr(encoder, "streaming_forward"):
            from asrkit.errors import ConfigError

            raise ConfigError(f"a {type(encoder).__name__} encoder cannot decode chunk by chunk",
                              hint="train a causal zipformer (recipes/zipformer-xs-streaming.yaml)")
        self.chunk_size, self.left_context_frames = encoder.streaming_chunk_config()
        self.window, self.shift = encoder.streaming_input_frames()
        self.encoder = encoder
        self.predictor = model.predictor
        self.joiner = model.joiner
        self.blank_id: int = int(model.blank_id)
        self.context_size: int = int(model.context_size)
        self.vocab_size: int = int(model.vocab_size)
        self.recurrent_predictor: bool = hasattr(model.predictor, "initial_state")
        self.state_batch_dims: list[int] = encoder.state_batch_dims()
        self.state_shapes: list[list[int]] = [list(s.shape) for s in encoder.get_init_states(1)]

    def forward(self, x: Tensor, x_lens: Tensor, states: list[Tensor]) -> tuple[Tensor, Tensor, list[Tensor]]:
        return self.streaming_encode(x, x_lens, states)

    @torch.jit.export
    def streaming_encode(
        self, x: Tensor, x_lens: Tensor, states: list[Tensor]
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """One chunk: x (B, W, F) input frames, x_lens (B,) real ones, states -> (encoder_out (B, N/2, J)
        projected for the joiner, encoder_out_lens (B,), new states)."""
        out, lens, new_states = self.encoder.streaming_forward(x, x_lens, states)
        return self.joiner.encoder_proj(out), lens, new_states

    @torch.jit.export
    def get_init_states(self, batch_size: int = 1) -> list[Tensor]:
        """States of ``batch_size`` fresh streams (CPU; the last, the processed lengths, int64)."""
        states: list[Tensor] = []
        n = len(self.state_shapes)
        for i in range(n):
            shape = list(self.state_shapes[i])
            shape[self.state_batch_dims[i]] = batch_size
            states.append(torch.zeros(shape, dtype=torch.int64 if i == n - 1 else torch.float32))
        return states

    @torch.jit.export
    def predict(self, y: Tensor, need_pad: bool = True) -> Tensor:
        """As ``Transducer.predict``: y (B, U) int64 -> (B, U', J)."""
        return self.joiner.decoder_proj(self.predictor(y, need_pad))

    @torch.jit.export
    def join(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        """As ``Transducer.join``: (..., J), (..., J) -> logits (..., V)."""
        return self.joiner(encoder_out, decoder_out)

