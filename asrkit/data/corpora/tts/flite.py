"""flite backend: the CMU diphone voices ``kal`` (8 kHz) and ``kal16`` (16 kHz). Its other voices (slt, rms, awb)
are reserved."""

from __future__ import annotations

import os
import random
import tempfile
from functools import lru_cache

import numpy as np

from asrkit.data.corpora.tts.base import TTSEngine, VoiceSettings, run_tool, to_16k

__all__ = ["FliteEngine", "FLITE_VOICES"]

FLITE_VOICES = ("kal16", "kal")  # the only flite voices asrkit uses


@lru_cache(maxsize=1)
def _installed() -> tuple[str, ...]:
    return tuple(run_tool(["flite", "-lv"], "flite").decode("utf-8", "replace").split(":", 1)[-1].split())


class FliteEngine(TTSEngine):
    name = "flite"
    binary = "flite"
    package = "flite"

    def voices(self) -> tuple[str, ...]:
        installed = _installed()
        return tuple(v for v in FLITE_VOICES if v in installed)

    def random_settings(self, rng: random.Random, voice: str) -> VoiceSettings:
        # Pitch is only moved for the male kal voices, whose defaults (~100 Hz) we know.
        rate = rng.randint(85, 120)
        return VoiceSettings(self.name, voice, rate=rate, pitch=rng.randint(80, 135) if voice.startswith("kal") else 0)

    def rate_factor(self, rate: int) -> float:
        return 100.0 / rate

    def _synthesize(self, texts: list[str], settings: VoiceSettings) -> list[np.ndarray]:
        from asrkit.data.audio import read_audio

        cmd = ["flite", "-voice", settings.voice, "--setf", f"duration_stretch={settings.rate / 100.0:.3f}"]
        if settings.pitch:
            cmd += ["--setf", f"int_f0_target_mean={settings.pitch}"]
        out = []
        with tempfile.TemporaryDirectory(prefix="asrkit-flite-") as tmp:
            wav = os.path.join(tmp, "out.wav")
            for text in texts:
                run_tool(cmd + ["-t", text, "-o", wav], self.package)
                out.append(to_16k(*read_audio(wav, name=f"flite output for {text!r}")))
        return out
