"""From a lhotse CutSet to typed training batches.

Pieces, each usable alone:
- :func:`filter_cuts` drops unusable utterances (too short/long, empty or unknown-character transcripts,
  more tokens than encoder frames) and logs a count per reason, naming the first few utterances.
- :class:`AsrDataset` turns a CutSet chosen by a sampler into a :class:`Batch` (features padded with
  sherpa-onnx's padding value, token ids, texts, cut ids), optionally augmented: acoustic effects on the waveform
  (:mod:`asrkit.data.acoustic`; the fbank of an affected utterance is recomputed), MUSAN mixing, mel warping,
  SpecAugment.
- :func:`make_sampler` / :func:`make_loader` build the (DDP-aware) DynamicBucketingSampler and DataLoader;
  :class:`SkipFirstBatches` resumes mid-epoch exactly by skipping already-seen batches at the sampler level,
  without loading their features.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from asrkit.config import DataConfig
from asrkit.data.features import SAMPLE_RATE, compute_fbank, pad_features
from asrkit.data.tokenizer import Tokenizer
from asrkit.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One batch of utterances.

    Attributes:
        features: (B, T, F) float32, padded with ``FEATURE_PADDING_VALUE``.
        feature_lens: (B,) int64 number of valid frames.
        tokens: B lists of token ids (no blank).
        texts: B reference transcripts.
        cut_ids: B cut ids (to name utterances in logs and reports).
    """

    features: torch.Tensor
    feature_lens: torch.Tensor
    tokens: list[list[int]]
    texts: list[str]
    cut_ids: list[str]

    def padded_tokens(self, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens as a (B, U_max) int64 tensor padded with ``pad_id``, and their (B,) lengths."""
        lens = torch.tensor([len(t) for t in self.tokens], dtype=torch.int64)
        y = torch.full((len(self.tokens), max(1, int(lens.max()))), pad_id, dtype=torch.int64)
        for i, t in enumerate(self.tokens):
            y[i, : len(t)] = torch.tensor(t, dtype=torch.int64)
        return y, lens

    @property
    def num_frames(self) -> int:
        return int(self.feature_lens.sum())


def load_cuts(path: str | Path):
    """Open a lhotse CutSet manifest (lazily), or a Lhotse Shar directory (streamed), with a clear error when it
    is missing."""
    from lhotse import CutSet

    path = Path(path)
    if path.is_dir():
        from asrkit.data.shar import load_shar

        return load_shar(path)
    if not path.exists():
        raise DataError(f"cut manifest {path} does not exist", hint="run the `asrkit prepare fbank` stage first")
    return CutSet.from_jsonl_lazy(path) if str(path).endswith((".jsonl", ".jsonl.gz")) else CutSet.from_file(path)


def cut_text(cut) -> str:
    """The transcript of a single-supervision cut ('' when it has none)."""
    return " ".join((s.text or "").strip() for s in cut.supervisions).strip()


def cut_problem(
    cut, tokenizer: Tokenizer, encoder_frames: Callable[[int], int], min_duration: float, max_duration: float
) -> Optional[str]:
    """Why the transducer cannot learn from ``cut`` (a short reason), or None when it is usable."""
    text = cut_text(cut)
    if cut.duration < min_duration:
        return f"shorter than {min_duration} s"
    if cut.duration > max_duration:
        return f"longer than {max_duration} s"
    if not text:
        return "empty transcript"
    if tokenizer.find_unknown(text):
        return "characters unknown to the tokenizer"
    num_tokens = len(tokenizer.encode([text])[0])
    num_frames = cut.num_frames if cut.has_features else int(round(cut.duration * 100))
    if encoder_frames(num_frames) < num_tokens:
        return "more tokens than encoder frames"
    return None


def filter_cuts(
    cuts,
    tokenizer: Tokenizer,
    encoder_frames: Callable[[int], int],
    min_duration: float = 0.3,
    max_duration: float = 20.0,
    name: str = "train",
):
    """Drop utterances the transducer cannot learn from (:func:`cut_problem`); log one counted line per reason.

    Args:
        cuts: lhotse CutSet (eager; it is iterated once).
        tokenizer: to count tokens and spot characters it does not know.
        encoder_frames: maps a number of feature frames to encoder output frames.
        min_duration, max_duration: bounds in seconds.

    Returns:
        (kept CutSet, Counter of reasons).
    """
    from lhotse import CutSet

    kept, reasons, examples = [], Counter(), {}
    for cut in cuts:
        reason = cut_problem(cut, tokenizer, encoder_frames, min_duration, max_duration)
        if reason is None:
            kept.append(cut)
        else:
            reasons[reason] += 1
            examples.setdefault(reason, []).append(cut.id)
    for reason, count in reasons.items():
        shown = ", ".join(examples[reason][:3])
        log.warning("%s: dropped %d utterance(s): %s (e.g. %s)", name, count, reason, shown)
    if not kept:
        raise DataError(f"{name}: no usable utterances left after filtering ({dict(reasons)})")
    log.info("%s: kept %d utterance(s), dropped %d", name, len(kept), sum(reasons.values()))
    return CutSet.from_cuts(kept), reasons


class LazyCutFilter:
    """Picklable predicate for streaming (lazy) cut sets such as Lhotse Shar: the same checks as
    :func:`filter_cuts`, applied while the data streams; each dropped utterance is logged with its reason and
    counted (the counts are per process)."""

    def __init__(self, tokenizer: Tokenizer, encoder_frames: Callable[[int], int], min_duration: float,
                 max_duration: float, name: str = "train") -> None:
        self.tokenizer, self.encoder_frames = tokenizer, encoder_frames
        self.min_duration, self.max_duration, self.name = min_duration, max_duration, name
        self.reasons: Counter = Counter()

    def __call__(self, cut) -> bool:
        reason = cut_problem(cut, self.tokenizer, self.encoder_frames, self.min_duration, self.max_duration)
        if reason is not None:
            self.reasons[reason] += 1
            log.warning("%s: dropped %s: %s (%d so far for this reason)", self.name, cut.id, reason,
                        self.reasons[reason])
        return reason is None


def load_cut_features(cut) -> torch.Tensor:
    """(T, F) features of a cut: precomputed when stored, else computed from its audio.

    Raises:
        DataError: naming the cut and its file when features/audio cannot be read.
    """
    if cut.has_features:
        return _reading(cut, lambda: torch.from_numpy(np.asarray(cut.load_features(), dtype=np.float32)))
    return compute_fbank(load_cut_audio(cut), SAMPLE_RATE)


def load_cut_audio(cut) -> np.ndarray:
    """(N,) float32 samples of a cut at 16 kHz (resampled when stored at another rate).

    Raises:
        DataError: naming the cut and its file when the audio cannot be read.
    """
    from asrkit.data.audio import resample

    samples = _reading(cut, lambda: np.asarray(cut.load_audio(), dtype=np.float32).reshape(-1))
    return samples if cut.sampling_rate == SAMPLE_RATE else resample(samples, cut.sampling_rate, SAMPLE_RATE)


def _reading(cut, read: Callable[[], object]):
    """``read()``, with any failure turned into a DataError that names the cut and its file."""
    try:
        return read()
    except DataError:
        raise
    except Exception as exc:
        source = getattr(getattr(cut, "features", None), "storage_path", None) or _audio_source(cut)
        raise DataError(f"utterance {cut.id}: cannot read {source}: {_first_cause(exc)}") from None


def _first_cause(exc: BaseException) -> str:
    """One line saying what is wrong with a failed read.

    lhotse reports it as several lines (one per audio backend tried, then the call chain with whole manifests):
    the first backend's own message is the cause. With a single backend lhotse re-raises the error with its type
    rebuilt from a string, which soundfile's error type does not survive (it cannot even print itself, and the
    next wrapper's attempt raises a TypeError): then the root of the exception chain says what happened.
    """
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    messages = []
    for link in chain:
        try:
            lines = str(link).strip().splitlines()
        except Exception:  # e.g. soundfile.LibsndfileError rebuilt by lhotse without its error code
            continue
        for line in lines:
            if line.startswith("Exception #0"):
                return line.rsplit("'>: ", 1)[-1]
        if lines:
            messages.append(lines[0])
    return messages[-1] if messages else type(exc).__name__


def _audio_source(cut) -> str:
    try:
        return ", ".join(s.source for s in cut.recording.sources)
    except Exception:
        return "<unknown source>"


class AsrDataset(torch.utils.data.Dataset):
    """Map-style dataset: a CutSet (one sampler batch) -> :class:`Batch`.

    Args:
        tokenizer: text -> token ids.
        augment: feature augmentation applied to the padded batch, training only (see
            :func:`asrkit.data.augment.build_feature_augment`: mel warping, SpecAugment).
        cut_transforms: lhotse cut transforms (e.g. ``CutMix`` with MUSAN) applied before loading.
        skip_bad_audio: drop utterances whose audio/features cannot be read (each logged with its file and
            counted) instead of raising :class:`DataError`. A batch left empty is returned as ``None``.
        acoustic: waveform augmentation (:class:`asrkit.data.acoustic.AcousticAugment`), training only. An
            utterance it gives any effect is loaded as audio, augmented (babble from the batch's other
            utterances) and its fbank computed here; the others keep their stored features.
    """

    def __init__(self, tokenizer: Tokenizer, augment=None, cut_transforms: Optional[list] = None,
                 skip_bad_audio: bool = False, acoustic=None) -> None:
        self.tokenizer = tokenizer
        self.augment = augment
        self.cut_transforms = cut_transforms or []
        self.skip_bad_audio = skip_bad_audio
        self.acoustic = acoustic
        self.skipped: list[str] = []  # one line per dropped utterance: its id, file and what is wrong

    def _features(self, cut, batch: list, audio: dict) -> torch.Tensor:
        """(T, F) features of ``cut``, through the acoustic augmentation when it draws an effect for it.
        ``audio`` caches the batch's loaded waveforms (by cut id) for babble."""
        plan = self.acoustic.plan(cut.id) if self.acoustic is not None else None
        if plan is None or not plan.effects:
            return load_cut_features(cut)

        def waveform(c) -> np.ndarray:
            if c.id not in audio:
                audio[c.id] = load_cut_audio(c)
            return audio[c.id]

        others = [c for c in batch if c.id != cut.id]

        def babble_source(rng: np.random.Generator, k: int) -> list[np.ndarray]:
            picks = rng.permutation(len(others))[:k] if others else []
            return [waveform(others[i]) for i in picks]

        return compute_fbank(self.acoustic.apply(waveform(cut), plan, babble_source), SAMPLE_RATE)

    def __getitem__(self, cuts) -> Optional[Batch]:
        cuts = cuts.sort_by_duration(ascending=False)
        for transform in self.cut_transforms:
            cuts = transform(cuts)
        kept, feats, audio = [], [], {}
        batch = list(cuts)
        for cut in batch:
            try:
                feats.append(self._features(cut, batch, audio))
            except DataError as exc:
                if not self.skip_bad_audio:
                    raise
                self.skipped.append(str(exc))
                log.warning("skipped (%d so far in this process): %s", len(self.skipped), exc)
                continue
            kept.append(cut)
        if not kept:
            return None
        cuts = kept
        x, x_lens = pad_features(feats)
        if self.augment is not None:
            segments = torch.stack(
                [torch.arange(len(feats)), torch.zeros(len(feats), dtype=torch.int64), x_lens], dim=1
            ).to(torch.int32)
            x = self.augment(x, supervision_segments=segments)
        texts = [cut_text(c) for c in cuts]
        return Batch(x, x_lens, self.tokenizer.encode(texts), texts, [c.id for c in cuts])


def make_sampler(cuts, cfg: DataConfig, train: bool, seed: int, world_size: int = 1, rank: int = 0):
    """DynamicBucketingSampler partitioning batches across ``world_size`` ranks."""
    import warnings

    from lhotse.dataset import DynamicBucketingSampler

    # Our cut sets are eager (they were filtered in memory); lhotse warns about that on every epoch.
    warnings.filterwarnings("ignore", message="You are using DynamicBucketingSampler with an eagerly")
    try:
        num_buckets = max(1, min(cfg.num_buckets, len(cuts)))  # lhotse refuses more buckets than cuts
    except TypeError:  # a lazy cut set has no length
        num_buckets = cfg.num_buckets
    return DynamicBucketingSampler(
        cuts,
        max_duration=cfg.max_duration,
        num_buckets=num_buckets,
        shuffle=train and cfg.shuffle,
        drop_last=False,  # lhotse already gives every rank the same number of batches
        world_size=world_size,
        rank=rank,
        seed=seed,
        buffer_size=20000,
    )


class SkipFirstBatches(torch.utils.data.Sampler):
    """Wraps a lhotse sampler and skips its first ``num_skip`` batches of the current epoch.

    Used to resume exactly mid-epoch: the skipped batches are drawn from the sampler (cheap metadata) but
    their features are never loaded.
    """

    def __init__(self, sampler, num_skip: int = 0) -> None:
        self.sampler = sampler
        self.num_skip = num_skip

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator:
        for i, batch in enumerate(self.sampler):
            if i >= self.num_skip:
                yield batch
        self.num_skip = 0

    def __len__(self):  # pragma: no cover - lhotse samplers have no length
        raise TypeError("lhotse samplers have no length")


def make_loader(dataset: AsrDataset, sampler, num_workers: int = 0):
    """A DataLoader yielding whole :class:`Batch` objects chosen by ``sampler``."""
    return torch.utils.data.DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=False,
        collate_fn=None,
        # A private generator: creating an iterator must not draw from the global torch RNG, or a run resumed
        # mid-epoch would see a different random stream (dropout, SpecAugment) than an uninterrupted one.
        generator=torch.Generator().manual_seed(0),
    )
