"""Token n-gram LMs: Kneser-Ney estimation, ARPA files, full-vocabulary scoring and shallow fusion."""

from __future__ import annotations

import math

import pytest
import torch

from asrkit.decoding.modified_beam_search import modified_beam_search
from asrkit.errors import DataError
from asrkit.lm import BOS, EOS, NgramLM, TokenLMScorer, estimate_kneser_ney, perplexity

SENTENCES = [s.split() for s in ("a b c", "a b d", "b c a", "a c", "d d d b", "c a b")]


def _predictable(lm: NgramLM) -> list[str]:
    return [w for w in lm.vocabulary if w != BOS]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_is_a_distribution_after_any_context(order):
    lm = estimate_kneser_ney(SENTENCES, order, vocabulary=["e", "f"])
    assert set(_predictable(lm)) == {"a", "b", "c", "d", "e", "f", EOS}
    for ctx in [(), (BOS,), ("a",), ("a", "b"), ("x", "y", "z"), ("d", "d"), (BOS, "a", "b"), ("e",)]:
        total = sum(math.exp(lm.log_prob(ctx, w)) for w in _predictable(lm))
        assert total == pytest.approx(1.0, abs=1e-9), ctx
    assert lm.log_prob((), BOS) < -200  # <s> is never predicted


def test_kneser_ney_matches_a_hand_computation():
    # Bigram model of "a b", "a c". Unigram continuation counts: a 1 (after <s>), b 1, c 1, </s> 2 (after b, c);
    # D1 = n1/(n1+2 n2) = 3/5; P(b) = (1 - 0.6)/5 + (0.6 * 4/5) / 4 = 0.2.
    # Bigram raw counts: <s> a 2, a b 1, a c 1, b </s> 1, c </s> 1; D2 = 4/6; after "a": total 2, 2 types:
    # P(b | a) = (1 - 2/3)/2 + (2/3 * 2/2) * 0.2 = 0.3; an unseen word backs off: P(a | a) = 2/3 * P(a) = 2/3 * 0.2.
    lm = estimate_kneser_ney([["a", "b"], ["a", "c"]], order=2)
    assert math.exp(lm.log_prob((), "b")) == pytest.approx(0.2)
    assert math.exp(lm.log_prob(("a",), "b")) == pytest.approx(0.3)
    assert math.exp(lm.log_prob(("a",), "a")) == pytest.approx(2 / 3 * 0.2)
    assert lm.backoffs[("a",)] == pytest.approx(math.log(2 / 3))


def test_higher_orders_fit_the_training_text_better():
    ppl = [perplexity(estimate_kneser_ney(SENTENCES, n), SENTENCES) for n in (1, 2, 3)]
    assert ppl[0] > ppl[1] > ppl[2]


@pytest.mark.parametrize("name", ["lm.arpa", "lm.arpa.gz"])
def test_arpa_round_trip(tmp_path, name):
    lm = estimate_kneser_ney(SENTENCES, 3, vocabulary=["e"])
    path = lm.write_arpa(tmp_path / name)
    text = path.read_bytes()
    assert text.startswith(b"\x1f\x8b") == name.endswith(".gz")
    back = NgramLM.read_arpa(path)
    assert back.order == 3 and set(back.log_probs) == set(lm.log_probs) and set(back.backoffs) == set(lm.backoffs)
    for ctx in [(BOS,), ("a", "b"), ("b", "d"), ("q",)]:
        for w in _predictable(lm):
            assert back.log_prob(ctx, w) == pytest.approx(lm.log_prob(ctx, w), abs=1e-5)
    assert not list(tmp_path.glob("*.tmp"))


def test_arpa_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        NgramLM.read_arpa(tmp_path / "missing.arpa")
    bad = tmp_path / "bad.arpa"
    bad.write_text("hello world\n")
    with pytest.raises(DataError, match="bad.arpa.*not an ARPA"):
        NgramLM.read_arpa(bad)
    truncated = tmp_path / "truncated.arpa"
    truncated.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-0.5\ta\n-0.5\t</s>\n")
    with pytest.raises(DataError, match="truncated.arpa.*declares"):
        NgramLM.read_arpa(truncated)
    garbled = tmp_path / "garbled.arpa"
    garbled.write_text("\\data\\\nngram 2=1\n\n\\2-grams:\n-0.5\ta\n")
    with pytest.raises(DataError, match="garbled.arpa:5"):
        NgramLM.read_arpa(garbled)


def test_unlisted_word_scores_as_unk_or_the_floor():
    lm = NgramLM(1, {("a",): math.log(0.5), (EOS,): math.log(0.5)}, {})
    assert lm.log_prob((), "zzz") == pytest.approx(-99 * math.log(10))
    with_unk = NgramLM(1, {("a",): math.log(0.5), ("<unk>",): math.log(0.1), (EOS,): math.log(0.4)}, {})
    assert with_unk.log_prob(("a",), "zzz") == pytest.approx(math.log(0.1))


SYMBOLS = ["<blk>", "<sos/eos>", "<unk>", "a", "b", "c", "d"]


def test_scorer_vectors_equal_the_model_in_token_ids():
    lm = estimate_kneser_ney(SENTENCES, 3, vocabulary=SYMBOLS[1:])
    scorer = TokenLMScorer(lm, SYMBOLS, blank_id=0)
    assert scorer.covered == len(SYMBOLS) - 1  # all but <blk>
    for history in ([], [3], [3, 4], [6, 6, 6], [5, 3, 4, 4]):
        vec = scorer.log_probs(history)
        context = [BOS] + [SYMBOLS[t] for t in history]
        assert vec.shape == (len(SYMBOLS),) and vec[0] == 0.0
        for t in range(1, len(SYMBOLS)):
            assert float(vec[t]) == pytest.approx(lm.log_prob(context, SYMBOLS[t]), abs=1e-5), (history, t)
        assert scorer.eos_log_prob(history) == pytest.approx(lm.log_prob(context, EOS))
    assert scorer.batch_log_probs([[3], [4]]).shape == (2, len(SYMBOLS))


class EchoModel:
    """A transducer whose encoder output *is* the joiner logits and whose predictor adds nothing."""

    blank_id = 0
    context_size = 2

    def predict(self, y: torch.Tensor, need_pad: bool = True) -> torch.Tensor:
        return torch.zeros(y.size(0), 1, len(SYMBOLS))

    def join(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        return encoder_out + decoder_out


def test_shallow_fusion_settles_an_acoustic_tie():
    # frame 0 says "a"; frame 1 slightly prefers "c" over "b"; the LM has only ever seen "a b".
    lm = estimate_kneser_ney([["a", "b"]] * 20 + [["c"]], order=2, vocabulary=SYMBOLS[1:])
    scorer = TokenLMScorer(lm, SYMBOLS)
    logits = torch.full((1, 2, len(SYMBOLS)), -10.0)
    logits[0, 0, 3] = 10.0
    logits[0, 1, 4], logits[0, 1, 5] = 5.0, 5.5
    lens = torch.tensor([2])
    assert modified_beam_search(EchoModel(), logits, lens) == [[3, 5]]
    assert modified_beam_search(EchoModel(), logits, lens, lm=scorer, lm_scale=0.0) == [[3, 5]]
    assert modified_beam_search(EchoModel(), logits, lens, lm=scorer, lm_scale=0.5) == [[3, 4]]
