"""Fbank features of audio that arrives in pieces, frame for frame equal to :func:`~asrkit.data.features.compute_fbank`
on the whole waveform (as sherpa-onnx's online feature extractor gives them).

With ``snip_edges=False`` frame i covers samples ``160 i - 120 .. 160 i + 280`` (reflected at the edges), so it is
final once those samples arrived; the last frames, which reflect the end, come with :meth:`OnlineFbank.input_finished`.
Frames are computed on a window of the recent samples that starts one frame early (that frame, whose window would
be reflected at the segment's start, is dropped), so the work per piece does not grow with the audio's length.
"""

from __future__ import annotations

import numpy as np
import torch

from asrkit.data.features import FRAME_SHIFT_SAMPLES, NUM_MEL_BINS, SAMPLE_RATE, compute_fbank

_RIGHT = 280  # samples after a frame's start shift that its window reaches (snip_edges=False, 25 ms window)


class OnlineFbank:
    """Incremental fbank: :meth:`accept_waveform` returns the frames that became final, (n, 80) each time."""

    def __init__(self) -> None:
        self._samples = np.zeros(0, dtype=np.float32)  # from sample 160 * (emitted - 1) on (or 0)
        self._offset = 0  # absolute index of self._samples[0]
        self._received = 0
        self.num_frames = 0  # frames returned so far
        self._finished = False

    def accept_waveform(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """Append 16 kHz samples in [-1, 1]; returns the new final frames (n, 80)."""
        if self._finished:
            raise ValueError("OnlineFbank: samples after input_finished()")
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"OnlineFbank expects {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
        self._samples = np.concatenate([self._samples, np.asarray(samples, dtype=np.float32).reshape(-1)])
        self._received += int(np.asarray(samples).size)
        ready = max(0, (self._received - _RIGHT) // FRAME_SHIFT_SAMPLES + 1)  # frames whose window is complete
        return self._frames_until(ready)

    def input_finished(self) -> torch.Tensor:
        """No more samples: returns the remaining frames (those reflecting the end)."""
        self._finished = True
        total = (self._received + FRAME_SHIFT_SAMPLES // 2) // FRAME_SHIFT_SAMPLES
        return self._frames_until(total, at_end=True)

    def _frames_until(self, end: int, at_end: bool = False) -> torch.Tensor:
        if end <= self.num_frames:
            return torch.zeros((0, NUM_MEL_BINS), dtype=torch.float32)
        first = max(self.num_frames - 1, 0)  # one frame early (dropped) unless at the audio's start
        start = first * FRAME_SHIFT_SAMPLES - self._offset
        segment = self._samples[start:] if at_end else self._samples[start : (end - 1) * FRAME_SHIFT_SAMPLES + _RIGHT - self._offset]
        feats = compute_fbank(segment) if at_end else compute_fbank(segment)[: end - first]
        skip = self.num_frames - first
        new = feats[skip : end - first]
        self.num_frames = end
        keep_from = max(self.num_frames - 1, 0) * FRAME_SHIFT_SAMPLES
        self._samples = self._samples[keep_from - self._offset :]
        self._offset = keep_from
        return new
