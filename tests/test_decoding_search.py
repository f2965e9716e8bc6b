"""Transducer/CTC searches on hand-built models whose outputs are known, plus batch invariance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from asrkit.decoding.beam_search import beam_search
from asrkit.decoding.context import initial_context
from asrkit.decoding.ctc import ctc_greedy_search
from asrkit.decoding.greedy_search import greedy_search
from asrkit.decoding.modified_beam_search import modified_beam_search
from asrkit.decoding.search import get_search_function, run_search
from asrkit.errors import ConfigError, MissingDependencyError


class HandModel:
    """A 'transducer' whose joiner logits we control.

    ``encoder_out`` holds the joiner logits directly (J == V); the predictor output subtracts
    ``penalty`` from the logit of the last token in the context (none for blank/-1), and
    ``join`` adds the two. It records every context it is asked for.
    """

    blank_id = 0

    def __init__(self, vocab_size: int, context_size: int = 2, penalty: float = 40.0) -> None:
        self.vocab_size = vocab_size
        self.context_size = context_size
        self.penalty = penalty
        self.contexts: list[list[int]] = []

    def predict(self, y: torch.Tensor, need_pad: bool = True) -> torch.Tensor:
        assert not need_pad and y.shape[1] == self.context_size, y.shape
        self.contexts.extend(y.tolist())
        out = torch.zeros(y.size(0), 1, self.vocab_size)
        last = y[:, -1]
        for i, tok in enumerate(last.tolist()):
            if tok > 0:
                out[i, 0, tok] = -self.penalty
        return out

    def join(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        return encoder_out + decoder_out


def _frames(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_initial_context_matches_training_padding():
    assert initial_context(3, 0) == [-1, -1, 0]
    assert initial_context(1, 0) == [0]


def test_greedy_hand_built_joiner_known_output_and_timestamps():
    model = HandModel(vocab_size=4)
    enc = _frames(
        [5, 1, 0, 0],  # blank
        [0, 9, 0, 0],  # token 1
        [0, 9, 0, 0],  # token 1 again, but the predictor now penalises 1 -> blank
        [0, 0, 3, 2],  # token 2
        [1, 0, 0, 7],  # token 3
    ).unsqueeze(0)
    out = greedy_search(model, enc, torch.tensor([5]), return_timestamps=True)
    assert out.tokens == [[1, 2, 3]]
    assert out.timestamps == [[1, 3, 4]]
    # first predictor call sees the training padding [-1, blank]
    assert model.contexts[0] == [-1, 0]
    assert [1, 2] in model.contexts and [2, 3] in model.contexts


def test_greedy_max_sym_per_frame():
    # One frame where, after emitting 1 (penalised), token 2 beats blank, then 1 again.
    enc = _frames([0, 9, 3, 0]).unsqueeze(0)
    lens = torch.tensor([1])
    assert greedy_search(HandModel(4, penalty=20), enc, lens, max_sym_per_frame=1) == [[1]]
    assert greedy_search(HandModel(4, penalty=20), enc, lens, max_sym_per_frame=2) == [[1, 2]]
    assert greedy_search(HandModel(4, penalty=20), enc, lens, max_sym_per_frame=3) == [[1, 2, 1]]


def test_greedy_respects_lengths_and_blank_penalty():
    enc = _frames([0, 9, 0, 0], [0, 0, 9, 0], [2, 0, 0, 1.5]).unsqueeze(0).repeat(2, 1, 1)
    lens = torch.tensor([3, 1])
    assert greedy_search(HandModel(4), enc, lens) == [[1, 2], [1]]
    # with a blank penalty of 1, token 3 beats blank on the last frame
    assert greedy_search(HandModel(4), enc, lens, blank_penalty=1.0) == [[1, 2, 3], [1]]


def test_ctc_greedy_collapses_repeats_and_blanks():
    # frame-wise argmax: 1 1 0 1 2 2 0 | padding
    path = [1, 1, 0, 1, 2, 2, 0, 3, 3]
    lp = torch.full((1, len(path), 4), -10.0)
    for t, y in enumerate(path):
        lp[0, t, y] = 0.0
    out = ctc_greedy_search(lp, torch.tensor([7]), return_timestamps=True)
    assert out.tokens == [[1, 1, 2]]
    assert out.timestamps == [[0, 3, 4]]


def _confident_frames(seed: int, batch: int, frames: int, vocab: int) -> torch.Tensor:
    """Each frame: blank (score 20) or one token (score 30 vs blank 10): the best path has
    probability ~1 and every alternative is e^-20 less likely."""
    g = torch.Generator().manual_seed(seed)
    enc = torch.zeros(batch, frames, vocab)
    choice = torch.randint(0, vocab, (batch, frames), generator=g)
    for b in range(batch):
        for t in range(frames):
            y = int(choice[b, t])
            if y == 0:
                enc[b, t, 0] = 20.0
            else:
                enc[b, t, 0] = 10.0
                enc[b, t, y] = 30.0
    return enc


@pytest.mark.parametrize("context_size", [1, 2])
def test_beam_searches_agree_with_greedy_on_a_confident_model(context_size):
    enc = _confident_frames(0, batch=3, frames=12, vocab=6)
    lens = torch.tensor([12, 9, 5])
    greedy = greedy_search(HandModel(6, context_size), enc, lens, return_timestamps=True)
    assert any(len(h) >= 3 for h in greedy.tokens)  # the test is not trivially about empty outputs
    mbs = modified_beam_search(HandModel(6, context_size), enc, lens, beam_size=4, return_timestamps=True)
    bs = beam_search(HandModel(6, context_size), enc, lens, beam_size=4, return_timestamps=True)
    assert mbs.tokens == greedy.tokens and mbs.timestamps == greedy.timestamps
    assert bs.tokens == greedy.tokens and bs.timestamps == greedy.timestamps


class TinyEncoder(nn.Module):
    """Stand-in encoder: Linear over features, subsampling by 2 (lens halved)."""

    def __init__(self, feature_dim: int = 8, dim: int = 16) -> None:
        super().__init__()
        self.proj = nn.Linear(feature_dim * 2, dim)
        self.output_dim = dim

    def forward(self, x, x_lens):
        b, t, f = x.shape
        t2 = t // 2
        y = self.proj(x[:, : t2 * 2].reshape(b, t2, 2 * f))
        return y, x_lens // 2


def _tiny_transducer(seed: int = 0, context_size: int = 2, vocab: int = 7):
    from asrkit.models.transducer.joiner import Joiner
    from asrkit.models.transducer.model import Transducer
    from asrkit.models.transducer.predictor import StatelessPredictor

    torch.manual_seed(seed)
    enc = TinyEncoder()
    pred = StatelessPredictor(vocab, 8, blank_id=0, context_size=context_size, conv_group_size=4)
    model = Transducer(enc, pred, Joiner(16, 8, 12, vocab))
    with torch.no_grad():  # make blanks rarer so hypotheses are non-trivial
        model.joiner.output_linear.bias[0] -= 1.0
    return model.eval()


@pytest.mark.parametrize("method,opts", [
    ("greedy_search", {"max_sym_per_frame": 1}),
    ("greedy_search", {"max_sym_per_frame": 3}),
    ("modified_beam_search", {"beam_size": 3}),
    ("beam_search", {"beam_size": 3}),
])
def test_batched_equals_unbatched(method, opts):
    model = _tiny_transducer()
    torch.manual_seed(1)
    lens = torch.tensor([30, 17, 24, 9])
    x = torch.randn(4, 30, 8)
    batched, stamps, _ = run_search(model, x, lens, method, return_timestamps=True, **opts)
    assert sum(len(h) for h in batched) > 0
    for i in range(4):
        single, single_stamps, _ = run_search(model, x[i:i + 1, : lens[i]], lens[i:i + 1], method,
                                              return_timestamps=True, **opts)
        assert single == [batched[i]]
        assert single_stamps == [stamps[i]]
        assert all(0 <= s < int(lens[i]) // 2 for s in stamps[i])
        assert stamps[i] == sorted(stamps[i])


def test_lstm_predictor_uses_the_whole_history():
    """A recurrent predictor cannot be run on a fixed window: greedy search must equal a
    reference that re-runs the predictor over the full history at every step."""
    from asrkit.models.transducer.joiner import Joiner
    from asrkit.models.transducer.model import Transducer
    from asrkit.models.transducer.predictor import LstmPredictor

    torch.manual_seed(0)
    model = Transducer(TinyEncoder(), LstmPredictor(7, 8, 10, blank_id=0, dropout=0.0), Joiner(16, 10, 12, 7)).eval()
    with torch.no_grad():
        model.joiner.output_linear.bias[0] -= 1.0
    x = torch.randn(1, 40, 8)
    enc, lens = model.encode(x, torch.tensor([40]))
    hyp = greedy_search(model, enc, lens)[0]
    ref: list[int] = []
    with torch.no_grad():
        for t in range(int(lens[0])):
            dec = model.predict(torch.tensor([[0] + ref]))[:, -1]
            y = int(model.join(enc[:, t], dec).argmax(-1))
            if y != 0:
                ref.append(y)
    assert len(ref) > 0 and hyp == ref


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        get_search_function("greedy")
    assert "modified_beam_search" in err.value.hint


def test_unknown_option_is_a_config_error():
    model = _tiny_transducer()
    with pytest.raises(ConfigError, match="beam_size"):
        run_search(model, torch.randn(1, 10, 8), torch.tensor([10]), "greedy_search", beam_size=4)


def test_ctc_search_on_model_without_ctc_head():
    model = _tiny_transducer()
    with pytest.raises(ConfigError, match="CTC"):
        run_search(model, torch.randn(1, 10, 8), torch.tensor([10]), "ctc_greedy_search")


def test_fast_beam_search_without_k2_names_k2():
    try:
        import k2  # noqa: F401
    except ImportError:
        model = _tiny_transducer()
        with pytest.raises(MissingDependencyError, match="k2"):
            run_search(model, torch.randn(1, 10, 8), torch.tensor([10]), "fast_beam_search", beam_size=4)
    else:  # pragma: no cover - k2 is not installable on this machine
        model = _tiny_transducer()
        tokens, _, _ = run_search(model, torch.randn(1, 10, 8), torch.tensor([10]), "fast_beam_search")
        assert len(tokens) == 1


@pytest.mark.parametrize("search", [greedy_search, modified_beam_search, beam_search])
def test_unk_is_treated_as_blank(search):
    # frame 1 prefers token 2 (<unk>); with unk_id=2 it is skipped like blank
    enc = _frames([10, 30, 0, 0], [10, 0, 30, 0], [10, 0, 0, 30]).unsqueeze(0)
    lens = torch.tensor([3])
    assert search(HandModel(4), enc, lens) == [[1, 2, 3]]
    assert search(HandModel(4), enc, lens, unk_id=2) == [[1, 3]]
