"""Whether a training run may use an experiment directory, and the config it leaves there.

An experiment directory holds one run: ``config.yaml`` (the resolved config) and its checkpoints. Starting a run
in a directory that holds another one would silently mix the two (the newest-step checkpoint of the old run wins
at the next ``--resume``), so :func:`claim_experiment_dir` decides, before anything is written:

==========================================  =====================================================================
directory holds                             what happens
==========================================  =====================================================================
nothing (or only logs)                      the run starts
the same config, no checkpoint yet          the run starts (an earlier start died before its first checkpoint)
checkpoints, no ``--resume``                refused: continue with ``--resume`` or start over with ``--force``
another config, no ``--resume``             refused, naming the differing keys, unless ``--force``
``--resume``, another ``model`` section     refused: the weights would not fit (use another exp dir or --force)
``--resume``, other differences             the run resumes; each changed key is logged (e.g. a raised budget)
anything, with ``--force``                  the old run's checkpoints, config and TensorBoard logs are removed
==========================================  =====================================================================
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from asrkit.errors import ConfigError
from asrkit.training.checkpoint import find_all_checkpoints

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"


def config_differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``[(dotted key, old value, new value), ...]`` where two nested config dicts differ (sorted by key)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += config_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        old, new = list(old), list(new)
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def _describe(differences: list[tuple[str, Any, Any]], limit: int = 4) -> str:
    shown = ", ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in differences[:limit])
    more = len(differences) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def _run_files(exp_dir: Path) -> list[Path]:
    """The files of a run that a new run must not mix with: checkpoints, config, TensorBoard events."""
    return find_all_checkpoints(exp_dir) + [p for p in (exp_dir / CONFIG_NAME, exp_dir / "tensorboard") if p.exists()]


def claim_experiment_dir(exp_dir: Path, resolved: dict, resume: bool, force: bool) -> None:
    """Check that a run with the ``resolved`` config may train in ``exp_dir`` (see the module docstring).

    Args:
        exp_dir: the experiment directory (may not exist yet).
        resolved: the run's resolved config as a plain dict (``to_dict(TrainConfig)``).
        resume: the run continues from a checkpoint in ``exp_dir`` (``--resume``, ``--start-epoch``/``--start-batch``).
        force: start over: the previous run's files are removed (and logged) instead of refusing.

    Raises:
        ConfigError: one line naming the directory, what it holds and the flag that says what to do.
    """
    exp_dir = Path(exp_dir)
    config_path = exp_dir / CONFIG_NAME
    checkpoints = find_all_checkpoints(exp_dir)
    if force:
        removed = _run_files(exp_dir)
        for path in removed:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        if removed:
            log.warning("--force: removed the previous run in %s (%d files: checkpoints, %s, TensorBoard logs)",
                        exp_dir, len(removed), CONFIG_NAME)
        return
    if not config_path.is_file():
        if checkpoints and not resume:
            raise ConfigError(f"{exp_dir} holds {len(checkpoints)} checkpoints but no {CONFIG_NAME}",
                              hint="continue with --resume, or start over with --force (removes them)")
        return
    try:
        old = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path} is not valid YAML ({exc.__class__.__name__})",
                          hint="start over with --force, or use another --exp-dir") from None
    differences = config_differences(old, resolved)
    if resume:
        model_changes = [d for d in differences if d[0].startswith("model.")]
        if model_changes:
            raise ConfigError(f"cannot resume the run in {exp_dir}: the model differs ({_describe(model_changes)})",
                              hint="train it in another --exp-dir, or start over here with --force")
        for key, before, after in differences:
            log.warning("resuming with a changed setting: %s: %r -> %r", key, before, after)
        return
    if differences:
        raise ConfigError(f"{exp_dir} holds a run with another config ({_describe(differences)})",
                          hint="use another --exp-dir, continue it with --resume, or start over with --force")
    if checkpoints:
        raise ConfigError(f"{exp_dir} already holds this run ({len(checkpoints)} checkpoints, newest "
                          f"{checkpoints[0].name})",
                          hint="continue it with --resume, or start over with --force (removes its checkpoints)")


def write_experiment_config(exp_dir: Path, resolved: dict) -> Path:
    """Write ``exp_dir/config.yaml`` atomically (a crash leaves the old file or the new one, never half)."""
    path = Path(exp_dir) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{CONFIG_NAME}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(resolved, f, sort_keys=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
