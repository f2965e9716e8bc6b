"""``asrkit train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from asrkit.cli.common import Device, ExpDir, LangDir, Overrides, Recipe, SkipBadAudio, overrides_dict


def train(
    recipe: Recipe,
    train_cuts: Annotated[
        list[Path],
        typer.Option(help="Training cuts with features: a manifest or a Lhotse Shar directory (repeat to combine)."),
    ],
    exp_dir: ExpDir = Path("exp"),
    lang_dir: LangDir = Path("data/lang"),
    valid_cuts: Annotated[Optional[Path], typer.Option(help="Validation cuts (loss per epoch).")] = None,
    world_size: Annotated[
        str,
        typer.Option(help="Processes on this machine (DDP; gloo on CPU, NCCL on GPU), or auto: one per GPU; on CPU "
                          "2 single-thread processes when there are 2+ cores."),
    ] = "1",
    start_epoch: Annotated[int, typer.Option(help="Resume from epoch-(N-1).pt (1 = from scratch).")] = 1,
    start_batch: Annotated[int, typer.Option(help="Resume from checkpoint-N.pt (mid-epoch).")] = 0,
    resume: Annotated[bool, typer.Option(help="Resume from the latest checkpoint in --exp-dir, if any.")] = False,
    force: Annotated[bool, typer.Option(
        help="Start over in an --exp-dir that holds another run: its checkpoints, config.yaml and TensorBoard "
             "logs are removed (without it, such a directory is refused).")] = False,
    num_epochs: Annotated[Optional[int], typer.Option(help="Override the recipe's num_epochs.")] = None,
    set_: Overrides = None,
    device: Device = "auto",
    master_port: Annotated[int, typer.Option(help="Rendezvous port for --world-size > 1 (0: a free port).")] = 0,
    use_fp16: Annotated[bool, typer.Option(help="Mixed precision fp16 with a grad scaler.")] = False,
    use_bf16: Annotated[bool, typer.Option(help="Mixed precision bf16.")] = False,
    max_duration: Annotated[Optional[float], typer.Option(help="Seconds of audio per batch and process.")] = None,
    num_buckets: Annotated[Optional[int], typer.Option(help="Duration buckets of the sampler.")] = None,
    save_every_n: Annotated[Optional[int], typer.Option(help="Also write checkpoint-<batch>.pt every N batches.")] = None,
    keep_last_k: Annotated[Optional[int], typer.Option(help="Keep only the newest K checkpoint-*.pt.")] = None,
    average_period: Annotated[
        Optional[int], typer.Option(help="Update the running-average model every N batches.")
    ] = None,
    skip_bad_audio: SkipBadAudio = False,
) -> None:
    """Train a transducer with the pruned RNN-T loss.

    The resolved config is written to EXP_DIR/config.yaml and stored in every checkpoint; the model's parameter
    count is logged at start-up (or see `asrkit info RECIPE`). Under torchrun, the same command trains across
    nodes (env:// rendezvous).

    Example: asrkit train --recipe recipes/zipformer-xs.yaml --train-cuts data/fbank/synth_cuts_train.jsonl.gz
    --valid-cuts data/fbank/synth_cuts_dev.jsonl.gz --lang-dir data/lang --exp-dir exp/zipformer-xs --world-size auto
    """
    from asrkit.config import load_train_config
    from asrkit.training.distributed import resolve_world_size
    from asrkit.training.loop import TrainJob, train as run_training

    processes = resolve_world_size(world_size, device)  # a bad value fails before anything is loaded
    overrides = overrides_dict(set_)
    if num_epochs is not None:
        overrides["num_epochs"] = num_epochs
    if use_fp16:
        overrides["use_fp16"] = True
    if use_bf16:
        overrides["use_bf16"] = True
    if skip_bad_audio:
        overrides["data.skip_bad_audio"] = True
    for key, value in (("data.max_duration", max_duration), ("data.num_buckets", num_buckets),
                       ("save_every_n", save_every_n), ("keep_last_k", keep_last_k),
                       ("average_period", average_period)):
        if value is not None:
            overrides[key] = value
    cfg = load_train_config(recipe, overrides)
    job = TrainJob(
        exp_dir=exp_dir,
        train_cuts=train_cuts,
        lang_dir=lang_dir,
        valid_cuts=valid_cuts,
        world_size=processes,
        device=device,
        start_epoch=start_epoch,
        start_batch=start_batch,
        resume=resume,
        force=force,
        master_port=master_port,
    )
    run_training(job, cfg)
