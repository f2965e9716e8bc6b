"""The state of one training process that no ``state_dict()`` holds: its random streams and the mutable
attributes of its modules.

An exact resume needs, besides the model/optimizer/scheduler state dicts, everything else a training step reads
that changes as training goes on:

* **random streams** -- torch (dropout, layer skipping, mel warping), CUDA (dropout on the GPU), Python's
  ``random`` (SpecAugment, the zipformer's balancers/whiteners and chunk sizes) and NumPy's global generator;
* **mutable module attributes** -- e.g. :class:`~asrkit.models.zipformer.scaling.Whiten` switches its check
  probability between two values in its backward pass. A module declares such attributes by name in a class
  attribute ``training_state_attributes`` (a tuple of names); they are saved per module path.

With DDP every rank has its own streams and its own module attributes (they depend on the rank's batches), so a
checkpoint stores one :func:`process_state` per rank (see :meth:`asrkit.training.loop.Trainer._save`).
"""

from __future__ import annotations

import logging
import random
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

TRAINING_STATE_ATTRIBUTES = "training_state_attributes"
"""Name of the class attribute through which a module lists its mutable training-time attributes."""


def rng_state(device: Optional[torch.device] = None) -> dict[str, Any]:
    """Every global random stream of this process, as a weights_only-loadable dict.

    Args:
        device: the process's training device; on CUDA its generator state is included.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: Optional[torch.device] = None) -> None:
    """Set the global random streams from :func:`rng_state`'s output."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def module_training_state(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module path: {attribute: value}}`` for every module that declares ``training_state_attributes``."""
    out: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        attributes = getattr(type(module), TRAINING_STATE_ATTRIBUTES, ())
        if attributes:
            out[name] = {attr: getattr(module, attr) for attr in attributes}
    return out


def load_module_training_state(model: nn.Module, state: dict[str, dict[str, Any]]) -> None:
    """Set the attributes saved by :func:`module_training_state`.

    Raises:
        KeyError: naming the module path when ``state`` and ``model`` do not have the same stateful modules (the
            checkpoint is of another architecture; the model's ``load_state_dict`` reports that first).
    """
    expected = module_training_state(model)
    if expected.keys() != state.keys():
        missing, extra = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
        raise KeyError(f"module training state does not match the model: missing {missing[:3]}, "
                       f"unexpected {extra[:3]}")
    modules = dict(model.named_modules())
    for name, attributes in state.items():
        for attr, value in attributes.items():
            setattr(modules[name], attr, value)


def process_state(model: nn.Module, device: Optional[torch.device] = None) -> dict[str, Any]:
    """This process's random streams and module training state (one entry of a checkpoint's ``process_states``)."""
    return {"rng": rng_state(device), "modules": module_training_state(model)}


def restore_process_state(model: nn.Module, state: dict[str, Any], device: Optional[torch.device] = None) -> None:
    """Undo everything since :func:`process_state` was taken (random streams and module attributes)."""
    restore_rng_state(state["rng"], device)
    if "modules" in state:
        load_module_training_state(model, state["modules"])


def state_for_rank(states: list[dict[str, Any]], rank: int, world_size: int) -> dict[str, Any]:
    """The saved process state for ``rank``. A run resumed with another number of processes than it was saved
    with cannot continue every rank's streams: it continues rank ``rank % saved`` and says so."""
    if len(states) != world_size and rank == 0:
        log.warning("the checkpoint was written by %d training processes, this run has %d: random streams and "
                    "module state continue from rank r %% %d, so the run is not bit-identical to an "
                    "uninterrupted one", len(states), world_size, len(states))
    return states[rank % len(states)]
