"""Benchmark: training throughput (audio seconds per second) of a recipe on real cuts, 1..N processes.

Each process runs the real :class:`~asrkit.training.loop.Trainer` step (forward, pruned loss, backward,
optimizer) on the batches its sampler gives it; ``warmup`` steps are excluded from the timing. Throughput is
the audio of all ranks' timed batches divided by the wall time of rank 0. A corpus with fewer batches than
``warmup + steps`` is read again (the next epoch's shuffle). On a GPU the clock stops after a device
synchronisation, and the result also gives rank 0's peak GPU memory over the timed steps; every result gives
rank 0's peak resident memory (RSS), which is the process's whole life.

Two options make the figures describe a real recipe's conditions:

* ``shape`` (:class:`BatchShape`): *LibriSpeech-shaped* batches synthesised from any small corpus.  The
  sampler's utterances are joined end to end (features and token sequences concatenated, the corpus repeated
  as often as needed) into utterances of at least ``utt_seconds`` (LibriSpeech's training utterances average
  ~12 s), and ``batch_seconds / utt_seconds`` of them make a batch (icefall's recipes use ~1000 s of audio
  per batch on a 32 GB GPU).
* ``precision``: ``fp32``, ``fp16`` (autocast + grad scaler; CUDA only) or ``bf16`` (autocast; CPU or CUDA).
  :func:`bench_train_precisions` measures several side by side, each in a fresh process so that its peak
  memory is its own.
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from asrkit.errors import ConfigError

#: Precisions ``bench train --precision`` accepts.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")

_FRAMES_PER_SECOND = 100.0  # 10 ms fbank frames


@dataclass(frozen=True)
class BatchShape:
    """Synthesised batches: utterances of >= ``utt_seconds`` joined from the corpus, ``batch_seconds`` each."""

    utt_seconds: float = 12.0
    batch_seconds: float = 1000.0

    @property
    def utterances_per_batch(self) -> int:
        return max(1, round(self.batch_seconds / self.utt_seconds))

    def check(self) -> None:
        """Raise :class:`ConfigError` unless both durations are positive."""
        if not (self.utt_seconds > 0 and self.batch_seconds > 0):
            raise ConfigError(f"--utt-seconds and --batch-seconds must be > 0, got {self.utt_seconds} and "
                              f"{self.batch_seconds}")


@dataclass
class TrainBenchResult:
    recipe: str
    world_size: int
    steps: int
    audio_seconds: float
    wall_seconds: float
    device: str
    peak_gpu_gib: Optional[float] = None
    precision: str = "fp32"
    utterances: int = 0
    peak_rss_gib: Optional[float] = None

    @property
    def audio_seconds_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds

    @property
    def mean_utterance_seconds(self) -> float:
        return self.audio_seconds / max(self.utterances, 1)

    @property
    def mean_batch_seconds(self) -> float:
        return self.audio_seconds / max(self.steps * self.world_size, 1)


def parse_precisions(text: str, device: str) -> list[str]:
    """``"fp32,bf16"`` -> ``["fp32", "bf16"]``, checked against :data:`PRECISIONS` and the device.

    Raises:
        ConfigError: an unknown name, or fp16 on a device that is not CUDA.
    """
    from asrkit.training.distributed import resolve_auto_device

    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise ConfigError("--precision needs at least one of " + ", ".join(PRECISIONS))
    for name in names:
        if name not in PRECISIONS:
            raise ConfigError(f"unknown precision {name!r}; valid choices: {', '.join(PRECISIONS)}")
    if "fp16" in names and not resolve_auto_device(device).startswith("cuda"):
        raise ConfigError(
            "fp16 is measured only on CUDA: on the CPU, float16 autocast has no fast kernels and the grad scaler "
            "is a GPU technique, so a CPU fp16 figure would describe nothing a user runs",
            hint="on the CPU use --precision fp32,bf16",
        )
    return names


def precision_overrides(precision: str) -> dict:
    """The training-config overrides of one precision."""
    return {"use_fp16": precision == "fp16", "use_bf16": precision == "bf16"}


def bench_train(
    recipe: Path,
    train_cuts: Path,
    lang_dir: Path,
    world_size: int = 1,
    steps: int = 20,
    warmup: int = 3,
    device: str = "cpu",
    overrides: Optional[dict] = None,
    precision: str = "fp32",
    shape: Optional[BatchShape] = None,
    fresh_process: bool = False,
) -> TrainBenchResult:
    """Time ``steps`` training steps (after ``warmup``) with ``world_size`` processes.

    ``shape`` synthesises LibriSpeech-shaped batches (see the module docstring); ``fresh_process`` runs even
    a single process in a child, so its peak RSS is its own.
    """
    from asrkit.config import load_train_config

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid choices: {', '.join(PRECISIONS)}")
    if shape is not None:
        shape.check()
    cfg = load_train_config(recipe, {**(overrides or {}), **precision_overrides(precision)})
    cfg.max_minutes = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        from asrkit.training.distributed import free_port

        args = (world_size, str(train_cuts), str(lang_dir), cfg, steps, warmup, device, tmp, str(out), shape,
                free_port())
        if world_size == 1 and not fresh_process:
            _worker(0, *args)
        else:
            import torch.multiprocessing as mp

            mp.spawn(_worker, args=args, nprocs=world_size, join=True)
        data = json.loads(out.read_text())
    return TrainBenchResult(recipe=str(recipe), world_size=world_size, steps=steps, device=device,
                            precision=precision, **data)


def bench_train_precisions(precisions: list[str], **kwargs) -> list[TrainBenchResult]:
    """:func:`bench_train` once per precision (each in a fresh process when there are several)."""
    fresh = kwargs.pop("fresh_process", False) or len(precisions) > 1
    return [bench_train(precision=p, fresh_process=fresh, **kwargs) for p in precisions]


def _corpus_batches(trainer) -> Iterator:
    """The trainer's batches, epoch after epoch, forever (a small corpus is read again)."""
    epoch = 1
    while True:
        empty = True
        for batch in trainer._train_loader(epoch=epoch, skip=0):
            empty = False
            yield batch
        if empty:
            raise ConfigError("the training cuts gave no batch to benchmark")
        epoch += 1


def shaped_batches(batches: Iterator, shape: BatchShape) -> Iterator:
    """Join the utterances of ``batches`` into utterances of >= ``shape.utt_seconds`` and group them into
    batches of ``shape.utterances_per_batch``.

    Each input batch is a :class:`~asrkit.data.datamodule.Batch` (``features`` ``(B, T, F)``); so is each
    output batch (features concatenated along time, token lists concatenated, ids joined with ``+``).
    """
    import torch

    from asrkit.data.datamodule import Batch
    from asrkit.data.features import pad_features

    target = shape.utt_seconds * _FRAMES_PER_SECOND
    feats, tokens, texts, ids = [], [], [], []
    joined: list[tuple] = []
    for batch in batches:
        for i, n in enumerate(batch.feature_lens.tolist()):
            feats.append(batch.features[i, :n])
            tokens.extend(batch.tokens[i])
            texts.append(batch.texts[i])
            ids.append(batch.cut_ids[i])
            if sum(f.shape[0] for f in feats) < target:
                continue
            joined.append((torch.cat(feats), tokens, " ".join(texts), "+".join(ids)))
            feats, tokens, texts, ids = [], [], [], []
            if len(joined) == shape.utterances_per_batch:
                x, x_lens = pad_features([j[0] for j in joined])
                yield Batch(features=x, feature_lens=x_lens, tokens=[j[1] for j in joined],
                            texts=[j[2] for j in joined], cut_ids=[j[3] for j in joined])
                joined = []


def _worker(rank, world_size, train_cuts, lang_dir, cfg, steps, warmup, device, tmp, out, shape, port) -> None:
    import torch

    from asrkit.training import distributed as D
    from asrkit.training.loop import TrainJob, Trainer

    ctx = D.init_process_group(rank, world_size, rank, device, master_port=port)
    D.share_cpu_threads(ctx)
    try:
        job = TrainJob(exp_dir=Path(tmp) / "exp", train_cuts=Path(train_cuts), lang_dir=Path(lang_dir),
                       world_size=world_size, device=device, progress=False, tensorboard=False)
        trainer = Trainer(job, cfg, ctx)
        trainer.model.train()
        on_gpu = ctx.device.type == "cuda"
        batches = _corpus_batches(trainer)
        if shape is not None:
            batches = shaped_batches(batches, shape)
        audio, utterances, started = 0.0, 0, None
        for i in range(warmup + steps):
            batch = next(batches)
            if i == warmup:
                if on_gpu:
                    torch.cuda.synchronize(ctx.device)
                    torch.cuda.reset_peak_memory_stats(ctx.device)
                if ctx.distributed:
                    torch.distributed.barrier()
                started = time.perf_counter()
            trainer.step(batch)
            if i >= warmup:
                audio += float(batch.feature_lens.sum()) / _FRAMES_PER_SECOND
                utterances += len(batch.cut_ids)
        if on_gpu:
            torch.cuda.synchronize(ctx.device)
        if ctx.distributed:
            torch.distributed.barrier()
        wall = time.perf_counter() - started
        totals = D.all_reduce_sum(torch.tensor([audio, float(utterances)], dtype=torch.float64), ctx)
        if ctx.is_main:
            peak = torch.cuda.max_memory_allocated(ctx.device) / 2**30 if on_gpu else None
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
            Path(out).write_text(json.dumps({"audio_seconds": float(totals[0]), "wall_seconds": wall,
                                             "peak_gpu_gib": peak, "utterances": int(totals[1]),
                                             "peak_rss_gib": rss}))
    finally:
        D.destroy_process_group()


def format_result(r: TrainBenchResult) -> str:
    return (f"{Path(r.recipe).stem}: {r.world_size} process(es) on {r.device}, {r.precision}: "
            f"{r.audio_seconds_per_second:.1f} audio-s/s ({r.audio_seconds:.0f} s of audio in "
            f"{r.wall_seconds:.1f} s, {r.steps} steps per process"
            + (f", peak GPU memory {r.peak_gpu_gib:.1f} GiB)" if r.peak_gpu_gib is not None else ")"))


def format_table(results: list[TrainBenchResult]) -> str:
    """Precisions side by side: throughput, speed relative to the first row, memory, batch shape."""
    head = (f"{'precision':<10}{'audio-s/s':>11}{'vs first':>10}{'peak GPU GiB':>14}{'peak RSS GiB':>14}"
            f"{'utt s':>8}{'batch s':>9}")
    lines = [f"{Path(results[0].recipe).stem} on {results[0].device}, {results[0].world_size} process(es), "
             f"{results[0].steps} timed steps each", head]
    base = results[0].audio_seconds_per_second
    for r in results:
        gpu = f"{r.peak_gpu_gib:.2f}" if r.peak_gpu_gib is not None else "-"
        rss = f"{r.peak_rss_gib:.2f}" if r.peak_rss_gib is not None else "-"
        lines.append(f"{r.precision:<10}{r.audio_seconds_per_second:>11.1f}{r.audio_seconds_per_second / base:>9.2f}x"
                     f"{gpu:>14}{rss:>14}{r.mean_utterance_seconds:>8.1f}{r.mean_batch_seconds:>9.0f}")
    return "\n".join(lines)
