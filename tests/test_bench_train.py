"""`asrkit bench train`: LibriSpeech-shaped batches synthesised from a tiny corpus, and precisions side by side."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from test_training import prepared, tiny_config  # noqa: F401  (fixture)

from asrkit.bench.train import (
    BatchShape,
    bench_train_precisions,
    format_table,
    parse_precisions,
    shaped_batches,
)
from asrkit.config import save_yaml
from asrkit.data.datamodule import Batch
from asrkit.errors import ConfigError


def _batch(lens: list[int], start: int) -> Batch:
    feats = torch.full((len(lens), max(lens), 3), -23.0)
    for i, n in enumerate(lens):
        feats[i, :n] = torch.arange(n).float().unsqueeze(1) + 1000 * (start + i)
    return Batch(features=feats, feature_lens=torch.tensor(lens), tokens=[[start + i] for i in range(len(lens))],
                 texts=[f"w{start + i}" for i in range(len(lens))], cut_ids=[f"c{start + i}" for i in range(len(lens))])


def test_shaped_batches_join_utterances_and_group_them():
    # 1.2 s utterances (120 frames): 3 joined make >= 3 s; 9 s per batch -> 3 utterances of 3.6 s
    source = iter([_batch([120, 120], 0), _batch([120, 120], 2), _batch([120, 120], 4),
                   _batch([120, 120], 6), _batch([120, 120], 8)])
    out = list(shaped_batches(source, BatchShape(utt_seconds=3.0, batch_seconds=9.0)))
    assert len(out) == 1  # 10 inputs -> 3 joined utterances (9 used) -> one batch
    (b,) = out
    assert b.feature_lens.tolist() == [360, 360, 360]
    assert b.tokens == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert b.cut_ids[1] == "c3+c4+c5" and b.texts[2] == "w6 w7 w8"
    # features are the originals, end to end, with no padding in between
    assert torch.equal(b.features[1, 120:240, 0], torch.arange(120).float() + 4000)


def test_precision_names_are_checked():
    assert parse_precisions("fp32, bf16", "cpu") == ["fp32", "bf16"]
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        parse_precisions("fp32,fp8", "cpu")
    with pytest.raises(ConfigError, match="fp16 is measured only on CUDA"):
        parse_precisions("fp16", "cpu")
    with pytest.raises(ConfigError, match="must be > 0"):
        BatchShape(0.0, 10.0).check()


def test_bench_train_librispeech_shaped_fp32_and_bf16_side_by_side(prepared, tmp_path):  # noqa: F811
    recipe = tmp_path / "tiny.yaml"
    save_yaml(tiny_config(), recipe)
    shape = BatchShape(utt_seconds=3.0, batch_seconds=9.0)
    results = bench_train_precisions(["fp32", "bf16"], recipe=recipe, train_cuts=prepared["train"],
                                     lang_dir=prepared["lang"], steps=2, warmup=1, device="cpu", shape=shape)
    assert [r.precision for r in results] == ["fp32", "bf16"]
    for r in results:
        assert r.utterances == 2 * shape.utterances_per_batch
        assert 3.0 <= r.mean_utterance_seconds < 3.0 + 1.7  # the tone corpus's utterances are <= 1.6 s
        assert r.peak_rss_gib is not None and r.peak_rss_gib > 0.05 and r.peak_gpu_gib is None
    table = format_table(results)
    assert "fp32" in table and "bf16" in table and "peak RSS GiB" in table


def test_cli_rejects_fp16_on_the_cpu_with_a_clear_error(prepared, tmp_path):  # noqa: F811
    recipe = tmp_path / "tiny.yaml"
    save_yaml(tiny_config(), recipe)
    proc = subprocess.run([sys.executable, "-m", "asrkit.cli.main", "bench", "train", "--recipe", str(recipe),
                           "--train-cuts", str(prepared["train"]), "--lang-dir", str(prepared["lang"]),
                           "--precision", "fp32,fp16"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "fp16 is measured only on CUDA" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
