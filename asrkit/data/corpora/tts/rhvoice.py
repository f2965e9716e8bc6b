"""RHVoice backend (``RHVoice-test``, Debian non-free ``rhvoice`` + ``rhvoice-english``): statistical parametric
(HTS-style) voices, far from espeak-ng's formant synthesis and from the diphone engines. Its English voices
``alan``, ``bdl``, ``clb``, ``evgeniy-eng`` and ``lyubov``; its ``slt`` is the reserved CMU ARCTIC speaker of
flite's ``slt`` and is refused like it.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from asrkit.data.corpora.tts.base import TTSEngine, VoiceSettings, run_tool, to_16k

__all__ = ["RHVoiceEngine", "RHVOICE_VOICES", "RHVOICE_VOICE_DIR"]

RHVOICE_VOICES = ("alan", "bdl", "clb", "evgeniy-eng", "lyubov")  # English; slt is reserved
RHVOICE_VOICE_DIR = Path("/usr/share/RHVoice/voices")


class RHVoiceEngine(TTSEngine):
    name = "rhvoice"
    binary = "RHVoice-test"
    package = "rhvoice rhvoice-english"

    def voices(self) -> tuple[str, ...]:
        if not self.available():
            return ()
        return tuple(v for v in RHVOICE_VOICES if (RHVOICE_VOICE_DIR / v).is_dir())

    def random_settings(self, rng: random.Random, voice: str) -> VoiceSettings:
        # Both in percent of the voice's default (100); pitch 80-125 % moves F0 by about -20..+25 %.
        return VoiceSettings(self.name, voice, rate=rng.randint(80, 125), pitch=rng.randint(80, 125))

    def rate_factor(self, rate: int) -> float:
        return rate / 100.0

    def version(self) -> str:
        """RHVoice-test has no ``--version``: the Debian package version of the English voices, if dpkg knows it."""
        try:
            proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "rhvoice-english"], capture_output=True,
                                  timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return f"rhvoice-english {proc.stdout.decode().strip()}" if proc.returncode == 0 else ""

    def _synthesize(self, texts: list[str], settings: VoiceSettings) -> list[np.ndarray]:
        from asrkit.data.audio import read_audio

        out = []
        with tempfile.TemporaryDirectory(prefix="asrkit-rhvoice-") as tmp:
            txt, wav = os.path.join(tmp, "in.txt"), os.path.join(tmp, "out.wav")
            for text in texts:
                Path(txt).write_text(text + "\n", encoding="utf-8")
                run_tool(["RHVoice-test", "-p", settings.voice, "-r", str(settings.rate), "-t", str(settings.pitch),
                          "-i", txt, "-o", wav], self.package)
                out.append(to_16k(*read_audio(wav, name=f"RHVoice output for {text!r}")))
        return out
