"""Stage "fbank": lhotse manifests -> CutSets with 80-dim fbank features stored with lilcom.

Input: ``{manifest_dir}/{prefix}_recordings_{split}.jsonl.gz`` and ``..._supervisions_{split}.jsonl.gz``.
Output: ``{output_dir}/{prefix}_cuts_{split}.jsonl.gz`` with features in ``{output_dir}/{prefix}_feats_{split}``.
Speed perturbation (0.9x, 1.1x copies of each training cut, icefall's recipe) is applied before feature
extraction so the perturbed copies get precomputed features too. Finished splits are skipped on re-runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from asrkit.data.features import fbank_extractor
from asrkit.errors import DataError

log = logging.getLogger(__name__)


def cuts_path(output_dir: Path, prefix: str, split: str) -> Path:
    """Where the fbank stage writes the cuts of ``split``."""
    return Path(output_dir) / f"{prefix}_cuts_{split}.jsonl.gz"


def compute_fbank_for_splits(
    manifest_dir: Path,
    prefix: str,
    splits: Sequence[str],
    output_dir: Path,
    speed_perturb_splits: Sequence[str] = (),
    num_jobs: int = 2,
    force: bool = False,
    window: float | None = None,
) -> dict[str, Path]:
    """Compute and store fbank features for each split; returns {split: cuts path}.

    A split without a supervision manifest (e.g. MUSAN noise) needs ``window``: its recordings are cut into
    windows of that many seconds (the last, shorter piece of each recording is kept when >= half a window),
    to be mixed into training cuts as noise.

    Example:
        >>> compute_fbank_for_splits(Path("data/manifests"), "synth", ["train", "dev", "test"],
        ...                          Path("data/fbank"), speed_perturb_splits=["train"])
    """
    from lhotse import CutSet, RecordingSet, SupervisionSet

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for split in splits:
        out = cuts_path(output_dir, prefix, split)
        results[split] = out
        if out.exists() and not force:
            log.info("fbank for %s/%s exists (%s): skipped", prefix, split, out)
            continue
        rec_path = Path(manifest_dir) / f"{prefix}_recordings_{split}.jsonl.gz"
        sup_path = Path(manifest_dir) / f"{prefix}_supervisions_{split}.jsonl.gz"
        if not rec_path.exists():
            raise DataError(f"manifest {rec_path} does not exist", hint="run the `asrkit prepare manifests` stage")
        recordings = RecordingSet.from_file(rec_path)
        if sup_path.exists():
            supervisions = SupervisionSet.from_file(sup_path)
            cuts = (
                CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
                .trim_to_supervisions(keep_overlapping=False)
                .to_eager()
            )
        elif window:
            cuts = (
                CutSet.from_manifests(recordings=recordings)
                .cut_into_windows(window)
                .filter(lambda c: c.duration >= window / 2)
                .to_eager()
            )
        else:
            raise DataError(f"manifest {sup_path} does not exist",
                            hint="run `asrkit prepare manifests`, or pass --window for recordings without "
                                 "transcripts (noise corpora such as MUSAN)")
        if split in speed_perturb_splits:
            cuts = cuts + cuts.perturb_speed(0.9) + cuts.perturb_speed(1.1)
        log.info("computing fbank for %s/%s (%d cuts, %d jobs)", prefix, split, len(cuts), num_jobs)
        cuts = _extract_in_parallel(cuts, output_dir / f"{prefix}_feats_{split}", num_jobs, f"fbank {split}")
        tmp = out.with_name(out.name + ".tmp.jsonl.gz")
        cuts.to_file(tmp)
        tmp.rename(out)
        log.info("wrote %s", out)
    return results


def _extract_chunk(args: tuple) -> list:
    """Worker: compute + store features of one chunk of cuts into its own lilcom archive."""
    import torch
    from lhotse import LilcomChunkyWriter

    cuts, storage_path = args
    # One intra-op thread per process: fbank on short utterances is 10x slower when threads oversubscribe.
    torch.set_num_threads(1)
    extractor = fbank_extractor()
    with LilcomChunkyWriter(storage_path) as writer:
        return [cut.compute_and_store_features(extractor, writer) for cut in cuts]


def _extract_in_parallel(cuts, storage_dir: Path, num_jobs: int, desc: str):
    """Split ``cuts`` into ``num_jobs`` chunks processed by separate single-threaded processes."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from lhotse import CutSet
    from tqdm import tqdm

    storage_dir.mkdir(parents=True, exist_ok=True)
    num_chunks = max(1, min(len(cuts), num_jobs * 4))
    chunks = cuts.split(num_chunks)
    jobs = [(list(chunk), storage_dir / f"feats-{i}.lca") for i, chunk in enumerate(chunks)]
    done = []
    if num_jobs <= 1:
        for job in tqdm(jobs, desc=desc, unit="chunk"):
            done.extend(_extract_chunk(job))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(num_jobs, mp_context=ctx) as pool:
            for result in tqdm(pool.map(_extract_chunk, jobs), total=len(jobs), desc=desc, unit="chunk"):
                done.extend(result)
    return CutSet.from_cuts(done)
