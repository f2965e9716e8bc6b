"""The interface every TTS engine backend implements: text + voice settings -> 16 kHz float32 audio.

A backend wraps one command-line synthesizer. It lists its usable voices (installed and not reserved), draws the
prosody of a random speaker, says how its rate setting changes durations, and synthesizes a batch of utterances
(batches let engines with a slow start-up, such as festival, start once for many utterances). Every call refuses
reserved voices (:mod:`asrkit.data.corpora.tts.reserved`) before running anything.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from asrkit.data.corpora.tts.reserved import check_voice_allowed
from asrkit.errors import DataError

__all__ = ["SAMPLE_RATE", "VoiceSettings", "TTSEngine", "run_tool", "to_16k"]

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class VoiceSettings:
    """How one speaker is synthesized.

    Attributes:
        engine: registry name of the backend (``espeak``, ``flite``, ``festival``, ``pico``, ``rhvoice``).
        voice: the engine's voice name (espeak ``accent+variant`` such as ``en-us+m3``; ``kal16``; ``kal_diphone``;
            ``en-US``; ``bdl``).
        rate: speaking rate in the engine's unit: espeak words per minute; flite/festival duration stretch in
            percent (100 = default, larger = slower); pico and rhvoice speed in percent (100 = default, larger =
            faster).
        pitch: espeak pitch 0..99; flite/festival target F0 mean in Hz (0 = the voice's default); pico and rhvoice
            pitch in percent (100 = default).
        word_gap: espeak extra pause between words in units of 10 ms (0 elsewhere).
    """

    engine: str
    voice: str
    rate: int
    pitch: int
    word_gap: int = 0


def run_tool(cmd: Sequence[str], package: str, timeout: float = 600.0) -> bytes:
    """Run a synthesizer command; return its stdout. Raises :class:`DataError` naming the package to install
    when the binary is missing, or the command and its stderr when it fails."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise DataError(f"'{cmd[0]}' is not installed; it is needed to synthesize the synthetic corpus",
                        hint=f"sudo apt-get install {package} (or bash tools/install_system_deps.sh)") from e
    if proc.returncode != 0:
        shown = " ".join(cmd)[:200]
        raise DataError(f"'{shown}' failed (exit {proc.returncode}): "
                        f"{proc.stderr.decode('utf-8', 'replace').strip()[:300]}")
    return proc.stdout


def to_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """``samples`` (mono float32) resampled to 16 kHz."""
    from asrkit.data.audio import resample

    samples = np.asarray(samples, dtype=np.float32)
    return samples if sample_rate == SAMPLE_RATE else resample(samples, sample_rate, SAMPLE_RATE)


class TTSEngine(ABC):
    """One synthesizer. Subclasses set ``name``, ``binary``, ``package`` and implement the abstract methods."""

    name: ClassVar[str]
    binary: ClassVar[str]
    package: ClassVar[str]  # the Debian package(s) that provide it

    @classmethod
    def available(cls) -> bool:
        """Whether the synthesizer's binary is on ``PATH``."""
        return shutil.which(cls.binary) is not None

    def version(self) -> str:
        """The synthesizer's version line (``<binary> --version``, whatever its exit status; "" if it has none)."""
        try:
            proc = subprocess.run([self.binary, "--version"], capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        text = (proc.stdout or proc.stderr).decode("utf-8", "replace").strip()
        return text.splitlines()[0][:200] if text else ""

    @abstractmethod
    def voices(self) -> tuple[str, ...]:
        """The installed voices this backend may use (never a reserved one), in a fixed order."""

    @abstractmethod
    def random_settings(self, rng: random.Random, voice: str) -> VoiceSettings:
        """Settings of a random speaker on ``voice``: rate and pitch drawn from ``rng`` within natural ranges."""

    @abstractmethod
    def rate_factor(self, rate: int) -> float:
        """Speaking speed relative to the engine's default at ``rate`` (>1 = faster)."""

    def spoken_form(self, text: str, is_sentence: bool) -> str:
        """What the engine is given for a transcript (UPPERCASE words). Sentences are lower-cased so that "A"
        is the article; AN4-style texts go as they are (lone capitals read as letter names)."""
        return text.lower() if is_sentence else text

    def synthesize(self, text: str, settings: VoiceSettings) -> np.ndarray:
        """One utterance as 16 kHz float32 samples, shape ``(N,)``."""
        return self.synthesize_many([text], settings)[0]

    def synthesize_many(self, texts: Sequence[str], settings: VoiceSettings) -> list[np.ndarray]:
        """Each of ``texts`` spoken with ``settings``, as 16 kHz float32 arrays of shape ``(N_i,)``.

        Raises:
            ConfigError: the voice is reserved, or belongs to another engine.
            DataError: the synthesizer is missing or fails, or produced silence.
        """
        if settings.engine != self.name:
            from asrkit.errors import ConfigError

            raise ConfigError(f"{self.name} backend was given settings for engine {settings.engine!r}")
        check_voice_allowed(self.name, settings.voice)
        out = self._synthesize(list(texts), settings)
        for text, samples in zip(texts, out):
            if samples.size == 0 or float(np.max(np.abs(samples))) < 1e-3:
                raise DataError(f"{self.name} voice {settings.voice} produced silence for {text!r}")
        return out

    @abstractmethod
    def _synthesize(self, texts: list[str], settings: VoiceSettings) -> list[np.ndarray]:
        """Run the synthesizer (the voice is already checked); 16 kHz float32 arrays."""
