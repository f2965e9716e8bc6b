"""Smoke tests of the loss benchmark (tiny setting, in-process workers)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from asrkit.bench.loss import Setting, _add_ratios, format_table, make_batches, run_worker, sample_lengths


def test_length_distribution_matches_protocol():
    lengths = np.array(sample_lengths(4000, seed=0))
    T, U = lengths[:, 0], lengths[:, 1]
    assert 31 <= T.min() and T.max() <= 680
    assert 2 <= U.min() and U.max() <= 151
    assert abs(T.mean() - 318) < 10
    assert abs(U.mean() - 68) < 5
    assert sample_lengths(50, seed=1) == sample_lengths(50, seed=1)
    assert sample_lengths(50, seed=1) != sample_lengths(50, seed=2)


def test_batches_are_capped_and_length_sorted():
    setting = Setting(num_steps=5, max_frames=1500, seed=0, threads=1)
    batches = make_batches(setting)
    assert len(batches) == 6
    for batch in batches:
        assert sum(t for t, _ in batch) <= 1500 or len(batch) == 1
        ts = [t for t, _ in batch]
        assert ts == sorted(ts)


def test_workers_run_and_table_formats():
    setting = Setting(num_steps=1, max_frames=60, seed=0, threads=1, dim=16, vocab=11,
                      length_scale=0.05, sub_batch_nodes=300)
    rows = [run_worker(name, setting) for name in ("ours-pruned", "ours-full", "ours-full-sub-batched")]
    for row in rows:
        assert row["steps"] == 1 and row["mean_ms"] > 0 and np.isfinite(row["loss_sum"])
    # the full loss and its sub-batched variant compute the same numbers
    assert abs(rows[1]["loss_sum"] - rows[2]["loss_sum"]) < 1e-3 * abs(rows[1]["loss_sum"])
    _add_ratios(rows)
    table = format_table(rows)
    assert "| ours-pruned |" in table and "ours-full / ours-pruned" in table


def test_a_backend_that_cannot_run_is_left_out_but_ours_failing_is_an_error(monkeypatch, capsys):
    from asrkit.bench import loss as bench

    def fake_run(name, setting, for_memory):
        if name == "fast_rnnt-pruned" or (name == "ours-full" and fail_ours):
            raise RuntimeError(f"benchmark worker {name} failed:\nImportError: no CUDA build")
        return {"config": name, "mean_ms": 2.0, "peak_mib": 1.0, "memory_method": "fake"}

    monkeypatch.setattr(bench, "_available", lambda config, on_gpu=False: True)
    monkeypatch.setattr(bench, "_run_subprocess", fake_run)
    fail_ours = False
    rows = bench.bench_loss(configs=["ours-pruned", "fast_rnnt-pruned", "ours-full"], repeats=2)
    assert [r["config"] for r in rows] == ["ours-pruned", "ours-full"]
    assert "fast_rnnt-pruned left out: ImportError: no CUDA build" in capsys.readouterr().err
    fail_ours = True
    with pytest.raises(RuntimeError, match="ours-full failed"):
        bench.bench_loss(configs=["ours-pruned", "ours-full"], repeats=1)


@pytest.mark.cuda
def test_workers_run_on_cuda():
    setting = Setting(num_steps=2, max_frames=300, seed=0, threads=1, dim=32, vocab=21, length_scale=0.2,
                      sub_batch_nodes=3000, device="cuda")
    cpu_setting = dataclasses.replace(setting, device="cpu")
    for name in ("ours-pruned", "ours-full", "ours-full-sub-batched"):
        row = run_worker(name, setting)
        assert row["device"] == "cuda" and row["memory_method"] == "torch.cuda.max_memory_allocated"
        assert row["steps"] == 2 and row["peak_mib"] > 0
        # same batches and weights as on the CPU, so the same loss; the pruned loss to 1 %, since a prune range
        # can move where two positions of the simple loss's occupation tie to float rounding (on the GPU 0.14 %)
        tol = 1e-2 if name == "ours-pruned" else 1e-4
        assert abs(row["loss_sum"] - run_worker(name, cpu_setting)["loss_sum"]) < tol * abs(row["loss_sum"])
