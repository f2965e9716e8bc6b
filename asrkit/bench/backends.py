"""Benchmark: the same training run with each pruned-loss backend; do the loss curves agree?

Both runs start from the same seed (same initial weights, same batches, same augmentation) and differ only in
``loss.backend``. Reported: the per-frame training loss every ``report_every`` steps for each backend, the
largest relative difference between the curves, and the time per step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass
class BackendCurve:
    backend: str
    losses: list[float]  # per-frame loss of every step
    seconds_per_step: float


def train_curve(recipe: Path, train_cuts: Path, lang_dir: Path, backend: str, steps: int,
                overrides: Optional[dict] = None) -> BackendCurve:
    """Run ``steps`` training steps with ``backend`` and return the per-step losses."""
    import tempfile

    from asrkit.config import load_train_config
    from asrkit.training import distributed as D
    from asrkit.training.loop import TrainJob, Trainer

    cfg = load_train_config(recipe, {**(overrides or {}), "loss.backend": backend})
    cfg.data.num_workers = 0
    with tempfile.TemporaryDirectory() as tmp:
        job = TrainJob(exp_dir=Path(tmp), train_cuts=train_cuts, lang_dir=lang_dir, device="cpu", progress=False,
                       tensorboard=False)
        trainer = Trainer(job, cfg, D.DistContext())
        trainer.model.train()
        losses, started, epoch = [], time.perf_counter(), 1
        while len(losses) < steps:
            for batch in trainer._train_loader(epoch=epoch, skip=0):
                stats = trainer.step(batch)
                losses.append(stats["loss"] if stats else float("nan"))
                if len(losses) == steps:
                    break
            epoch += 1
        elapsed = time.perf_counter() - started
    return BackendCurve(backend, losses, elapsed / max(len(losses), 1))


def compare_backends(recipe: Path, train_cuts: Path, lang_dir: Path, backends=("torch", "fast_rnnt"),
                     steps: int = 100, overrides: Optional[dict] = None) -> list[BackendCurve]:
    return [train_curve(recipe, train_cuts, lang_dir, b, steps, overrides) for b in backends]


def max_relative_difference(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / max(abs(x), abs(y), 1e-12) for x, y in zip(a, b))


def format_curves(curves: list[BackendCurve], report_every: int = 10) -> str:
    lines = ["step  " + "  ".join(f"{c.backend:>10}" for c in curves)]
    n = min(len(c.losses) for c in curves)
    for i in range(report_every - 1, n, report_every):
        lines.append(f"{i + 1:4d}  " + "  ".join(f"{c.losses[i]:10.4f}" for c in curves))
    for c in curves:
        lines.append(f"{c.backend}: {c.seconds_per_step:.3f} s/step")
    if len(curves) == 2:
        lines.append(f"max relative difference of the per-step losses: "
                     f"{max_relative_difference(curves[0].losses[:n], curves[1].losses[:n]):.2e}")
    return "\n".join(lines)
