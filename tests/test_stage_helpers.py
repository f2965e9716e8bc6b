"""egs/lib/stages.sh: which checkpoints the stages after training pick (select_checkpoints), and the recipes'
command lines (parse_options)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

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


def _parse(*args: str) -> subprocess.CompletedProcess:
    """parse_options over a recipe-like set of defaults; prints the variables afterwards."""
    script = (f'set -euo pipefail; source "{REPO}/egs/lib/stages.sh"; usage() {{ echo "Usage: demo"; }}; '
              'stage=0; dl_dir=download; epoch=""; force=""; train_args=(); flag_options=(force); '
              'parse_options "$@"; echo "$stage|$dl_dir|$epoch|$force|${#train_args[@]}|${train_args[*]}"')
    return subprocess.run(["bash", "-c", script, "run.sh", *args], capture_output=True, text=True)


def test_parse_options_sets_declared_variables_flags_and_arrays() -> None:
    proc = _parse("--stage", "3", "--dl-dir", "/data/an4", "--epoch", "", "--force",
                  "--train-args", "--set num_epochs=2 --seed 7")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3|/data/an4||--force|4|--set num_epochs=2 --seed 7"
    assert _parse().stdout.strip() == "0|download|||0|"


@pytest.mark.parametrize("args,message", [
    (["--stgae", "3"], "unknown option --stgae"),
    (["--root", "/tmp"], "unknown option --root"),  # the script's own variables are not options
    (["--PATH", "/tmp"], "unknown option --PATH"),
    (["--stage"], "option --stage needs a value"),
    (["3"], "unexpected argument '3'"),
])
def test_parse_options_refuses_what_the_recipe_does_not_declare(args, message) -> None:
    proc = _parse(*args)
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("corpus", ["synth", "an4", "librispeech"])
def test_every_recipe_prints_usage_and_names_a_bad_option(corpus: str) -> None:
    script = REPO / "egs" / corpus / "run.sh"
    help_ = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and help_.stdout.startswith(f"Usage: egs/{corpus}/run.sh")
    bad = subprocess.run(["bash", str(script), "--stage", "0", "--no-such-option", "1"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "unknown option --no-such-option" in bad.stderr
