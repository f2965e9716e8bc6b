"""festival backend: the ``kal_diphone`` voice (Debian festival + festvox-kallpc16k). Its ked, rab and
cmu_us_slt_arctic_hts voices, and every MBROLA voice, are reserved.

festival takes about a second to start, so a batch of utterances is one festival process running a generated
Scheme script that writes one wav per utterance.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np

from asrkit.data.corpora.tts.base import TTSEngine, VoiceSettings, run_tool, to_16k

__all__ = ["FestivalEngine", "FESTIVAL_VOICES"]

FESTIVAL_VOICES = ("kal_diphone",)  # the only festival voice asrkit uses
_VOICE_DIRS = ("/usr/share/festival/voices", "/usr/lib/festival/voices")
# kal_diphone's own intonation statistics (festvox/kal_diphone.scm); only the target mean is changed.
_KAL_F0 = "(target_f0_std 14) (model_f0_mean 170) (model_f0_std 34)"


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FestivalEngine(TTSEngine):
    name = "festival"
    binary = "festival"
    package = "festival festvox-kallpc16k"

    def voices(self) -> tuple[str, ...]:
        installed = {p.name for d in _VOICE_DIRS if Path(d).is_dir() for p in Path(d).glob("*/*")}
        return tuple(v for v in FESTIVAL_VOICES if v in installed)

    def random_settings(self, rng: random.Random, voice: str) -> VoiceSettings:
        rate = rng.randint(85, 120)
        return VoiceSettings(self.name, voice, rate=rate, pitch=rng.randint(80, 135))

    def rate_factor(self, rate: int) -> float:
        return 100.0 / rate

    def _synthesize(self, texts: list[str], settings: VoiceSettings) -> list[np.ndarray]:
        from asrkit.data.audio import read_audio

        with tempfile.TemporaryDirectory(prefix="asrkit-festival-") as tmp:
            lines = [f"(voice_{settings.voice})",
                     f"(Parameter.set 'Duration_Stretch {settings.rate / 100.0:.3f})"]
            if settings.pitch:
                lines.append(f"(set! int_lr_params '((target_f0_mean {settings.pitch}) {_KAL_F0}))")
            wavs = [os.path.join(tmp, f"{i}.wav") for i in range(len(texts))]
            for text, wav in zip(texts, wavs):
                lines.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) "
                             f"{_scheme_string(wav)} 'riff)")
            script = os.path.join(tmp, "synth.scm")
            Path(script).write_text("\n".join(lines) + "\n", encoding="utf-8")
            run_tool(["festival", "-b", script], self.package)
            out = []
            for text, wav in zip(texts, wavs):
                if not os.path.isfile(wav):
                    from asrkit.errors import DataError

                    raise DataError(f"festival wrote no audio for {text!r} (voice {settings.voice})",
                                    hint="check that festvox-kallpc16k is installed")
                out.append(to_16k(*read_audio(wav, name=f"festival output for {text!r}")))
        return out
