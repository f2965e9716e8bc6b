"""Safe downloads: resumable HTTP downloads with checksum verification, and tar extraction that cannot escape.

Why not lhotse's ``resumable_download``: when a partial file exists it asks for a byte range, and a server that
ignores ``Range`` (answers 200 with the whole file, as Python's ``http.server`` does) gets its whole body appended
to the partial file. Here a partial download lives in ``<dest>.part``; a 206 answer is appended, a 200 answer
restarts the file, and ``dest`` only ever appears complete and verified (atomic rename).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from asrkit.errors import DataError

__all__ = ["download_file", "file_digest", "safe_extract_tar"]

log = logging.getLogger(__name__)

_USER_AGENT = "asrkit-downloader/0.1 (+https://github.com/)"


def file_digest(path: str | Path, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file (``algorithm`` is any :mod:`hashlib` name: ``sha256``, ``md5``...).

    Example:
        >>> file_digest("an4_sphere.tar.gz")  # doctest: +SKIP
        'a0525579...'
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _check_digest(path: Path, url: str, expected_sha256: str | None, expected_md5: str | None) -> None:
    for algo, expected in (("sha256", expected_sha256), ("md5", expected_md5)):
        if expected is None:
            continue
        actual = file_digest(path, algo)
        if actual.lower() != expected.strip().lower():
            raise DataError(
                f"checksum mismatch for {url}: expected {algo} {expected}, got {actual} "
                f"(the download was deleted)",
                hint="retry; if it persists the mirror serves a different file: pass another --url or checksum",
            )


def download_file(
    url: str,
    dest: str | Path,
    *,
    expected_sha256: str | None = None,
    expected_md5: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` with a tqdm progress bar, resume support and checksum verification.

    * An existing ``dest`` is kept (and verified when a checksum is given) unless ``force=True``.
    * Bytes arrive in ``dest + ".part"``; an interrupted download resumes from there when the server honours
      ``Range`` requests, otherwise it restarts.
    * After the download the checksum(s) are verified; on mismatch the file is deleted and :class:`DataError` is
      raised, so nothing unverified is left behind. Then ``.part`` is renamed to ``dest`` atomically.

    Args:
        url: ``http://``, ``https://`` or ``file://`` URL.
        dest: the final file path (parent directories are created).
        expected_sha256: hex SHA-256 the file must have, or None.
        expected_md5: hex MD5 the file must have, or None.
        force: download again even if ``dest`` exists.
        timeout: socket timeout in seconds.
        chunk_size: read size in bytes.
        progress: show a tqdm progress bar.

    Returns:
        ``dest`` as a Path.

    Raises:
        DataError: network/HTTP error (naming the URL), unsupported scheme, or checksum mismatch.

    Example:
        >>> download_file("https://www.openslr.org/resources/31/dev-clean-2.tar.gz",
        ...               "download/dev-clean-2.tar.gz")  # doctest: +SKIP
        PosixPath('download/dev-clean-2.tar.gz')
    """
    dest = Path(dest)
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https", "file"):
        raise DataError(f"unsupported URL scheme in {url!r}", hint="use an http://, https:// or file:// URL")
    if dest.is_file() and not force:
        try:
            _check_digest(dest, url, expected_sha256, expected_md5)
        except DataError:
            log.warning("existing %s fails its checksum: downloading it again", dest)
            dest.unlink()
        else:
            log.info("%s exists, not downloading %s again", dest, url)
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if force:
        part.unlink(missing_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset and scheme != "file":
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # our partial file is already complete (or longer than the resource)
            response = None
        else:
            raise DataError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DataError(f"download of {url} failed: {e}", hint="check the network or pass another --url") from e

    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            if status != 206:
                offset = 0  # the server sent the whole resource: start over
            length = response.headers.get("Content-Length")
            total = int(length) + offset if length is not None else None
            from tqdm import tqdm

            try:
                with open(part, "ab" if offset else "wb") as f, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=dest.name, disable=not progress,
                ) as bar:
                    while chunk := response.read(chunk_size):
                        f.write(chunk)
                        bar.update(len(chunk))
            except (urllib.error.URLError, OSError) as e:
                raise DataError(f"download of {url} was interrupted: {e}",
                                hint=f"run again to resume from {part}") from e
            if total is not None and part.stat().st_size != total:
                raise DataError(f"download of {url} is incomplete: {part.stat().st_size} of {total} bytes",
                                hint=f"run again to resume from {part}")
    try:
        _check_digest(part, url, expected_sha256, expected_md5)
    except DataError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def _member_problem(member: tarfile.TarInfo, root: Path) -> str | None:
    """Why ``member`` may not be extracted under ``root`` (None when it is safe)."""
    name = member.name
    pure = PurePosixPath(name)
    if name.startswith(("/", "\\")) or pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in pure.parts or ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' in path"
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        return "path outside the destination"
    if member.issym() or member.islnk():
        link = member.linkname
        if PurePosixPath(link).is_absolute() or link.startswith("\\"):
            return f"link to absolute path {link!r}"
        base = (root / name).parent if member.issym() else root  # hard links are relative to the archive root
        resolved = (base / link).resolve()
        if resolved != root and root not in resolved.parents:
            return f"link {link!r} escapes the destination"
    elif not (member.isfile() or member.isdir()):
        return "device, fifo or other special file"
    return None


def _merge_tree(src: Path, dst: Path) -> None:
    """Move the contents of ``src`` into ``dst``: whole subtrees are renamed when ``dst`` lacks them."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
            _merge_tree(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def safe_extract_tar(archive: str | Path, dest: str | Path) -> Path:
    """Extract a (possibly compressed) tar archive into ``dest``, refusing anything that could escape it.

    Every member is checked *before* anything is written: absolute paths, ``..`` components, symbolic or hard links
    pointing outside ``dest`` and special files (devices, fifos) make the whole archive refused. The archive is
    extracted into a temporary directory inside ``dest`` and only then moved into ``dest`` (merging with existing
    directories, replacing existing files), so a corrupt or hostile archive leaves no partial directory behind.

    Args:
        archive: ``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2`` or ``.tar.xz`` file.
        dest: directory receiving the archive's top-level entries (created if needed).

    Returns:
        ``dest`` as a Path.

    Raises:
        DataError: unreadable/corrupt archive, or an unsafe member (named in the message).

    Example:
        >>> safe_extract_tar("download/an4_sphere.tar.gz", "download")  # doctest: +SKIP
        PosixPath('download')
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    # The temporary directory lives inside dest (same filesystem, so the final moves are renames; and dest is
    # known to be writable). It is removed whatever happens.
    tmp = Path(tempfile.mkdtemp(prefix=".extracting-", suffix=".partial", dir=root))
    try:
        try:
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                tmp_root = tmp.resolve()
                for m in members:
                    problem = _member_problem(m, tmp_root) or _member_problem(m, root)
                    if problem:
                        raise DataError(f"refusing to extract {archive}: member {m.name!r}: {problem}",
                                        hint="the archive is corrupt or hostile; nothing was extracted")
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                from tqdm import tqdm

                for m in tqdm(members, desc=f"extracting {archive.name}", unit="file", disable=len(members) < 100):
                    tar.extract(m, tmp, **kwargs)
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            raise DataError(f"cannot extract {archive}: {e}", hint="delete the archive and download it again") from e
        _merge_tree(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
