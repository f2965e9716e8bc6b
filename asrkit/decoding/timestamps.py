"""Encoder frame indices -> seconds (shared by ``decode --timestamps`` and ``transcribe --timestamps``)."""

from __future__ import annotations

from collections.abc import Sequence

from asrkit.data.features import FRAME_SHIFT_S


def frames_to_seconds(frames: Sequence[int], num_input_frames: int, num_encoder_frames: int) -> list[float]:
    """Start times (s) of tokens emitted at encoder ``frames``.

    The encoder's (integer) subsampling factor is recovered from the input/output lengths, so the same code serves
    every encoder: a frame ``t`` starts at ``t * factor * 10 ms``.
    """
    factor = max(1, round(num_input_frames / max(1, num_encoder_frames)))
    return [round(t * factor * FRAME_SHIFT_S, 3) for t in frames]
