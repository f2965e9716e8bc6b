"""Tests for asrkit.training.checkpoint: atomic saves, weights_only loads, clear errors, file helpers."""

from __future__ import annotations

import os
import pathlib
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
import torch
from conftest import assert_same_state

from asrkit.errors import CheckpointError
from asrkit.training.checkpoint import (
    batch_checkpoint_path,
    check_weights_only_safe,
    epoch_checkpoint_path,
    find_checkpoints,
    find_epoch_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    remove_old_checkpoints,
    remove_stale_temp_files,
    save_checkpoint,
)


def _tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))


def _train_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, sched, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(5, 4, generator=g)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step_batch()


def _lhotse_sampler_state() -> dict:
    from lhotse import CutSet
    from lhotse.dataset import DynamicBucketingSampler
    from lhotse.testing.dummies import DummyManifest

    cuts = DummyManifest(CutSet, begin_id=0, end_id=30)
    sampler = DynamicBucketingSampler(cuts, max_duration=5, num_buckets=2, shuffle=True, seed=3)
    it = iter(sampler)
    next(it)
    next(it)
    return sampler.state_dict()


# ---------------------------------------------------------------------------------------------
# Round trips of real training state
# ---------------------------------------------------------------------------------------------


def _build(name: str, seed: int):
    from asrkit.training.optim import build_optimizer
    from asrkit.training.schedulers import build_scheduler

    model = _tiny_model(seed)
    if name == "scaled_adam":
        opt = build_optimizer(model, "scaled_adam", lr=0.045)
        sched = build_scheduler("eden", opt, lr_batches=5, lr_epochs=2, warmup_batches=2)
    else:
        opt = build_optimizer(model, "adamw", lr=1e-2, weight_decay=0.1)
        sched = build_scheduler("warmup_inverse_sqrt", opt, warmup_batches=2)
    return model, opt, sched


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("optimizer_name", ["scaled_adam", "adamw"])
def test_round_trip_of_real_training_state_and_resume_matches(tmp_path, optimizer_name):
    model, opt, sched = _build(optimizer_name, seed=0)
    sched.step_epoch(1)
    _train_steps(model, opt, sched, 3, seed=1)
    model_avg = {k: v.detach().to(torch.float64).clone() for k, v in model.state_dict().items()}
    payload = {
        "model": model.state_dict(),
        "model_avg": model_avg,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "grad_scaler": torch.amp.GradScaler("cpu").state_dict(),
        "sampler": _lhotse_sampler_state(),
        "train_state": {"epoch": 2, "batch_idx_train": 3, "best_valid_loss": float("inf"), "cur_batch": None},
        "config": {"model": {"encoder_dims": [192, 256], "causal": False}, "lr": 0.045, "name": "tiny"},
    }
    path = save_checkpoint(tmp_path / "exp" / "checkpoint-3.pt", payload)
    assert path == tmp_path / "exp" / "checkpoint-3.pt"
    loaded = load_checkpoint(path, required_keys=("model", "optimizer"))
    assert_same_state(dict(payload), loaded)
    assert loaded["model_avg"]["0.weight"].dtype == torch.float64

    # Resuming from the loaded state gives exactly the trajectory of the uninterrupted run.
    model2, opt2, sched2 = _build(optimizer_name, seed=99)
    model2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["optimizer"])
    sched2.load_state_dict(loaded["scheduler"])
    _train_steps(model, opt, sched, 4, seed=7)
    _train_steps(model2, opt2, sched2, 4, seed=7)
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k


def test_save_replaces_existing_file_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "epoch-1.pt"
    save_checkpoint(path, {"v": torch.tensor([1.0])})
    save_checkpoint(path, {"v": torch.tensor([2.0])})
    assert torch.equal(load_checkpoint(path)["v"], torch.tensor([2.0]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-1.pt"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint-10.pt"
    save_checkpoint(path, {"v": 1})

    def boom(obj, f):
        f.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(CheckpointError, match="checkpoint-10.pt.*No space left"):
        save_checkpoint(path, {"v": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-10.pt"]


@pytest.mark.parametrize(
    "bad, where",
    [
        ({"sampler": {"seed": np.int64(3)}}, "['sampler']['seed']"),
        ({"config": {"exp_dir": pathlib.Path("exp")}}, "['config']['exp_dir']"),
        ({"train_state": {"hist": [1, 2, np.float32(0.5)]}}, "['train_state']['hist'][2]"),
        ({"model": torch.nn.Linear(2, 2)}, "['model']"),
    ],
)
def test_unloadable_values_are_refused_before_writing(tmp_path, bad, where):
    path = tmp_path / "checkpoint-1.pt"
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, bad)
    assert where in str(info.value)
    assert "weights_only" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_check_weights_only_safe_agrees_with_torch_load(tmp_path):
    """Everything the checker accepts really loads with weights_only=True."""
    accepted = {
        "a": (1, 2.5, None, True, "s", b"b", 1j),
        "b": {3, 4},
        "c": torch.float16,
        "d": torch.device("cpu"),
        "e": torch.Size([2, 3]),
        "f": torch.nn.Parameter(torch.ones(2)),
        "g": {0: {"step": torch.tensor(1.0)}},
        "h": [torch.zeros(2, dtype=torch.bfloat16)],
    }
    check_weights_only_safe(accepted)
    save_checkpoint(tmp_path / "x.pt", accepted)
    loaded = load_checkpoint(tmp_path / "x.pt")
    assert loaded["b"] == {3, 4} and loaded["c"] is torch.float16 and loaded["e"] == torch.Size([2, 3])


# ---------------------------------------------------------------------------------------------
# Load errors
# ---------------------------------------------------------------------------------------------


def _write_good(path):
    save_checkpoint(path, {"model": {"w": torch.randn(64, 64)}, "train_state": {"epoch": 1}})
    return path.read_bytes()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "d.pt").mkdir()
    with pytest.raises(CheckpointError, match=r"d\.pt: checkpoint path is not a regular file"):
        load_checkpoint(tmp_path / "d.pt")


def test_empty_file(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"e\.pt: checkpoint file is empty"):
        load_checkpoint(tmp_path / "e.pt")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.95])
def test_truncated_file(tmp_path, fraction):
    path = tmp_path / "t.pt"
    data = _write_good(path)
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"t\.pt: cannot load checkpoint .*truncated, corrupt"):
        load_checkpoint(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "c.pt"
    data = bytearray(_write_good(path))
    # Overwrite the zip central directory at the end of the file.
    data[-200:] = os.urandom(200)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"c\.pt: cannot load checkpoint"):
        load_checkpoint(path)


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  dim: 3\n")
    expected = r"config\.yaml: cannot load checkpoint .*not a PyTorch checkpoint"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)


def test_zip_that_is_not_torch(tmp_path):
    path = tmp_path / "z.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(CheckpointError, match=r"z\.pt: cannot load checkpoint"):
        load_checkpoint(path)


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a pickled module, not a state dict
    expected = r"obj\.pt: .*pickled torch\.nn\.modules\.linear\.Linear, which is not allowed with weights_only"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_legacy_pickle_file_is_refused(tmp_path):
    path = tmp_path / "p.pt"
    path.write_bytes(pickle.dumps({"a": pathlib.Path("x")}))
    with pytest.raises(CheckpointError, match=r"p\.pt: cannot load checkpoint"):
        load_checkpoint(path)


def test_non_dict_payload(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match=r"tensor\.pt: not an asrkit checkpoint: .*Tensor"):
        load_checkpoint(path)


def test_required_keys(tmp_path):
    path = save_checkpoint(tmp_path / "k.pt", {"model": {}, "config": {}})
    assert set(load_checkpoint(path, required_keys=("model",))) == {"model", "config"}
    with pytest.raises(CheckpointError, match=r"k\.pt: checkpoint lacks key\(s\) 'optimizer'"):
        load_checkpoint(path, required_keys=("model", "optimizer"))


# ---------------------------------------------------------------------------------------------
# Experiment-directory helpers
# ---------------------------------------------------------------------------------------------


def _touch_ckpt(path):
    save_checkpoint(path, {"name": path.name})


def test_find_latest_and_remove_old_checkpoints(tmp_path):
    for b in (900, 1000, 50, 12000):
        _touch_ckpt(batch_checkpoint_path(tmp_path, b))
    for e in (10, 2, 1):
        _touch_ckpt(epoch_checkpoint_path(tmp_path, e))
    (tmp_path / ".checkpoint-99999.pt.abc123xy.tmp").write_bytes(b"half")
    (tmp_path / "checkpoint-abc.pt").write_bytes(b"")
    (tmp_path / "checkpoint-7.pt.bak").write_bytes(b"")
    (tmp_path / ".notes.tmp").write_bytes(b"not ours")

    names = [p.name for p in find_checkpoints(tmp_path)]
    assert names == ["checkpoint-12000.pt", "checkpoint-1000.pt", "checkpoint-900.pt", "checkpoint-50.pt"]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-12000.pt"
    assert list(find_epoch_checkpoints(tmp_path)) == [1, 2, 10]
    assert find_epoch_checkpoints(tmp_path)[10] == tmp_path / "epoch-10.pt"

    assert remove_old_checkpoints(tmp_path, keep_last_k=0) == []
    removed = remove_old_checkpoints(tmp_path, keep_last_k=2)
    assert sorted(p.name for p in removed) == ["checkpoint-50.pt", "checkpoint-900.pt"]
    assert [p.name for p in find_checkpoints(tmp_path)] == ["checkpoint-12000.pt", "checkpoint-1000.pt"]
    assert len(find_epoch_checkpoints(tmp_path)) == 3
    with pytest.raises(ValueError):
        remove_old_checkpoints(tmp_path, keep_last_k=-1)

    assert [p.name for p in remove_stale_temp_files(tmp_path)] == [".checkpoint-99999.pt.abc123xy.tmp"]
    assert not (tmp_path / ".checkpoint-99999.pt.abc123xy.tmp").exists()
    assert (tmp_path / "checkpoint-7.pt.bak").exists() and (tmp_path / ".notes.tmp").exists()


def test_helpers_on_missing_directory(tmp_path):
    missing = tmp_path / "nothing"
    assert find_checkpoints(missing) == []
    assert latest_checkpoint(missing) is None
    assert find_epoch_checkpoints(missing) == {}
    assert remove_old_checkpoints(missing, 3) == []
    assert remove_stale_temp_files(missing) == []


# ---------------------------------------------------------------------------------------------
# SIGKILL while writing: the previous checkpoint survives
# ---------------------------------------------------------------------------------------------

_CHILD_PRELUDE = """
import sys, time, io, os, torch
from asrkit.training import checkpoint as ck
path = sys.argv[1]
"""


def _spawn(body: str, path) -> subprocess.Popen:
    code = textwrap.dedent(_CHILD_PRELUDE) + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(proc: subprocess.Popen, marker: str) -> None:
    line = proc.stdout.readline()
    if marker not in line:
        proc.kill()
        raise AssertionError(f"child did not reach {marker!r}: {line!r} {proc.stderr.read()}")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _temp_files(directory):
    return [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def _partly_written(directory, min_bytes: int) -> bool:
    for p in _temp_files(directory):
        try:
            if p.stat().st_size >= min_bytes:
                return True
        except FileNotFoundError:  # renamed away between listing and stat
            pass
    return False


def _save_old(path):
    save_checkpoint(path, {"marker": "old", "model": {"w": torch.arange(10.0)}})


def _assert_old(path):
    payload = load_checkpoint(path)
    assert payload["marker"] == "old"
    assert torch.equal(payload["model"]["w"], torch.arange(10.0))


def test_sigkill_half_way_through_writing_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint-100.pt"
    _save_old(path)
    # The child serialises a 16 MB payload, writes half of the bytes, then hangs until killed.
    proc = _spawn(
        """
        real_save = torch.save
        def half_save(obj, f):
            buf = io.BytesIO(); real_save(obj, buf); data = buf.getvalue()
            f.write(data[: len(data) // 2]); f.flush()
            print("HALF", len(data), flush=True); time.sleep(120)
        torch.save = half_save
        ck.save_checkpoint(path, {"marker": "new", "model": {"w": torch.randn(4_000_000)}})
        """,
        path,
    )
    _kill_when(proc, "HALF")
    _assert_old(path)
    tmps = _temp_files(tmp_path)
    assert len(tmps) == 1 and 7_000_000 < tmps[0].stat().st_size < 9_000_000
    assert remove_stale_temp_files(tmp_path) == tmps
    _assert_old(path)


def test_sigkill_after_writing_before_rename_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "epoch-3.pt"
    _save_old(path)
    proc = _spawn(
        """
        def hang(src, dst):
            print("BEFORE_REPLACE", flush=True); time.sleep(120)
        ck.os.replace = hang
        ck.save_checkpoint(path, {"marker": "new", "model": {"w": torch.randn(1000)}})
        """,
        path,
    )
    _kill_when(proc, "BEFORE_REPLACE")
    _assert_old(path)
    assert len(_temp_files(tmp_path)) == 1


def test_sigkill_at_an_arbitrary_moment_of_large_writes(tmp_path):
    """Unpatched saves of a 32 MB payload in a loop, killed while a temp file is being filled."""
    path = tmp_path / "checkpoint-7.pt"
    _save_old(path)
    proc = _spawn(
        """
        big = torch.empty(8_000_000)
        print("START", flush=True)
        for i in range(1000):
            big.fill_(float(i))
            ck.save_checkpoint(path, {"marker": i, "model": {"w": big}})
        """,
        path,
    )
    assert "START" in proc.stdout.readline()
    deadline = time.monotonic() + 60
    while not _partly_written(tmp_path, min_bytes=2_000_000):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "never saw a temp file being written"
        time.sleep(0.0005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    payload = load_checkpoint(path)  # must be a complete file: the old one or one complete new one
    if payload["marker"] == "old":
        _assert_old(path)
    else:
        w = payload["model"]["w"]
        assert w.shape == (8_000_000,) and bool((w == float(payload["marker"])).all())
