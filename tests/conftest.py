"""Shared fixtures: tiny corpora made on the fly (no network, no stored data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``cuda`` are skipped, saying why, where torch sees no GPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `pytest -m cuda` on a GPU machine)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


WORDS = ["YES", "NO", "GO", "STOP", "HELP", "ENTER", "ONE", "TWO", "THREE"]


def write_tone_corpus(root: Path, prefix: str = "tiny", n_per_split: int = 6, seed: int = 0) -> Path:
    """Write wavs (noisy tones) + lhotse manifests ``{prefix}_{recordings,supervisions}_{split}.jsonl.gz``.

    Returns the manifest directory. Transcripts are drawn from :data:`WORDS`.
    """
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    rng = np.random.default_rng(seed)
    manifest_dir = root / "manifests"
    manifest_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        recs, sups = [], []
        for i in range(n_per_split):
            dur = float(rng.uniform(0.8, 1.6))
            t = np.arange(int(dur * 16000)) / 16000
            audio = 0.1 * np.sin(2 * np.pi * rng.uniform(200, 800) * t) + 0.01 * rng.standard_normal(t.size)
            path = root / "wav" / split / f"{split}-{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, audio.astype(np.float32), 16000, subtype="PCM_16")
            rec = Recording.from_file(path, recording_id=f"{split}-{i}")
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))
            recs.append(rec)
            sups.append(SupervisionSegment(id=rec.id, recording_id=rec.id, start=0.0, duration=rec.duration,
                                           text=text, speaker=f"spk{i % 2}"))
        RecordingSet.from_recordings(recs).to_file(manifest_dir / f"{prefix}_recordings_{split}.jsonl.gz")
        SupervisionSet.from_segments(sups).to_file(manifest_dir / f"{prefix}_supervisions_{split}.jsonl.gz")
    return manifest_dir


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tone")
    return write_tone_corpus(root)


def assert_same_state(a, b, where: str = "payload") -> None:
    """Nested dicts/lists/tensors (checkpoint payloads, state dicts) equal exactly, types included; the message
    names the first differing entry."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
