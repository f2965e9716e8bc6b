"""LibriSpeech download (local HTTP server) and preparation on a tiny fixture with the real layout."""

from __future__ import annotations

import functools
import http.server
import tarfile
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf

from asrkit.data.corpora.librispeech import download_librispeech, prepare_librispeech
from asrkit.errors import DataError

# speaker -> chapter -> [(utterance index, text, seconds)]
UTTS = {
    "1272": {"128104": [(0, "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES", 1.5),
                        (1, "NOR IS MISTER QUILTER'S MANNER", 0.75)]},
    "84": {"121123": [(2, "GO DO YOU HEAR", 0.5)]},
}


def make_librispeech(root: Path, part: str = "dev-clean-2") -> Path:
    corpus = root / "LibriSpeech"
    for spk, chapters in UTTS.items():
        for chap, utts in chapters.items():
            d = corpus / part / spk / chap
            d.mkdir(parents=True)
            lines = []
            for idx, text, sec in utts:
                uid = f"{spk}-{chap}-{idx:04d}"
                sf.write(d / f"{uid}.flac", np.full(int(sec * 16000), 0.1, np.float32), 16000, format="FLAC")
                lines.append(f"{uid} {text}")
            (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    (corpus / "README.TXT").write_text("tiny fixture\n")
    return corpus


def _expected() -> dict[str, tuple[str, str, float]]:
    return {f"{spk}-{chap}-{idx:04d}": (spk, text, sec) for spk, chapters in UTTS.items()
            for chap, utts in chapters.items() for idx, text, sec in utts}


def test_prepare_librispeech(tmp_path: Path) -> None:
    corpus = make_librispeech(tmp_path)
    m = prepare_librispeech(corpus, tmp_path / "manifests")
    assert list(m) == ["dev-clean-2"]
    sups = {s.id: s for s in m["dev-clean-2"]["supervisions"]}
    assert set(sups) == set(_expected())
    for uid, (spk, text, sec) in _expected().items():
        assert sups[uid].speaker == spk and sups[uid].text == text
        assert sups[uid].duration == pytest.approx(sec)
        assert m["dev-clean-2"]["recordings"][uid].num_samples == int(sec * 16000)
    assert (tmp_path / "manifests" / "librispeech_supervisions_dev-clean-2.jsonl.gz").is_file()
    assert (tmp_path / "manifests" / "librispeech_recordings_dev-clean-2.jsonl.gz").is_file()


def test_prepare_librispeech_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        prepare_librispeech(tmp_path / "nope")
    (tmp_path / "LibriSpeech").mkdir()
    with pytest.raises(DataError, match="none of the LibriSpeech parts"):
        prepare_librispeech(tmp_path / "LibriSpeech")
    with pytest.raises(DataError, match="unknown LibriSpeech part"):
        prepare_librispeech(tmp_path / "LibriSpeech", dataset_parts=["train-clean-7"])


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An OpenSLR-like tree: <www>/31/dev-clean-2.tar.gz holding LibriSpeech/dev-clean-2/..."""
    src = tmp_path / "src"
    make_librispeech(src)
    www = tmp_path / "www"
    (www / "31").mkdir(parents=True)
    with tarfile.open(www / "31" / "dev-clean-2.tar.gz", "w:gz") as tar:
        tar.add(src / "LibriSpeech", arcname="LibriSpeech")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_then_prepare(mirror: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = mirror
    corpus = download_librispeech(tmp_path / "dl", "dev-clean-2", base_url=base_url)
    assert corpus == tmp_path / "dl" / "LibriSpeech"
    assert (corpus / "dev-clean-2" / ".completed").is_file() and (tmp_path / "dl" / "dev-clean-2.tar.gz").is_file()
    m = prepare_librispeech(corpus)
    assert {s.id for s in m["dev-clean-2"]["supervisions"]} == set(_expected())
    # Completed parts are skipped without touching the network.
    download_librispeech(tmp_path / "dl", "dev-clean-2", base_url="http://127.0.0.1:9")


def test_download_reuses_archive_in_dl_dir(mirror: tuple[str, Path], tmp_path: Path) -> None:
    _, www = mirror
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "dev-clean-2.tar.gz").write_bytes((www / "31" / "dev-clean-2.tar.gz").read_bytes())
    corpus = download_librispeech(tmp_path / "data", ["dev-clean-2"], base_url="http://127.0.0.1:9", dl_dir=cache)
    assert len(prepare_librispeech(corpus)["dev-clean-2"]["supervisions"]) == len(_expected())


def test_download_unknown_part_and_unreachable(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown LibriSpeech part"):
        download_librispeech(tmp_path, ["dev-dirty"])
    with pytest.raises(DataError, match="dev-clean-2.tar.gz"):
        download_librispeech(tmp_path, "dev-clean-2", base_url="http://127.0.0.1:9")


def test_stage_entry_points_fetch_base_parts(tmp_path: Path) -> None:
    from asrkit.data.corpora.librispeech import (
        LIBRISPEECH_BASE_PARTS,
        download_librispeech_corpus,
        prepare_librispeech_corpus,
    )

    www = tmp_path / "www"
    (www / "12").mkdir(parents=True)
    for part in LIBRISPEECH_BASE_PARTS:
        make_librispeech(tmp_path / "src" / part, part)
        with tarfile.open(www / "12" / f"{part}.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "src" / part / "LibriSpeech", arcname="LibriSpeech")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        corpus = download_librispeech_corpus(tmp_path / "dl", base_url=f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    m = prepare_librispeech_corpus(corpus, tmp_path / "manifests", num_jobs=1)
    assert sorted(m) == sorted(LIBRISPEECH_BASE_PARTS)
    assert all(len(m[p]["supervisions"]) == len(_expected()) for p in m)
