"""Speech-synthesizer backends for the synthetic corpus, one module per engine, and a registry by name.

Every backend turns text + :class:`VoiceSettings` into 16 kHz float32 audio (:class:`TTSEngine`) and refuses
the voices reserved for independent evaluation (:mod:`asrkit.data.corpora.tts.reserved`).

Example:
    >>> engine = get_engine("flite")  # doctest: +SKIP
    >>> audio = engine.synthesize("ENTER FIVE SIX", engine.random_settings(random.Random(0), "kal16"))  # doctest: +SKIP
"""

from __future__ import annotations

from asrkit.data.corpora.tts.base import SAMPLE_RATE, TTSEngine, VoiceSettings
from asrkit.data.corpora.tts.espeak import EspeakEngine
from asrkit.data.corpora.tts.festival import FestivalEngine
from asrkit.data.corpora.tts.flite import FliteEngine
from asrkit.data.corpora.tts.pico import PicoEngine
from asrkit.data.corpora.tts.reserved import RESERVED_VOICES, check_voice_allowed, is_reserved
from asrkit.data.corpora.tts.rhvoice import RHVoiceEngine
from asrkit.errors import ConfigError

__all__ = ["ENGINES", "get_engine", "TTSEngine", "VoiceSettings", "SAMPLE_RATE", "RESERVED_VOICES",
           "check_voice_allowed", "is_reserved"]

ENGINES: dict[str, type[TTSEngine]] = {
    "espeak": EspeakEngine, "flite": FliteEngine, "festival": FestivalEngine, "pico": PicoEngine,
    "rhvoice": RHVoiceEngine,
}


def get_engine(name: str, *, espeak_data_path: str = "") -> TTSEngine:
    """The backend registered as ``name``. ``espeak_data_path``: espeak-ng's ``--path`` (espeak only).

    Raises:
        ConfigError: unknown engine name (the message lists the valid ones).
    """
    if name not in ENGINES:
        raise ConfigError(f"unknown TTS engine {name!r}", hint=f"choose one of: {', '.join(ENGINES)}")
    if name == "espeak":
        return EspeakEngine(espeak_data_path)
    return ENGINES[name]()
