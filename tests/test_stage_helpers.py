"""egs/lib/stages.sh: which checkpoints the stages after training pick (select_checkpoints)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _select(exp: Path, epoch: str = "", avg: int = 2) -> tuple[str, str]:
    """Run select_checkpoints in bash; returns (select_args, selection)."""
    script = (f'set -euo pipefail; source "{REPO}/egs/lib/stages.sh"; exp_dir="{exp}"; epoch="{epoch}"; avg={avg}; '
              f'recipe="{REPO}/recipes/zipformer-xs.yaml"; select_checkpoints; '
              'echo "${select_args[*]}"; echo "$selection"')
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    return out[0], out[1]


def _touch(path: Path, age_s: float) -> None:
    path.write_bytes(b"")
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))


def test_finished_run_uses_the_last_epoch(tmp_path: Path) -> None:
    for e in (1, 2, 3):
        _touch(tmp_path / f"epoch-{e}.pt", 100 - e)
    _touch(tmp_path / "checkpoint-200.pt", 200)  # older than epoch-3.pt: written during epoch 2
    args, selection = _select(tmp_path)
    assert args.split()[2:] == ["--epoch", "3", "--avg", "2", "--use-averaged-model"]
    assert selection == "epoch-3-avg-2-use-averaged-model"


def test_run_stopped_mid_epoch_uses_its_newest_batch_checkpoint(tmp_path: Path) -> None:
    _touch(tmp_path / "epoch-1.pt", 300)
    for n, age in ((200, 250), (400, 200), (600, 150), (650, 10)):
        _touch(tmp_path / f"checkpoint-{n}.pt", age)
    args, selection = _select(tmp_path, avg=3)
    assert args.split()[2:] == ["--iter", "650", "--avg", "3", "--use-averaged-model"]
    assert selection == "iter-650-avg-3-use-averaged-model"
    # fewer checkpoints than avg + 1: average over what exists
    args, _ = _select(tmp_path, avg=9)
    assert args.split()[2:] == ["--iter", "650", "--avg", "3", "--use-averaged-model"]


def test_single_batch_checkpoint_is_used_as_is(tmp_path: Path) -> None:
    _touch(tmp_path / "checkpoint-150.pt", 10)
    args, selection = _select(tmp_path)
    assert args.split()[2:] == ["--iter", "150", "--avg", "1"]
    assert selection == "iter-150-avg-1"


def test_explicit_epoch_wins_over_newer_batch_checkpoints(tmp_path: Path) -> None:
    _touch(tmp_path / "epoch-1.pt", 100)
    _touch(tmp_path / "checkpoint-900.pt", 1)
    args, _ = _select(tmp_path, epoch="1", avg=1)
    assert args.split()[2:] == ["--epoch", "1", "--avg", "1", "--use-averaged-model"]


def test_missing_experiment_dir_falls_back_to_the_recipe_epochs(tmp_path: Path) -> None:
    """Recipes call select_checkpoints before training ran (e.g. --stop-stage 2) under set -euo pipefail."""
    args, selection = _select(tmp_path / "not-trained-yet", avg=2)
    assert args.split()[2:4] == ["--epoch", "30"]  # zipformer-xs.yaml's num_epochs
    assert selection == "epoch-30-avg-2-use-averaged-model"
