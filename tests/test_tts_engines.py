"""Tests for the TTS engine backends (real synthesis; a backend is skipped only when its binary is missing)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from asrkit.data.corpora.tts import ENGINES, SAMPLE_RATE, get_engine, is_reserved
from asrkit.errors import ConfigError

TEXTS = ("ENTER FIVE SIX", "R U B O U T TWO")


def _engine(name: str):
    if not ENGINES[name].available():
        pytest.skip(f"{ENGINES[name].binary} not installed (Debian package {ENGINES[name].package})")
    return get_engine(name)


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_backend_makes_16k_speech_of_plausible_duration(name: str) -> None:
    engine = _engine(name)
    voices = engine.voices()
    assert voices, f"{name} lists no usable voice"
    assert not any(is_reserved(name, v) for v in voices)
    for voice in voices[:2]:
        settings = engine.random_settings(random.Random(1), voice)
        short, long = engine.synthesize_many(TEXTS[:1] + ("ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT",), settings)
        for audio in (short, long):
            assert audio.dtype == np.float32 and audio.ndim == 1
            seconds = audio.size / SAMPLE_RATE
            assert 0.4 < seconds < 8.0
            assert 0.01 < float(np.abs(audio).max()) <= 1.0
            assert float(np.sqrt(np.mean(audio ** 2))) > 1e-3  # speech, not near-silence
        assert long.size > 1.5 * short.size  # eight words take longer than three


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_backend_is_deterministic_and_follows_its_rate(name: str) -> None:
    engine = _engine(name)
    settings = engine.random_settings(random.Random(2), engine.voices()[0])
    first = engine.synthesize_many(TEXTS, settings)
    again = engine.synthesize_many(TEXTS, settings)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    single = engine.synthesize(TEXTS[1], settings)
    assert np.array_equal(single, first[1])  # a batch gives what single calls give
    # A slower setting gives longer audio, as rate_factor says.
    from dataclasses import replace

    slow = min((replace(settings, rate=r) for r in (settings.rate - 20, settings.rate + 20)),
               key=lambda s: engine.rate_factor(s.rate))
    fast = max((replace(settings, rate=r) for r in (settings.rate - 20, settings.rate + 20)),
               key=lambda s: engine.rate_factor(s.rate))
    assert engine.synthesize(TEXTS[1], slow).size > engine.synthesize(TEXTS[1], fast).size


def test_settings_of_another_engine_are_refused() -> None:
    engine = get_engine("flite")
    with pytest.raises(ConfigError, match="engine 'espeak'"):
        engine.synthesize("ONE", get_engine("espeak").random_settings(random.Random(0), "en+m3"))


def test_unknown_engine_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        get_engine("mbrola")
    assert "espeak" in err.value.hint and "pico" in err.value.hint
