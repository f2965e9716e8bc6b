"""Smoke tests of the loss benchmark (tiny setting, in-process workers)."""

from __future__ import annotations

import numpy as np

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
