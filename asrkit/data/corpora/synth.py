"""A synthetic AN4-like speech corpus generated offline with several speech synthesizers.

The corpus is asrkit's embedded default and its test bed: spelled letters ("R U B O U T"), digit strings
("ONE TWO OH NINE"), numbers and dates, command words ("ENTER FIVE SIX", "ERASE C Q Q F SEVEN") and, with
``sentences=True``, short English sentences from built-in templates.

A *speaker* is one fixed combination of engine (:mod:`asrkit.data.corpora.tts`: espeak-ng, flite, festival,
SVOX Pico, RHVoice), voice (for espeak-ng an accent + voice variant such as ``en-us+m3``), speaking rate, pitch,
word gap, gain and noise floor. The training speakers are shared among the engines of an *engine mix* (espeak-ng
only by default), or the other engines come on top of the espeak-ng speakers (``engines_on_top``). Splits are
disjoint **by speaker and by voice variant**: ``dev`` and ``test`` are espeak-ng speakers on variants that never
occur in ``train``. With ``eval_engine``, two more splits, ``dev_<engine>`` and
``test_<engine>``, are spoken by an engine that no training speaker uses (leave-one-engine-out evaluation).
Optionally, some training speakers use randomly generated voice variants (:mod:`asrkit.data.corpora.espeak_voices`:
random vocal-tract length, formants, pitch and voice quality) instead of espeak-ng's own. The voices reserved for
independent evaluation (:mod:`asrkit.data.corpora.tts.reserved`) are never used.

Everything (texts, speakers, file names, noise) is a deterministic function of the parameters and ``seed``,
independent of ``num_jobs``. Each split draws from its own random streams and holds a fixed share of the hours, so
dev and test are the same whatever the number of training speakers (or generated voices).

Layout written under ``corpus_dir``::

    wav/<split>/<speaker>/<utt_id>.wav    16 kHz mono 16-bit PCM
    metadata/<split>.jsonl                one {"id", "speaker", "text", "path"} per line (path relative)
    speakers.json                         every speaker's synthesis settings (engine, voice, rate, ...)
    voices/<name>                         the generated voice variants (if any), as espeak-ng variant files
    espeak-overlay/espeak-ng-data/        espeak-ng's data directory as symlinks + those variants (if any)
    .completed                            JSON of the generation parameters (written last)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from asrkit.data.corpora.tts import ENGINES, VoiceSettings, get_engine
from asrkit.errors import ConfigError, DataError

__all__ = [
    "SynthSpeaker",
    "generate_synth",
    "prepare_synth",
    "make_an4_text",
    "make_sentence",
    "SYNTH_SPLITS",
    "parse_engine_mix",
    "on_top_counts",
    "on_top_sizes",
    "synth_splits",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
GENERATOR_VERSION = 3  # 2: per-split random streams and fixed dev/test shares of the hours; 3: engine backends,
# engine mix, left-out engine splits
# dev and test each hold this share of the corpus's hours, whatever the number of training speakers
EVAL_SHARE = 0.07
SYNTH_SPLITS = ("train", "dev", "test")  # and dev_<engine>, test_<engine> with a left-out engine (synth_splits)

# ---------------------------------------------------------------------------------------------------------------
# Vocabulary and text generation
# ---------------------------------------------------------------------------------------------------------------
LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
DIGITS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
TEENS = ("TEN", "ELEVEN", "TWELVE", "THIRTEEN", "FOURTEEN", "FIFTEEN", "SIXTEEN", "SEVENTEEN", "EIGHTEEN",
         "NINETEEN")
TENS = ("", "", "TWENTY", "THIRTY", "FORTY", "FIFTY", "SIXTY", "SEVENTY", "EIGHTY", "NINETY")
ORDINALS = ("FIRST", "SECOND", "THIRD", "FOURTH", "FIFTH", "SIXTH", "SEVENTH", "EIGHTH", "NINTH", "TENTH",
            "ELEVENTH", "TWELFTH", "THIRTEENTH", "FOURTEENTH", "FIFTEENTH", "SIXTEENTH", "SEVENTEENTH",
            "EIGHTEENTH", "NINETEENTH", "TWENTIETH")
MONTHS = ("JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST", "SEPTEMBER", "OCTOBER",
          "NOVEMBER", "DECEMBER")
COMMANDS = ("ENTER", "RUBOUT", "ERASE", "STOP", "YES", "NO", "REPEAT", "GO", "HELP", "START", "NEXT", "BACK")
# Words that AN4 speakers spell out letter by letter (names, places, common words).
SPELL_WORDS = ("PITTSBURGH", "JOHN", "MARY", "SMITH", "DAVID", "SARAH", "CARNEGIE", "MELLON", "BOSTON", "TEXAS",
               "OHIO", "JONES", "BROWN", "MILLER", "WILSON", "TAYLOR", "LINDA", "SUSAN", "JAMES", "ROBERT",
               "KAREN", "PAUL", "MARK", "CODE", "ZIP", "BOX", "QUICK", "JAZZ", "VOICE", "WORD", "HOUSE", "STREET",
               "AVENUE", "FORBES", "FIFTH", "OAKLAND", "SHADY", "MURRAY", "WALNUT", "DENVER", "ATLANTA", "EXIT")

# Sentences: tiny grammar over a built-in word list.
_DET = ("THE", "A", "THIS", "THAT", "EVERY", "ONE", "MY", "YOUR", "HIS", "HER", "OUR")
_ADJ = ("OLD", "NEW", "RED", "BLUE", "GREEN", "SMALL", "LARGE", "QUIET", "HAPPY", "COLD", "WARM", "DARK",
        "BRIGHT", "EMPTY", "HEAVY", "LITTLE", "YOUNG", "TIRED", "CLEAN", "STRANGE")
_NOUN = ("MAN", "WOMAN", "CHILD", "DOG", "CAT", "CAR", "HOUSE", "BOOK", "LETTER", "TABLE", "WINDOW", "DOOR",
         "RIVER", "CITY", "TRAIN", "GARDEN", "TEACHER", "DOCTOR", "PHONE", "BOX", "HORSE", "SHIP", "STREET",
         "PAPER", "BIRD", "TREE", "ROOM", "KEY", "COAT", "LAMP")
_VERB = ("SAW", "FOUND", "TOOK", "OPENED", "CLOSED", "MOVED", "WANTED", "CARRIED", "PAINTED", "SOLD", "BOUGHT",
         "CLEANED", "FOLLOWED", "CALLED", "HELPED", "WATCHED", "LIKED", "NEEDED", "KEPT", "LEFT")
_PREP = ("ON", "IN", "NEAR", "UNDER", "BEHIND", "BESIDE", "AT", "BY")
_IMP = ("OPEN", "CLOSE", "CHECK", "MOVE", "BRING", "FIND", "CALL", "PAINT", "CLEAN", "WATCH")
_TIME = ("TODAY", "YESTERDAY", "AGAIN", "SLOWLY", "EARLY", "LATE", "AT NIGHT", "IN THE MORNING")


def _number_words(n: int) -> list[str]:
    """0..99 as words, e.g. 47 -> ["FORTY", "SEVEN"]."""
    if n < 10:
        return [DIGITS[n]]
    if n < 20:
        return [TEENS[n - 10]]
    tens, ones = divmod(n, 10)
    return [TENS[tens]] + ([DIGITS[ones]] if ones else [])


def _year_words(year: int) -> list[str]:
    """1900..2029 as spoken: 1964 -> NINETEEN SIXTY FOUR, 2005 -> TWO THOUSAND FIVE, 2012 -> TWENTY TWELVE."""
    hi, lo = divmod(year, 100)
    if hi == 20 and lo < 10:
        return ["TWO", "THOUSAND"] + ([DIGITS[lo]] if lo else [])
    return _number_words(hi) + (["HUNDRED"] if lo == 0 else (["OH", DIGITS[lo]] if lo < 10 else _number_words(lo)))


def _ordinal_words(day: int) -> list[str]:
    """1..31 as ordinal words: 21 -> TWENTY FIRST."""
    if day <= 20:
        return [ORDINALS[day - 1]]
    tens, ones = divmod(day, 10)
    if ones == 0:
        return ["THIRTIETH"]
    return [TENS[tens], ORDINALS[ones - 1]]


def _digit_string(rng: random.Random, lo: int, hi: int) -> list[str]:
    out = []
    for _ in range(rng.randint(lo, hi)):
        d = rng.randrange(10)
        out.append("OH" if d == 0 and rng.random() < 0.5 else DIGITS[d])
    return out


def _letters(rng: random.Random, lo: int, hi: int) -> list[str]:
    return [rng.choice(LETTERS) for _ in range(rng.randint(lo, hi))]


def make_an4_text(rng: random.Random) -> str:
    """One AN4-like transcript: UPPERCASE words separated by single spaces, letters as single capitals.

    Example:
        >>> make_an4_text(random.Random(3))  # doctest: +SKIP
        'ENTER FIVE SIX'
    """
    kind = rng.choices(
        ["letters", "spell", "digits", "number", "command", "command_args", "mixed", "date", "year"],
        weights=[14, 14, 16, 8, 8, 18, 10, 6, 6],
    )[0]
    if kind == "letters":
        words = _letters(rng, 3, 8)
    elif kind == "spell":
        words = list(rng.choice(SPELL_WORDS))
    elif kind == "digits":
        words = _digit_string(rng, 3, 8)
    elif kind == "number":
        words = _number_words(rng.randrange(100))
        if rng.random() < 0.3:
            words = _number_words(rng.randrange(1, 10)) + ["HUNDRED"] + (
                _number_words(rng.randrange(1, 100)) if rng.random() < 0.7 else [])
    elif kind == "command":
        words = [rng.choice(COMMANDS)]
        if rng.random() < 0.2:
            words.append(rng.choice(COMMANDS))
    elif kind == "command_args":
        cmd = rng.choice(("ENTER", "RUBOUT", "ERASE", "REPEAT", "GO", "START", "NEXT", "BACK"))
        arg = rng.choice(("digits", "letters", "number", "mixed"))
        if arg == "digits":
            tail = _digit_string(rng, 1, 5)
        elif arg == "letters":
            tail = _letters(rng, 1, 5)
        elif arg == "number":
            tail = _number_words(rng.randrange(100))
        else:
            tail = _letters(rng, 1, 4) + _digit_string(rng, 1, 3)
        words = [cmd] + tail
    elif kind == "mixed":
        words = _letters(rng, 1, 4) + _digit_string(rng, 1, 4)
        if rng.random() < 0.5:
            words = _digit_string(rng, 1, 3) + _letters(rng, 1, 3)
    elif kind == "date":
        month = rng.randrange(12)
        words = [MONTHS[month]] + _ordinal_words(rng.randint(1, 31 if month != 1 else 29))
        if rng.random() < 0.5:
            words += _year_words(rng.randint(1900, 2029))
    else:
        words = _year_words(rng.randint(1900, 2029))
    return " ".join(words)


def make_sentence(rng: random.Random) -> str:
    """One short English sentence from the built-in templates, UPPERCASE.

    Example:
        >>> make_sentence(random.Random(0))  # doctest: +SKIP
        'THE QUIET DOG FOUND A RED BOOK'
    """
    d, a, n, v, p = (lambda: rng.choice(_DET)), (lambda: rng.choice(_ADJ)), (lambda: rng.choice(_NOUN)), (
        lambda: rng.choice(_VERB)), (lambda: rng.choice(_PREP))
    templates = (
        lambda: f"{d()} {a()} {n()} {v()} {d()} {n()}",
        lambda: f"{d()} {n()} {v()} {d()} {a()} {n()} {rng.choice(_TIME)}",
        lambda: f"{d()} {n()} IS {p()} THE {n()}",
        lambda: f"PLEASE {rng.choice(_IMP)} THE {a()} {n()}",
        lambda: f"WHERE IS THE {a()} {n()}",
        lambda: f"{rng.choice(('I', 'WE', 'THEY', 'SHE', 'HE'))} {v()} {d()} {n()} {p()} THE {n()}",
        lambda: f"{rng.choice(_IMP)} THE {n()} {rng.choice(_TIME)}",
    )
    return rng.choice(templates)()


def _estimate_seconds(text: str, rate_factor: float = 1.0, is_sentence: bool = False) -> float:
    """Expected duration of a synthesized utterance, including the ~0.5 s of padding added around speech.

    Least-squares fit on ~4,700 espeak-ng utterances of this generator (correlation 0.91 with the real durations).
    """
    chars, words = len(text.replace(" ", "")), len(text.split())
    if is_sentence:
        return (0.052 * chars + 0.066 * words) / rate_factor + 0.45
    return (0.032 * chars + 0.173 * words + 0.098) / rate_factor + 0.506


# ---------------------------------------------------------------------------------------------------------------
# Speakers
# ---------------------------------------------------------------------------------------------------------------
def _split_rng(seed: int, split: str, purpose: str) -> random.Random:
    """An independent random stream per (seed, split, purpose): what one split draws never shifts another's."""
    return random.Random(f"asrkit-synth/{seed}/{split}/{purpose}")


# Training speaker ids per engine ("tr007" for espeak-ng, "trfl01" for flite ...); dev_/test_<engine> speakers of
# the left-out engine are "dv<xx>01" / "ts<xx>01".
ENGINE_ID_PREFIX = {"espeak": "", "flite": "fl", "festival": "fe", "pico": "pi", "rhvoice": "rh"}
DEFAULT_ENGINE_MIX: tuple[tuple[str, float], ...] = (("espeak", 1.0),)


@dataclass(frozen=True)
class SynthSpeaker:
    """One synthetic speaker: a fixed set of synthesis settings.

    Attributes:
        speaker_id: e.g. ``tr007`` (train, espeak-ng), ``trfl01`` (train, flite), ``dv01``, ``ts01``, ``tsfl01``
            (``test_flite``).
        split: the split all its utterances belong to.
        engine: a :data:`asrkit.data.corpora.tts.ENGINES` name (``espeak``, ``flite``, ``festival``, ``pico``,
            ``rhvoice``).
        voice: the engine's voice (espeak ``accent+variant`` such as ``en-us+m3``, ``kal16``, ``kal_diphone``).
        rate, pitch, word_gap: as in :class:`asrkit.data.corpora.tts.VoiceSettings` (engine units).
        gain: linear gain applied to the synthesized signal.
        noise_dbfs: level of the white noise floor added to the signal, dB relative to full scale.
    """

    speaker_id: str
    split: str
    engine: str
    voice: str
    rate: int
    pitch: int
    word_gap: int
    gain: float
    noise_dbfs: float

    def settings(self) -> VoiceSettings:
        """What the engine backend is given."""
        return VoiceSettings(self.engine, self.voice, self.rate, self.pitch, self.word_gap)

    def rate_factor(self) -> float:
        """Speaking speed relative to the engine's default (used for duration estimates only)."""
        return get_engine(self.engine).rate_factor(self.rate)


def parse_engine_mix(items: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """``["espeak=0.8", "flite=0.2"]`` -> ``(("espeak", 0.8), ("flite", 0.2))`` (the CLI's ``--engine-mix``).

    Raises:
        ConfigError: an item is not ``engine=share`` with a known engine and a share > 0.
    """
    mix = []
    for item in items:
        name, _, share = item.partition("=")
        try:
            value = float(share)
        except ValueError:
            value = float("nan")
        if name not in ENGINES or not value > 0:
            raise ConfigError(f"invalid engine mix item {item!r}: expected engine=share with share > 0",
                              hint=f"engines: {', '.join(ENGINES)}; e.g. --engine-mix espeak=0.8 "
                                   "--engine-mix flite=0.2")
        mix.append((name, value))
    return tuple(mix)


def _engine_counts(train_speakers: int, engine_mix: Sequence[tuple[str, float]]) -> dict[str, int]:
    """Training speakers per engine: ``train_speakers`` split by the mix's shares (largest remainders; espeak-ng,
    which must be in the mix, takes what rounding leaves and at least one)."""
    total = sum(share for _, share in engine_mix)
    exact = {name: train_speakers * share / total for name, share in engine_mix}
    counts = {name: int(math.floor(v)) for name, v in exact.items()}
    for name in sorted(exact, key=lambda n: (counts[n] - exact[n], n))[:train_speakers - sum(counts.values())]:
        counts[name] += 1
    if counts["espeak"] == 0:
        donor = max((n for n in counts if n != "espeak"), key=lambda n: (counts[n], n))
        counts[donor] -= 1
        counts["espeak"] = 1
    return counts


def on_top_counts(train_speakers: int, engine_mix: Sequence[tuple[str, float]]) -> dict[str, int]:
    """Training speakers per engine with the other engines of ``engine_mix`` *on top of* ``train_speakers``
    espeak-ng speakers: ``round(train_speakers * share / espeak_share)`` of each other engine (at least one).

    Example:
        >>> on_top_counts(6, (("espeak", 4.0), ("festival", 1.0), ("pico", 1.0)))
        {'espeak': 6, 'festival': 2, 'pico': 2}
    """
    espeak_share = dict(engine_mix)["espeak"]
    counts = {name: max(1, round(train_speakers * share / espeak_share)) for name, share in engine_mix}
    counts["espeak"] = train_speakers
    return counts


def on_top_sizes(hours: float, train_speakers: int, engine_mix: Sequence[tuple[str, float]],
                 dev_speakers: int = 8, test_speakers: int = 8) -> tuple[int, float]:
    """``(train_speakers, train_hours)`` that put the other engines of ``engine_mix`` *on top of* the espeak-ng
    corpus that ``hours`` and ``train_speakers`` make alone: ``train_speakers`` espeak-ng speakers with their
    audio, plus the :func:`on_top_counts` speakers of each other engine with as much audio each.

    Example:
        >>> on_top_sizes(2.0, 100, (("espeak", 4.0), ("festival", 1.0), ("pico", 1.0)))  # doctest: +ELLIPSIS
        (150, 2.57999...)
    """
    total = sum(on_top_counts(train_speakers, engine_mix).values())
    alone = _split_hours({"hours": hours, "dev_speakers": dev_speakers, "test_speakers": test_speakers})["train"]
    return total, alone * total / train_speakers


def _engine_speakers(seed: int, split: str, engine: str, count: int, prefix: str) -> list[SynthSpeaker]:
    """``count`` speakers of a non-espeak engine for ``split``: its voices in turn, random prosody, gain, noise."""
    backend = get_engine(engine)
    if count and not backend.available():
        raise DataError(f"the synthetic corpus needs the {engine} engine, but '{backend.binary}' is not installed",
                        hint=f"sudo apt-get install {backend.package} (or bash tools/install_system_deps.sh)")
    voices = backend.voices() if count else ()
    if count and not voices:
        raise DataError(f"{engine} has none of the voices asrkit uses installed",
                        hint=f"sudo apt-get install {backend.package}")
    rng = _split_rng(seed, split, f"{engine}-speakers")
    speakers = []
    for i in range(count):
        s = backend.random_settings(rng, voices[i % len(voices)])
        speakers.append(SynthSpeaker(
            speaker_id=f"{prefix}{ENGINE_ID_PREFIX[engine]}{i + 1:02d}", split=split, engine=engine, voice=s.voice,
            rate=s.rate, pitch=s.pitch, word_gap=s.word_gap, gain=round(rng.uniform(0.35, 1.0), 3),
            noise_dbfs=round(rng.uniform(-70.0, -45.0), 1),
        ))
    return speakers


def _make_speakers(
    seed: int,
    train_speakers: int,
    dev_speakers: int,
    test_speakers: int,
    engine_mix: Sequence[tuple[str, float]] = DEFAULT_ENGINE_MIX,
    eval_engine: str | None = None,
    generated_variants: Sequence[str] = (),
    engine_counts: dict[str, int] | None = None,
) -> list[SynthSpeaker]:
    """All speakers. Each split (and each engine) draws its speakers from its own random stream, so the dev and
    test speakers depend only on ``seed`` and their own counts, not on how many training speakers there are or
    which engines they use. ``train_speakers`` are shared among the engines of ``engine_mix``
    (:func:`_engine_counts`) unless ``engine_counts`` gives each engine's number (they must add up to
    ``train_speakers``); the espeak-ng ones are the first of the espeak-ng stream whatever the mix. The
    ``len(generated_variants)`` espeak-ng training speakers chosen by another stream get those variants instead of
    espeak-ng's; every other draw is the same with or without them. ``eval_engine`` adds ``dev_<engine>`` and
    ``test_<engine>`` speakers (``dev_speakers`` and ``test_speakers`` of them) on that engine."""
    espeak = get_engine("espeak")
    counts = dict(engine_counts) if engine_counts else _engine_counts(train_speakers, engine_mix)
    accents = espeak.accents()
    variants = list(espeak.variants())
    if len(variants) < 3:
        raise DataError(f"espeak-ng has only {len(variants)} usable voice variants; at least 3 are needed")
    # (the shuffle generator 1 made, so all versions hold out the same dev and test variants)
    random.Random(seed).shuffle(variants)
    # Held-out variants: dev and test each get their own pool, never used for training.
    n_test = max(1, min(test_speakers, len(variants) // 6)) if test_speakers else 0
    n_dev = max(1, min(dev_speakers, len(variants) // 8)) if dev_speakers else 0
    pools = {"test": variants[:n_test], "dev": variants[n_test:n_test + n_dev], "train": variants[n_test + n_dev:]}

    speakers: list[SynthSpeaker] = []
    for split, prefix, count in (("train", "tr", counts["espeak"]), ("dev", "dv", dev_speakers),
                                 ("test", "ts", test_speakers)):
        rng = _split_rng(seed, split, "speakers")
        width = max(2, len(str(count)))
        pool = pools[split]
        for i in range(count):
            # Cycle through the pool so every variant is used before one repeats.
            voice = f"{rng.choice(accents)}+{pool[i % len(pool)]}"
            s = espeak.random_settings(rng, voice)
            speakers.append(SynthSpeaker(
                speaker_id=f"{prefix}{i + 1:0{width}d}", split=split, engine="espeak", voice=voice, rate=s.rate,
                pitch=s.pitch, word_gap=s.word_gap, gain=round(rng.uniform(0.35, 1.0), 3),
                noise_dbfs=round(rng.uniform(-70.0, -45.0), 1),
            ))
    if generated_variants:
        train = [i for i, s in enumerate(speakers) if s.split == "train"]
        chosen = _split_rng(seed, "train", "generated-voices").sample(train, len(generated_variants))
        for i, variant in zip(sorted(chosen), generated_variants):
            accent = speakers[i].voice.split("+", 1)[0]
            speakers[i] = replace(speakers[i], voice=f"{accent}+{variant}")
    for engine, count in counts.items():
        if engine != "espeak":
            speakers += _engine_speakers(seed, "train", engine, count, "tr")
    if eval_engine:
        speakers += _engine_speakers(seed, f"dev_{eval_engine}", eval_engine, dev_speakers, "dv")
        speakers += _engine_speakers(seed, f"test_{eval_engine}", eval_engine, test_speakers, "ts")
    return speakers

# ---------------------------------------------------------------------------------------------------------------
# Synthesis (runs in worker processes)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    utt_id: str
    speaker: SynthSpeaker
    spoken: str
    path: str  # absolute
    seed: int
    espeak_path: str = ""  # espeak-ng --path (a data directory overlay with generated variants), "" = system


# Utterances of one speaker synthesized by one engine call (festival starts once per batch).
_BATCH = 16


def _batches(jobs: Sequence[_Job]) -> list[list[_Job]]:
    """``jobs`` cut into runs of the same speaker of at most ``_BATCH`` (independent of the number of processes)."""
    out: list[list[_Job]] = []
    for job in jobs:
        if out and out[-1][0].speaker == job.speaker and len(out[-1]) < _BATCH:
            out[-1].append(job)
        else:
            out.append([job])
    return out


def _render_batch(jobs: list[_Job]) -> list[tuple[str, int]]:
    """Synthesize a batch of one speaker's utterances and write each as 16 kHz 16-bit wav; returns
    ``[(utt_id, num_samples)]``."""
    spk = jobs[0].speaker
    engine = get_engine(spk.engine, espeak_data_path=jobs[0].espeak_path)
    audio = engine.synthesize_many([j.spoken for j in jobs], spk.settings())
    return [_finish(job, samples) for job, samples in zip(jobs, audio)]


def _finish(job: _Job, samples: np.ndarray) -> tuple[str, int]:
    """Trim the engine's own silence, pad with a random amount (durations and onsets vary), apply the speaker's
    gain and noise floor, write the wav; returns ``(utt_id, num_samples)``."""
    import soundfile as sf

    voiced = np.flatnonzero(np.abs(samples) > 1e-3)
    if voiced.size == 0:
        raise DataError(f"{job.speaker.engine} produced silence for utterance {job.utt_id} ({job.spoken!r})")
    samples = samples[max(0, voiced[0] - 80):voiced[-1] + 81]
    rng = np.random.default_rng(job.seed)
    lead, tail = (int(rng.uniform(0.10, 0.40) * SAMPLE_RATE) for _ in range(2))
    signal = np.concatenate([np.zeros(lead, np.float32), samples * job.speaker.gain, np.zeros(tail, np.float32)])
    signal += rng.standard_normal(signal.shape[0]).astype(np.float32) * np.float32(
        10.0 ** (job.speaker.noise_dbfs / 20.0))
    np.clip(signal, -1.0, 1.0, out=signal)
    path = Path(job.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sf.write(str(tmp), signal, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return job.utt_id, int(signal.shape[0])

@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Spawned workers inherit the environment: keep BLAS to one thread each (num_jobs processes share cores)."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_jobs(jobs: list[_Job], num_jobs: int, desc: str) -> dict[str, int]:
    """Render ``jobs`` in ``num_jobs`` spawned processes; returns ``{utt_id: num_samples}``.

    Even ``num_jobs=1`` uses one worker process: the worker's BLAS is single-threaded (set through the environment
    before numpy loads), while a multi-threaded BLAS in the caller made the small resampling products ~20x slower on
    a busy 2-core machine. ``spawn`` (not ``fork``) because the caller may hold torch/OpenMP threads; a
    ``ProcessPoolExecutor`` (not ``multiprocessing.Pool``) because it reports a worker that died instead of hanging.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from tqdm import tqdm

    results: dict[str, int] = {}
    try:
        with _single_threaded_children(), ProcessPoolExecutor(
            max_workers=max(1, num_jobs), mp_context=mp.get_context("spawn")
        ) as pool:
            with tqdm(total=len(jobs), desc=desc, unit="utt") as bar:
                for done in pool.map(_render_batch, _batches(jobs)):
                    results.update(done)
                    bar.update(len(done))
    except BrokenProcessPool as e:
        raise DataError(
            "a synthesis worker process died",
            hint="when calling generate_synth from a Python script, put the call under "
            "`if __name__ == '__main__':` (worker processes are spawned and re-import the main module)",
        ) from e
    return results


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------
def _generated_variants(params: dict) -> dict[str, str]:
    """``{variant name: espeak-ng variant file text}`` of the corpus's generated voice variants (deterministic)."""
    from asrkit.data.corpora.espeak_voices import GENERATED_VARIANT_PREFIX, random_variant

    rng = random.Random(params["seed"] * 7907 + 3)
    names = [f"{GENERATED_VARIANT_PREFIX}{i + 1:03d}" for i in range(params.get("generated_voice_speakers", 0))]
    return {name: random_variant(rng, name) for name in names}


def _split_hours(params: dict) -> dict[str, float]:
    """Target hours per split: dev and test hold ``EVAL_SHARE`` of ``hours`` each (when they have speakers);
    train gets ``train_hours`` when the parameters set it, else the rest."""
    eval_hours = params["hours"] * EVAL_SHARE
    hours = {"dev": eval_hours if params["dev_speakers"] else 0.0,
             "test": eval_hours if params["test_speakers"] else 0.0}
    hours["train"] = params.get("train_hours") or params["hours"] - hours["dev"] - hours["test"]
    return hours


def _plan(params: dict, generated_variants: Sequence[str] = ()) -> tuple[list[SynthSpeaker], dict[str, list[dict]]]:
    """Speakers and, per split, the utterances ``{"id", "speaker", "text", "sentence"}`` (deterministic).
    ``generated_variants``: the names from :func:`_generated_variants`.

    Each split draws its texts from its own random stream until the estimated speech reaches its share of the
    hours (:func:`_split_hours`; at least one utterance per speaker) and deals them out equally among its
    speakers, so dev and test are the same whatever the training speakers are. The left-out engine's
    ``dev_<engine>`` and ``test_<engine>`` speakers get as many utterances each as the dev and test speakers (extra
    to the hours)."""
    seed = params["seed"]
    speakers = _make_speakers(
        seed, params["train_speakers"], params["dev_speakers"], params["test_speakers"],
        engine_mix=tuple(tuple(x) for x in params["engine_mix"]), eval_engine=params["eval_engine"],
        generated_variants=tuple(generated_variants), engine_counts=params.get("engine_counts"),
    )
    by_split: dict[str, list[SynthSpeaker]] = {}
    for spk in speakers:
        by_split.setdefault(spk.split, []).append(spk)

    def draw(text_rng: random.Random) -> tuple[str, bool]:
        if params["sentences"] and text_rng.random() < 0.35:
            return make_sentence(text_rng), True
        return make_an4_text(text_rng), False

    utts: dict[str, list[dict]] = {}
    per_speaker: dict[str, int] = {}
    for split, target_hours in _split_hours(params).items():
        members = by_split.get(split, [])
        if not members:
            continue
        text_rng = _split_rng(seed, split, "texts")
        # Durations scale with 1/rate: average that, not the rate.
        mean_factor = len(members) / sum(1.0 / s.rate_factor() for s in members)
        texts: list[tuple[str, bool]] = []
        total = 0.0
        while total < target_hours * 3600.0 or len(texts) < len(members):
            texts.append(draw(text_rng))
            total += _estimate_seconds(texts[-1][0], mean_factor, texts[-1][1])
        per_speaker[split] = math.ceil(len(texts) / len(members))
        # Each speaker gets an equal share (differing by at most one), in a seeded random order.
        owners = [members[i % len(members)] for i in range(len(texts))]
        _split_rng(seed, split, "owners").shuffle(owners)
        utts[split] = _numbered(texts, owners)
    for split in synth_splits(params["eval_engine"])[3:]:  # dev_<engine>, test_<engine>
        members = by_split.get(split, [])
        text_rng = _split_rng(seed, split, "texts")
        count = per_speaker.get(split.split("_", 1)[0], per_speaker.get("train", 1))
        owners = [spk for spk in members for _ in range(count)]
        if owners:
            utts[split] = _numbered([draw(text_rng) for _ in owners], owners)
    return speakers, utts


def _numbered(texts: Sequence[tuple[str, bool]], owners: Sequence[SynthSpeaker]) -> list[dict]:
    """Utterance rows for ``texts`` spoken by ``owners`` (pairwise), ids ``<speaker>-<k>`` numbered per speaker."""
    counters: dict[str, int] = {}
    rows = []
    for (text, is_sentence), spk in zip(texts, owners):
        k = counters[spk.speaker_id] = counters.get(spk.speaker_id, 0) + 1
        rows.append({"id": f"{spk.speaker_id}-{k:04d}", "speaker": spk.speaker_id, "text": text,
                     "sentence": is_sentence})
    rows.sort(key=lambda u: u["id"])
    return rows


def _write_generated_variants(corpus_dir: Path, variants: dict[str, str]) -> str:
    """Write ``variants`` to ``corpus_dir/voices`` and build the espeak-ng data overlay that holds them; returns
    the ``--path`` for espeak-ng ("" without generated variants)."""
    if not variants:
        return ""
    from asrkit.data.corpora.espeak_voices import make_voice_overlay

    (corpus_dir / "voices").mkdir(parents=True, exist_ok=True)
    for name, text in variants.items():
        (corpus_dir / "voices" / name).write_text(text, encoding="utf-8")
    return str(make_voice_overlay(corpus_dir.resolve() / "espeak-overlay", variants))


def synth_splits(eval_engine: str | None) -> tuple[str, ...]:
    """The corpus's splits: ``train``, ``dev``, ``test`` and, with a left-out engine, ``dev_<engine>`` and
    ``test_<engine>``."""
    return SYNTH_SPLITS + ((f"dev_{eval_engine}", f"test_{eval_engine}") if eval_engine else ())


def _tool_versions(engines: Sequence[str]) -> dict[str, str]:
    """The version line of each engine used."""
    return {e: get_engine(e).version() for e in sorted(set(engines))}


def generate_synth(
    corpus_dir: str | Path,
    hours: float = 2.0,
    seed: int = 0,
    num_jobs: int = 2,
    sentences: bool = False,
    train_speakers: int = 100,
    dev_speakers: int = 8,
    test_speakers: int = 8,
    engine_mix: Sequence[tuple[str, float]] = DEFAULT_ENGINE_MIX,
    eval_engine: str | None = None,
    generated_voice_speakers: int = 0,
    train_hours: float | None = None,
    engines_on_top: bool = False,
    force: bool = False,
) -> Path:
    """Synthesize the corpus into ``corpus_dir`` (see the module docstring for the layout).

    ``hours`` is the approximate total over train+dev+test (utterances are drawn until an estimate of their speech
    duration reaches it; the real total is reported in the log): dev and test hold ``EVAL_SHARE`` (7 %) of it
    each, train the rest, and within a split the speakers share equally. Each split has its own random streams,
    so dev and test stay the same when the training speakers change. ``eval_engine="flite"`` (say) adds the splits
    ``dev_flite`` and ``test_flite``: ``dev_speakers`` and ``test_speakers`` speakers on that engine's voices
    with their own random prosody, as many utterances per speaker as dev and test (extra to ``hours``). The
    engine must not be in ``engine_mix``: no training speaker uses it.

    Re-running with the same parameters is a no-op (``corpus_dir/.completed`` holds them). Re-running with
    different parameters raises :class:`DataError` unless ``force=True``, which deletes the generated files
    (``wav/``, ``metadata/``, ``speakers.json``) and regenerates. An interrupted run (no ``.completed``) is simply
    redone.

    Args:
        corpus_dir: output directory (created).
        hours: approximate amount of audio over train+dev+test.
        seed: everything (texts, speakers, file names, noise) is determined by it.
        num_jobs: synthesis processes (results do not depend on it).
        sentences: also produce short English sentences (~35% of utterances).
        train_speakers: training speakers, shared among the engines of ``engine_mix``.
        dev_speakers: espeak-ng dev speakers (held-out voice variants).
        test_speakers: espeak-ng test speakers (held-out voice variants, disjoint from dev's).
        engine_mix: ``((engine, share), ...)``: the share of the training speakers each engine speaks
            (:func:`parse_engine_mix` reads ``engine=share`` strings); must include ``espeak``.
        eval_engine: ``None`` or an engine left out of training (adds ``dev_<engine>`` and ``test_<engine>``).
        generated_voice_speakers: how many of the ``train_speakers`` use a randomly generated voice variant
            (written to ``voices/``) instead of one of espeak-ng's. Dev and test speakers, and every text, are the
            same whatever this number.
        train_hours: hours of the training split instead of what ``hours`` leaves after dev and test (which
            stay as ``hours`` makes them). With more ``train_speakers`` in proportion, engines can be added on top
            of the espeak-ng speakers without taking hours from them (e.g. ``hours=2``, ``train_hours=2.58``,
            150 speakers, mix espeak=4 festival=1 pico=1: the 100 espeak-ng speakers of the default corpus, each
            with as much audio as there).
        engines_on_top: instead of sharing ``train_speakers`` and the training hours, the other engines of
            ``engine_mix`` come on top of the espeak-ng speakers (:func:`on_top_sizes` gives the sizes; the corpus
            is the one those sizes make, and its marker records them). Excludes ``train_hours``.
        force: regenerate when ``.completed`` holds different parameters.

    Returns:
        ``corpus_dir`` as a Path.

    Raises:
        DataError: an engine missing or failing, invalid sizes or engines, or a finished corpus with other
            parameters.

    Example:
        >>> corpus = generate_synth("data/synth", hours=0.5, seed=0, num_jobs=2)  # doctest: +SKIP
        >>> manifests = prepare_synth(corpus, "data/manifests")  # doctest: +SKIP
        >>> sorted(manifests)  # doctest: +SKIP
        ['dev', 'test', 'train']
    """
    import multiprocessing as mp

    if getattr(mp.current_process(), "_inheriting", False):
        # We are being re-run by a spawned worker importing an unguarded main script: do nothing here (no
        # directory changes); the parent reports the problem with a hint.
        raise DataError("generate_synth was called while a worker process was starting")
    corpus_dir = Path(corpus_dir)
    if hours <= 0:
        raise DataError(f"generate_synth: hours must be > 0, got {hours}")
    if train_speakers < 1:
        raise DataError(f"generate_synth: train_speakers must be >= 1, got {train_speakers}")
    if train_hours is not None and not train_hours > 0:
        raise DataError(f"generate_synth: train_hours must be > 0 (or None), got {train_hours}")
    if not 0 <= generated_voice_speakers <= train_speakers:
        raise DataError(f"generate_synth: generated_voice_speakers must be in 0..train_speakers ({train_speakers}), "
                        f"got {generated_voice_speakers}")
    if dev_speakers < 0 or test_speakers < 0:
        raise DataError(f"generate_synth: speaker counts must be >= 0, got dev={dev_speakers} test={test_speakers}")
    engine_mix = tuple((str(e), float(w)) for e, w in engine_mix)
    names = [e for e, _ in engine_mix]
    if "espeak" not in names or len(set(names)) != len(names) or any(e not in ENGINES or not w > 0
                                                                     for e, w in engine_mix):
        raise DataError(f"generate_synth: invalid engine_mix {engine_mix}: each engine once, a share > 0, "
                        f"espeak included (dev and test use its held-out voices)",
                        hint=f"engines: {', '.join(ENGINES)}")
    if eval_engine is not None and (eval_engine not in ENGINES or eval_engine in names):
        raise DataError(f"generate_synth: eval_engine must be an engine left out of training "
                        f"(one of {', '.join(e for e in ENGINES if e not in names)}), got {eval_engine!r}")
    if eval_engine and test_speakers < 1:
        raise DataError(f"generate_synth: eval_engine={eval_engine!r} needs test_speakers >= 1")
    if engines_on_top:
        if train_hours is not None:
            raise DataError("generate_synth: give train_hours or engines_on_top, not both (engines_on_top sets the "
                            "training hours itself)")
        counts = on_top_counts(train_speakers, engine_mix)
        train_speakers, train_hours = on_top_sizes(hours, train_speakers, engine_mix, dev_speakers, test_speakers)
    params = {
        "version": GENERATOR_VERSION, "hours": float(hours), "seed": int(seed), "sentences": bool(sentences),
        "train_speakers": int(train_speakers), "dev_speakers": int(dev_speakers),
        "test_speakers": int(test_speakers), "engine_mix": [list(x) for x in engine_mix], "eval_engine": eval_engine,
    }
    if generated_voice_speakers:  # absent when 0, so corpora made before the option still match their marker
        params["generated_voice_speakers"] = int(generated_voice_speakers)
    if train_hours is not None:  # absent by default, for the same reason
        params["train_hours"] = float(train_hours)
    if engines_on_top and counts != _engine_counts(train_speakers, engine_mix):
        # Only where splitting the total by the shares would give other counts (the espeak-ng speakers must stay
        # those of the espeak-ng-only corpus), so an on-top corpus is otherwise the explicit-size one, marker too.
        params["engine_counts"] = counts
    marker = corpus_dir / ".completed"
    if marker.is_file():
        try:
            done = json.loads(marker.read_text())
        except json.JSONDecodeError:
            done = {}
        if done.get("params") == params:
            log.info("synthetic corpus in %s is complete, skipping (delete %s to redo)", corpus_dir, marker)
            return corpus_dir
        if not force:
            raise DataError(
                f"{corpus_dir} holds a synthetic corpus generated with other parameters "
                f"({done.get('params')}); asked for {params}",
                hint="use another directory, or pass force=True (--force) to delete it and regenerate",
            )
    if marker.exists() or force:
        marker.unlink(missing_ok=True)
        for name in ("wav", "metadata", "voices", "espeak-overlay"):
            shutil.rmtree(corpus_dir / name, ignore_errors=True)
        (corpus_dir / "speakers.json").unlink(missing_ok=True)

    variants = _generated_variants(params)
    speakers, utts = _plan(params, tuple(variants))
    by_id = {s.speaker_id: s for s in speakers}
    espeak_path = _write_generated_variants(corpus_dir, variants)
    jobs = []
    for split, rows in utts.items():
        for row in rows:
            spk = by_id[row["speaker"]]
            rel = f"wav/{split}/{spk.speaker_id}/{row['id']}.wav"
            row["path"] = rel
            digest = hashlib.sha256(f"{params['seed']}/{row['id']}".encode()).digest()
            seed_u = int.from_bytes(digest[:8], "little")
            spoken = get_engine(spk.engine).spoken_form(row["text"], row["sentence"])
            jobs.append(_Job(row["id"], spk, spoken,
                             str(corpus_dir / rel), seed_u, espeak_path))
    corpus_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lengths = _run_jobs(jobs, num_jobs, desc=f"synthesizing {corpus_dir.name}")
    elapsed = time.perf_counter() - t0

    (corpus_dir / "metadata").mkdir(exist_ok=True)
    seconds: dict[str, float] = {}
    for split, rows in utts.items():
        with open(corpus_dir / "metadata" / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps({"id": row["id"], "speaker": row["speaker"], "text": row["text"],
                                    "path": row["path"]}) + "\n")
        seconds[split] = sum(lengths[r["id"]] for r in rows) / SAMPLE_RATE
    (corpus_dir / "speakers.json").write_text(json.dumps([asdict(s) for s in speakers], indent=1))
    total = sum(seconds.values())
    stats = {
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "utterances": {k: len(v) for k, v in utts.items()},
        "wall_seconds": round(elapsed, 2),
        "num_jobs": num_jobs,
        "tools": _tool_versions([s.engine for s in speakers]),
    }
    marker.write_text(json.dumps({"params": params, "stats": stats}, indent=1))
    log.info("synthesized %.2f h (%s) in %.1f s with %d job(s): %.0fx real time", total / 3600,
             ", ".join(f"{k} {len(v)} utts" for k, v in utts.items()), elapsed, num_jobs, total / max(elapsed, 1e-9))
    return corpus_dir


def prepare_synth(corpus_dir: str | Path, output_dir: str | Path | None = None) -> dict[str, dict]:
    """Build lhotse manifests for a corpus made by :func:`generate_synth`.

    Args:
        corpus_dir: the generated corpus (must contain ``.completed``).
        output_dir: if given, writes ``synth_recordings_{split}.jsonl.gz`` and ``synth_supervisions_{split}.jsonl.gz``
            there.

    Returns:
        ``{split: {"recordings": RecordingSet, "supervisions": SupervisionSet}}`` for the splits present
        (``train``, ``dev``, ``test`` and, if generated, ``dev_<engine>``/``test_<engine>``).

    Raises:
        DataError: the corpus is unfinished, or a metadata line or audio file is missing/invalid.

    Example:
        >>> m = prepare_synth("data/synth", "data/manifests")  # doctest: +SKIP
        >>> m["train"]["supervisions"][0].text  # doctest: +SKIP
        'ENTER FIVE SIX'
    """
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.qa import validate_recordings_and_supervisions

    corpus_dir = Path(corpus_dir)
    if not (corpus_dir / ".completed").is_file():
        raise DataError(f"{corpus_dir} is not a finished synthetic corpus (no .completed marker)",
                        hint="run generate_synth / `asrkit prepare download synth` first")
    speakers = {s["speaker_id"]: s for s in json.loads((corpus_dir / "speakers.json").read_text())}
    manifests: dict[str, dict] = {}
    try:
        eval_engine = json.loads((corpus_dir / ".completed").read_text())["params"].get("eval_engine")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{corpus_dir / '.completed'} is not a valid corpus marker ({e})",
                        hint="regenerate the corpus with force=True") from e
    for split in synth_splits(eval_engine):
        meta = corpus_dir / "metadata" / f"{split}.jsonl"
        if not meta.is_file():
            continue
        recordings, supervisions = [], []
        with open(meta, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                    uid, spk, text, rel = row["id"], row["speaker"], row["text"], row["path"]
                except (json.JSONDecodeError, KeyError) as e:
                    raise DataError(f"{meta}:{lineno}: invalid metadata line ({e})") from e
                audio = corpus_dir / rel
                if not audio.is_file():
                    raise DataError(f"{meta}:{lineno}: audio file of utterance {uid} is missing: {audio}",
                                    hint="regenerate the corpus with force=True")
                rec = Recording.from_file(audio, recording_id=uid)
                recordings.append(rec)
                info = speakers.get(spk, {})
                supervisions.append(SupervisionSegment(
                    id=uid, recording_id=uid, start=0.0, duration=rec.duration, channel=0, text=text,
                    speaker=spk, language="English",
                    custom={"engine": info.get("engine"), "voice": info.get("voice")},
                ))
        rs, ss = RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)
        validate_recordings_and_supervisions(rs, ss)
        if output_dir is not None:
            out = Path(output_dir)
            out.mkdir(parents=True, exist_ok=True)
            rs.to_file(out / f"synth_recordings_{split}.jsonl.gz")
            ss.to_file(out / f"synth_supervisions_{split}.jsonl.gz")
        manifests[split] = {"recordings": rs, "supervisions": ss}
    if not manifests:
        raise DataError(f"{corpus_dir}/metadata holds no split files")
    return manifests
