"""AN4 preparation and download on a tiny fixture with the real layout and real NIST SPHERE files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import logging
import tarfile
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf

from asrkit.data.corpora.an4 import download_an4, parse_an4_transcription, prepare_an4
from asrkit.errors import DataError

TRAIN = {  # file id -> (text, seconds)
    "an251-fash-b": ("RUBOUT G M E F THREE NINE", 1.25),
    "an253-fash-b": ("GO", 0.5),
    "cen7-mblw-b": ("ENTER FIVE SIX", 0.75),
}
TEST = {"cen1-fcaw-b": ("N I N E", 1.0), "an406-mjgm-b": ("YES", 0.25)}


@pytest.fixture(autouse=True)
def _restore_lhotse_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """prepare_an4 switches lhotse's process-global audio backend: put it back for other tests."""
    from lhotse.audio.backend import get_current_audio_backend, set_current_audio_backend

    monkeypatch.delenv("LHOTSE_AUDIO_BACKEND", raising=False)  # restored by monkeypatch afterwards
    previous = get_current_audio_backend()
    yield
    set_current_audio_backend(previous)


def _sph(path: Path, seconds: float, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format="NIST", subtype="PCM_16")


def make_an4(root: Path, with_problems: bool = False) -> Path:
    an4 = root / "an4"
    (an4 / "etc").mkdir(parents=True)
    lines = []
    for fid, (text, sec) in TRAIN.items():
        _sph(an4 / "wav" / "an4_clstk" / fid.split("-")[1] / f"{fid}.sph", sec)
        lines.append(f"<s> {text} </s> ({fid})")
    if with_problems:
        lines += ["<s> HELLO 5 </s> (an300-fash-b)", "<s> STOP </s> (an301-fash-b)",
                  "<s> NO </s> (an302-fash-b)"]
        _sph(an4 / "wav" / "an4_clstk" / "fash" / "an300-fash-b.sph", 0.5)  # text has a digit character
        # an301-fash-b has no audio file
        _sph(an4 / "wav" / "an4_clstk" / "fash" / "an302-fash-b.sph", 0.5, sr=8000)  # wrong sample rate
    (an4 / "etc" / "an4_train.transcription").write_text("\n".join(lines) + "\n")
    test_lines = []
    for i, (fid, (text, sec)) in enumerate(TEST.items()):
        _sph(an4 / "wav" / "an4test_clstk" / fid.split("-")[1] / f"{fid}.sph", sec)
        test_lines.append(f"{text} ({fid})" if i % 2 == 0 else f"<s> {text} </s> ({fid})")  # tags optional
    (an4 / "etc" / "an4_test.transcription").write_text("\n".join(test_lines) + "\n\n")
    return an4


def test_parse_transcription_with_and_without_tags(tmp_path: Path) -> None:
    f = tmp_path / "t.transcription"
    f.write_text("<s> ENTER FIVE SIX </s> (an251-fash-b)\nN I N E (cen1-fcaw-b)\n  \n<s>  yes  </s>(x-y-z)\n")
    assert parse_an4_transcription(f) == [("an251-fash-b", "ENTER FIVE SIX"), ("cen1-fcaw-b", "N I N E"),
                                          ("x-y-z", "YES")]
    f.write_text("<s> NO FILE ID </s>\n")
    with pytest.raises(DataError, match=r"t.transcription:1"):
        parse_an4_transcription(f)


def test_prepare_an4_manifests(tmp_path: Path) -> None:
    an4 = make_an4(tmp_path)
    out = tmp_path / "manifests"
    m = prepare_an4(an4, out)
    assert sorted(m) == ["test", "train"]
    for split, ref in (("train", TRAIN), ("test", TEST)):
        sups = {s.id: s for s in m[split]["supervisions"]}
        assert set(sups) == set(ref)
        for fid, (text, sec) in ref.items():
            assert sups[fid].text == text
            assert sups[fid].speaker == fid.split("-")[1]
            assert sups[fid].duration == pytest.approx(sec)
            rec = m[split]["recordings"][fid]
            assert rec.sampling_rate == 16000 and rec.num_samples == int(sec * 16000)
        assert (out / f"an4_recordings_{split}.jsonl.gz").is_file()
        assert (out / f"an4_supervisions_{split}.jsonl.gz").is_file()
    # The SPHERE audio loads through lhotse without sph2pipe.
    audio = m["train"]["recordings"]["an251-fash-b"].load_audio()
    assert audio.shape == (1, 20000) and 0.25 < np.abs(audio).max() < 0.35


def test_prepare_an4_parent_dir_is_accepted(tmp_path: Path) -> None:
    make_an4(tmp_path)
    assert len(prepare_an4(tmp_path)["train"]["supervisions"]) == len(TRAIN)


def test_prepare_an4_skips_and_counts_problems(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    an4 = make_an4(tmp_path, with_problems=True)
    with caplog.at_level(logging.WARNING, logger="asrkit.data.corpora.an4"):
        m = prepare_an4(an4)
    assert {s.id for s in m["train"]["supervisions"]} == set(TRAIN)
    text = caplog.text
    assert "an300-fash-b" in text and "unknown characters" in text and "'5'" in text
    assert "an301-fash-b" in text and "audio file missing" in text
    assert "an302-fash-b" in text and "8000 Hz" in text
    assert "kept 3 of 6 utterances" in text
    assert "1 (missing audio)" in text and "1 (sample rate)" in text and "1 (unknown characters)" in text


def test_prepare_an4_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not an AN4 corpus"):
        prepare_an4(tmp_path)
    an4 = make_an4(tmp_path)
    (an4 / "etc" / "an4_test.transcription").unlink()
    with pytest.raises(DataError, match="an4_test.transcription"):
        prepare_an4(an4)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def served_an4(tmp_path: Path) -> Iterator[tuple[str, str]]:
    src = tmp_path / "src"
    make_an4(src)
    www = tmp_path / "www"
    www.mkdir()
    archive = www / "an4_sphere.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "an4", arcname="an4")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/an4_sphere.tar.gz", sha
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_an4_then_prepare(served_an4: tuple[str, str], tmp_path: Path) -> None:
    url, sha = served_an4
    corpus = download_an4(tmp_path / "dl", url=url, expected_sha256=sha)
    assert corpus == tmp_path / "dl" / "an4" and (corpus / ".completed").is_file()
    m = prepare_an4(corpus)
    assert len(m["train"]["supervisions"]) == len(TRAIN) and len(m["test"]["supervisions"]) == len(TEST)
    assert download_an4(tmp_path / "dl", url="http://127.0.0.1:9/unreachable") == corpus  # marker: no network


def test_download_an4_checksum_mismatch(served_an4: tuple[str, str], tmp_path: Path) -> None:
    url, _ = served_an4
    dl = tmp_path / "dl"
    with pytest.raises(DataError, match="checksum mismatch"):
        download_an4(dl, url=url, expected_sha256="0" * 64)
    assert sorted(p.name for p in dl.iterdir()) == []  # no archive, no half-extracted an4/
