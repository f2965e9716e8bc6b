"""Acoustic (waveform) augmentation of training utterances, drawn on the fly: the acoustic conditions a TTS corpus
lacks (rooms, noise, telephone channels, levels, voices at other pitches and speaking rates).

Effects, each applied to an utterance with its own probability (``DataConfig.*_prob``), in this order:

- **tempo** (:func:`time_stretch`): speaking rate changed, pitch kept (WSOLA; speed perturbation changes both);
- **pitch** (:func:`pitch_shift`): pitch moved by up to ``pitch_semitones``, duration kept;
- **reverb**: lhotse's ``ReverbWithImpulseResponse`` with a simulated room impulse response
  (:func:`simulated_rir`; lhotse's own RIR simulator needs torchaudio);
- **noise** (:func:`add_noise`) at a random SNR: white, pink or brown noise, mains hum, or babble made of other
  utterances of the same batch;
- **band limit** (:func:`band_limit`): a random low-pass cut-off, or a telephone channel (300-3400 Hz, G.711
  mu-law);
- **gain** (:func:`apply_gain`): level change in dB (clipped at full scale).

Every random draw for an utterance comes from a numpy generator seeded by ``(seed, epoch, utterance id)``
(:meth:`AcousticAugment.rng`): an utterance gets the same effects whatever process, worker or batch position
handles it, so a run resumed mid-epoch sees exactly what an uninterrupted one saw, and there is no generator
state to save. Samples are ``(N,)`` float32 at 16 kHz throughout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from asrkit.config import DataConfig
from asrkit.errors import ConfigError

__all__ = ["AcousticAugment", "NOISE_TYPES", "time_stretch", "pitch_shift", "add_noise", "coloured_noise", "hum",
           "band_limit", "telephone", "apply_gain", "reverberate", "simulated_rir", "build_acoustic_augment"]

SAMPLE_RATE = 16000
NOISE_TYPES = ("white", "pink", "brown", "hum", "babble")
EFFECTS = ("tempo", "pitch", "reverb", "noise", "band_limit", "gain")

BabbleSource = Callable[[np.random.Generator, int], list[np.ndarray]]
"""``source(rng, k)``: up to ``k`` other utterances' samples (``(N_i,)`` float32) to make babble from."""


# ---------------------------------------------------------------------------------------------------------------
# Single effects (pure functions of their inputs and an explicit generator)
# ---------------------------------------------------------------------------------------------------------------
def time_stretch(x: np.ndarray, rate: float, frame: int = 480, search: int = 160) -> np.ndarray:
    """Change the speaking rate by ``rate`` (>1 faster, shorter) keeping the pitch: WSOLA (waveform-similarity
    overlap-add) with Hann frames of ``frame`` samples at half-frame synthesis hops, each frame shifted by up to
    ``search`` samples to continue the previous one's waveform best.

    Args:
        x: ``(N,)`` samples. rate: in (0.25, 4).

    Returns:
        ``(round(N / rate),)`` float32 samples.
    """
    if not 0.25 < rate < 4.0:
        raise ValueError(f"time_stretch: rate must be in (0.25, 4), got {rate}")
    x = np.asarray(x, dtype=np.float32)
    hop = frame // 2
    out_len = int(round(x.size / rate))
    padded = np.concatenate([np.zeros(frame + search, np.float32), x, np.zeros(2 * frame + 2 * search, np.float32)])
    window = np.hanning(frame).astype(np.float32)
    num_frames = out_len // hop + 2
    out = np.zeros(num_frames * hop + frame, np.float32)
    norm = np.zeros_like(out)
    prev = frame + search  # where the previous frame was taken from, in `padded`
    for k in range(num_frames):
        nominal = frame + search + int(round(k * hop * rate))
        if k == 0:
            start = nominal
        else:
            # The natural continuation of the previous frame, compared with candidates around the nominal spot.
            target = padded[prev + hop:prev + hop + frame]
            region = padded[nominal - search:nominal + search + frame]
            score = np.correlate(region, target, mode="valid")
            start = nominal - search + int(np.argmax(score))
        out[k * hop:k * hop + frame] += padded[start:start + frame] * window
        norm[k * hop:k * hop + frame] += window
        prev = start
    # Frame 0 starts at the signal's first sample: drop the half frame of ramp-up the overlap-add leaves.
    out = out / np.maximum(norm, 1e-3)
    return out[hop:hop + out_len] if out.size >= hop + out_len else np.pad(out[hop:], (0, hop + out_len - out.size))


def pitch_shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """Move the pitch (and the formants, as a smaller or larger vocal tract would) by ``semitones``, keeping the
    duration: :func:`time_stretch` by the frequency factor, then band-limited resampling back to the length.

    Returns:
        ``(N,)`` float32 samples.
    """
    from asrkit.data.audio import resample

    x = np.asarray(x, dtype=np.float32)
    factor = 2.0 ** (semitones / 12.0)
    # Rates on a 160 Hz grid keep the polyphase resampler small (up/down factors <= 100).
    sr_in = int(round(SAMPLE_RATE * factor / 160.0)) * 160
    stretched = time_stretch(x, SAMPLE_RATE / sr_in)
    y = resample(stretched, sr_in, SAMPLE_RATE).astype(np.float32)
    return y[:x.size] if y.size >= x.size else np.pad(y, (0, x.size - y.size))


def coloured_noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    """``(n,)`` noise with power spectral density ~ ``1/f**beta``: white (0), pink (1), brown (2); unit RMS."""
    beta = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spectrum *= np.where(freqs > 20.0, np.maximum(freqs, 20.0), np.inf) ** (-beta / 2.0)  # nothing below 20 Hz
    noise = np.fft.irfft(spectrum, n)
    return (noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)).astype(np.float32)


def hum(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n,)`` mains hum: 50 or 60 Hz and its first harmonics with random amplitudes and phases; unit RMS."""
    base = rng.choice((50.0, 60.0))
    t = np.arange(n) / SAMPLE_RATE
    amps = rng.uniform(0.1, 1.0, size=6) * np.array([1.0, 0.7, 0.5, 0.35, 0.25, 0.15])
    phases = rng.uniform(0, 2 * np.pi, size=6)
    sig = sum(a * np.sin(2 * np.pi * base * (h + 1) * t + p) for h, (a, p) in enumerate(zip(amps, phases)))
    return (sig / max(float(np.sqrt(np.mean(sig ** 2))), 1e-12)).astype(np.float32)


def babble(rng: np.random.Generator, n: int, others: Sequence[np.ndarray]) -> np.ndarray | None:
    """``(n,)`` babble: the sum of ``others`` (each tiled to ``n`` and rotated by a random offset, at equal
    levels); unit RMS. None when ``others`` is empty."""
    parts = []
    for other in others:
        other = np.asarray(other, dtype=np.float32).reshape(-1)
        rms = float(np.sqrt(np.mean(other ** 2))) if other.size else 0.0
        if rms <= 1e-6:
            continue
        tiled = np.resize(other, n)  # repeats the utterance when it is shorter than n
        parts.append(np.roll(tiled, int(rng.integers(0, n))) / rms)
    if not parts:
        return None
    sig = np.sum(parts, axis=0)
    return (sig / max(float(np.sqrt(np.mean(sig ** 2))), 1e-12)).astype(np.float32)


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``x + noise`` with the noise scaled so that mean power of ``x`` / mean power of the noise = ``snr_db``."""
    p_signal = float(np.mean(np.asarray(x, np.float64) ** 2))
    p_noise = float(np.mean(np.asarray(noise, np.float64) ** 2))
    if p_signal <= 0 or p_noise <= 0:
        return np.asarray(x, dtype=np.float32)
    scale = np.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (x + scale * noise).astype(np.float32)


def _fft_band(x: np.ndarray, low_hz: float, high_hz: float, transition_hz: float = 150.0) -> np.ndarray:
    """Band-pass ``low_hz``..``high_hz`` by a zero-phase spectral mask with raised-cosine edges of
    ``transition_hz`` (inside the band, so nothing passes above ``high_hz`` or below ``low_hz``)."""
    n = x.size
    spectrum = np.fft.rfft(np.asarray(x, np.float64))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    mask = np.ones_like(f)
    if high_hz < SAMPLE_RATE / 2:
        mask *= np.clip((high_hz - f) / transition_hz, 0.0, 1.0)
    if low_hz > 0:
        mask *= np.clip((f - low_hz) / transition_hz, 0.0, 1.0)
    mask = 0.5 - 0.5 * np.cos(np.pi * mask)
    return np.fft.irfft(spectrum * mask, n).astype(np.float32)


def band_limit(x: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """Low-pass at ``cutoff_hz``: no energy above it (a cheap microphone, a codec, an 8 kHz recording)."""
    return _fft_band(x, 0.0, cutoff_hz)


def telephone(x: np.ndarray) -> np.ndarray:
    """A narrow-band telephone channel: 300-3400 Hz and 8-bit G.711 mu-law quantization."""
    y = _fft_band(x, 300.0, 3400.0)
    mu = 255.0
    peak = max(float(np.max(np.abs(y))), 1e-9)
    scaled = np.clip(y / peak, -1.0, 1.0)
    code = np.round(np.sign(scaled) * np.log1p(mu * np.abs(scaled)) / np.log1p(mu) * 127.0) / 127.0
    return (np.sign(code) * np.expm1(np.abs(code) * np.log1p(mu)) / mu * peak).astype(np.float32)


def apply_gain(x: np.ndarray, gain_db: float) -> np.ndarray:
    """``x`` scaled by ``gain_db`` decibels and clipped to [-1, 1]."""
    return np.clip(np.asarray(x, np.float32) * np.float32(10.0 ** (gain_db / 20.0)), -1.0, 1.0)


def simulated_rir(rng: np.random.Generator, t60: float | None = None) -> np.ndarray:
    """``(1, L)`` room impulse response of a statistical room model: the direct path, 4-12 sparse early
    reflections within 50 ms, and a late tail of Gaussian noise decaying by 60 dB in ``t60`` seconds (drawn
    from 0.15-0.8 s when None), at a random direct-to-reverberant ratio. ``L = t60 * 16000``.

    (lhotse's own fast random RIR generator needs torchaudio, which asrkit cannot install next to its torch.)"""
    t60 = float(rng.uniform(0.15, 0.8)) if t60 is None else float(t60)
    n = max(int(t60 * SAMPLE_RATE), 400)
    t = np.arange(n) / SAMPLE_RATE
    envelope = np.exp(-6.9078 * t / t60)  # 10 ** (-3 t / t60): -60 dB at t60
    onset = int(rng.uniform(0.002, 0.01) * SAMPLE_RATE)  # the late tail starts a few ms after the direct sound
    tail = rng.standard_normal(n) * envelope
    tail[:onset] = 0.0
    h = np.zeros(n)
    h[0] = 1.0
    for _ in range(int(rng.integers(4, 13))):
        k = int(rng.integers(int(0.001 * SAMPLE_RATE), int(0.05 * SAMPLE_RATE)))
        h[k] += rng.choice((-1.0, 1.0)) * rng.uniform(0.2, 0.7) * envelope[k]
    drr_db = float(rng.uniform(-3.0, 12.0))  # direct-to-reverberant energy ratio
    h += tail * np.sqrt(1.0 / (np.sum(tail ** 2) * 10.0 ** (drr_db / 10.0)))
    return (h / np.max(np.abs(h))).reshape(1, -1).astype(np.float32)


def reverberate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x`` convolved by lhotse's ``ReverbWithImpulseResponse`` with a :func:`simulated_rir` drawn from ``rng``
    (output as long as the input, aligned on the direct path, at the input's power)."""
    from lhotse.augmentation import ReverbWithImpulseResponse

    rir = simulated_rir(rng)
    out = ReverbWithImpulseResponse(rir_generator=lambda nsource=1: rir)(
        np.asarray(x, np.float32).reshape(1, -1), SAMPLE_RATE)
    return np.asarray(out, dtype=np.float32).reshape(-1)


# ---------------------------------------------------------------------------------------------------------------
# The configured augmenter
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """The effects drawn for one utterance (in application order) and the generator their parameters come from."""

    effects: list[str]
    rng: np.random.Generator = field(repr=False)


class AcousticAugment:
    """The acoustic augmentation configured by a :class:`DataConfig` (its ``*_prob`` fields and ranges).

    Args:
        cfg: the data configuration.
        seed: the run's seed.
        epoch: the epoch (changes every utterance's draws; :meth:`set_epoch`).

    Example:
        >>> aug = AcousticAugment(DataConfig(noise_prob=1.0), seed=42, epoch=1)
        >>> y = aug(np.zeros(16000, np.float32) + 0.1, "utt1")  # doctest: +SKIP
    """

    def __init__(self, cfg: DataConfig, seed: int, epoch: int = 0) -> None:
        validate_acoustic_config(cfg)
        self.cfg, self.seed, self.epoch = cfg, int(seed), int(epoch)
        self.probs = {"tempo": cfg.tempo_prob, "pitch": cfg.pitch_prob, "reverb": cfg.reverb_prob,
                      "noise": cfg.noise_prob, "band_limit": cfg.band_limit_prob, "gain": cfg.gain_prob}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, utt_id: str) -> np.random.Generator:
        """The generator of utterance ``utt_id`` in the current epoch (a pure function of seed, epoch and id)."""
        digest = hashlib.sha256(f"asrkit-acoustic/{self.seed}/{self.epoch}/{utt_id}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:16], "little"))

    def plan(self, utt_id: str) -> Plan:
        """Which effects ``utt_id`` gets this epoch (one uniform draw per effect, always all six)."""
        rng = self.rng(utt_id)
        draws = rng.random(len(EFFECTS))
        return Plan([e for e, u in zip(EFFECTS, draws) if u < self.probs[e]], rng)

    def apply(self, x: np.ndarray, plan: Plan, babble_source: BabbleSource | None = None) -> np.ndarray:
        """``x (N,)`` with the effects of ``plan``; ``(N',)`` float32 (N' != N only with tempo)."""
        cfg, rng = self.cfg, plan.rng
        y = np.asarray(x, dtype=np.float32).reshape(-1)
        for effect in plan.effects:
            if effect == "tempo":
                y = time_stretch(y, float(rng.uniform(*cfg.tempo_range)))
            elif effect == "pitch":
                y = pitch_shift(y, float(rng.uniform(-cfg.pitch_semitones, cfg.pitch_semitones)))
            elif effect == "reverb":
                y = reverberate(y, rng)
            elif effect == "noise":
                y = self._noise(y, rng, babble_source)
            elif effect == "band_limit":
                if rng.random() < cfg.telephone_share:
                    y = telephone(y)
                else:
                    y = band_limit(y, float(rng.uniform(*cfg.band_limit_cutoff)))
            elif effect == "gain":
                y = apply_gain(y, float(rng.uniform(*cfg.gain_db)))
        return y

    def __call__(self, x: np.ndarray, utt_id: str, babble_source: BabbleSource | None = None) -> np.ndarray:
        """:meth:`apply` with :meth:`plan` of ``utt_id``."""
        return self.apply(x, self.plan(utt_id), babble_source)

    def _noise(self, y: np.ndarray, rng: np.random.Generator, babble_source: BabbleSource | None) -> np.ndarray:
        kind = self.cfg.noise_types[int(rng.integers(len(self.cfg.noise_types)))]
        snr = float(rng.uniform(*self.cfg.noise_snr))
        if kind == "babble":
            noise = babble(rng, y.size, babble_source(rng, int(rng.integers(3, 7)))) if babble_source else None
        elif kind == "hum":
            noise = hum(rng, y.size)
        else:
            noise = coloured_noise(rng, y.size, kind)
        if noise is None:  # babble without other utterances to make it from: pink noise instead
            noise = coloured_noise(rng, y.size, "pink")
        return add_noise(y, noise, snr)


def validate_acoustic_config(cfg: DataConfig) -> None:
    """Raise :class:`ConfigError` naming the ``data.`` key whose value is out of range."""
    for key in ("tempo_prob", "pitch_prob", "reverb_prob", "noise_prob", "band_limit_prob", "gain_prob",
                "telephone_share"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise ConfigError(f"data.{key} must be in [0, 1], got {getattr(cfg, key)}")
    checks = {
        "tempo_range": 0.5 <= cfg.tempo_range[0] <= cfg.tempo_range[1] <= 2.0,
        "noise_snr": cfg.noise_snr[0] <= cfg.noise_snr[1],
        "band_limit_cutoff": 500.0 <= cfg.band_limit_cutoff[0] <= cfg.band_limit_cutoff[1] <= SAMPLE_RATE / 2,
        "gain_db": cfg.gain_db[0] <= cfg.gain_db[1],
        "pitch_semitones": 0.0 <= cfg.pitch_semitones <= 12.0,
        "noise_types": bool(cfg.noise_types) and all(t in NOISE_TYPES for t in cfg.noise_types),
    }
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(f"data.{key} is out of range: {getattr(cfg, key)!r}",
                              hint=f"noise types: {', '.join(NOISE_TYPES)}; ranges are [low, high]")


def acoustic_enabled(cfg: DataConfig) -> bool:
    """Whether any acoustic effect has a probability above 0."""
    return any(getattr(cfg, f"{e}_prob") > 0 for e in EFFECTS)


def build_acoustic_augment(cfg: DataConfig, seed: int, epoch: int) -> AcousticAugment | None:
    """The augmenter for one training epoch, or None when every acoustic effect is off (the default)."""
    return AcousticAugment(cfg, seed, epoch) if acoustic_enabled(cfg) else None
