"""MUSAN (music, speech, noise) for noise augmentation: safe download, lhotse's manifest preparation.

Layout: ``<target_dir>/musan/{music,speech,noise}/<source>/*.wav`` (16 kHz) with ``ANNOTATIONS`` files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from asrkit.data.corpora.download import download_file, safe_extract_tar
from asrkit.errors import DataError

__all__ = ["MUSAN_URL", "download_musan", "download_musan_corpus", "prepare_musan", "prepare_musan_corpus"]

log = logging.getLogger(__name__)

MUSAN_URL = "https://www.openslr.org/resources/17/musan.tar.gz"
MUSAN_PARTS = ("music", "speech", "noise")


def download_musan(
    target_dir: str | Path,
    url: str = MUSAN_URL,
    dl_dir: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Download ``musan.tar.gz`` (~11 GB) and extract it safely to ``target_dir/musan``.

    A re-run is a no-op once ``target_dir/musan/.completed`` exists; an archive already in ``dl_dir`` (default
    ``target_dir``) is reused.

    Args:
        target_dir: where ``musan/`` is created.
        url: the archive URL (OpenSLR 17 by default; tests use ``http://127.0.0.1:<port>/...``).
        dl_dir: directory holding (or receiving) ``musan.tar.gz``.
        force: download and extract again.

    Returns:
        The corpus directory ``target_dir/musan``.

    Raises:
        DataError: download failure, corrupt/unsafe archive, or no ``musan/`` inside it.

    Example:
        >>> corpus = download_musan("download")  # doctest: +SKIP
        >>> prepare_musan(corpus, "data/manifests")  # doctest: +SKIP
    """
    target_dir = Path(target_dir)
    corpus = target_dir / "musan"
    marker = corpus / ".completed"
    if marker.is_file() and not force:
        log.info("MUSAN already extracted in %s, skipping", corpus)
        return corpus
    archive = download_file(url, (Path(dl_dir) if dl_dir is not None else target_dir) / "musan.tar.gz",
                            force=force)
    safe_extract_tar(archive, target_dir)
    if not corpus.is_dir():
        raise DataError(f"{archive} did not contain a musan/ directory")
    marker.touch()
    return corpus


def prepare_musan(
    corpus_dir: str | Path,
    output_dir: str | Path | None = None,
    parts: Sequence[str] = MUSAN_PARTS,
    use_vocals: bool = True,
) -> dict[str, dict]:
    """Lhotse manifests for MUSAN (lhotse's ``prepare_musan``): ``musan_recordings_{part}.jsonl.gz`` etc.

    Args:
        corpus_dir: the ``musan`` directory.
        output_dir: manifest directory or None.
        parts: any of ``"music"``, ``"speech"``, ``"noise"``.
        use_vocals: keep music with vocals.

    Returns:
        ``{part: {"recordings": RecordingSet[, "supervisions": SupervisionSet]}}`` (supervisions for music only).

    Raises:
        DataError: directory or part missing, or unknown part names.

    Example:
        >>> m = prepare_musan("download/musan", "data/manifests", parts=["noise"])  # doctest: +SKIP
        >>> len(m["noise"]["recordings"])  # doctest: +SKIP
        930
    """
    from lhotse.recipes.musan import prepare_musan as lhotse_prepare

    corpus_dir = Path(corpus_dir)
    parts = [parts] if isinstance(parts, str) else list(parts)
    unknown = [p for p in parts if p not in MUSAN_PARTS]
    if unknown or not parts:
        raise DataError(f"unknown MUSAN part(s) {unknown or parts}", hint=f"choose from {list(MUSAN_PARTS)}")
    missing = [p for p in parts if not (corpus_dir / p).is_dir()]
    if missing:
        raise DataError(f"MUSAN part(s) {missing} not found in {corpus_dir}",
                        hint="run download_musan / `asrkit prepare download musan` first")
    return lhotse_prepare(corpus_dir, output_dir=output_dir, parts=parts, use_vocals=use_vocals)


def download_musan_corpus(dl_dir: str | Path, url: str = MUSAN_URL, force: bool = False) -> Path:
    """Stage-0 entry point used by ``asrkit prepare download musan``: ``dl_dir/musan`` (archive reused if there).

    Example:
        >>> download_musan_corpus("download")  # doctest: +SKIP
        PosixPath('download/musan')
    """
    return download_musan(dl_dir, url=url, force=force)


def prepare_musan_corpus(corpus_dir: str | Path, output_dir: str | Path) -> dict[str, dict]:
    """Stage-1 entry point used by ``asrkit prepare manifests musan``: all three parts, music with vocals.

    Example:
        >>> prepare_musan_corpus("download/musan", "data/manifests")  # doctest: +SKIP
    """
    return prepare_musan(corpus_dir, output_dir)
