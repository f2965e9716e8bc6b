"""Live transcription of audio files with a streaming export (``asrkit transcribe --streaming``).

A file is fed in pieces (``piece_seconds``, at real time or as fast as possible); fbank frames are computed as
they become final (:class:`~asrkit.streaming_features.OnlineFbank`), each full chunk is decoded as soon as its
window has arrived, and after every piece that completed a chunk the current best text is reported with the audio
time it covers. At the end of the file the last partial chunk is decoded and the final text reported. A file that
cannot be read does not stop the others: it gets one update with ``error`` set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asrkit.errors import ConfigError, DataError


@dataclass(frozen=True)
class StreamingUpdate:
    """One report: ``audio_seconds`` of the file fed so far, the best ``text`` then, ``final`` for the last, and
    ``latency_seconds``: wall time from feeding the piece to this result. ``error``: why the file could not be read
    (its only update, final, with no text)."""

    path: str
    audio_seconds: float
    text: str
    final: bool
    latency_seconds: float
    error: str | None = None


def transcribe_streaming(
    model_path: str | Path,
    audio_paths: list[str | Path],
    method: str = "greedy_search",
    piece_seconds: float = 0.1,
    real_time: bool = False,
    int8: bool = False,
    num_threads: int = 1,
    **opts: Any,
) -> Iterator[StreamingUpdate]:
    """Transcribe files one after another as live streams, yielding partial results as audio arrives.

    Args:
        model_path: ``jit_script_streaming.pt`` (or its directory) or a streaming ONNX export directory.
        audio_paths: audio files (any format libsndfile reads, resampled to 16 kHz).
        method: ``greedy_search`` or ``modified_beam_search``.
        piece_seconds: audio fed per step (> 0).
        real_time: feed each piece when it would arrive from a live source (else as fast as possible).
        int8: streaming ONNX: use the ``*.int8.onnx`` files.
        **opts: search options (``beam_size``, ``blank_penalty``, ``max_sym_per_frame`` ...).

    Yields:
        :class:`StreamingUpdate` s: partial ones (the text changed) and one final per file; for a file that
        cannot be read (missing, empty, corrupt) one final update whose ``error`` names the file and the reason.

    Raises:
        ConfigError: bad options. CheckpointError: not a streaming export.
    """
    from asrkit.data.audio import read_audio_resampled
    from asrkit.decoding.streaming import get_streaming_search
    from asrkit.streaming_model import load_streaming_model

    if piece_seconds <= 0:
        raise ConfigError(f"--piece-seconds must be > 0, got {piece_seconds}")
    model, tokenizer = load_streaming_model(model_path, int8=int8, num_threads=num_threads)
    if "unk_id" not in opts:
        opts = {**opts, "unk_id": getattr(tokenizer, "unk_id", None)}
    get_streaming_search(method, opts)
    for path in audio_paths:
        try:
            samples = read_audio_resampled(path)
        except DataError as exc:
            yield StreamingUpdate(str(path), 0.0, "", True, 0.0, error=str(exc))
            continue
        yield from _transcribe_one(model, tokenizer, str(path), samples, method, piece_seconds, real_time, opts)


def _transcribe_one(model: Any, tokenizer: Any, path: str, samples: Any, method: str, piece_seconds: float,
                    real_time: bool, opts: dict[str, Any],
                    clock: Callable[[], float] = time.perf_counter) -> Iterator[StreamingUpdate]:
    from asrkit.decoding.streaming import STREAMING_SEARCHES, DecodeStream, decode_chunk, stream_result
    from asrkit.streaming_features import OnlineFbank

    stream = DecodeStream(model, STREAMING_SEARCHES[method].start(model), path)
    fbank = OnlineFbank()
    piece = max(1, int(round(piece_seconds * 16000)))
    started = clock()
    text = ""

    def best() -> str:
        return tokenizer.decode([stream_result(model, stream, method, **opts).tokens])[0]

    for begin in range(0, len(samples), piece):
        end = min(begin + piece, len(samples))
        if real_time:  # the piece is complete at its end time
            time.sleep(max(0.0, started + end / 16000 - clock()))
        fed = clock()
        stream.accept_features(fbank.accept_waveform(samples[begin:end]))
        chunks = 0
        while stream.ready:
            decode_chunk(model, [stream], method, **opts)
            chunks += 1
        if chunks:
            new = best()
            if new != text:
                text = new
                yield StreamingUpdate(path, end / 16000, text, False, clock() - fed)
    fed = clock()
    stream.accept_features(fbank.input_finished())
    stream.input_finished()
    while stream.ready:
        decode_chunk(model, [stream], method, **opts)
    yield StreamingUpdate(path, len(samples) / 16000, best() if stream.num_chunks else "", True, clock() - fed)
