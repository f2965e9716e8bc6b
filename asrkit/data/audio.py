"""Audio reading and resampling with errors that name the file.

Everything here uses `soundfile` (libsndfile) and numpy only: libsndfile reads WAV, FLAC, OGG/Opus and
uncompressed NIST SPHERE (``.sph``, as in AN4) directly, so no ``sph2pipe``/``sox`` binary is needed.

Shapes: ``N`` is the number of samples of a mono signal.
"""

from __future__ import annotations

import io
import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from asrkit.errors import DataError

__all__ = ["read_audio", "read_audio_resampled", "resample", "use_soundfile_backend"]


def read_audio(path: str | Path | io.BytesIO, *, name: str | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 mono samples in ``[-1, 1]``.

    Multi-channel audio is averaged to mono. Formats are whatever libsndfile reads (WAV, FLAC, OGG, NIST SPHERE
    without shorten compression, ...).

    Args:
        path: file path, or an in-memory buffer (then ``name`` is used in error messages).
        name: how to call the audio in error messages (defaults to the path).

    Returns:
        ``(samples, sample_rate)`` with ``samples`` of shape ``(N,)``, dtype float32.

    Raises:
        DataError: the file is missing, empty, not audio, truncated or holds no samples.

    Example:
        >>> samples, sr = read_audio("an4/wav/an4_clstk/fash/an251-fash-b.sph")  # doctest: +SKIP
        >>> samples.dtype, sr
        (dtype('float32'), 16000)
    """
    import soundfile as sf

    label = name if name is not None else str(path)
    if not isinstance(path, io.IOBase):
        p = Path(path)
        if not p.exists():
            raise DataError(f"audio file not found: {label}")
        if not p.is_file():
            raise DataError(f"audio path is not a regular file: {label}")
        if p.stat().st_size == 0:
            raise DataError(f"audio file is empty (0 bytes): {label}")
        source: str | io.IOBase = str(p)
    else:
        source = path
    try:
        data, sample_rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError) as e:
        raise DataError(
            f"cannot read audio file {label}: {e}",
            hint="the file is corrupt, truncated or not in a format libsndfile reads (wav/flac/ogg/sph)",
        ) from e
    if data.shape[0] == 0:
        raise DataError(f"audio file has no samples (truncated or empty data chunk): {label}")
    samples = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(samples, dtype=np.float32), int(sample_rate)


def read_audio_resampled(path: str | Path | io.BytesIO, sample_rate: int = 16000, *,
                         name: str | None = None) -> np.ndarray:
    """:func:`read_audio`, then :func:`resample` to ``sample_rate`` where the file has another rate.

    Returns:
        ``(N,)`` float32 samples at ``sample_rate``.

    Raises:
        DataError: as :func:`read_audio`.
    """
    samples, sr = read_audio(path, name=name)
    return samples if sr == sample_rate else resample(samples, sr, sample_rate)


@lru_cache(maxsize=32)
def _polyphase_kernel(up: int, down: int, zeros: int, rolloff: float, beta: float) -> tuple[np.ndarray, int]:
    """Windowed-sinc low-pass filters, one per output phase.

    Output sample ``n = j + up*b`` sits at input time ``b*down + j*down/up``; column ``j`` holds the taps
    ``h(j*down/up - m)`` for input offsets ``m`` in ``[-P, down + P]``, so one block of ``up`` outputs is one
    matrix product with ``down + 2P + 1`` inputs starting at ``b*down - P``.

    Returns:
        ``(weights, P)`` with ``weights`` of shape ``(down + 2P + 1, up)`` (float32, columns are phases).
    """
    # The cut-off is a fraction of the *input* rate: the lower of the two Nyquist frequencies, lowered a little
    # (rolloff) so the transition band ends near Nyquist instead of starting there.
    cutoff = 0.5 * min(1.0, up / down) * rolloff
    half_width = zeros / (2.0 * cutoff)  # in input samples: `zeros` zero-crossings of the sinc on each side
    pad = int(math.ceil(half_width))
    m = np.arange(-pad, down + pad + 1, dtype=np.float64)
    phase = np.arange(up, dtype=np.float64) * down / up
    t = phase[None, :] - m[:, None]  # (2P+1, up)
    inside = np.clip(1.0 - (t / half_width) ** 2, 0.0, None)
    window = np.i0(beta * np.sqrt(inside)) / np.i0(beta)  # Kaiser window evaluated at continuous offsets
    window[np.abs(t) > half_width] = 0.0
    taps = 2.0 * cutoff * np.sinc(2.0 * cutoff * t) * window
    return taps.astype(np.float32), pad


def resample(
    samples: np.ndarray,
    sr_in: int,
    sr_out: int,
    *,
    zeros: int = 24,
    rolloff: float = 0.94,
    beta: float = 8.0,
) -> np.ndarray:
    """Band-limited resampling of a mono signal by a rational factor (Kaiser-windowed sinc, polyphase).

    The anti-aliasing low-pass keeps frequencies below ``rolloff * min(sr_in, sr_out) / 2`` (stop-band attenuation
    about 80 dB with the defaults). Pure numpy; the work is chunked so hours of audio need little memory.

    Args:
        samples: ``(N,)`` float array.
        sr_in: its sample rate in Hz.
        sr_out: the wanted sample rate in Hz.
        zeros: sinc zero-crossings on each side of the filter (longer = sharper transition).
        rolloff: cut-off as a fraction of the lower Nyquist frequency.
        beta: Kaiser window shape (higher = more stop-band attenuation, wider transition).

    Returns:
        ``(ceil(N * sr_out / sr_in),)`` float32 array.

    Example:
        >>> x = np.zeros(22050, dtype=np.float32)
        >>> resample(x, 22050, 16000).shape
        (16000,)
    """
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got sr_in={sr_in}, sr_out={sr_out}")
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"resample expects mono samples of shape (N,), got {x.shape}")
    if sr_in == sr_out:
        return x.copy()
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    n_in = x.shape[0]
    n_out = -(-n_in * up // down)
    if n_in == 0:
        return np.zeros(0, dtype=np.float32)
    weights, pad = _polyphase_kernel(up, down, zeros, rolloff, beta)
    k = weights.shape[0]
    n_blocks = -(-n_out // up)
    # Enough zeros right so that the last block's window fits.
    right = max(0, (n_blocks - 1) * down + k - (n_in + pad))
    x_pad = np.concatenate([np.zeros(pad, np.float32), x, np.zeros(right, np.float32)])
    frames = np.lib.stride_tricks.sliding_window_view(x_pad, k)[::down]  # (n_blocks, K) view, no copy
    out = np.empty((n_blocks, up), dtype=np.float32)
    chunk = max(1, (1 << 22) // max(k, up))  # bound the temporary copy to ~16 MB
    for start in range(0, n_blocks, chunk):
        stop = min(n_blocks, start + chunk)
        out[start:stop] = np.ascontiguousarray(frames[start:stop]) @ weights
    return out.reshape(-1)[:n_out]


def use_soundfile_backend(*, for_subprocesses: bool = True) -> None:
    """Make lhotse read audio with libsndfile first, including ``.sph`` files.

    lhotse 1.33's default backend routes every ``*.sph`` path to the external ``sph2pipe`` binary (a special case
    that no other backend may take). This installs, through ``lhotse.audio.backend.set_current_audio_backend``, a
    ``CompositeAudioBackend`` made of lhotse's own ``LibsndfileBackend`` followed by its ``AudioreadBackend``
    fallback, so SPHERE files are read by soundfile like any WAV/FLAC. It is process-global and idempotent.

    Args:
        for_subprocesses: also set the environment variable ``LHOTSE_AUDIO_BACKEND=LibsndfileBackend`` (unless the
            user already set it) so that DataLoader workers started with ``spawn`` read audio the same way; lhotse
            consults that variable in a process where no backend has been set programmatically.

    Example:
        >>> use_soundfile_backend()
        >>> from lhotse import Recording
        >>> Recording.from_file("an4/wav/an4_clstk/fash/an251-fash-b.sph").load_audio()  # doctest: +SKIP
    """
    from lhotse.audio.backend import (
        AudioreadBackend,
        CompositeAudioBackend,
        LibsndfileBackend,
        set_current_audio_backend,
    )

    set_current_audio_backend(CompositeAudioBackend([LibsndfileBackend(), AudioreadBackend()]))
    if for_subprocesses:
        os.environ.setdefault("LHOTSE_AUDIO_BACKEND", "LibsndfileBackend")
