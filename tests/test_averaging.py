"""Tests for asrkit.training.averaging against hand-computed averages of tiny models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from asrkit.errors import CheckpointError
from asrkit.training.averaging import (
    average_checkpoints,
    average_state_dicts,
    averaged_model_from_running_averages,
    init_running_average,
    interval_average,
    update_running_average,
)
from asrkit.training.checkpoint import save_checkpoint


class Tiny(nn.Module):
    """2 float params + a BatchNorm (float buffers and an integer num_batches_tracked)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.bn = nn.BatchNorm1d(1)


def _set_all(model: Tiny, value: float, step: int) -> None:
    """Set every float entry of the model to ``value`` and the integer counter to ``step``."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.fill_(value)
        model.bn.num_batches_tracked.fill_(step)


def _float_values(sd) -> set[float]:
    vals = set()
    for t in sd.values():
        if t.is_floating_point():
            vals.update(round(v, 9) for v in t.flatten().tolist())
    return vals


def test_running_average_matches_hand_computed_means():
    model = Tiny()
    avg = init_running_average(model)
    assert all(v.dtype == torch.float64 for k, v in avg.items() if k != "bn.num_batches_tracked")
    assert avg["bn.num_batches_tracked"].dtype == torch.int64
    p = 2
    # Snapshots at batches 2, 4, 6, 8 have weights 1, 3, 8, 4.
    # n=2: avg = 1*2/2 + avg*0 = 1
    # n=4: avg = 3*2/4 + 1*2/4 = 2            (= mean(1, 3))
    # n=6: avg = 8*2/6 + 2*4/6 = 4            (= mean(1, 3, 8))
    # n=8: avg = 4*2/8 + 4*6/8 = 4            (= mean(1, 3, 8, 4))
    for n, value, expected in [(2, 1.0, 1.0), (4, 3.0, 2.0), (6, 8.0, 4.0), (8, 4.0, 4.0)]:
        _set_all(model, value, step=n)
        update_running_average(avg, model, batch_idx_train=n, average_period=p)
        assert _float_values(avg) == {expected}, n
        assert int(avg["bn.num_batches_tracked"]) == n  # integer buffer: the latest value
    # The model itself is untouched.
    assert _float_values(model.state_dict()) == {4.0}


def test_running_average_with_random_weights_equals_mean_of_snapshots():
    torch.manual_seed(0)
    model = Tiny()
    avg = init_running_average(model)
    snapshots = []
    for n in range(3, 31, 3):
        with torch.no_grad():
            for prm in model.parameters():
                prm.copy_(torch.randn_like(prm))
        snapshots.append({k: v.clone().double() for k, v in model.state_dict().items()})
        update_running_average(avg, model, batch_idx_train=n, average_period=3)
    for name in ("lin.weight", "lin.bias", "bn.weight"):
        expected = torch.stack([s[name] for s in snapshots]).mean(0)
        torch.testing.assert_close(avg[name], expected, rtol=1e-12, atol=1e-12)


def test_running_average_argument_checks():
    model = Tiny()
    avg = init_running_average(model)
    with pytest.raises(ValueError, match="average_period"):
        update_running_average(avg, model, batch_idx_train=10, average_period=0)
    with pytest.raises(ValueError, match="must be >= average_period"):
        update_running_average(avg, model, batch_idx_train=5, average_period=10)
    del avg["lin.bias"]
    with pytest.raises(KeyError, match="lin.bias"):
        update_running_average(avg, model, batch_idx_train=10, average_period=10)


def test_running_average_unwraps_ddp(tmp_path):
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        model = Tiny()
        ddp = nn.parallel.DistributedDataParallel(model)
        avg = init_running_average(ddp)
        assert set(avg) == set(model.state_dict())  # no "module." prefix
        _set_all(model, 7.0, step=3)
        update_running_average(avg, ddp, batch_idx_train=5, average_period=5)
        assert _float_values(avg) == {7.0}
    finally:
        dist.destroy_process_group()


def test_average_state_dicts_hand_computed():
    a, b, c = Tiny(), Tiny(), Tiny()
    _set_all(a, 1.0, step=10)
    _set_all(b, 2.0, step=20)
    _set_all(c, 6.0, step=30)
    out = average_state_dicts([a.state_dict(), b.state_dict(), c.state_dict()])
    assert _float_values(out) == {3.0}
    assert out["lin.weight"].dtype == torch.float32
    assert int(out["bn.num_batches_tracked"]) == 30  # last one's integer buffer
    assert out["bn.num_batches_tracked"].dtype == torch.int64
    # Inputs untouched.
    assert _float_values(a.state_dict()) == {1.0}


def test_average_state_dicts_accumulates_in_float64():
    # 4 x 60000 overflows float16 (max 65504): summing in the input dtype would give inf.
    sds = [{"w": torch.tensor([60000.0], dtype=torch.float16)} for _ in range(4)]
    out = average_state_dicts(sds)
    assert out["w"].dtype == torch.float16
    assert float(out["w"]) == 60000.0


def test_average_state_dicts_errors():
    with pytest.raises(ValueError):
        average_state_dicts([])
    with pytest.raises(CheckpointError, match=r"state dict #1: .*missing \['b'\]"):
        average_state_dicts([{"a": torch.zeros(1), "b": torch.zeros(1)}, {"a": torch.zeros(1)}])
    with pytest.raises(CheckpointError, match=r"state dict #2: 'a' has shape \(3,\) but \(2,\)"):
        average_state_dicts([{"a": torch.zeros(2)}, {"a": torch.zeros(2)}, {"a": torch.zeros(3)}])


def test_average_checkpoints(tmp_path):
    paths = []
    for i, value in enumerate([1.0, 5.0, 6.0]):
        m = Tiny()
        _set_all(m, value, step=i)
        paths.append(save_checkpoint(tmp_path / f"epoch-{i + 1}.pt", {"model": m.state_dict()}))
    out = average_checkpoints(paths)
    assert _float_values(out) == {4.0}
    assert int(out["bn.num_batches_tracked"]) == 2
    model = Tiny()
    model.load_state_dict(out)  # loadable as is
    with pytest.raises(ValueError):
        average_checkpoints([])


def test_average_checkpoints_errors_name_the_file(tmp_path):
    good = save_checkpoint(tmp_path / "epoch-1.pt", {"model": Tiny().state_dict()})
    other = save_checkpoint(tmp_path / "epoch-2.pt", {"model": {"x": torch.zeros(1)}})
    no_model = save_checkpoint(tmp_path / "epoch-3.pt", {"optimizer": {}})
    with pytest.raises(CheckpointError, match=r"epoch-2\.pt \['model'\]: its state dict does not match"):
        average_checkpoints([good, other])
    with pytest.raises(CheckpointError, match=r"epoch-3\.pt: checkpoint lacks key\(s\) 'model'"):
        average_checkpoints([good, no_model])
    with pytest.raises(CheckpointError, match=r"epoch-9\.pt: checkpoint file not found"):
        average_checkpoints([good, tmp_path / "epoch-9.pt"])


def test_interval_average_hand_computed():
    # Snapshots 1, 3 (n=4, p=2) -> avg 2; snapshots 1, 3, 8, 4 (n=8) -> avg 4.
    # Average over batches 5..8 = mean(8, 4) = 6 = (8*4 - 4*2) / (8 - 4).
    start = {"w": torch.tensor([2.0], dtype=torch.float64), "k": torch.tensor(4)}
    end = {"w": torch.tensor([4.0], dtype=torch.float64), "k": torch.tensor(8)}
    out = interval_average(start, 4, end, 8)
    assert out["w"].tolist() == [6.0] and int(out["k"]) == 8
    assert interval_average(start, 0, end, 8)["w"].tolist() == [4.0]
    with pytest.raises(ValueError):
        interval_average(start, 8, end, 8)


def test_averaged_model_from_running_averages_matches_mean_of_interval(tmp_path):
    torch.manual_seed(1)
    model = Tiny()
    avg = init_running_average(model)
    p = 4
    snapshots: list[dict] = []
    saved = {}
    for n in range(p, 41, p):
        with torch.no_grad():
            for prm in model.parameters():
                prm.add_(torch.randn_like(prm))
        model.bn.num_batches_tracked.fill_(n)
        snapshots.append({k: v.clone().double() for k, v in model.state_dict().items()})
        update_running_average(avg, model, batch_idx_train=n, average_period=p)
        if n in (12, 40):
            saved[n] = save_checkpoint(
                tmp_path / f"checkpoint-{n}.pt",
                {"model": model.state_dict(), "model_avg": avg, "train_state": {"batch_idx_train": n}},
            )
    out = averaged_model_from_running_averages(saved[12], saved[40])
    # Snapshots at batches 16, 20, ..., 40 are indices 3..9.
    for name in ("lin.weight", "lin.bias", "bn.weight", "bn.bias"):
        expected = torch.stack([s[name] for s in snapshots[3:]]).mean(0).float()
        torch.testing.assert_close(out[name], expected, rtol=1e-6, atol=1e-6)
        assert out[name].dtype == torch.float32
    assert int(out["bn.num_batches_tracked"]) == 40
    Tiny().load_state_dict(out)


def test_averaged_model_from_running_averages_errors(tmp_path):
    sd = init_running_average(Tiny())
    a = save_checkpoint(tmp_path / "epoch-1.pt", {"model_avg": sd, "train_state": {"batch_idx_train": 100}})
    b = save_checkpoint(tmp_path / "epoch-2.pt", {"model_avg": sd, "train_state": {"batch_idx_train": 50}})
    c = save_checkpoint(tmp_path / "epoch-3.pt", {"model_avg": sd, "train_state": {"epoch": 3}})
    d = save_checkpoint(tmp_path / "epoch-4.pt", {"model": {}, "train_state": {"batch_idx_train": 200}})
    e = save_checkpoint(
        tmp_path / "epoch-5.pt", {"model_avg": {"x": torch.zeros(1)}, "train_state": {"batch_idx_train": 300}}
    )
    with pytest.raises(CheckpointError, match=r"epoch-2\.pt: batch_idx_train=50 is not after .*epoch-1\.pt"):
        averaged_model_from_running_averages(a, b)
    with pytest.raises(CheckpointError, match=r"epoch-3\.pt: train_state\['batch_idx_train'\]"):
        averaged_model_from_running_averages(a, c)
    with pytest.raises(CheckpointError, match=r"epoch-4\.pt: checkpoint lacks key\(s\) 'model_avg'"):
        averaged_model_from_running_averages(a, d)
    with pytest.raises(CheckpointError, match=r"epoch-1\.pt vs .*epoch-5\.pt: .*does not match"):
        averaged_model_from_running_averages(a, e)
