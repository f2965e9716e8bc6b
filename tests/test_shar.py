"""Lhotse Shar round trip: same cut ids, features and audio after export_shar -> load_shar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrkit.data.shar import export_shar, load_shar
from asrkit.errors import DataError


@pytest.fixture()
def cuts_with_features(tmp_path: Path):
    from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, Recording, RecordingSet

    rng = np.random.default_rng(0)
    recs = []
    for i in range(5):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(1600 + 800 * i)).astype(np.float32), 16000)
        recs.append(Recording.from_file(path, recording_id=f"u{i}"))
    cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs))
    return cuts.compute_and_store_features(
        extractor=Fbank(FbankConfig(num_mel_bins=80)), storage_path=tmp_path / "feats",
        storage_type=LilcomChunkyWriter, num_jobs=1,
    )


def test_round_trip_features_and_audio(cuts_with_features, tmp_path: Path) -> None:
    out = tmp_path / "shar"
    paths = export_shar(cuts_with_features, out, shard_size=2, with_features=True, with_audio=True)
    assert len(paths["cuts"]) == 3 and len(paths["features"]) == 3 and len(paths["recording"]) == 3
    loaded = load_shar(out)
    assert loaded.is_lazy
    original = {c.id: c for c in cuts_with_features}
    ids = []
    for cut in loaded:
        ids.append(cut.id)
        ref = original[cut.id]
        assert cut.duration == pytest.approx(ref.duration)
        f_ref, f = ref.load_features(), cut.load_features()
        assert f.shape == f_ref.shape == (ref.num_frames, 80)
        np.testing.assert_allclose(f, f_ref, atol=2e-2)  # lilcom is lossy (about 0.01 in log-mel)
        np.testing.assert_allclose(cut.load_audio(), ref.load_audio(), atol=1.0 / 32768)  # flac: lossless
    assert ids == [c.id for c in cuts_with_features]


def test_features_only_and_overwrite_guard(cuts_with_features, tmp_path: Path) -> None:
    out = tmp_path / "shar"
    export_shar(cuts_with_features, out, shard_size=10)
    assert sorted(p.name for p in out.iterdir()) == ["cuts.000000.jsonl.gz", "features.000000.tar"]
    with pytest.raises(DataError, match="already holds a Shar export"):
        export_shar(cuts_with_features, out)
    export_shar(cuts_with_features.subset(first=2), out, shard_size=1, overwrite=True)
    assert [c.id for c in load_shar(out)] == [c.id for c in cuts_with_features][:2]


def test_missing_features_and_bad_dirs(cuts_with_features, tmp_path: Path) -> None:
    bare = cuts_with_features.drop_features()
    with pytest.raises(DataError, match=r"cut u0-0 has no features"):
        export_shar(bare, tmp_path / "x")
    with pytest.raises(DataError, match="not found"):
        load_shar(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Shar cut shards"):
        load_shar(tmp_path / "empty")
