"""Lhotse Shar export/import: cuts plus their features (and optionally audio) in sequentially-read tar shards.

Shar keeps, per shard ``NNNNNN``, one ``cuts.NNNNNN.jsonl.gz`` manifest and one tar per data field
(``features.NNNNNN.tar``, ``recording.NNNNNN.tar``): training then reads large files sequentially instead of
seeking into thousands of small ones, which matters on network storage.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from asrkit.errors import DataError

if TYPE_CHECKING:
    from lhotse import CutSet
    from lhotse.cut import Cut

__all__ = ["export_shar", "load_shar"]

log = logging.getLogger(__name__)

_SHAR_FILE = re.compile(r"^[A-Za-z_]+\.\d{6}\.(jsonl\.gz|jsonl|tar)$|^[A-Za-z_]+\.(jsonl\.gz|tar)$")
AUDIO_FORMATS = ("flac", "wav", "mp3", "opus")


def _require(cut: "Cut", features: bool, audio: bool) -> "Cut":
    if features and not cut.has_features:
        raise DataError(f"cut {cut.id} has no features to export to Shar",
                        hint="run `asrkit prepare fbank` first, or export with with_features=False")
    if audio and not cut.has_recording:
        raise DataError(f"cut {cut.id} has no recording to export to Shar", hint="export with with_audio=False")
    return cut


def export_shar(
    cuts: "CutSet",
    output_dir: str | Path,
    shard_size: int = 1000,
    with_features: bool = True,
    with_audio: bool = False,
    audio_format: str = "flac",
    num_jobs: int = 1,
    overwrite: bool = False,
) -> dict[str, list[str]]:
    """Write ``cuts`` (lazy or eager) as Lhotse Shar shards into ``output_dir``.

    Features are stored lilcom-compressed (as by ``asrkit prepare fbank``); audio, when requested, in
    ``audio_format``. A directory that already holds Shar files is refused unless ``overwrite=True`` (then those
    files are deleted first), because stale shards from a bigger earlier export would be read back as data.

    Args:
        cuts: the cuts; each needs features if ``with_features`` and a recording if ``with_audio``.
        output_dir: destination directory (created).
        shard_size: cuts per shard.
        with_features: store the features field.
        with_audio: store the recording field.
        audio_format: ``flac`` (lossless, default), ``wav``, ``mp3`` or ``opus``.
        num_jobs: parallel writer processes (lhotse's ``to_shar``).
        overwrite: replace an existing export in ``output_dir``.

    Returns:
        ``{field: [shard paths]}`` including ``"cuts"``.

    Raises:
        DataError: bad arguments, an existing export without ``overwrite``, or a cut lacking a requested field.

    Example:
        >>> from lhotse import CutSet
        >>> cuts = CutSet.from_file("data/fbank/synth_cuts_train.jsonl.gz")  # doctest: +SKIP
        >>> export_shar(cuts, "data/shar/train", shard_size=500)  # doctest: +SKIP
        {'cuts': ['data/shar/train/cuts.000000.jsonl.gz', ...], 'features': [...]}
    """
    if shard_size < 1:
        raise DataError(f"export_shar: shard_size must be >= 1, got {shard_size}")
    if audio_format not in AUDIO_FORMATS:
        raise DataError(f"export_shar: unknown audio_format {audio_format!r}", hint=f"choose from {AUDIO_FORMATS}")
    output_dir = Path(output_dir)
    existing = sorted(p for p in output_dir.glob("*") if p.is_file() and _SHAR_FILE.match(p.name)) \
        if output_dir.is_dir() else []
    if existing:
        if not overwrite:
            raise DataError(f"{output_dir} already holds a Shar export ({len(existing)} files)",
                            hint="use another directory or overwrite=True (--force)")
        for p in existing:
            p.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    fields: dict[str, str] = {}
    if with_features:
        fields["features"] = "lilcom"
    if with_audio:
        fields["recording"] = audio_format
    checked = cuts.map(functools.partial(_require, features=with_features, audio=with_audio))
    paths = checked.to_shar(output_dir, fields=fields, shard_size=shard_size, warn_unused_fields=False,
                            num_jobs=num_jobs, verbose=True)
    log.info("exported Shar to %s: %d shard(s), fields %s", output_dir, len(paths.get("cuts", [])),
             ["cuts", *fields])
    return {k: [str(p) for p in v] for k, v in paths.items()}


def load_shar(
    input_dir: str | Path,
    shuffle_shards: bool = False,
    seed: int = 42,
    split_for_dataloading: bool = False,
) -> "CutSet":
    """Open a Shar export lazily: cuts (with their features/audio attached in memory) are read as iterated.

    Args:
        input_dir: a directory written by :func:`export_shar`.
        shuffle_shards: shuffle the shard order (reshuffled each epoch with ``seed + epoch``).
        seed: shard shuffling seed.
        split_for_dataloading: give each DataLoader worker / DDP rank its own subset of shards.

    Returns:
        A lazy ``CutSet``.

    Raises:
        DataError: ``input_dir`` missing or without ``cuts.*.jsonl.gz`` shards.

    Example:
        >>> cuts = load_shar("data/shar/train")  # doctest: +SKIP
        >>> next(iter(cuts)).load_features().shape  # doctest: +SKIP
        (212, 80)
    """
    from lhotse import CutSet

    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise DataError(f"Shar directory not found: {input_dir}")
    if not any(input_dir.glob("cuts.*jsonl*")):
        raise DataError(f"{input_dir} holds no Shar cut shards (cuts.NNNNNN.jsonl.gz)",
                        hint="create it with export_shar / `asrkit prepare shar`")
    return CutSet.from_shar(in_dir=input_dir, shuffle_shards=shuffle_shards, seed=seed,
                            split_for_dataloading=split_for_dataloading)
