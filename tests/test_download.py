"""Tests for asrkit.data.corpora.download against a local HTTP server (127.0.0.1, a thread in the test)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path
from typing import Iterator

import pytest

from asrkit.data.corpora.download import download_file, file_digest, safe_extract_tar
from asrkit.errors import DataError


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files; honours 'Range: bytes=N-' when the class attribute says so; counts requests."""

    honour_range = False
    requests: list[str] = []

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        type(self).requests.append(self.path)
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not (self.honour_range and rng and path.is_file()):
            return super().do_GET()
        data = path.read_bytes()
        start = int(rng.split("=")[1].split("-")[0])
        if start >= len(data):
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    _RangeHandler.requests = []
    _RangeHandler.honour_range = False
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def _tar(path: Path, members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return path


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_download_success_and_skip(server: tuple[str, Path], tmp_path: Path) -> None:
    url, www = server
    payload = bytes(range(256)) * 5000
    (www / "f.bin").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    dest = download_file(f"{url}/f.bin", tmp_path / "dl" / "f.bin", expected_sha256=sha, progress=False)
    assert dest.read_bytes() == payload and not (tmp_path / "dl" / "f.bin.part").exists()
    assert file_digest(dest, "md5") == hashlib.md5(payload).hexdigest()
    n = len(_RangeHandler.requests)
    download_file(f"{url}/f.bin", dest, expected_sha256=sha, progress=False)  # present and valid: no request
    assert len(_RangeHandler.requests) == n


def test_download_checksum_mismatch_leaves_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    url, www = server
    (www / "f.bin").write_bytes(b"hello")
    dl = tmp_path / "dl"
    with pytest.raises(DataError, match="checksum mismatch.*f.bin"):
        download_file(f"{url}/f.bin", dl / "f.bin", expected_md5="0" * 32, progress=False)
    assert _listing(dl) == []


def test_download_resumes_with_range(server: tuple[str, Path], tmp_path: Path) -> None:
    url, www = server
    payload = b"0123456789" * 1000
    (www / "f.bin").write_bytes(payload)
    _RangeHandler.honour_range = True
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(payload[:4000])  # an interrupted earlier download
    download_file(f"{url}/f.bin", dest, expected_sha256=hashlib.sha256(payload).hexdigest(), progress=False)
    assert dest.read_bytes() == payload


def test_download_restarts_when_server_ignores_range(server: tuple[str, Path], tmp_path: Path) -> None:
    url, www = server
    payload = b"abcdefghij" * 1000
    (www / "f.bin").write_bytes(payload)
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"garbage-prefix")
    download_file(f"{url}/f.bin", dest, progress=False)
    assert dest.read_bytes() == payload  # not "garbage-prefix" + payload


def test_download_http_error_names_url(server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(DataError, match=r"missing\.bin.*404"):
        download_file(f"{url}/missing.bin", tmp_path / "m.bin", progress=False)
    with pytest.raises(DataError, match="unsupported URL scheme"):
        download_file("ftp://example.org/x", tmp_path / "x")


def test_safe_extract_merges_and_succeeds(tmp_path: Path) -> None:
    a = _tar(tmp_path / "a.tar.gz", {"top/x/1.txt": b"one", "top/README": b"r"})
    b = _tar(tmp_path / "b.tar.gz", {"top/y/2.txt": b"two", "top/README": b"r2"})
    dest = tmp_path / "out"
    safe_extract_tar(a, dest)
    safe_extract_tar(b, dest)
    assert (dest / "top/x/1.txt").read_bytes() == b"one" and (dest / "top/y/2.txt").read_bytes() == b"two"
    assert (dest / "top/README").read_bytes() == b"r2"
    assert _listing(dest) == ["top", "top/README", "top/x", "top/x/1.txt", "top/y", "top/y/2.txt"]


def _symlink(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize(
    "members,extra,why",
    [
        ({"ok/a.txt": b"a", "../evil.txt": b"x"}, [], "'..'"),
        ({"ok/a.txt": b"a", "ok/../../evil.txt": b"x"}, [], "'..'"),
        ({"ok/a.txt": b"a", "/tmp/asrkit-evil-abs.txt": b"x"}, [], "absolute"),
        ({"ok/a.txt": b"a"}, [_symlink("ok/link", "../../outside")], "escapes"),
        ({"ok/a.txt": b"a"}, [_symlink("ok/link", "/etc/passwd")], "absolute"),
        ({"ok/a.txt": b"a"}, [_symlink("ok/hard", "../outside", hard=True)], "escapes"),
    ],
)
def test_safe_extract_refuses_hostile_archives(tmp_path: Path, members: dict, extra: list, why: str) -> None:
    archive = _tar(tmp_path / "evil.tar.gz", members, extra)
    dest = tmp_path / "a" / "b" / "dest"
    before = _listing(tmp_path)
    with pytest.raises(DataError, match=why):
        safe_extract_tar(archive, dest)
    # Nothing written inside dest (not even the harmless member) and nothing outside it.
    assert _listing(dest) == []
    assert set(_listing(tmp_path)) - set(before) <= {"a", "a/b", "a/b/dest"}
    assert not Path("/tmp/asrkit-evil-abs.txt").exists()


def test_safe_extract_corrupt_archive(tmp_path: Path) -> None:
    good = _tar(tmp_path / "g.tar.gz", {f"d/{i}.txt": bytes(1000) for i in range(50)})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="cut.tar.gz"):
        safe_extract_tar(cut, dest)
    assert _listing(dest) == []  # no partial directory
