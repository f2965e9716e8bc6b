"""espeak-ng backend: formant synthesis, every English accent and voice variant (``accent+variant``)."""

from __future__ import annotations

import io
import random
from functools import lru_cache

import numpy as np

from asrkit.data.corpora.tts.base import TTSEngine, VoiceSettings, run_tool, to_16k
from asrkit.data.corpora.tts.reserved import is_reserved

__all__ = ["EspeakEngine", "ESPEAK_ACCENTS", "ESPEAK_EXCLUDED_VARIANTS"]

# espeak-ng's formant English voices. `en-gb+variant` silently ignores the variant, so plain British English is
# addressed as `en` (the same voice, where variants work). MBROLA voices (mb-*, and `en-uk`, which is mb-en1) are
# reserved and never used.
ESPEAK_ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")
# Variants that do not sound like a person (robots, whispers, effects), that duplicate another variant exactly
# (klatt6 and caleb = klatt), or that change nothing (fast).
ESPEAK_EXCLUDED_VARIANTS = frozenset({
    "whisper", "whisperf", "croak", "Demonic", "UniRobot", "anikaRobot", "robosoft", "robosoft2", "robosoft3",
    "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8", "Storm", "Tweaky", "kaukovalta",
    "RicishayMax", "RicishayMax2", "RicishayMax3", "fast", "klatt6", "caleb", "Mr serious",
})


@lru_cache(maxsize=1)
def _installed_variants() -> tuple[str, ...]:
    out = run_tool(["espeak-ng", "--voices=variant"], "espeak-ng").decode("utf-8", "replace")
    names = {line.split("!v/", 1)[1].strip() for line in out.splitlines() if "!v/" in line}
    return tuple(sorted(names))


@lru_cache(maxsize=1)
def _installed_accents() -> tuple[str, ...]:
    out = run_tool(["espeak-ng", "--voices=en"], "espeak-ng").decode("utf-8", "replace")
    listed = {parts[1] for parts in (line.split() for line in out.splitlines()[1:]) if len(parts) >= 2}
    # `en` itself is listed as an alias ("(en 2)") of en-gb, which is always present when English is.
    return tuple(a for a in ESPEAK_ACCENTS if a in listed or a == "en")


class EspeakEngine(TTSEngine):
    """espeak-ng. ``data_path``: an espeak-ng data directory to use instead of the system one (``--path``; the
    synthetic corpus points it at an overlay that holds generated voice variants)."""

    name = "espeak"
    binary = "espeak-ng"
    package = "espeak-ng"

    def __init__(self, data_path: str = "") -> None:
        self.data_path = data_path

    def accents(self) -> tuple[str, ...]:
        """The installed English accents of :data:`ESPEAK_ACCENTS`."""
        return _installed_accents()

    def variants(self) -> tuple[str, ...]:
        """The installed voice variants that sound like a person (sorted; not excluded, not reserved)."""
        return tuple(v for v in _installed_variants()
                     if v not in ESPEAK_EXCLUDED_VARIANTS and not is_reserved(self.name, v))

    def voices(self) -> tuple[str, ...]:
        return tuple(f"{a}+{v}" for a in self.accents() for v in self.variants())

    def random_settings(self, rng: random.Random, voice: str) -> VoiceSettings:
        return VoiceSettings(self.name, voice, rate=rng.randint(135, 205), pitch=rng.randint(25, 75),
                             word_gap=rng.choice((0, 0, 1, 2)))

    def rate_factor(self, rate: int) -> float:
        return rate / 175.0

    def spoken_form(self, text: str, is_sentence: bool) -> str:
        """espeak-ng reads a lone capital "A" as the article (a schwa), so in AN4-style texts every "A" becomes
        the phoneme input ``[['eI]]``; other lone capitals are already read as letter names."""
        if is_sentence:
            return text.lower()
        return " ".join("[['eI]]" if w == "A" else w for w in text.split())

    def _synthesize(self, texts: list[str], settings: VoiceSettings) -> list[np.ndarray]:
        from asrkit.data.audio import read_audio

        data = [f"--path={self.data_path}"] if self.data_path else []
        out = []
        for text in texts:
            cmd = ["espeak-ng", *data, "-v", settings.voice, "-s", str(settings.rate), "-p", str(settings.pitch),
                   "-g", str(settings.word_gap), "--stdout", text]
            samples, sr = read_audio(io.BytesIO(run_tool(cmd, self.package)), name=f"espeak-ng output for {text!r}")
            out.append(to_16k(samples, sr))
        return out
