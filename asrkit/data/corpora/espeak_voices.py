"""Randomly generated espeak-ng voice variants: more vocal tracts for the synthetic corpus's training speakers.

espeak-ng ships ~100 hand-made voice variants (``voices/!v``); the synthetic corpus holds some of them out for
dev and test, so a model trained on the others meets vocal tracts it never heard. A *generated* variant is a
variant file with a random vocal-tract length (all formant frequencies scaled by one factor, as from a child's to
a large man's vocal tract), per-formant jitter of frequency, height and width, a random pitch base and range, and
random voice-quality settings (flutter, roughness, breathiness, echo). Training on many of them is
vocal-tract-length augmentation at the synthesizer.

espeak-ng only reads variants from its data directory, so :func:`make_voice_overlay` builds a copy of the system
data directory out of symbolic links, adds the generated files to its ``voices/!v``, and the synthesizer is run
with ``--path`` pointing at it.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from asrkit.errors import DataError

__all__ = ["GENERATED_VARIANT_PREFIX", "random_variant", "make_voice_overlay", "system_espeak_data_dir"]

GENERATED_VARIANT_PREFIX = "asrkit_rv"
# Vocal-tract scale: formant frequencies in percent of espeak's default (male) voice. espeak's own variants span
# ~0.9 (m3) to ~1.5 (zac, Alicia's upper formants).
_TRACT_SCALE = (0.85, 1.55)


def random_variant(rng: random.Random, name: str) -> str:
    """The text of one espeak-ng voice variant file named ``name``, drawn from ``rng``."""
    scale = rng.uniform(*_TRACT_SCALE)
    # Pitch follows the vocal tract loosely (small tracts speak higher), with a wide spread of its own.
    position = (scale - _TRACT_SCALE[0]) / (_TRACT_SCALE[1] - _TRACT_SCALE[0])
    base = int(round(75 + 170 * position + rng.uniform(-30, 30)))
    top = base + rng.randint(30, 120)
    lines = ["language variant", f"name {name}", f"gender {'female' if position > 0.45 else 'male'}",
             f"pitch {max(60, base)} {top}"]
    for k in range(9):
        # Formants 0-5 shape the vowels; 6-8 are high resonances that espeak's own variants barely move.
        jitter = 0.08 if k <= 5 else 0.03
        freq = 100 * (scale if k <= 5 else 1 + (scale - 1) / 3) * rng.uniform(1 - jitter, 1 + jitter)
        height = 100 * rng.uniform(0.75, 1.6) if k <= 5 else 100
        width = 100 * rng.uniform(0.8, 1.5) if k <= 5 else 100
        lines.append(f"formant {k} {int(round(freq))} {int(round(height))} {int(round(width))}")
    lines.append(f"flutter {rng.randint(0, 20)}")
    lines.append(f"roughness {rng.randint(0, 3)}")
    lines.append(f"voicing {rng.randint(60, 110)}")
    if rng.random() < 0.3:
        lines.append(f"echo {rng.randint(10, 50)} {rng.randint(5, 40)}")
    if rng.random() < 0.3:
        lines.append("breath " + " ".join(str(rng.randint(0, 8)) for _ in range(8)))
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=1)
def system_espeak_data_dir() -> Path:
    """The installed ``espeak-ng-data`` directory (from ``espeak-ng --version``: "Data at: ...")."""
    try:
        out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, timeout=60).stdout
    except FileNotFoundError as e:
        raise DataError("'espeak-ng' is not installed; it is needed to synthesize the synthetic corpus",
                        hint="sudo apt-get install espeak-ng") from e
    match = re.search(r"Data at:\s*(\S+)", out)
    path = Path(match.group(1)) if match else None
    if path is None or not (path / "voices" / "!v").is_dir():
        raise DataError(f"cannot find espeak-ng's data directory (espeak-ng --version said {out.strip()!r})")
    return path


def make_voice_overlay(root: Path, variants: dict[str, str]) -> Path:
    """Build ``root/espeak-ng-data``: the system data directory as symbolic links plus ``variants``
    ({file name: variant text}) in ``voices/!v``. Returns ``root``, the value for ``espeak-ng --path``.

    The overlay is rebuilt from scratch on every call, so it always matches ``variants``.
    """
    system = system_espeak_data_dir()
    data = Path(root) / "espeak-ng-data"
    if data.exists():
        shutil.rmtree(data)
    (data / "voices" / "!v").mkdir(parents=True)
    for entry in system.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    for entry in (system / "voices").iterdir():
        if entry.name != "!v":
            (data / "voices" / entry.name).symlink_to(entry)
    for entry in (system / "voices" / "!v").iterdir():
        (data / "voices" / "!v" / entry.name).symlink_to(entry)
    for name, text in variants.items():
        (data / "voices" / "!v" / name).write_text(text, encoding="utf-8")
    return Path(root)
