"""Benchmark: chunk-wise decoding with a streaming export, as a live-captioning server would run it.

Figures per export (its chunk size and left context are fixed in the export):

- **RTF** of one stream: (feature extraction + chunk-wise decoding) wall time / audio duration, files fed as fast
  as possible, one after another.
- **chunk compute**: wall time of one chunk step of one stream (encoder chunk + search + the partial result), mean
  and 95th percentile: what each partial result waits after its audio has arrived.
- **first-partial latency**: for each file, the wall time from the onset of speech to the first non-empty partial
  result if the file were fed at real time: the audio time at which the chunk that first emits a token is
  complete (its input window, right context included) plus that chunk's compute time, minus the onset (the first
  10 ms frame within 35 dB of the file's loudest). It holds while decoding keeps up with real time (RTF < 1).
  Reported as the mean and the maximum over the files.
- **state per stream**: bytes of the encoder caches one stream carries between chunks (the model is shared).
- **concurrent streams**: ``N`` streams decoded together through a pool (a new file joins when one ends), one
  batched encoder call per chunk step; ``capacity`` = audio seconds decoded per wall second. ``N`` streams run in
  real time while capacity >= N; the largest such ``N`` tried is reported.

Shape legend: T input frames (100 Hz), F feature bins.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FRAME_SECONDS = 0.01  # fbank frame shift
ONSET_DB = 35.0  # speech onset: the first 10 ms frame within this many dB of the loudest


@dataclass
class StreamingFigures:
    """What :func:`bench_streaming` measured for one export (times in seconds)."""

    model: str
    chunk_seconds: float  # audio per chunk step
    left_context_seconds: float
    audio_seconds: float
    rtf: float
    chunk_compute_mean: float
    chunk_compute_p95: float
    first_partial_mean: float
    first_partial_max: float
    state_bytes: int
    capacity: dict[int, float] = field(default_factory=dict)  # streams -> audio seconds per wall second

    @property
    def realtime_streams(self) -> int:
        """The most concurrent streams tried that still decode in real time (0: not even one)."""
        return max((n for n, c in self.capacity.items() if c >= n), default=0)


def speech_onset(samples: np.ndarray, sample_rate: int = 16000) -> float:
    """Seconds to the first 10 ms frame whose energy is within :data:`ONSET_DB` of the loudest frame.

    Args:
        samples: ``(N,)`` float samples.
    """
    hop = int(sample_rate * FRAME_SECONDS)
    n = max(1, len(samples) // hop)  # a file shorter than one frame is one frame
    frames = np.asarray(samples[: n * hop], dtype=np.float64).reshape(n, -1)
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return float(np.argmax(energy_db >= energy_db.max() - ONSET_DB)) * FRAME_SECONDS


def _load(wavs: Sequence[Path]) -> tuple[list[tuple[str, object]], list[float], list[float], float]:
    """(utt_id, features (T, F)) per file, the durations, the speech onsets and the feature extraction seconds."""
    from asrkit.data.audio import read_audio_resampled
    from asrkit.data.features import SAMPLE_RATE, compute_fbank

    utts, durations, onsets, seconds = [], [], [], 0.0
    for w in wavs:
        samples = read_audio_resampled(w, SAMPLE_RATE)
        started = time.perf_counter()
        utts.append((str(w), compute_fbank(samples, SAMPLE_RATE)))
        seconds += time.perf_counter() - started
        durations.append(len(samples) / SAMPLE_RATE)
        onsets.append(speech_onset(samples))
    return utts, durations, onsets, seconds


def _one_stream(model, utt_id: str, feats, method: str, opts: dict) -> tuple[list[float], float | None]:
    """Decode one file alone, chunk by chunk, taking the partial result after every chunk as a live client does:
    (compute seconds per chunk step, audio time at which the first non-empty partial is available when fed at real
    time, or None when nothing is emitted)."""
    from asrkit.decoding.streaming import STREAMING_SEARCHES, DecodeStream, decode_chunk, stream_result

    stream = DecodeStream(model, STREAMING_SEARCHES[method].start(model), utt_id)
    stream.accept_features(feats)
    stream.input_finished()
    times: list[float] = []
    first: float | None = None
    while stream.ready:
        k = stream.num_chunks
        started = time.perf_counter()
        decode_chunk(model, [stream], method, **opts)
        partial = stream_result(model, stream, method, **opts).tokens
        times.append(time.perf_counter() - started)
        if first is None and partial:
            # the chunk's window ends k shifts + one window in (the file's end for its last chunk)
            window_end = min(k * stream.shift + stream.window, feats.shape[0]) * FRAME_SECONDS
            first = window_end + times[-1]
    return times, first


def _capacity(model, utts: list[tuple[str, object]], durations: list[float], streams: int, method: str,
              opts: dict) -> float:
    """Audio seconds per wall second with ``streams`` concurrent streams over ``utts`` (repeated to 3 files per
    stream so that the pool stays full most of the time)."""
    from asrkit.decoding.streaming import decode_streaming

    picks = [i % len(utts) for i in range(max(3 * streams, len(utts)))]
    work = [(f"{utts[j][0]}#{i}", utts[j][1]) for i, j in enumerate(picks)]
    audio = sum(durations[j] for j in picks)
    started = time.perf_counter()
    decode_streaming(model, work, method, num_streams=streams, **opts)
    return audio / (time.perf_counter() - started)


def bench_streaming(model_path: Path, wavs: Sequence[Path], method: str = "greedy_search", threads: int = 2,
                    streams: Sequence[int] = (1, 2, 4, 8, 16, 32), int8: bool = False,
                    **opts: object) -> StreamingFigures:
    """Measure one streaming export (``jit_script_streaming.pt`` or a streaming ONNX directory) on ``wavs``.

    Args:
        model_path: the export. wavs: audio files (any rate; resampled to 16 kHz).
        method: ``greedy_search`` or ``modified_beam_search``. threads: torch / onnxruntime threads.
        streams: pool sizes for the concurrency figure, tried in increasing order until one falls behind real time.
        int8: a streaming ONNX export's ``*.int8.onnx`` files. **opts: search options (``blank_penalty`` ...).
    """
    import torch

    from asrkit.streaming_model import load_streaming_model

    torch.set_num_threads(threads)
    model, tokenizer = load_streaming_model(model_path, int8=int8, num_threads=threads)
    opts = {"unk_id": getattr(tokenizer, "unk_id", None), **opts}
    utts, durations, onsets, feature_seconds = _load(wavs)
    _one_stream(model, *utts[0], method, opts)  # warm-up
    chunk_times: list[float] = []
    latencies: list[float] = []
    for (utt_id, feats), onset in zip(utts, onsets):
        times, first = _one_stream(model, utt_id, feats, method, opts)
        chunk_times += times
        if first is not None:
            latencies.append(max(0.0, first - onset))
    audio = sum(durations)
    state_bytes = sum(s.numel() * s.element_size() for s in model.get_init_states(1))
    figures = StreamingFigures(
        model=str(model_path), chunk_seconds=model.shift * FRAME_SECONDS,
        left_context_seconds=model.left_context_frames * 2 * FRAME_SECONDS, audio_seconds=audio,
        rtf=(feature_seconds + sum(chunk_times)) / audio, chunk_compute_mean=float(np.mean(chunk_times)),
        chunk_compute_p95=float(np.percentile(chunk_times, 95)),
        first_partial_mean=float(np.mean(latencies)) if latencies else float("nan"),
        first_partial_max=float(np.max(latencies)) if latencies else float("nan"), state_bytes=state_bytes)
    for n in sorted(streams):
        figures.capacity[n] = _capacity(model, utts, durations, n, method, opts)
        if figures.capacity[n] < n:
            break
    return figures


def format_figures(rows: Sequence[StreamingFigures], method: str, threads: int) -> str:
    """A markdown table: one row per export."""
    lines = [f"{method}, {threads} thread(s); latency = speech onset to first non-empty partial at real-time feeding",
             "| export | chunk | left context | audio s | RTF | chunk compute ms (mean / p95) | first-partial latency s "
             "(mean / max) | state KiB / stream | real-time streams (capacity audio-s/s per N) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for f in rows:
        caps = ", ".join(f"{n}: {c:.1f}" for n, c in f.capacity.items())
        lines.append(f"| {f.model} | {f.chunk_seconds * 1000:.0f} ms | {f.left_context_seconds:.2f} s | "
                     f"{f.audio_seconds:.1f} | {f.rtf:.3f} | {f.chunk_compute_mean * 1000:.1f} / "
                     f"{f.chunk_compute_p95 * 1000:.1f} | {f.first_partial_mean:.2f} / {f.first_partial_max:.2f} | "
                     f"{f.state_bytes / 1024:.0f} | {f.realtime_streams} ({caps}) |")
    return "\n".join(lines)
