"""Fault injection through the command line, as a user meets faults: a training killed at a random moment, bad
audio among good files, checkpoints and tokenizers that do not belong to the experiment.

Each case asserts the exact outcome: exit status, the one error line, what is (not) written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asrkit.training.checkpoint import load_checkpoint
from conftest import write_tone_corpus

REPO = Path(__file__).resolve().parents[1]
DEMO_PRESET = REPO / "recipes" / "zipformer-xs.yaml"


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """A small generated corpus (~3 minutes of speed-perturbed training audio) with fbank and a tokenizer."""
    from asrkit.data.fbank import compute_fbank_for_splits
    from asrkit.data.prepare_lang import prepare_tokenizer

    root = tmp_path_factory.mktemp("faults")
    manifests = write_tone_corpus(root, n_per_split=48)
    cuts = compute_fbank_for_splits(manifests, "tiny", ["train", "test"], root / "fbank",
                                    speed_perturb_splits=["train"], num_jobs=1)
    prepare_tokenizer(cuts["train"], root / "lang", vocab_size=30)
    return {"train": cuts["train"], "test": cuts["test"], "lang": root / "lang"}


def _demo_train_cmd(data, exp_dir: Path, *extra: str) -> list[str]:
    """The demo's training (its preset, 2 DDP processes as egs/synth trains) with a step budget instead of the
    time budget, so that two runs are comparable step for step."""
    return [sys.executable, "-m", "asrkit.cli.main", "train", "--recipe", str(DEMO_PRESET), "--exp-dir", str(exp_dir),
            "--train-cuts", str(data["train"]), "--lang-dir", str(data["lang"]), "--device", "cpu",
            "--world-size", "2", "--set", "max_minutes=0", "--set", "max_steps=40", "--set", "save_every_n=10",
            "--set", "keep_last_k=10", "--set", "log_interval=1", *extra]


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"training ended (exit {proc.returncode}) before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in _flatten(value, f"{prefix}.{key}").items()}
    if isinstance(obj, (list, tuple)):
        return {k: v for i, value in enumerate(obj) for k, v in _flatten(value, f"{prefix}[{i}]").items()}
    return {prefix: obj}


def _differences(a, b) -> list[str]:
    fa, fb = _flatten(a), _flatten(b)
    assert fa.keys() == fb.keys()
    return [k for k in fa if not (torch.equal(fa[k], fb[k]) if isinstance(fa[k], torch.Tensor) else fa[k] == fb[k])]


@pytest.mark.slow
def test_sigkill_of_the_two_process_demo_training_resumes_bit_identically(demo_data, tmp_path):
    """SIGKILL every process of the demo training between two checkpoints (step 25 of 40, checkpoints every 10),
    resume with --resume: the later checkpoints equal the uninterrupted run's bit for bit -- weights, averaged
    model, optimizer state and run state."""
    ref, cut = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run(_demo_train_cmd(demo_data, ref), check=True, capture_output=True)

    proc = subprocess.Popen(_demo_train_cmd(demo_data, cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    log = cut / "log" / "train.log"
    try:
        _wait_for(lambda: (cut / "checkpoint-20.pt").exists(), proc, "checkpoint-20.pt")
        _wait_for(lambda: "(step 25)" in log.read_text(), proc, "step 25")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, as a pre-emption does
        proc.wait()
    assert not (cut / "checkpoint-30.pt").exists(), "killed between checkpoints 20 and 30"
    subprocess.run(_demo_train_cmd(demo_data, cut, "--resume"), check=True, capture_output=True)
    assert "resumed from" in log.read_text() and "checkpoint-20.pt" in log.read_text()

    for step in (30, 40):
        a, b = load_checkpoint(ref / f"checkpoint-{step}.pt"), load_checkpoint(cut / f"checkpoint-{step}.pt")
        for key in ("model", "model_avg", "optimizer", "scheduler", "train_state", "process_states"):
            assert not _differences(a[key], b[key]), f"checkpoint-{step}.pt: {key} differs"
