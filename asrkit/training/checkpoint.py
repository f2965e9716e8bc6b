"""Crash-safe checkpoint files and the naming conventions of an experiment directory.

A checkpoint is one ``torch.save``\\ d dict (the *payload*). By convention its keys are:

====================  ==========================================================================
``"model"``           ``model.state_dict()``
``"model_avg"``       float64 running-average state dict (see :mod:`asrkit.training.averaging`);
                      absent when averaging is off
``"optimizer"``       ``optimizer.state_dict()``
``"scheduler"``       ``scheduler.state_dict()``
``"grad_scaler"``     ``GradScaler.state_dict()`` (None without fp16)
``"train_state"``     plain dict: ``epoch``, ``batch_idx_train``, ``batch_in_epoch`` (the sampler
                      position: resume skips that many batches), ``best_valid_loss``, ...
``"config"``          the resolved experiment config as a plain dict
``"process_states"``  one dict per training process (rank): its random streams and the mutable
                      attributes of its modules (see :mod:`asrkit.training.run_state`)
====================  ==========================================================================

Why the care:

* **Atomic writes.** Training is killed (OOM, pre-emption, Ctrl-C) at arbitrary moments. A
  checkpoint is written to a hidden temporary file *in the same directory*, flushed and
  ``fsync``\\ ed, then ``os.replace``\\ d over the destination, which POSIX guarantees to be atomic
  on one filesystem. A reader therefore sees either the complete old file or the complete new one,
  never half of the new one.
* **weights_only loading.** ``torch.load(weights_only=True)`` refuses arbitrary pickled objects, so
  opening a checkpoint cannot execute code. The price is that a payload may hold only plain
  containers, numbers, strings, tensors, dtypes and devices; :func:`save_checkpoint` checks this
  *before* writing, because discovering an unloadable numpy scalar at resume time is too late.

File names inside an experiment directory:

* ``checkpoint-<batch_idx_train>.pt`` -- periodic checkpoints (see :func:`find_checkpoints`,
  :func:`remove_old_checkpoints`);
* ``epoch-<n>.pt`` -- end-of-epoch checkpoints (see :func:`find_epoch_checkpoints`).

Example::

    save_checkpoint(exp_dir / "epoch-3.pt", {"model": model.state_dict(), "train_state": {...}})
    payload = load_checkpoint(exp_dir / "epoch-3.pt")
    model.load_state_dict(payload["model"])
"""

from __future__ import annotations

import collections
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from asrkit.errors import CheckpointError

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "batch_checkpoint_path",
    "epoch_checkpoint_path",
    "find_checkpoints",
    "latest_checkpoint",
    "find_epoch_checkpoints",
    "find_all_checkpoints",
    "remove_old_checkpoints",
    "remove_stale_temp_files",
    "check_weights_only_safe",
]

_BATCH_RE = re.compile(r"^checkpoint-(\d+)\.pt$")
_EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")
_TMP_PREFIX = "."
_TMP_SUFFIX = ".tmp"
# ".<name>.<8 random chars from tempfile>.tmp", e.g. ".checkpoint-800.pt.k2x9_a0q.tmp"
_TMP_RE = re.compile(r"^\..+\.pth?\.[a-z0-9_]{8}\.tmp$")

# Leaf types that torch's weights_only unpickler reconstructs (checked against torch 2.13).
_SAFE_LEAVES: tuple[type, ...] = (
    str,
    bytes,
    bool,
    int,
    float,
    complex,
    type(None),
    torch.Tensor,  # includes nn.Parameter
    torch.dtype,
    torch.device,
    torch.Size,
)


def check_weights_only_safe(obj: Any, where: str = "payload") -> None:
    """Raise if ``obj`` holds anything ``torch.load(weights_only=True)`` would refuse.

    Allowed: ``dict``/``OrderedDict``, ``list``, ``tuple``, ``set`` (recursively) of ``str``,
    ``bytes``, ``bool``, ``int``, ``float``, ``complex``, ``None``, tensors, ``torch.dtype``,
    ``torch.device`` and ``torch.Size``.

    Args:
        obj: the object to check.
        where: how to name ``obj`` in the error message.

    Raises:
        CheckpointError: naming the key path of the first offending value, e.g.
            ``payload['sampler']['seed']: numpy.int64 ...``.
    """
    if isinstance(obj, _SAFE_LEAVES):
        return
    if type(obj) in (dict, collections.OrderedDict):
        for key, value in obj.items():
            check_weights_only_safe(key, f"{where} key {key!r}")
            check_weights_only_safe(value, f"{where}[{key!r}]")
        return
    if type(obj) in (list, tuple, set):
        for i, value in enumerate(obj):
            check_weights_only_safe(value, f"{where}[{i}]")
        return
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    raise CheckpointError(
        f"{where}: a {kind} cannot be saved in a checkpoint because "
        f"torch.load(weights_only=True) refuses it",
        hint="store plain Python values (int(x), float(x), str(path), x.tolist()) or tensors",
    )


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically.

    The dict is first checked with :func:`check_weights_only_safe`, then saved to a hidden
    temporary file next to ``path`` (``.<name>.<random>.tmp``), flushed, fsync'ed and renamed over
    ``path`` with ``os.replace``. If the process dies at any moment, ``path`` still holds its
    previous complete content (or does not exist if it never did); at worst a stale temporary file
    is left behind (see :func:`remove_stale_temp_files`). Parent directories are created.

    Only the rank-0 process of a distributed run should call this.

    Args:
        path: destination file, conventionally ``<exp_dir>/checkpoint-<batch>.pt`` or
            ``<exp_dir>/epoch-<n>.pt``.
        payload: a ``dict`` with string keys (see the module docstring for the conventions).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        CheckpointError: if the payload holds a value weights_only loading would refuse, or the
            file cannot be written (disk full, permission denied, ...).
    """
    path = Path(path)
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{path}: checkpoint payload must be a dict, got {type(payload).__name__}")
    payload = dict(payload)
    check_weights_only_safe(payload, where=f"{path.name} payload")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f"{_TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent
        )
    except OSError as e:
        raise CheckpointError(f"{path}: cannot create checkpoint file: {e}") from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp creates 0600 files; keep an existing file's mode, else the usual 0644.
            os.fchmod(f.fileno(), path.stat().st_mode & 0o777 if path.exists() else 0o644)
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        # Includes KeyboardInterrupt: never leave a half-written temp file behind when we can help it.
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CheckpointError(f"{path}: writing the checkpoint failed: {e}") from e
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); silently skipped where directories can't be opened."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    required_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``).

    Args:
        path: the checkpoint file.
        map_location: where tensors are placed (default ``"cpu"``).
        required_keys: payload keys that must be present, e.g. ``("model",)``.

    Returns:
        The payload dict.

    Raises:
        CheckpointError: naming ``path`` when the file is missing, empty, truncated, corrupt,
            not a torch file, holds objects weights_only loading refuses, is not a dict, or
            lacks one of ``required_keys``.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint path is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"{path}: checkpoint file is empty (0 bytes)", hint="delete it and use an earlier checkpoint"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError/... depending on the damage
        reason, hint = _describe_load_failure(e)
        raise CheckpointError(f"{path}: cannot load checkpoint ({size} bytes): {reason}", hint=hint) from e
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"{path}: not an asrkit checkpoint: expected a dict payload, found {type(payload).__name__}"
        )
    missing = [k for k in required_keys if k not in payload]
    if missing:
        raise CheckpointError(
            f"{path}: checkpoint lacks key(s) {', '.join(map(repr, missing))}; "
            f"it has {', '.join(map(repr, sorted(map(str, payload)))) or 'no keys'}"
        )
    return payload


def _describe_load_failure(e: Exception) -> tuple[str, str]:
    """Turn torch.load's multi-paragraph exceptions into one clause for a one-line error."""
    text = str(e)
    # (torch <= 2.12: "Unsupported global: GLOBAL x.y"; 2.13: "unsupported GLOBAL x.y whose module x is blocked")
    refused = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", text)
    if refused:
        return (
            f"it contains a pickled {refused.group(1)}, which is not allowed with weights_only=True "
            f"(not an asrkit checkpoint?)",
            "checkpoints must hold state dicts and plain values, not pickled objects",
        )
    detail = re.search(r"WeightsUnpickler error: \s*(.+?)\s*(?:\n\n|$)", text, re.S)
    if detail:
        first = detail.group(1).splitlines()[0]
    else:
        first = (text.strip().splitlines() or [""])[0]
    return (
        f"it is truncated, corrupt or not a PyTorch checkpoint ({type(e).__name__}: {first})",
        "delete it and resume from an earlier checkpoint",
    )


def batch_checkpoint_path(exp_dir: str | os.PathLike[str], batch_idx_train: int) -> Path:
    """``<exp_dir>/checkpoint-<batch_idx_train>.pt``."""
    return Path(exp_dir) / f"checkpoint-{int(batch_idx_train)}.pt"


def epoch_checkpoint_path(exp_dir: str | os.PathLike[str], epoch: int) -> Path:
    """``<exp_dir>/epoch-<epoch>.pt``."""
    return Path(exp_dir) / f"epoch-{int(epoch)}.pt"


def find_checkpoints(exp_dir: str | os.PathLike[str]) -> list[Path]:
    """Periodic checkpoints ``checkpoint-<batch>.pt`` in ``exp_dir``, newest (highest batch) first.

    Temporary files of interrupted saves are ignored. A missing directory gives ``[]``.
    """
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        return []
    found = []
    for p in exp_dir.iterdir():
        m = _BATCH_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, key=lambda t: t[0], reverse=True)]


def latest_checkpoint(exp_dir: str | os.PathLike[str]) -> Path | None:
    """The ``checkpoint-<batch>.pt`` with the highest batch index, or ``None``."""
    found = find_checkpoints(exp_dir)
    return found[0] if found else None


def find_epoch_checkpoints(exp_dir: str | os.PathLike[str]) -> dict[int, Path]:
    """End-of-epoch checkpoints ``{epoch: <exp_dir>/epoch-<epoch>.pt}``, in increasing epoch order."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        return {}
    found = {}
    for p in exp_dir.iterdir():
        m = _EPOCH_RE.match(p.name)
        if m and p.is_file():
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def find_all_checkpoints(exp_dir: str | os.PathLike[str]) -> list[Path]:
    """Every complete checkpoint of ``exp_dir``, batch and epoch ones, the most recently written first."""
    files = find_checkpoints(exp_dir) + list(find_epoch_checkpoints(exp_dir).values())
    return sorted(files, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def remove_old_checkpoints(exp_dir: str | os.PathLike[str], keep_last_k: int) -> list[Path]:
    """Delete all but the ``keep_last_k`` newest ``checkpoint-<batch>.pt`` files.

    ``epoch-<n>.pt`` files are never touched. ``keep_last_k == 0`` disables the clean-up (keeps
    everything), mirroring the usual ``--keep-last-k 0`` meaning.

    Returns:
        The deleted paths.

    Raises:
        ValueError: if ``keep_last_k`` is negative.
    """
    if keep_last_k < 0:
        raise ValueError(f"keep_last_k must be >= 0, got {keep_last_k}")
    if keep_last_k == 0:
        return []
    removed = []
    for p in find_checkpoints(exp_dir)[keep_last_k:]:
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def remove_stale_temp_files(exp_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files left in ``exp_dir`` by saves that were killed mid-write.

    Call it at start-up (rank 0, before any save) -- never while another process may be saving.

    Returns:
        The deleted paths.
    """
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        return []
    removed = []
    for p in exp_dir.iterdir():
        if _TMP_RE.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
