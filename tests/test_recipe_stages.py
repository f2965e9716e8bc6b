"""The first stages of egs/an4 and egs/librispeech on fixtures with the corpora's real on-disk layouts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lhotse import CutSet

from test_corpora_an4 import TEST as AN4_TEST
from test_corpora_an4 import TRAIN as AN4_TRAIN
from test_corpora_an4 import make_an4
from test_corpora_librispeech import make_librispeech

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run_recipe(corpus: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["bash", str(REPO / "egs" / corpus / "run.sh"), *args], env=env, capture_output=True,
                          text=True)


def test_an4_stages_manifests_fbank_tokenizer(tmp_path):
    make_an4(tmp_path / "download")
    work = tmp_path / "work"
    proc = _run_recipe("an4", "--stage", "1", "--stop-stage", "3", "--dl-dir", str(tmp_path / "download"),
                       "--work-dir", str(work), "--vocab-size", "20", "--num-jobs", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    train = CutSet.from_file(work / "data/fbank/an4_cuts_train.jsonl.gz")
    test = CutSet.from_file(work / "data/fbank/an4_cuts_test.jsonl.gz")
    assert len(train) == 3 * len(AN4_TRAIN)  # speed perturbation 0.9 / 1.0 / 1.1
    assert sorted(c.id for c in test) == sorted(AN4_TEST)
    assert all(c.has_features for c in test)
    texts = {c.id: c.supervisions[0].text for c in test}
    assert texts == {fid: text for fid, (text, _) in AN4_TEST.items()}
    assert (work / "data/lang/bpe.model").exists() and (work / "data/lang/tokens.txt").exists()


def test_librispeech_stages_manifests_fbank_tokenizer(tmp_path):
    parts = ["train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other"]
    for part in parts:
        make_librispeech(tmp_path / "download", part)
    work = tmp_path / "work"
    proc = _run_recipe("librispeech", "--stage", "1", "--stop-stage", "5", "--use-musan", "false",
                       "--dl-dir", str(tmp_path / "download"), "--work-dir", str(work), "--vocab-size", "30",
                       "--num-jobs", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for part in parts:
        cuts = CutSet.from_file(work / f"data/fbank/librispeech_cuts_{part}.jsonl.gz")
        assert all(c.has_features and c.num_features == 80 for c in cuts)
        ids = {c.id for c in cuts}
        if part == "train-clean-100":
            assert any(i.endswith("_sp0.9") for i in ids) and any(i.endswith("_sp1.1") for i in ids)
    assert (work / "data/lang/bpe.model").exists()
