"""CMU AN4 ("alphanumeric"): ~50 minutes of people spelling names, addresses and digits (948 train / 130 test).

Layout of the extracted ``an4_sphere.tar.gz``::

    an4/etc/an4_train.transcription            "<s> RUBOUT G M E F THREE NINE </s> (an251-fash-b)"
    an4/etc/an4_test.transcription
    an4/wav/an4_clstk/<spk>/<fileid>.sph       train, 16 kHz NIST SPHERE (uncompressed 16-bit PCM)
    an4/wav/an4test_clstk/<spk>/<fileid>.sph   test

SPHERE files are read with libsndfile (``soundfile``), never with sph2pipe; call
:func:`asrkit.data.audio.use_soundfile_backend` in any process where lhotse loads them (``prepare_an4`` does it).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from asrkit.data.corpora.download import download_file, file_digest, safe_extract_tar
from asrkit.errors import DataError

__all__ = ["AN4_URLS", "download_an4", "prepare_an4", "parse_an4_transcription"]

log = logging.getLogger(__name__)

# The public mirror used by NVIDIA NeMo's AN4 tutorial, then CMU's original location.
AN4_URLS = (
    "https://dldata-public.s3.us-east-2.amazonaws.com/an4_sphere.tar.gz",
    "http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz",
)
# SHA-256 of an4_sphere.tar.gz as listed by a third-party project; not verified here, so a mismatch only warns.
AN4_SHA256_REPORTED = "a0525579493735d32b60fb6fa5975dd0eaacde087b0a4eeb7f13b7ef33077b12"
AN4_SAMPLE_RATE = 16000
_SPLITS = {"train": ("an4_train.transcription", "an4_clstk"), "test": ("an4_test.transcription", "an4test_clstk")}
_LINE = re.compile(r"^\s*(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()\s]+)\)\s*$")
_VALID_TEXT = re.compile(r"^[A-Z' ]+$")


def download_an4(
    target_dir: str | Path,
    url: str | None = None,
    expected_sha256: str | None = None,
    force: bool = False,
) -> Path:
    """Download ``an4_sphere.tar.gz`` into ``target_dir`` and extract it safely to ``target_dir/an4``.

    Tries ``url`` if given, else the NeMo tutorial mirror and then CMU's original URL. The archive is kept (a
    re-run reuses it); ``target_dir/an4/.completed`` marks a finished extraction and makes a re-run a no-op.

    Args:
        target_dir: download directory, e.g. ``download``.
        url: a specific URL (a mirror, or ``file://`` for a local copy).
        expected_sha256: verify the archive against this digest (mismatch: error, archive deleted).
        force: download and extract again.

    Returns:
        The corpus directory ``target_dir/an4``.

    Raises:
        DataError: every URL failed, checksum mismatch, unsafe/corrupt archive, or unexpected archive layout.

    Example:
        >>> corpus = download_an4("download")  # doctest: +SKIP
        >>> manifests = prepare_an4(corpus, "data/manifests")  # doctest: +SKIP
    """
    target_dir = Path(target_dir)
    corpus = target_dir / "an4"
    marker = corpus / ".completed"
    if marker.is_file() and not force:
        log.info("AN4 already extracted in %s, skipping", corpus)
        return corpus
    archive = target_dir / "an4_sphere.tar.gz"
    errors = []
    for candidate in ([url] if url else list(AN4_URLS)):
        try:
            download_file(candidate, archive, expected_sha256=expected_sha256, force=force)
            break
        except DataError as e:
            if "checksum mismatch" in str(e):
                raise
            log.warning("AN4 download from %s failed: %s", candidate, e)
            errors.append(str(e))
    else:
        raise DataError("could not download AN4: " + "; ".join(errors),
                        hint="download an4_sphere.tar.gz by hand into " f"{target_dir} and run again")
    if expected_sha256 is None:
        digest = file_digest(archive)
        if digest != AN4_SHA256_REPORTED:
            log.warning("%s has sha256 %s, not the %s reported for the NeMo mirror; continuing", archive, digest,
                        AN4_SHA256_REPORTED)
    safe_extract_tar(archive, target_dir)
    for split, (trans, _) in _SPLITS.items():
        if not (corpus / "etc" / trans).is_file():
            raise DataError(f"{archive} does not look like AN4: {corpus / 'etc' / trans} is missing")
    marker.touch()
    return corpus


def parse_an4_transcription(path: str | Path) -> list[tuple[str, str]]:
    """Parse an AN4 transcription file into ``(file_id, text)`` pairs.

    Lines look like ``<s> ENTER FIVE SIX </s> (an251-fash-b)``, with or without the ``<s>``/``</s>`` tags. Blank
    lines are ignored. Text is upper-cased with whitespace collapsed; character validation is left to the caller.

    Raises:
        DataError: a non-blank line without a ``(file_id)`` (file and line number named).

    Example:
        >>> parse_an4_transcription("an4/etc/an4_test.transcription")[0]  # doctest: +SKIP
        ('cen1-fcaw-b', 'ENTER FIVE SIX')
    """
    pairs = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = _LINE.match(line)
            if m is None:
                raise DataError(f"{path}:{lineno}: not an AN4 transcription line "
                                f"('<s> TEXT </s> (fileid)' expected): {line.strip()[:80]!r}")
            pairs.append((m["id"], " ".join(m["text"].upper().split())))
    return pairs


def _speaker_of(file_id: str) -> str | None:
    """``an251-fash-b`` -> ``fash``: the part between the first and the last ``-``."""
    first, last = file_id.find("-"), file_id.rfind("-")
    if first < 0 or last <= first + 1:
        return None
    return file_id[first + 1:last]


def prepare_an4(
    corpus_dir: str | Path,
    output_dir: str | Path | None = None,
) -> dict[str, dict]:
    """Build lhotse manifests for AN4's ``train`` and ``test`` splits.

    Utterances with characters outside ``A-Z``, ``'`` and space, an unparsable file id, a missing or unreadable
    audio file, or a sample rate other than 16 kHz are skipped; each is logged (naming the utterance) and a
    per-split summary of the counts is logged at the end.

    Args:
        corpus_dir: the extracted ``an4`` directory (or its parent).
        output_dir: if given, writes ``an4_recordings_{split}.jsonl.gz`` and ``an4_supervisions_{split}.jsonl.gz``.

    Returns:
        ``{"train"|"test": {"recordings": RecordingSet, "supervisions": SupervisionSet}}``.

    Raises:
        DataError: the directory or a transcription file is missing, or a split has no usable utterance.

    Example:
        >>> m = prepare_an4("download/an4", "data/manifests")  # doctest: +SKIP
        >>> len(m["train"]["supervisions"]), len(m["test"]["supervisions"])  # doctest: +SKIP
        (948, 130)
    """
    import soundfile as sf
    from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.qa import validate_recordings_and_supervisions

    from asrkit.data.audio import use_soundfile_backend

    corpus_dir = Path(corpus_dir)
    if not (corpus_dir / "etc").is_dir() and (corpus_dir / "an4" / "etc").is_dir():
        corpus_dir = corpus_dir / "an4"
    if not (corpus_dir / "etc").is_dir():
        raise DataError(f"{corpus_dir} is not an AN4 corpus directory (no etc/ inside)",
                        hint="pass the extracted 'an4' directory, e.g. download/an4")
    use_soundfile_backend()
    manifests: dict[str, dict] = {}
    for split, (trans_name, wav_dir) in _SPLITS.items():
        trans = corpus_dir / "etc" / trans_name
        if not trans.is_file():
            raise DataError(f"AN4 transcription file is missing: {trans}")
        skipped: Counter[str] = Counter()
        recordings, supervisions = [], []
        seen: set[str] = set()
        for file_id, text in parse_an4_transcription(trans):
            speaker = _speaker_of(file_id)
            if speaker is None:
                log.warning("AN4 %s: skipping %s: cannot find the speaker in the file id", split, file_id)
                skipped["bad file id"] += 1
                continue
            if file_id in seen:
                log.warning("AN4 %s: skipping %s: duplicate utterance id", split, file_id)
                skipped["duplicate id"] += 1
                continue
            if not text or not _VALID_TEXT.match(text):
                bad = sorted(set(re.sub(r"[A-Z' ]", "", text))) if text else ["<empty>"]
                log.warning("AN4 %s: skipping %s: unknown characters %s in %r", split, file_id, bad, text)
                skipped["unknown characters"] += 1
                continue
            audio = corpus_dir / "wav" / wav_dir / speaker / f"{file_id}.sph"
            if not audio.is_file():
                log.warning("AN4 %s: skipping %s: audio file missing: %s", split, file_id, audio)
                skipped["missing audio"] += 1
                continue
            try:
                info = sf.info(str(audio))
            except (sf.LibsndfileError, RuntimeError) as e:
                log.warning("AN4 %s: skipping %s: unreadable audio %s: %s", split, file_id, audio, e)
                skipped["unreadable audio"] += 1
                continue
            if info.samplerate != AN4_SAMPLE_RATE:
                log.warning("AN4 %s: skipping %s: sample rate %d Hz, expected %d Hz (%s)", split, file_id,
                            info.samplerate, AN4_SAMPLE_RATE, audio)
                skipped["sample rate"] += 1
                continue
            if info.frames == 0:
                log.warning("AN4 %s: skipping %s: no samples in %s", split, file_id, audio)
                skipped["unreadable audio"] += 1
                continue
            seen.add(file_id)
            rec = Recording(
                id=file_id,
                sources=[AudioSource(type="file", channels=list(range(info.channels)), source=str(audio))],
                sampling_rate=info.samplerate, num_samples=info.frames, duration=info.frames / info.samplerate,
            )
            recordings.append(rec)
            supervisions.append(SupervisionSegment(
                id=file_id, recording_id=file_id, start=0.0, duration=rec.duration, channel=0, text=text,
                speaker=speaker, language="English"))
        total = len(recordings) + sum(skipped.values())
        if skipped:
            log.warning("AN4 %s: kept %d of %d utterances; skipped %s", split, len(recordings), total,
                        ", ".join(f"{n} ({why})" for why, n in sorted(skipped.items())))
        else:
            log.info("AN4 %s: %d utterances", split, len(recordings))
        if not recordings:
            raise DataError(f"AN4 {split}: no usable utterance in {trans} (skipped: {dict(skipped)})")
        rs, ss = RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)
        validate_recordings_and_supervisions(rs, ss)
        if output_dir is not None:
            out = Path(output_dir)
            out.mkdir(parents=True, exist_ok=True)
            rs.to_file(out / f"an4_recordings_{split}.jsonl.gz")
            ss.to_file(out / f"an4_supervisions_{split}.jsonl.gz")
        manifests[split] = {"recordings": rs, "supervisions": ss}
    return manifests
