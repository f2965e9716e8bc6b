"""Benchmark: training throughput (audio seconds per second) of a recipe on real cuts, 1..N processes.

Each process runs the real :class:`~asrkit.training.loop.Trainer` step (forward, pruned loss, backward,
optimizer) on the batches its sampler gives it; ``warmup`` steps are excluded from the timing. Throughput is
the audio of all ranks' timed batches divided by the wall time of rank 0. A corpus with fewer batches than
``warmup + steps`` is read again (the next epoch's shuffle). On a GPU the clock stops after a device
synchronisation, and the result also gives rank 0's peak GPU memory over the timed steps.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass
class TrainBenchResult:
    recipe: str
    world_size: int
    steps: int
    audio_seconds: float
    wall_seconds: float
    device: str
    peak_gpu_gib: Optional[float] = None

    @property
    def audio_seconds_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds


def bench_train(
    recipe: Path,
    train_cuts: Path,
    lang_dir: Path,
    world_size: int = 1,
    steps: int = 20,
    warmup: int = 3,
    device: str = "cpu",
    overrides: Optional[dict] = None,
) -> TrainBenchResult:
    """Time ``steps`` training steps (after ``warmup``) with ``world_size`` processes."""
    from asrkit.config import load_train_config

    cfg = load_train_config(recipe, overrides)
    cfg.max_minutes = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        args = (world_size, str(train_cuts), str(lang_dir), cfg, steps, warmup, device, tmp, str(out))
        if world_size == 1:
            _worker(0, *args)
        else:
            import torch.multiprocessing as mp

            mp.spawn(_worker, args=args, nprocs=world_size, join=True)
        data = json.loads(out.read_text())
    return TrainBenchResult(recipe=str(recipe), world_size=world_size, steps=steps, device=device, **data)


def _worker(rank, world_size, train_cuts, lang_dir, cfg, steps, warmup, device, tmp, out) -> None:
    import torch

    from asrkit.training import distributed as D
    from asrkit.training.loop import TrainJob, Trainer

    ctx = D.init_process_group(rank, world_size, rank, device, master_port=29533)
    D.share_cpu_threads(ctx)
    try:
        job = TrainJob(exp_dir=Path(tmp) / "exp", train_cuts=Path(train_cuts), lang_dir=Path(lang_dir),
                       world_size=world_size, device=device, progress=False, tensorboard=False)
        trainer = Trainer(job, cfg, ctx)
        trainer.model.train()
        on_gpu = ctx.device.type == "cuda"
        epoch = 1
        loader = iter(trainer._train_loader(epoch=epoch, skip=0))
        audio, started = 0.0, None
        for i in range(warmup + steps):
            batch = next(loader, None)
            if batch is None:  # a small corpus: read it again
                epoch += 1
                loader = iter(trainer._train_loader(epoch=epoch, skip=0))
                batch = next(loader)
            if i == warmup:
                if on_gpu:
                    torch.cuda.synchronize(ctx.device)
                    torch.cuda.reset_peak_memory_stats(ctx.device)
                if ctx.distributed:
                    torch.distributed.barrier()
                started = time.perf_counter()
            trainer.step(batch)
            if i >= warmup:
                audio += float(batch.feature_lens.sum()) / 100.0
        if on_gpu:
            torch.cuda.synchronize(ctx.device)
        if ctx.distributed:
            torch.distributed.barrier()
        wall = time.perf_counter() - started
        total = float(D.all_reduce_sum(torch.tensor([audio], dtype=torch.float64), ctx)[0])
        if ctx.is_main:
            peak = torch.cuda.max_memory_allocated(ctx.device) / 2**30 if on_gpu else None
            Path(out).write_text(json.dumps({"audio_seconds": total, "wall_seconds": wall, "peak_gpu_gib": peak}))
    finally:
        D.destroy_process_group()


def format_result(r: TrainBenchResult) -> str:
    return (f"{Path(r.recipe).stem}: {r.world_size} process(es) on {r.device}: "
            f"{r.audio_seconds_per_second:.1f} audio-s/s ({r.audio_seconds:.0f} s of audio in "
            f"{r.wall_seconds:.1f} s, {r.steps} steps per process"
            + (f", peak GPU memory {r.peak_gpu_gib:.1f} GiB)" if r.peak_gpu_gib is not None else ")"))
