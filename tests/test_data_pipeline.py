"""fbank stage -> cuts -> filtering -> batches, on a tiny generated corpus."""

import torch

from asrkit.config import DataConfig
from asrkit.data.datamodule import AsrDataset, SkipFirstBatches, cut_text, filter_cuts, load_cuts, make_sampler
from asrkit.data.features import FEATURE_PADDING_VALUE
from asrkit.data.fbank import compute_fbank_for_splits
from asrkit.data.prepare_lang import prepare_tokenizer
from asrkit.data.tokenizer import Tokenizer


def _prepare(tone_corpus, tmp_path):
    out = compute_fbank_for_splits(tone_corpus, "tiny", ["train", "test"], tmp_path / "fbank",
                                   speed_perturb_splits=["train"], num_jobs=1)
    prepare_tokenizer(out["train"], tmp_path / "lang", vocab_size=30)
    return out, Tokenizer.load(tmp_path / "lang")


def test_fbank_stage_and_batches(tone_corpus, tmp_path):
    out, tok = _prepare(tone_corpus, tmp_path)
    train = load_cuts(out["train"]).to_eager()
    assert len(train) == 18  # 6 cuts + 0.9x and 1.1x copies
    assert sum(c.id.endswith("_sp0.9") for c in train) == 6
    for cut in train:
        assert cut.has_features and cut.num_features == 80
        assert abs(cut.num_frames - round(cut.duration * 100)) <= 1
    # re-running skips finished splits (the file is not rewritten)
    mtime = out["train"].stat().st_mtime_ns
    compute_fbank_for_splits(tone_corpus, "tiny", ["train"], tmp_path / "fbank", num_jobs=1)
    assert out["train"].stat().st_mtime_ns == mtime

    sampler = make_sampler(train, DataConfig(max_duration=5.0, num_buckets=2), train=True, seed=1)
    batches = [AsrDataset(tok)[cuts] for cuts in sampler]
    assert sum(len(b.cut_ids) for b in batches) == 18
    b = batches[0]
    assert b.features.shape[0] == len(b.cut_ids) == len(b.texts)
    assert b.feature_lens.max() == b.features.shape[1]
    shortest = int(b.feature_lens.argmin())
    if b.feature_lens[shortest] < b.features.shape[1]:
        assert torch.all(b.features[shortest, b.feature_lens[shortest]:] == FEATURE_PADDING_VALUE)
    assert tok.decode(b.tokens) == b.texts
    y, y_lens = b.padded_tokens()
    assert y.shape == (len(b.tokens), int(y_lens.max()))


def test_skip_first_batches_resumes_exactly(tone_corpus, tmp_path):
    out, _ = _prepare(tone_corpus, tmp_path)
    train = load_cuts(out["train"]).to_eager()
    cfg = DataConfig(max_duration=4.0, num_buckets=2)

    def ids(skip):
        sampler = make_sampler(train, cfg, train=True, seed=3)
        wrapped = SkipFirstBatches(sampler, skip)
        wrapped.set_epoch(2)
        return [[c.id for c in cuts] for cuts in wrapped]

    full = ids(0)
    assert len(full) > 3
    assert ids(2) == full[2:]


def test_filter_cuts_counts_reasons(tone_corpus, tmp_path, caplog):
    out, tok = _prepare(tone_corpus, tmp_path)
    cuts = load_cuts(out["test"]).to_eager()
    cuts_list = list(cuts)
    cuts_list[0].supervisions[0].text = ""
    cuts_list[1].supervisions[0].text = "ZZZ"
    from lhotse import CutSet

    kept, reasons = filter_cuts(CutSet.from_cuts(cuts_list), tok, lambda n: n // 4, min_duration=0.3,
                                max_duration=20.0, name="test")
    assert reasons["empty transcript"] == 1
    assert reasons["characters unknown to the tokenizer"] == 1
    assert len(kept) == len(cuts_list) - 2
    assert cuts_list[0].id in caplog.text and cuts_list[1].id in caplog.text


def test_cut_text_joins_supervisions(tone_corpus, tmp_path):
    out, _ = _prepare(tone_corpus, tmp_path)
    cut = next(iter(load_cuts(out["test"])))
    assert cut_text(cut) == cut.supervisions[0].text


def test_sampler_with_fewer_cuts_than_buckets(tone_corpus, tmp_path):
    out, _ = _prepare(tone_corpus, tmp_path)
    test = load_cuts(out["test"]).to_eager()  # 6 cuts
    batches = list(make_sampler(test, DataConfig(max_duration=100.0, num_buckets=10), train=False, seed=0))
    assert sum(len(b) for b in batches) == len(test)
