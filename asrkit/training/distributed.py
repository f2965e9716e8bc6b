"""Process-group set-up for DDP: ``--world-size N`` spawning on one machine, or torchrun's env://.

NCCL on GPUs, gloo on CPU. A rank that raises tears the group down so the others exit instead of hanging
(``torch.multiprocessing.spawn`` terminates the remaining processes when one fails).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from asrkit.errors import ConfigError


@dataclass
class DistContext:
    """Who this process is in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


# ``--world-size auto`` on CPU: on the 2-core reference machine two single-thread processes see ~1.8x the audio per
# minute of one process with two threads in the demo's training (docs/experiments.md, 2026-12-05); more CPU
# processes were never measured, and each adds a batch of max_duration seconds to every optimizer step, so auto stops
# at two.
AUTO_CPU_PROCESSES = 2


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_world_size(requested: str | int, device: str = "auto") -> int:
    """The number of training processes for ``--world-size N|auto``.

    ``auto``: one process per visible GPU when ``device`` resolves to CUDA; on CPU, ``AUTO_CPU_PROCESSES`` when the
    process may use at least that many cores (each then gets ``cores / processes`` threads), else one.

    Raises:
        ConfigError: ``requested`` is neither ``auto`` nor a positive integer.
    """
    text = str(requested).strip().lower()
    if text == "auto":
        device = resolve_auto_device(device)
        if device.startswith("cuda"):
            return max(1, torch.cuda.device_count()) if device == "cuda" else 1
        return AUTO_CPU_PROCESSES if usable_cores() >= AUTO_CPU_PROCESSES else 1
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"--world-size {requested!r} is not a number of processes", hint="a positive integer or auto")
    return value


def launched_by_torchrun() -> bool:
    """True when RANK/WORLD_SIZE/LOCAL_RANK come from torchrun (or another env:// launcher)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def resolve_auto_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; any other name is returned unchanged."""
    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_device(requested: str, local_rank: int) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else CPU; ``cuda`` -> ``cuda:<local_rank>``.

    Raises:
        ConfigError: the name is not a device, or it asks for a GPU that torch does not see (no CUDA, or more
            processes than GPUs).
    """
    requested = resolve_auto_device(requested)
    try:
        device = torch.device("cuda", local_rank) if requested == "cuda" else torch.device(requested)
    except RuntimeError as err:
        raise ConfigError(f"--device {requested!r} is not a device ({err})", hint="auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {requested}: this torch ({torch.__version__}) sees no CUDA GPU",
                              hint="use --device cpu (or auto)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {requested}: process {local_rank} would use {device}, but torch sees "
                              f"{count} GPU(s)", hint="one process per GPU: --world-size at most the GPU count")
    return device


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the DDP rendezvous of spawned processes, so that
    two runs on one machine do not collide on a fixed port)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_process_group(
    rank: int, world_size: int, local_rank: int, device: str, master_port: int | None = None
) -> DistContext:
    """Join the process group (no-op for world_size 1) and return this process's context."""
    dev = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if not launched_by_torchrun():
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            if not master_port:  # each rank picking its own free port would never meet the others
                raise ValueError("spawned DDP ranks need the one master_port their launcher chose (free_port())")
            os.environ["MASTER_PORT"] = str(master_port)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(
            backend, rank=rank, world_size=world_size, timeout=timedelta(minutes=10), init_method="env://"
        )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks (returns it unchanged in a single process)."""
    if ctx.distributed:
        values = values.to(ctx.device)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def max_over_ranks(value: float, ctx: DistContext) -> float:
    """The largest ``value`` of all ranks (``value`` itself in a single process)."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_gather_objects(obj: object, ctx: DistContext) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process); ``obj`` is pickled,
    so keep it small (e.g. random-stream states)."""
    if not ctx.distributed:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True if ``flag`` is set on any rank (used to stop all ranks together)."""
    if not ctx.distributed:
        return flag
    t = all_reduce_sum(torch.tensor([1.0 if flag else 0.0]), ctx)
    return bool(t.item() > 0)


def share_cpu_threads(ctx: DistContext) -> None:
    """On CPU, give each of the processes on this machine an equal share of the cores: torch's default (all
    cores per process) oversubscribes them and runs several times slower."""
    if ctx.device.type != "cpu" or not ctx.distributed:
        return
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
    torch.set_num_threads(max(1, usable_cores() // local_processes))
