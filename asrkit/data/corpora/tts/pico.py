"""SVOX Pico backend (``pico2wave``, Debian non-free libttspico-utils): its English voices ``en-US`` and ``en-GB``,
with speed and pitch set through Pico's markup."""

from __future__ import annotations

import os
import random
import tempfile

import numpy as np

from asrkit.data.corpora.tts.base import TTSEngine, VoiceSettings, run_tool, to_16k

__all__ = ["PicoEngine", "PICO_VOICES"]

PICO_VOICES = ("en-US", "en-GB")


class PicoEngine(TTSEngine):
    name = "pico"
    binary = "pico2wave"
    package = "libttspico-utils"

    def voices(self) -> tuple[str, ...]:
        return PICO_VOICES if self.available() else ()

    def random_settings(self, rng: random.Random, voice: str) -> VoiceSettings:
        rate = rng.randint(80, 120)
        return VoiceSettings(self.name, voice, rate=rate, pitch=rng.randint(85, 125))

    def rate_factor(self, rate: int) -> float:
        return rate / 100.0

    def _synthesize(self, texts: list[str], settings: VoiceSettings) -> list[np.ndarray]:
        from asrkit.data.audio import read_audio

        out = []
        with tempfile.TemporaryDirectory(prefix="asrkit-pico-") as tmp:
            wav = os.path.join(tmp, "out.wav")  # pico2wave wants a name ending in .wav
            for text in texts:
                marked = f"<speed level='{settings.rate}'><pitch level='{settings.pitch}'>{text}</pitch></speed>"
                run_tool(["pico2wave", "-l", settings.voice, "-w", wav, marked], self.package)
                out.append(to_16k(*read_audio(wav, name=f"pico2wave output for {text!r}")))
        return out
