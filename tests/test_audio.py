"""Tests for asrkit.data.audio: reading with clear errors, resampling quality, lhotse backend selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrkit.data.audio import read_audio, resample, use_soundfile_backend
from asrkit.errors import DataError


def _tone(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("fmt,ext,subtype", [("WAV", "wav", "PCM_16"), ("FLAC", "flac", "PCM_16"),
                                             ("NIST", "sph", "PCM_16")])
def test_read_audio_formats(tmp_path: Path, fmt: str, ext: str, subtype: str) -> None:
    x = _tone(440, 16000, 0.5)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    y, sr = read_audio(path)
    assert sr == 16000 and y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y - x).max() < 1e-3  # 16-bit quantization only


def test_read_audio_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left, right = _tone(440, 8000, 0.25), np.zeros(2000, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 8000)
    y, sr = read_audio(tmp_path / "s.wav")
    assert sr == 8000 and y.ndim == 1
    np.testing.assert_allclose(y, left / 2, atol=1e-3)


def test_read_audio_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found.*nope.wav"):
        read_audio(tmp_path / "nope.wav")


def test_read_audio_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(DataError, match="empty.*empty.wav"):
        read_audio(tmp_path / "empty.wav")


def test_read_audio_garbage(tmp_path: Path) -> None:
    (tmp_path / "junk.flac").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(DataError, match="cannot read audio file .*junk.flac"):
        read_audio(tmp_path / "junk.flac")


def test_read_audio_truncated_header(tmp_path: Path) -> None:
    sf.write(tmp_path / "full.wav", _tone(300, 16000, 0.2), 16000)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "full.wav").read_bytes()[:30])  # RIFF header is 44 bytes
    with pytest.raises(DataError, match="cut.wav"):
        read_audio(tmp_path / "cut.wav")


def test_read_audio_truncated_sphere_header(tmp_path: Path) -> None:
    sf.write(tmp_path / "full.sph", _tone(300, 16000, 0.2), 16000, format="NIST", subtype="PCM_16")
    (tmp_path / "cut.sph").write_bytes((tmp_path / "full.sph").read_bytes()[:500])  # SPHERE header is 1024 bytes
    with pytest.raises(DataError, match="cut.sph"):
        read_audio(tmp_path / "cut.sph")


def test_read_audio_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a regular file"):
        read_audio(tmp_path)


def test_resample_identity_and_length() -> None:
    x = _tone(100, 16000, 0.1)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    assert resample(np.zeros(22051, np.float32), 22050, 16000).shape == (16001,)
    assert resample(np.zeros(0, np.float32), 22050, 16000).shape == (0,)
    assert resample(np.zeros(100, np.float32), 8000, 16000).shape == (200,)


@pytest.mark.parametrize("sr_in,sr_out", [(22050, 16000), (8000, 16000), (48000, 16000), (16000, 8000)])
def test_resample_passband_tone_is_preserved(sr_in: int, sr_out: int) -> None:
    f = 1000.0
    y = resample(_tone(f, sr_in, 1.0), sr_in, sr_out)
    ref = _tone(f, sr_out, 1.0)[: y.shape[0]]
    inner = slice(sr_out // 10, -sr_out // 10)  # edges are affected by the zero padding
    assert np.abs(y[inner] - ref[inner]).max() < 1e-3


def test_resample_removes_aliasing() -> None:
    # A 10 kHz tone cannot be represented at 16 kHz: it must be filtered out, not folded to 6 kHz.
    y = resample(_tone(10000, 22050, 1.0, amp=1.0), 22050, 16000)
    inner = y[1600:-1600]
    level_db = 20 * np.log10(np.sqrt(np.mean(inner**2)) / np.sqrt(0.5))
    assert level_db < -60, level_db


def test_resample_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        resample(np.zeros((2, 10), np.float32), 16000, 8000)
    with pytest.raises(ValueError):
        resample(np.zeros(10, np.float32), 0, 8000)


def test_use_soundfile_backend_reads_sphere_through_lhotse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lhotse import Recording
    from lhotse.audio.backend import get_current_audio_backend, set_current_audio_backend

    monkeypatch.delenv("LHOTSE_AUDIO_BACKEND", raising=False)
    x = _tone(500, 16000, 0.3)
    sf.write(tmp_path / "a.sph", x, 16000, format="NIST", subtype="PCM_16")
    previous = get_current_audio_backend()
    try:
        use_soundfile_backend()
        import os

        assert os.environ["LHOTSE_AUDIO_BACKEND"] == "LibsndfileBackend"
        rec = Recording.from_file(tmp_path / "a.sph")
        assert rec.num_samples == x.shape[0] and rec.sampling_rate == 16000
        np.testing.assert_allclose(rec.load_audio()[0], x, atol=1e-3)
    finally:
        set_current_audio_backend(previous)


def test_read_audio_resampled(tmp_path: Path) -> None:
    from asrkit.data.audio import read_audio_resampled

    sf.write(tmp_path / "8k.wav", _tone(440, 8000, 0.5), 8000, subtype="FLOAT")
    sf.write(tmp_path / "16k.wav", _tone(440, 16000, 0.5), 16000, subtype="FLOAT")
    y = read_audio_resampled(tmp_path / "8k.wav")
    assert y.dtype == np.float32 and y.shape == (8000,)
    assert np.allclose(y[1000:7000], _tone(440, 16000, 0.5)[1000:7000], atol=1e-2)
    assert np.array_equal(read_audio_resampled(tmp_path / "16k.wav"), read_audio(tmp_path / "16k.wav")[0])
    with pytest.raises(DataError, match="nope.wav"):
        read_audio_resampled(tmp_path / "nope.wav")
