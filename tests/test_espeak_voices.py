"""Generated espeak-ng voice variants and the data-directory overlay that makes espeak-ng find them."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from asrkit.data.corpora.espeak_voices import make_voice_overlay, random_variant, system_espeak_data_dir


def _fields(text: str) -> dict[str, list[list[int]]]:
    out: dict[str, list[list[int]]] = {}
    for line in text.splitlines():
        key, *values = line.split()
        if key not in ("language", "name", "gender"):
            out.setdefault(key, []).append([int(v) for v in values])
    return out


def test_random_variants_are_deterministic_and_span_vocal_tracts() -> None:
    first = [random_variant(random.Random(5), f"v{i}") for i in range(1)]
    assert first == [random_variant(random.Random(5), "v0")]
    rng = random.Random(0)
    variants = [_fields(random_variant(rng, f"v{i}")) for i in range(200)]
    for v in variants:
        assert sorted(f[0] for f in v["formant"]) == list(range(9))
        low, high = v["pitch"][0]
        assert 60 <= low < high
    # Formant 1 (the first vowel formant) in percent of espeak's default voice: from long to short vocal tracts.
    f1 = [v["formant"][1][1] for v in variants]
    assert min(f1) < 85 and max(f1) > 150
    # Short vocal tracts speak higher on average.
    by_tract = sorted(variants, key=lambda v: v["formant"][1][1])
    assert sum(v["pitch"][0][0] for v in by_tract[-50:]) > sum(v["pitch"][0][0] for v in by_tract[:50]) + 50 * 80


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not installed")
def test_overlay_serves_stock_and_generated_variants(tmp_path: Path) -> None:
    variant = random_variant(random.Random(1), "asrkit_rv001")
    root = make_voice_overlay(tmp_path / "overlay", {"asrkit_rv001": variant})
    data = root / "espeak-ng-data"
    assert (data / "voices" / "!v" / "asrkit_rv001").read_text() == variant
    assert (data / "voices" / "!v" / "m3").is_symlink()
    assert (data / "voices" / "!v" / "m3").resolve() == (system_espeak_data_dir() / "voices" / "!v" / "m3").resolve()

    def say(voice: str, *path: str) -> bytes:
        cmd = ["espeak-ng", *path, "-v", voice, "--stdout", "B O X"]
        return subprocess.run(cmd, capture_output=True, check=True).stdout

    overlay = f"--path={root}"
    assert say("en-us+m3", overlay) == say("en-us+m3")  # stock variants sound as without the overlay
    generated = say("en-us+asrkit_rv001", overlay)
    assert generated not in (say("en-us", overlay), say("en-us+asrkit_rv001"))  # found, and only via the overlay
    make_voice_overlay(root, {})  # rebuilt from scratch: the generated variant is gone
    assert not (data / "voices" / "!v" / "asrkit_rv001").exists()
