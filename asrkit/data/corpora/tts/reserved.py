"""Voices reserved for the project's independent evaluation: never used to make any asrkit data.

The independent evaluation set holds voices of speech synthesizers that asrkit never trains or tunes on. Those
voices must not leak into a corpus, a test or a default, so every engine backend refuses them
(:func:`check_voice_allowed`) before it runs its synthesizer, whatever asked for them.

Reserved: flite ``slt``, ``rms``, ``awb`` (and ``awb_time``); festival ``ked``, ``rab`` and
``cmu_us_slt_arctic_hts``; RHVoice's ``slt`` (the same CMU ARCTIC speaker); every MBROLA voice, through any
engine (espeak-ng's ``mb-*``/``mb/...`` voices, festival's ``*_mbrola``).
"""

from __future__ import annotations

import re

from asrkit.errors import ConfigError

__all__ = ["RESERVED_VOICES", "RESERVED_VOICE_TOKENS", "is_reserved", "check_voice_allowed"]

# The voice names as the engines spell them.
RESERVED_VOICES: frozenset[tuple[str, str]] = frozenset({
    ("flite", "slt"), ("flite", "rms"), ("flite", "awb"), ("flite", "awb_time"),
    ("festival", "ked_diphone"), ("festival", "rab_diphone"), ("festival", "cmu_us_slt_arctic_hts"),
    ("rhvoice", "slt"),
})
# Name parts that mark a reserved voice under any engine and any spelling (``voice_ked_diphone``, ``cmu_us_awb``,
# ``en+mb-en1``, ``us1_mbrola``): a voice whose name contains one of them as a separate part is refused.
RESERVED_VOICE_TOKENS: frozenset[str] = frozenset({"slt", "rms", "awb", "ked", "rab", "mb", "mbrola"})


def is_reserved(engine: str, voice: str) -> bool:
    """Whether ``voice`` of ``engine`` is reserved (see the module docstring).

    Example:
        >>> is_reserved("flite", "slt"), is_reserved("espeak", "en+mb-en1"), is_reserved("flite", "kal16")
        (True, True, False)
    """
    if (engine, voice) in RESERVED_VOICES:
        return True
    parts = set(re.split(r"[^a-z0-9]+", voice.lower()))
    return bool(parts & RESERVED_VOICE_TOKENS) or any(p.startswith("mb") and p[2:].isdigit() for p in parts)


def check_voice_allowed(engine: str, voice: str) -> None:
    """Raise :class:`ConfigError` if ``voice`` of ``engine`` is reserved."""
    if is_reserved(engine, voice):
        raise ConfigError(
            f"{engine} voice {voice!r} is reserved for the independent evaluation and is never used by asrkit",
            hint="choose another voice (asrkit.data.corpora.tts.RESERVED_VOICES lists the reserved ones)",
        )
