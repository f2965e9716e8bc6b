"""decode_cuts: batches in, (id, ref words, hyp words) out."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from asrkit.decoding.driver import decode_cuts
from asrkit.decoding.greedy_search import greedy_search
from asrkit.errors import ConfigError
from test_decoding_search import _tiny_transducer


class LetterTokenizer:
    """id i -> letter chr(ord('a') + i - 1); id 3 ('c') is a word separator (space)."""

    def decode(self, ids):
        return ["".join(" " if i == 3 else chr(ord("a") + i - 1) for i in seq) for seq in ids]

    def id_to_symbol(self, i):
        return self.decode([[i]])[0]


def _batches():
    torch.manual_seed(3)
    for k in range(2):
        yield SimpleNamespace(
            features=torch.randn(2, 24, 8),
            feature_lens=torch.tensor([24, 18]),
            texts=["ab ba", "a"],
            cut_ids=[f"c{k}a", f"c{k}b"],
        )


def test_decode_cuts_matches_direct_search():
    model = _tiny_transducer()
    results = decode_cuts(model, _batches(), LetterTokenizer(), "greedy_search", progress=False)
    assert [r[0] for r in results] == ["c0a", "c0b", "c1a", "c1b"]
    assert results[0][1] == ["ab", "ba"] and results[1][1] == ["a"]
    expected = []
    for batch in _batches():
        enc, lens = model.encode(batch.features, batch.feature_lens)
        expected += [t.split() for t in LetterTokenizer().decode(greedy_search(model, enc, lens))]
    assert [r[2] for r in results] == expected
    assert any(r[2] for r in results)


@pytest.mark.parametrize("method", ["modified_beam_search", "beam_search"])
def test_decode_cuts_other_methods_run(method):
    results = decode_cuts(_tiny_transducer(), _batches(), LetterTokenizer(), method, progress=False, beam_size=2)
    assert len(results) == 4


def test_unknown_method_fails_before_reading_batches():
    def exploding():
        raise AssertionError("batches must not be read")
        yield  # pragma: no cover

    with pytest.raises(ConfigError) as err:
        decode_cuts(_tiny_transducer(), exploding(), LetterTokenizer(), "beam-search")
    assert "greedy_search" in err.value.hint and "beam_search" in err.value.hint


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search"])
def test_decode_cuts_timestamps_are_per_token_seconds(method):
    from asrkit.decoding.search import run_search

    model = _tiny_transducer()
    stamps: dict = {}
    results = decode_cuts(model, _batches(), LetterTokenizer(), method, progress=False, timestamps=stamps)
    assert set(stamps) == {r[0] for r in results}
    for batch in _batches():
        tokens, frames, enc_lens = run_search(model, batch.features, batch.feature_lens, method,
                                              return_timestamps=True)
        for k, cut_id in enumerate(batch.cut_ids):
            factor = round(int(batch.feature_lens[k]) / int(enc_lens[k]))
            assert [s for _, s in stamps[cut_id]] == [round(f * factor * 0.01, 3) for f in frames[k]]
            assert [t for t, _ in stamps[cut_id]] == [LetterTokenizer().id_to_symbol(i) for i in tokens[k]]
            assert all(a <= b for a, b in zip(frames[k], frames[k][1:]))


def test_long_utterances_are_searched_in_segments_cut_at_pauses():
    from asrkit.decoding.utterances import pause_cuts

    model = _tiny_transducer()
    torch.manual_seed(5)
    feats = torch.randn(1, 200, 8)
    feats[0, 55] = -10.0  # a pause where the first cut must fall
    batch = SimpleNamespace(features=feats, feature_lens=torch.tensor([200]), texts=["a"], cut_ids=["long"])
    starts = pause_cuts(feats[0], 60, 6)
    assert starts[1] == 55 and all(b - a <= 60 for a, b in zip(starts, starts[1:] + [200]))
    ((_, _, hyp),) = decode_cuts(model, [batch], LetterTokenizer(), "greedy_search", progress=False,
                                 segment_frames=60)
    expected = []
    for a, b in zip(starts, starts[1:] + [200]):
        enc, lens = model.encode(feats[:, a:b], torch.tensor([b - a]))
        expected += greedy_search(model, enc, lens)[0]
    assert hyp == LetterTokenizer().decode([expected])[0].split() and hyp
    ((_, _, whole),) = decode_cuts(model, [batch], LetterTokenizer(), "greedy_search", progress=False,
                                   segment_frames=0)
    assert whole != hyp  # (the cut changes the result: the segmented path really ran)
