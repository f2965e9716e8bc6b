"""The training loop: one function per job, shared by single-process and DDP runs.

``train(job, cfg)`` is the library entry point of ``asrkit train``. With ``job.world_size > 1`` it spawns that
many processes (gloo on CPU, NCCL on GPU); under torchrun each process calls it with the env:// rendezvous.
Rank 0 alone logs to TensorBoard and writes checkpoints.

The objective is icefall's: ``simple_scale * simple + pruned_scale * pruned (+ ctc_scale * ctc)`` where, during
the first ``warm_step`` batches, the simple loss weight decays from 1 to ``simple_loss_scale`` and the pruned
loss weight grows from 0.1 to 1 (the pruning bounds come from the simple loss, so they must become meaningful
before the pruned loss carries the training).
"""

from __future__ import annotations

import logging
import math
import random
import signal
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch

from asrkit.config import TrainConfig
from asrkit.data.acoustic import build_acoustic_augment
from asrkit.data.augment import build_feature_augment
from asrkit.data.datamodule import (
    AsrDataset,
    Batch,
    SkipFirstBatches,
    filter_cuts,
    load_cuts,
    make_loader,
    make_sampler,
)
from asrkit.data.tokenizer import Tokenizer
from asrkit.errors import AsrkitError, CheckpointError, ConfigError, DataError
from asrkit.models import set_batch_count
from asrkit.training import distributed as D
from asrkit.training.experiment import write_experiment_config
from asrkit.training.run_state import process_state, restore_process_state, state_for_rank
from asrkit.training.schedulers import cooldown_factor
from asrkit.training.state import TrainState
from asrkit.utils.dataclass_io import to_dict
from asrkit.utils.logging import setup_logging

log = logging.getLogger(__name__)


@dataclass
class TrainJob:
    """Where a run reads and writes, and how it is launched (not part of the saved hyper-parameters)."""

    exp_dir: Path
    train_cuts: Path | list[Path]  # several cut sets are concatenated (e.g. LibriSpeech's 960 h)
    lang_dir: Path
    valid_cuts: Optional[Path] = None
    world_size: int = 1
    device: str = "auto"
    start_epoch: int = 0  # > 0: resume from epoch-(start_epoch-1).pt
    start_batch: int = 0  # > 0: resume from checkpoint-<start_batch>.pt
    resume: bool = False  # resume from the latest checkpoint in exp_dir, if any
    force: bool = False  # start over in an exp_dir that holds another run (its checkpoints are removed)
    master_port: int = 0  # DDP rendezvous port of spawned processes; 0: a free one
    tensorboard: bool = True
    progress: bool = True
    extra: dict = field(default_factory=dict)


class TrainingInterrupted(AsrkitError):
    """Raised after a SIGINT/SIGTERM once the interruption checkpoint is written."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"training interrupted; state saved to {checkpoint} (continue with --resume)")
        self.checkpoint = checkpoint


class TooManyNonFiniteLosses(DataError):
    """More batches than allowed had a non-finite loss."""


def train(job: TrainJob, cfg: TrainConfig) -> Path:
    """Train a transducer; returns the path of the last epoch checkpoint.

    Raises:
        ConfigError / DataError: bad options or data, naming the culprit.
        TrainingInterrupted: on SIGINT/SIGTERM, after writing a checkpoint.
    """
    import os

    job.exp_dir = Path(job.exp_dir)
    if not D.launched_by_torchrun() or os.environ.get("RANK") == "0":  # one process decides, before any writes
        from asrkit.training.experiment import claim_experiment_dir

        setup_logging(job.exp_dir / "log" / "train.log")  # what it decides is in the run's log too
        bind_tokenizer(cfg, Tokenizer.load(job.lang_dir))
        claim_experiment_dir(job.exp_dir, to_dict(cfg), resume=job.resume or job.start_epoch > 1
                             or job.start_batch > 0, force=job.force)
    job.exp_dir.mkdir(parents=True, exist_ok=True)
    if D.launched_by_torchrun():
        return _run_rank(
            int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]), job, cfg
        )
    if job.world_size > 1:
        import torch.multiprocessing as mp

        D.pick_device(job.device, job.world_size - 1)  # every rank has a device, or one clear error here
        job.master_port = job.master_port or D.free_port()  # chosen once, here: every rank must use the same
        mp.spawn(_spawned_rank, args=(job, cfg), nprocs=job.world_size, join=True)
        return _last_epoch_checkpoint(job.exp_dir, cfg.num_epochs)
    return _run_rank(0, 1, 0, job, cfg)


def _spawned_rank(rank: int, job: TrainJob, cfg: TrainConfig) -> None:
    _run_rank(rank, job.world_size, rank, job, cfg)


def _last_epoch_checkpoint(exp_dir: Path, num_epochs: int) -> Path:
    from asrkit.training.checkpoint import epoch_checkpoint_path

    return epoch_checkpoint_path(exp_dir, num_epochs)


def _run_rank(rank: int, world_size: int, local_rank: int, job: TrainJob, cfg: TrainConfig) -> Path:
    setup_logging(job.exp_dir / "log" / "train.log", rank=rank)
    ctx = D.init_process_group(rank, world_size, local_rank, job.device, job.master_port)
    D.share_cpu_threads(ctx)
    try:
        return Trainer(job, cfg, ctx).run()
    finally:
        D.destroy_process_group()


class Trainer:
    """Holds the model, optimizer, data and state of one rank; :meth:`run` trains to the end."""

    def __init__(self, job: TrainJob, cfg: TrainConfig, ctx: D.DistContext) -> None:
        from asrkit.loss import resolve_backend
        from asrkit.models.build import build_transducer, count_parameters
        from asrkit.training.optim import build_optimizer
        from asrkit.training.schedulers import build_scheduler

        self.job, self.cfg, self.ctx = job, cfg, ctx
        job.exp_dir = Path(job.exp_dir)
        job.exp_dir.mkdir(parents=True, exist_ok=True)
        if cfg.use_fp16 and cfg.use_bf16:
            raise ConfigError("use_fp16 and use_bf16 are mutually exclusive: choose one")
        if cfg.loss.ctc_loss_scale > 0 and not cfg.model.ctc_head:
            raise ConfigError("loss.ctc_loss_scale > 0 needs model.ctc_head: true")
        if cfg.loss.delay_penalty < 0:
            raise ConfigError(f"loss.delay_penalty: {cfg.loss.delay_penalty} must be >= 0 (0: off)")
        if not 0.0 <= cfg.optim.cooldown_fraction <= 1.0:
            raise ConfigError(f"optim.cooldown_fraction must be in [0, 1], got {cfg.optim.cooldown_fraction}")
        if cfg.optim.cooldown_fraction > 0 and cfg.max_steps <= 0 and cfg.max_minutes <= 0:
            raise ConfigError("optim.cooldown_fraction > 0 cools down over a training budget, but there is none",
                              hint="set max_steps or max_minutes (e.g. --set max_minutes=20)")
        _seed_everything(cfg.seed)
        self.tokenizer = Tokenizer.load(job.lang_dir)
        bind_tokenizer(cfg, self.tokenizer)
        self.loss_backend = resolve_backend(cfg.loss.backend)
        self.model = build_transducer(cfg.model).to(ctx.device)
        self.num_params = count_parameters(self.model)
        if ctx.is_main:
            log.info("model: %s encoder, %s parameters", cfg.model.encoder.type, f"{self.num_params:,}")
            log.info("pruned RNN-T loss backend: %s; device: %s; world size: %d", self.loss_backend, ctx.device,
                     ctx.world_size)
            write_experiment_config(job.exp_dir, self.resolved_config())
        o = cfg.optim
        self.optimizer = build_optimizer(self.model, o.name, o.base_lr, o.weight_decay,
                                         clipping_scale=o.clipping_scale if o.name == "scaled_adam" else None)
        self.scheduler = build_scheduler(o.scheduler, self.optimizer, lr_batches=o.lr_batches,
                                         lr_epochs=o.lr_epochs, warmup_batches=o.warmup_batches)
        self.scaler = _make_grad_scaler(cfg, ctx.device)
        self.state = TrainState()
        self._pending_process_state: Optional[dict] = None
        self.model_avg: Optional[dict[str, torch.Tensor]] = None
        if ctx.is_main:
            from asrkit.training.averaging import init_running_average
            from asrkit.training.checkpoint import remove_stale_temp_files

            remove_stale_temp_files(job.exp_dir)
            self.model_avg = init_running_average(self.model)
        self._restore()
        self.ddp_model = self.model
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        self.train_cuts, self.valid_cuts = self._load_data()
        self.writer = None
        if ctx.is_main and job.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(job.exp_dir / "tensorboard"))
        self._stop_signal: Optional[int] = None

    # ------------------------------------------------------------------ set-up
    def resolved_config(self) -> dict:
        return to_dict(self.cfg)

    def stateful_parts(self) -> dict[str, Optional[object]]:
        """Checkpoint key -> each part of the trainer that has a ``state_dict()`` (None where unused, e.g. the
        grad scaler without fp16). Checkpoints save and resume restores exactly these, plus ``model_avg``,
        ``train_state`` and every rank's random streams and module attributes (``process_states``)."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "grad_scaler": self.scaler}

    def _restore(self) -> None:
        from asrkit.training.checkpoint import (
            batch_checkpoint_path,
            epoch_checkpoint_path,
            latest_checkpoint,
            load_checkpoint,
        )

        job = self.job
        path: Optional[Path] = None
        if job.start_batch > 0:
            path = batch_checkpoint_path(job.exp_dir, job.start_batch)
        elif job.start_epoch > 1:
            path = epoch_checkpoint_path(job.exp_dir, job.start_epoch - 1)
        elif job.resume:
            path = _latest_any_checkpoint(job.exp_dir, latest_checkpoint)
        if path is None:
            if job.start_epoch > 1 or job.start_batch > 0:
                raise ConfigError(f"no checkpoint to resume from in {job.exp_dir}")
            return
        ckpt = load_checkpoint(path, map_location=self.ctx.device, required_keys=("model", "train_state"))
        for key, part in self.stateful_parts().items():
            if part is not None and ckpt.get(key) is not None:  # (older checkpoints may lack the optimizer)
                part.load_state_dict(ckpt[key])
        if self.model_avg is not None and ckpt.get("model_avg") is not None:
            self.model_avg = dict(ckpt["model_avg"])
        self.state = TrainState.from_dict(ckpt["train_state"])
        if self.state.epoch_done:
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            self.state.epoch_done = False
        # applied right before training resumes, so that set-up work cannot shift the random streams
        states = ckpt.get("process_states") or ([{"rng": ckpt["rng"]}] if ckpt.get("rng") else None)
        if states:
            self._pending_process_state = state_for_rank(states, self.ctx.rank, self.ctx.world_size)
        if self.ctx.is_main:
            log.info("resumed from %s at epoch %d, batch %d of the epoch (%d steps in total)", path,
                     self.state.epoch, self.state.batch_in_epoch, self.state.batch_idx_train)

    def _load_data(self):
        cfg, job = self.cfg, self.job
        frames_fn = encoder_frames_fn(self.model, cfg.model.feature_dim)
        paths = job.train_cuts if isinstance(job.train_cuts, (list, tuple)) else [job.train_cuts]
        if any(Path(p).is_dir() for p in paths):
            # Lhotse Shar input streams (e.g. from object storage): filter lazily, never hold it in memory
            from lhotse import CutSet

            from asrkit.data.datamodule import LazyCutFilter

            train = CutSet.mux(*[load_cuts(p) for p in paths]) if len(paths) > 1 else load_cuts(paths[0])
            train = train.filter(LazyCutFilter(self.tokenizer, frames_fn, cfg.data.min_utterance_duration,
                                               cfg.data.max_utterance_duration))
        else:
            train = load_cuts(paths[0]).to_eager()
            for path in paths[1:]:
                train = train + load_cuts(path).to_eager()
            train, _ = filter_cuts(train, self.tokenizer, frames_fn, cfg.data.min_utterance_duration,
                                   cfg.data.max_utterance_duration, name="train")
        valid = None
        if job.valid_cuts:
            valid = load_cuts(job.valid_cuts).to_eager()
            valid, _ = filter_cuts(valid, self.tokenizer, frames_fn, 0.0, math.inf, name="valid")
        return train, valid

    def _train_loader(self, epoch: int, skip: int):
        cfg, ctx = self.cfg, self.ctx
        sampler = make_sampler(self.train_cuts, cfg.data, train=True, seed=cfg.seed, world_size=ctx.world_size,
                               rank=ctx.rank)
        sampler.set_epoch(epoch)
        transforms = []
        if cfg.data.musan_cuts:
            from lhotse.dataset import CutMix

            transforms.append(CutMix(load_cuts(cfg.data.musan_cuts).to_eager(), p=0.5, snr=(10, 20),
                                     preserve_id=True, seed=cfg.seed + epoch))
        dataset = AsrDataset(self.tokenizer, build_feature_augment(cfg.data), transforms, cfg.data.skip_bad_audio,
                             acoustic=build_acoustic_augment(cfg.data, cfg.seed, epoch))
        return make_loader(dataset, SkipFirstBatches(sampler, skip), cfg.data.num_workers)

    # ------------------------------------------------------------------ loop
    def run(self) -> Path:
        cfg, state = self.cfg, self.state
        self._install_signal_handlers()
        started = time.monotonic()
        last = None
        run_preflight = self.cfg.preflight > 0 or (self.cfg.preflight < 0 and self.ctx.device.type == "cuda")
        if run_preflight and state.batch_idx_train == 0:
            self._preflight()
        if self._pending_process_state is not None:
            restore_process_state(self.model, self._pending_process_state, self.ctx.device)
        self._spent_budget(started)  # a resumed step-capped run may already be in its cool-down
        while state.epoch <= cfg.num_epochs:
            self.scheduler.step_epoch(state.epoch - 1)
            self._train_one_epoch(started)
            spent = self._spent_budget(started)
            if spent and state.batch_in_epoch > 0:
                last = self._save(kind="batch")
                log.info("%s; stopped mid-epoch %d", spent, state.epoch)
                break
            valid_loss = self._validate()
            if valid_loss is not None and valid_loss < state.best_valid_loss:
                state.best_valid_loss, state.best_valid_epoch = valid_loss, state.epoch
            state.epoch_done = True
            last = self._save(kind="epoch")
            if self.ctx.is_main:
                log.info("epoch %d done: valid loss %s, best %.4f at epoch %d", state.epoch,
                         "n/a" if valid_loss is None else f"{valid_loss:.4f}", state.best_valid_loss,
                         state.best_valid_epoch)
            state.epoch += 1
            state.batch_in_epoch = 0
            state.epoch_done = False
            spent = self._spent_budget(started)
            if spent:
                log.info("%s after epoch %d", spent, state.epoch - 1)
                break
        if self.writer is not None:
            self.writer.close()
        return last

    def _preflight(self) -> None:
        """Forward + backward (no update) on the sampler's most pessimistic batches; a memory error becomes a
        one-line ConfigError with the fix. Random streams, module state and gradients are left as they were."""
        from lhotse.dataset import find_pessimistic_batches

        before = process_state(self.model, self.ctx.device)
        sampler = make_sampler(self.train_cuts, self.cfg.data, train=True, seed=self.cfg.seed,
                               world_size=self.ctx.world_size, rank=self.ctx.rank)
        batches, scores = find_pessimistic_batches(sampler)
        dataset = AsrDataset(self.tokenizer, build_feature_augment(self.cfg.data))
        self.model.train()
        for criterion, cuts in batches.items():
            batch = dataset[cuts]
            try:
                losses = self._forward(self.ddp_model, batch)
                total = losses.simple_loss + losses.pruned_loss
                if losses.ctc_loss is not None:
                    total = total + losses.ctc_loss
                total.backward()
            except torch.OutOfMemoryError:
                raise ConfigError(
                    f"pre-flight: the batch with the largest {criterion} ({len(batch.cut_ids)} utterances, "
                    f"{batch.num_frames / 100:.0f} s of audio) runs out of memory on {self.ctx.device}",
                    hint=f"lower data.max_duration (now {self.cfg.data.max_duration:g}), e.g. --max-duration "
                         f"{self.cfg.data.max_duration * 0.7:g}",
                ) from None
            finally:
                self.optimizer.zero_grad(set_to_none=True)
            if self.ctx.is_main:
                log.info("pre-flight: batch with the largest %s (%d utterances, %.0f s) fits", criterion,
                         len(batch.cut_ids), batch.num_frames / 100)
        restore_process_state(self.model, before, self.ctx.device)

    def _budget_used(self, started: float) -> tuple[float, str]:
        """The used fraction of the training budget (1.0: all of it; 0.0 without a budget) and the name of the
        budget that fraction is of. Two budgets: ``max_steps`` optimizer steps in total (resumes included) and
        ``max_minutes`` of wall time in this process's run (the slowest rank's, so all ranks agree)."""
        cfg = self.cfg
        used, which = 0.0, ""
        if cfg.max_steps > 0:
            used, which = self.state.batch_idx_train / cfg.max_steps, f"step budget of {cfg.max_steps}"
        if cfg.max_minutes > 0:
            minutes = D.max_over_ranks(time.monotonic() - started, self.ctx) / 60.0
            if minutes / cfg.max_minutes > used:
                used, which = minutes / cfg.max_minutes, f"time budget of {cfg.max_minutes:.1f} min"
        return used, which

    def _spent_budget(self, started: float) -> str | None:
        """Which training budget is used up, as a log phrase, or None. Also sets the learning rate's budget
        cool-down (``optim.cooldown_fraction``) for the next step."""
        used, which = self._budget_used(started)
        if self.cfg.optim.cooldown_fraction > 0:
            self.scheduler.set_budget_factor(cooldown_factor(used, self.cfg.optim.cooldown_fraction))
        return f"{which} reached" if used >= 1.0 else None

    def _train_one_epoch(self, started: float) -> None:
        cfg, state, ctx = self.cfg, self.state, self.ctx
        self.model.train()
        loader = self._train_loader(state.epoch, state.batch_in_epoch)
        progress = _progress(ctx.is_main and self.job.progress, f"epoch {state.epoch}")
        try:  # (closed on errors too, so that an error line does not start mid-way through the bar)
            for batch in loader:
                if D.any_rank(batch is None, ctx):
                    # every utterance of a batch had unreadable audio (skip_bad_audio): all ranks skip this step
                    state.batch_in_epoch += 1
                    continue
                stats = self.step(batch)
                if progress is not None:
                    progress.update(1)
                    if stats:
                        progress.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{self._lr():.2e}")
                if stats and state.batch_idx_train % cfg.log_interval == 0:
                    self._log_stats(stats)
                if cfg.save_every_n > 0 and state.batch_idx_train % cfg.save_every_n == 0:
                    self._save(kind="batch")
                if D.any_rank(self._stop_signal is not None, ctx):
                    path = self._save(kind="batch")
                    raise TrainingInterrupted(path)
                if self._spent_budget(started):
                    break
        finally:
            if progress is not None:
                progress.close()

    def step(self, batch: Batch) -> Optional[dict]:
        """One optimizer step on ``batch`` with its bookkeeping (counters, schedules, running average).

        Returns the step's statistics (per-frame losses, grad norm), or None when the batch was skipped.
        """
        cfg, state = self.cfg, self.state
        state.batch_idx_train += 1
        state.batch_in_epoch += 1
        # Zipformer's scheduled dropout/skip/regularizer rates advance with the amount of audio seen, in units of
        # cfg.schedule_reference_duration seconds (icefall: 600); other encoders ignore it.
        set_batch_count(self.model, state.batch_idx_train * cfg.data.max_duration * self.ctx.world_size
                        / cfg.schedule_reference_duration)
        stats = self._train_step(batch)
        self.scheduler.step_batch(state.batch_idx_train)
        if self.model_avg is not None and state.batch_idx_train % cfg.average_period == 0:
            from asrkit.training.averaging import update_running_average

            update_running_average(self.model_avg, self.model, state.batch_idx_train, cfg.average_period)
        return stats

    def _train_step(self, batch: Batch) -> Optional[dict]:
        cfg, ctx = self.cfg, self.ctx
        losses = self._forward(self.ddp_model, batch)
        scales = loss_scales(cfg, self.state.batch_idx_train)
        total = scales[0] * losses.simple_loss + scales[1] * losses.pruned_loss
        if losses.ctc_loss is not None:
            total = total + cfg.loss.ctc_loss_scale * losses.ctc_loss
        # Mean over the utterances of the global batch: with DDP's gradient averaging over ranks this is exactly
        # the gradient of the single-process loss over the same global batch. (Per utterance, not per frame:
        # per-frame gradients are ~100x smaller and fall to the scale of the optimizers' epsilon.)
        local = torch.tensor([float(len(batch.cut_ids)), 1.0 if torch.isfinite(total).all() else 0.0])
        summed = D.all_reduce_sum(local.clone(), ctx).cpu()
        global_utterances, finite_ranks = summed[0].item(), summed[1].item()
        if finite_ranks < ctx.world_size:
            self.state.nonfinite_batches += 1
            log.warning("non-finite loss at batch %d (skipped, %d so far); utterances: %s",
                        self.state.batch_idx_train, self.state.nonfinite_batches, ", ".join(batch.cut_ids[:20]))
            self.optimizer.zero_grad(set_to_none=True)
            if self.state.nonfinite_batches > cfg.max_nonfinite_batches:
                raise TooManyNonFiniteLosses(
                    f"{self.state.nonfinite_batches} batches had a non-finite loss (limit "
                    f"max_nonfinite_batches={cfg.max_nonfinite_batches}); last utterances: "
                    f"{', '.join(batch.cut_ids[:5])}",
                    hint="lower optim.base_lr, or check the data of the named utterances",
                )
            if ctx.distributed:
                # keep ranks in lock-step: a zero-loss backward still runs DDP's all-reduce
                (total * 0.0).nan_to_num(0.0).backward()
                self.optimizer.zero_grad(set_to_none=True)
            return None
        loss = total * (ctx.world_size / global_utterances)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        grad_norm = _grad_norm(self.model)
        if cfg.optim.name == "adamw" and cfg.optim.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        frames = max(batch.num_frames, 1)
        stats = {
            "loss": total.item() / frames,
            "simple_loss": losses.simple_loss.item() / frames,
            "pruned_loss": losses.pruned_loss.item() / frames,
            "grad_norm": grad_norm,
        }
        if losses.ctc_loss is not None:
            stats["ctc_loss"] = losses.ctc_loss.item() / frames
        return stats

    def _forward(self, model, batch: Batch):
        cfg, device = self.cfg, self.ctx.device
        y, y_lens = batch.padded_tokens(self.tokenizer.blank_id)
        with _autocast(cfg, device):
            return model(
                batch.features.to(device),
                batch.feature_lens.to(device),
                y.to(device),
                y_lens.to(device),
                prune_range=cfg.loss.prune_range,
                am_scale=cfg.loss.am_scale,
                lm_scale=cfg.loss.lm_scale,
                rnnt_type=cfg.loss.rnnt_type,
                loss_backend=self.loss_backend,
                delay_penalty=cfg.loss.delay_penalty,
            )

    def _validate(self) -> Optional[float]:
        if self.valid_cuts is None:
            return None
        cfg, ctx = self.cfg, self.ctx
        self.model.eval()
        sampler = make_sampler(self.valid_cuts, cfg.data, train=False, seed=cfg.seed, world_size=ctx.world_size,
                               rank=ctx.rank)
        loader = make_loader(AsrDataset(self.tokenizer), sampler, num_workers=0)
        totals = torch.zeros(3, dtype=torch.float64)
        with torch.no_grad():
            for batch in loader:
                losses = self._forward(self.model, batch)
                scales = loss_scales(cfg, self.state.batch_idx_train)
                total = scales[0] * losses.simple_loss + scales[1] * losses.pruned_loss
                if torch.isfinite(total):
                    totals += torch.tensor([total.item(), losses.pruned_loss.item(), batch.num_frames])
        totals = D.all_reduce_sum(totals, ctx).cpu()
        self.model.train()
        if totals[2] == 0:
            return None
        valid_loss = float(totals[0] / totals[2])
        if self.writer is not None:
            self.writer.add_scalar("valid/loss", valid_loss, self.state.batch_idx_train)
            self.writer.add_scalar("valid/pruned_loss", float(totals[1] / totals[2]), self.state.batch_idx_train)
        return valid_loss

    # ------------------------------------------------------------------ bookkeeping
    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _log_stats(self, stats: dict) -> None:
        if not self.ctx.is_main:
            return
        step = self.state.batch_idx_train
        log.info("epoch %d batch %d (step %d): %s, lr %.2e", self.state.epoch, self.state.batch_in_epoch, step,
                 ", ".join(f"{k} {v:.4f}" for k, v in stats.items()), self._lr())
        if self.writer is not None:
            for key, value in stats.items():
                self.writer.add_scalar(f"train/{key}", value, step)
            self.writer.add_scalar("train/lr", self._lr(), step)
            if self.scaler is not None:
                self.writer.add_scalar("train/grad_scale", self.scaler.get_scale(), step)

    def _save(self, kind: str) -> Optional[Path]:
        """Write a checkpoint on rank 0 (``kind`` 'epoch' or 'batch'); other ranks wait for it."""
        from asrkit.training.checkpoint import (
            batch_checkpoint_path,
            epoch_checkpoint_path,
            find_all_checkpoints,
            remove_old_checkpoints,
            save_checkpoint,
        )

        path = None
        # every rank's random streams and module attributes (they differ between ranks)
        process_states = D.all_gather_objects(process_state(self.model, self.ctx.device), self.ctx)
        if self.ctx.is_main:
            if kind == "epoch":
                path = epoch_checkpoint_path(self.job.exp_dir, self.state.epoch)
            else:
                path = batch_checkpoint_path(self.job.exp_dir, self.state.batch_idx_train)
            payload = {key: part.state_dict() if part is not None else None
                       for key, part in self.stateful_parts().items()}
            payload.update({
                "model_avg": self.model_avg,
                "train_state": self.state.to_dict(),
                "config": self.resolved_config(),
                "process_states": process_states,
            })
            try:
                save_checkpoint(path, payload)
            except CheckpointError as exc:  # e.g. the disk is full: the files already there are complete
                kept = next(iter(find_all_checkpoints(self.job.exp_dir)), None)
                raise CheckpointError(f"{exc}; the previous checkpoints are untouched, the newest is "
                                      f"{kept if kept else 'none (none was written yet)'}",
                                      hint="free some space, then continue with --resume") from None
            if kind == "batch" and self.cfg.keep_last_k > 0:
                remove_old_checkpoints(self.job.exp_dir, self.cfg.keep_last_k)
            log.info("saved %s", path)
        if self.ctx.distributed:
            import torch.distributed as dist

            dist.barrier()
        return path

    def _install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            self._stop_signal = signum
            log.warning("received signal %d: saving a checkpoint after the current batch", signum)

        try:
            signal.signal(signal.SIGTERM, handler)
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not in the main thread (e.g. some test runners)
            pass


# ---------------------------------------------------------------------- helpers
def loss_scales(cfg: TrainConfig, batch_idx_train: int) -> tuple[float, float]:
    """(simple_scale, pruned_scale) at a given step, icefall's warm-up weighting."""
    s = cfg.loss.simple_loss_scale
    warm = max(cfg.loss.warm_step, 1)
    if batch_idx_train >= warm:
        return s, 1.0
    frac = batch_idx_train / warm
    return 1.0 - frac * (1.0 - s), 0.1 + 0.9 * frac


def encoder_frames_fn(model, feature_dim: int = 80):
    """A function mapping input frames to encoder output frames, measured on the model itself.

    Uses ``model.encoder.output_lengths`` when the encoder defines it, else runs the encoder once per distinct
    length (cached), which is exact for any encoder.
    """
    encoder = model.encoder
    if hasattr(encoder, "output_lengths"):
        def by_formula(num_frames: int) -> int:
            return int(encoder.output_lengths(torch.tensor([num_frames]))[0])

        return lru_cache(maxsize=None)(by_formula)

    @lru_cache(maxsize=None)
    def by_probe(num_frames: int) -> int:
        if num_frames < 1:
            return 0
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                x = torch.zeros(1, num_frames, feature_dim, device=device)
                _, lens = model.run_encoder(x, torch.tensor([num_frames], device=device))
            return int(lens[0])
        except RuntimeError:
            return 0  # too short for the front-end's convolutions
        finally:
            model.train(was_training)

    return by_probe


def _latest_any_checkpoint(exp_dir: Path, latest_batch_checkpoint) -> Optional[Path]:
    """The checkpoint (batch or epoch) with the most training steps."""
    from asrkit.training.checkpoint import find_epoch_checkpoints, load_checkpoint

    # Only the newest epoch checkpoint and the newest batch checkpoint can hold the most steps: read just those two
    # rather than every checkpoint of the run.
    epochs = find_epoch_checkpoints(exp_dir)
    candidates = [epochs[max(epochs)]] if epochs else []
    batch_ckpt = latest_batch_checkpoint(exp_dir)
    if batch_ckpt is not None:
        candidates.append(batch_ckpt)
    best, best_steps = None, -1
    for path in candidates:
        steps = load_checkpoint(path, required_keys=("train_state",))["train_state"]["batch_idx_train"]
        if steps > best_steps:
            best, best_steps = path, steps
    return best


def bind_tokenizer(cfg: TrainConfig, tokenizer: Tokenizer) -> None:
    """The model's vocabulary is the tokenizer's: its size and fingerprint go into ``cfg.model``."""
    cfg.model.vocab_size = tokenizer.vocab_size
    cfg.model.tokenizer_fingerprint = tokenizer.fingerprint


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass


def _make_grad_scaler(cfg: TrainConfig, device: torch.device):
    if not cfg.use_fp16:
        return None
    return torch.amp.GradScaler(device.type, init_scale=1024.0, growth_interval=200)


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.use_fp16:
        return torch.autocast(device.type, dtype=torch.float16)
    if cfg.use_bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _grad_norm(model: torch.nn.Module) -> float:
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def _progress(enabled: bool, desc: str):
    if not enabled:
        return None
    import sys

    from tqdm import tqdm

    # redirected to a file (a recipe's log), refresh rarely instead of filling the log with progress lines
    return tqdm(desc=desc, unit="batch", dynamic_ncols=True, leave=False,
                mininterval=0.5 if sys.stderr.isatty() else 60.0)
