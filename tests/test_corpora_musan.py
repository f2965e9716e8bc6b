"""MUSAN download (local HTTP server) and preparation on a tiny fixture with the real layout."""

from __future__ import annotations

import functools
import http.server
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrkit.data.corpora.musan import download_musan, download_musan_corpus, prepare_musan, prepare_musan_corpus
from asrkit.errors import DataError


def make_musan(root: Path) -> Path:
    musan = root / "musan"
    files = {
        "music/fma/music-fma-0000.wav": 0.5, "music/fma/music-fma-0001.wav": 0.25,
        "speech/librivox/speech-librivox-0000.wav": 0.75, "noise/free-sound/noise-free-sound-0000.wav": 0.5,
    }
    for rel, sec in files.items():
        (musan / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(musan / rel, np.full(int(sec * 16000), 0.05, np.float32), 16000)
    (musan / "music/fma/ANNOTATIONS").write_text("music-fma-0000 classical N bach\nmusic-fma-0001 pop Y someone\n")
    return musan


def test_prepare_musan(tmp_path: Path) -> None:
    musan = make_musan(tmp_path)
    m = prepare_musan(musan, tmp_path / "manifests")
    assert set(m) == {"music", "speech", "noise"}
    assert {r.id for r in m["noise"]["recordings"]} == {"noise-free-sound-0000"}
    assert m["speech"]["recordings"]["speech-librivox-0000"].duration == pytest.approx(0.75)
    assert {s.id for s in m["music"]["supervisions"]} == {"music-fma-0000", "music-fma-0001"}
    assert (tmp_path / "manifests" / "musan_recordings_noise.jsonl.gz").is_file()
    no_vocals = prepare_musan(musan, parts=["music"], use_vocals=False)
    assert {s.id for s in no_vocals["music"]["supervisions"]} == {"music-fma-0000"}


def test_prepare_musan_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown MUSAN part"):
        prepare_musan(tmp_path, parts=["babble"])
    with pytest.raises(DataError, match="not found"):
        prepare_musan(tmp_path, parts=["noise"])


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_download_musan(tmp_path: Path) -> None:
    make_musan(tmp_path / "src")
    www = tmp_path / "www"
    www.mkdir()
    with tarfile.open(www / "musan.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "musan", arcname="musan")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/musan.tar.gz"
        corpus = download_musan(tmp_path / "dl", url=url)
        assert download_musan_corpus(tmp_path / "dl2", url=url) == tmp_path / "dl2" / "musan"
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (corpus / ".completed").is_file()
    assert len(prepare_musan(corpus, parts=["noise"])["noise"]["recordings"]) == 1
    assert download_musan(tmp_path / "dl", url="http://127.0.0.1:9/musan.tar.gz") == corpus  # skipped
    assert set(prepare_musan_corpus(tmp_path / "dl2" / "musan", tmp_path / "m")) == {"music", "speech", "noise"}
