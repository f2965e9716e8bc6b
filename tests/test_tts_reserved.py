"""The voices reserved for independent evaluation can never be selected or synthesized."""

from __future__ import annotations

import random

import pytest

from asrkit.data.corpora.tts import ENGINES, RESERVED_VOICES, VoiceSettings, get_engine, is_reserved
from asrkit.data.corpora.tts.espeak import EspeakEngine
from asrkit.errors import ConfigError

# Every reserved voice, spelled as each engine (or a user) might spell it.
RESERVED = [
    ("flite", "slt"), ("flite", "rms"), ("flite", "awb"), ("flite", "awb_time"), ("flite", "cmu_us_slt"),
    ("festival", "ked_diphone"), ("festival", "rab_diphone"), ("festival", "cmu_us_slt_arctic_hts"),
    ("festival", "us1_mbrola"), ("festival", "en1_mbrola"), ("espeak", "mb-en1"), ("espeak", "en-us+mb-us1"),
    ("espeak", "mb/mb-us2"), ("espeak", "en+mb-de1-en"), ("pico", "slt"),
    ("rhvoice", "slt"),
]
ALLOWED = [("flite", "kal"), ("flite", "kal16"), ("festival", "kal_diphone"), ("espeak", "en-us+m3"),
           ("espeak", "en+robert"), ("pico", "en-US"), ("pico", "en-GB"),
           ("rhvoice", "bdl"), ("rhvoice", "evgeniy-eng")]


@pytest.mark.parametrize("engine,voice", RESERVED)
def test_reserved_voices_are_recognised(engine: str, voice: str) -> None:
    assert is_reserved(engine, voice)


@pytest.mark.parametrize("engine,voice", ALLOWED)
def test_allowed_voices_are_not_reserved(engine: str, voice: str) -> None:
    assert not is_reserved(engine, voice)


def test_the_reserved_set_names_every_reserved_voice() -> None:
    assert {("flite", "slt"), ("flite", "rms"), ("flite", "awb"), ("festival", "ked_diphone"),
            ("festival", "rab_diphone"), ("festival", "cmu_us_slt_arctic_hts")} <= RESERVED_VOICES


@pytest.mark.parametrize("engine,voice", RESERVED)
def test_backends_refuse_reserved_voices_before_running(engine: str, voice: str, monkeypatch) -> None:
    backend = get_engine(engine)
    ran = []
    monkeypatch.setattr(type(backend), "_synthesize", lambda self, texts, s: ran.append(texts) or [])
    with pytest.raises(ConfigError, match="reserved"):
        backend.synthesize("ONE TWO", VoiceSettings(engine, voice, rate=100, pitch=100))
    assert not ran


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_voice_lists_never_offer_a_reserved_voice(name: str, monkeypatch) -> None:
    """Whatever is installed, the lists filter reserved voices out (installed lists faked to hold them)."""
    import asrkit.data.corpora.tts.espeak as espeak
    import asrkit.data.corpora.tts.flite as flite

    monkeypatch.setattr(flite, "_installed", lambda: ("kal", "awb_time", "kal16", "awb", "rms", "slt"))
    monkeypatch.setattr(espeak, "_installed_variants", lambda: ("m3", "mb-en1", "f2"))
    monkeypatch.setattr(espeak, "_installed_accents", lambda: ("en", "en-us"))
    engine = get_engine(name)
    if not engine.available() and name not in ("flite", "espeak"):
        pytest.skip(f"{engine.binary} not installed")
    voices = engine.voices()
    assert voices and not any(is_reserved(name, v) for v in voices)
    if name == "flite":
        assert voices == ("kal16", "kal")
    if name == "espeak":
        assert set(voices) == {"en+m3", "en+f2", "en-us+m3", "en-us+f2"}
    for voice in voices:  # and random speakers on them are allowed
        assert not is_reserved(name, engine.random_settings(random.Random(0), voice).voice)


def test_espeak_never_offers_mbrola_accents() -> None:
    if not EspeakEngine.available():
        pytest.skip("espeak-ng not installed")
    accents = EspeakEngine().accents()
    assert accents and "en-uk" not in accents  # en-uk is espeak-ng's name for MBROLA's mb-en1
    assert not any(is_reserved("espeak", a) for a in accents)
