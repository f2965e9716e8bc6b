"""LibriSpeech and Mini LibriSpeech: download with asrkit's safe downloader, prepare with lhotse's recipe.

Layout (lhotse/OpenSLR convention)::

    <target_dir>/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
    <target_dir>/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
    <target_dir>/LibriSpeech/<part>/.completed
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from asrkit.data.corpora.download import download_file, safe_extract_tar
from asrkit.errors import DataError

__all__ = [
    "LIBRISPEECH_PARTS",
    "MINI_LIBRISPEECH_PARTS",
    "download_librispeech",
    "download_librispeech_corpus",
    "prepare_librispeech",
    "prepare_librispeech_corpus",
]

log = logging.getLogger(__name__)

OPENSLR_BASE_URL = "https://www.openslr.org/resources"
LIBRISPEECH_PARTS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
                     "train-other-500")
MINI_LIBRISPEECH_PARTS = ("dev-clean-2", "train-clean-5")


def _resolve_parts(dataset_parts: str | Sequence[str]) -> list[str]:
    if dataset_parts == "librispeech":
        parts = list(LIBRISPEECH_PARTS)
    elif dataset_parts == "mini_librispeech":
        parts = list(MINI_LIBRISPEECH_PARTS)
    elif isinstance(dataset_parts, str):
        parts = [dataset_parts]
    else:
        parts = list(dataset_parts)
    valid = LIBRISPEECH_PARTS + MINI_LIBRISPEECH_PARTS
    unknown = [p for p in parts if p not in valid]
    if unknown:
        raise DataError(f"unknown LibriSpeech part(s) {unknown}",
                        hint=f"choose from 'librispeech', 'mini_librispeech' or {list(valid)}")
    return parts


def download_librispeech(
    target_dir: str | Path,
    dataset_parts: str | Sequence[str] = "mini_librispeech",
    base_url: str = OPENSLR_BASE_URL,
    dl_dir: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Download and extract LibriSpeech parts into ``target_dir/LibriSpeech``.

    Archives ``<part>.tar.gz`` are fetched from ``{base_url}/12/`` (LibriSpeech) or ``{base_url}/31/`` (Mini
    LibriSpeech). A part whose ``.completed`` marker exists is skipped; an archive already present in ``dl_dir``
    (default: ``target_dir``) is reused instead of downloaded. Extraction is safe (no path escapes, no partial
    directories).

    Args:
        target_dir: where ``LibriSpeech/`` is created.
        dataset_parts: ``"librispeech"`` (all 7 parts, ~60 GB), ``"mini_librispeech"``, one part name or a list.
        base_url: OpenSLR resources URL or a mirror (tests use ``http://127.0.0.1:<port>``).
        dl_dir: directory holding (or receiving) the ``.tar.gz`` archives, e.g. a shared download cache.
        force: download and extract again even if present.

    Returns:
        The corpus directory ``target_dir/LibriSpeech``.

    Raises:
        DataError: unknown part, download failure, corrupt/unsafe archive, or an archive without the part inside.

    Example:
        >>> corpus = download_librispeech("download", "mini_librispeech")  # doctest: +SKIP
        >>> prepare_librispeech(corpus, "data/manifests")  # doctest: +SKIP
    """
    from tqdm import tqdm

    target_dir = Path(target_dir)
    archives = Path(dl_dir) if dl_dir is not None else target_dir
    corpus = target_dir / "LibriSpeech"
    for part in tqdm(_resolve_parts(dataset_parts), desc="LibriSpeech parts", unit="part"):
        marker = corpus / part / ".completed"
        if marker.is_file() and not force:
            log.info("LibriSpeech %s already extracted, skipping", part)
            continue
        resource = "31" if part in MINI_LIBRISPEECH_PARTS else "12"
        archive = download_file(f"{base_url.rstrip('/')}/{resource}/{part}.tar.gz", archives / f"{part}.tar.gz",
                                force=force)
        safe_extract_tar(archive, target_dir)
        if not (corpus / part).is_dir():
            raise DataError(f"{archive} did not contain LibriSpeech/{part}/")
        marker.touch()
    return corpus


def prepare_librispeech(
    corpus_dir: str | Path,
    output_dir: str | Path | None = None,
    dataset_parts: str | Sequence[str] = "auto",
    num_jobs: int = 1,
) -> dict[str, dict]:
    """Lhotse manifests for the LibriSpeech parts found in ``corpus_dir`` (lhotse's ``prepare_librispeech``).

    Writes ``librispeech_recordings_{part}.jsonl.gz`` and ``librispeech_supervisions_{part}.jsonl.gz`` into
    ``output_dir`` when given (parts whose manifests are already there are read back, not redone).

    Args:
        corpus_dir: the ``LibriSpeech`` directory.
        output_dir: manifest directory or None.
        dataset_parts: ``"auto"`` (every part present), ``"mini_librispeech"``, a part name or a list.
        num_jobs: threads reading audio headers.

    Returns:
        ``{part: {"recordings": RecordingSet, "supervisions": SupervisionSet}}``.

    Raises:
        DataError: ``corpus_dir`` missing or holding none of the requested parts.

    Example:
        >>> m = prepare_librispeech("download/LibriSpeech", "data/manifests", ["dev-clean-2"])  # doctest: +SKIP
        >>> m["dev-clean-2"]["supervisions"][0].text  # doctest: +SKIP
        'AS SHE AWAITED HER GUESTS ...'
    """
    from lhotse.recipes.librispeech import prepare_librispeech as lhotse_prepare

    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise DataError(f"LibriSpeech directory not found: {corpus_dir}",
                        hint="run download_librispeech / `asrkit prepare download librispeech` first")
    if dataset_parts == "auto":
        parts = [p for p in LIBRISPEECH_PARTS + MINI_LIBRISPEECH_PARTS if (corpus_dir / p).is_dir()]
        if not parts:
            raise DataError(f"{corpus_dir} holds none of the LibriSpeech parts "
                            f"{list(LIBRISPEECH_PARTS + MINI_LIBRISPEECH_PARTS)}")
    else:
        parts = _resolve_parts(dataset_parts)
        missing = [p for p in parts if not (corpus_dir / p).is_dir()]
        if missing:
            raise DataError(f"LibriSpeech part(s) {missing} not found in {corpus_dir}")
    manifests = lhotse_prepare(corpus_dir, dataset_parts=parts, output_dir=output_dir, num_jobs=num_jobs)
    empty = [p for p in parts if p not in manifests or len(manifests[p]["supervisions"]) == 0]
    if empty:
        raise DataError(f"LibriSpeech part(s) {empty} in {corpus_dir} produced no utterances "
                        "(no *.trans.txt with matching .flac files)")
    return manifests


# Parts that every recipe needs: the evaluation sets plus the 100-hour clean training subset.
LIBRISPEECH_BASE_PARTS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100")


def download_librispeech_corpus(
    dl_dir: str | Path,
    full_libri: bool = False,
    base_url: str = OPENSLR_BASE_URL,
    force: bool = False,
) -> Path:
    """Stage-0 entry point used by ``asrkit prepare download librispeech``.

    Downloads the dev/test sets and ``train-clean-100`` into ``dl_dir`` (archives there are reused), plus
    ``train-clean-360`` and ``train-other-500`` when ``full_libri`` (960 h in all).

    Example:
        >>> download_librispeech_corpus("download", full_libri=False)  # doctest: +SKIP
        PosixPath('download/LibriSpeech')
    """
    parts = list(LIBRISPEECH_BASE_PARTS) + (["train-clean-360", "train-other-500"] if full_libri else [])
    return download_librispeech(dl_dir, parts, base_url=base_url, force=force)


def prepare_librispeech_corpus(corpus_dir: str | Path, output_dir: str | Path, num_jobs: int = 1) -> dict[str, dict]:
    """Stage-1 entry point used by ``asrkit prepare manifests librispeech``: every part found in ``corpus_dir``.

    Example:
        >>> prepare_librispeech_corpus("download/LibriSpeech", "data/manifests", num_jobs=2)  # doctest: +SKIP
    """
    return prepare_librispeech(corpus_dir, output_dir, dataset_parts="auto", num_jobs=num_jobs)
