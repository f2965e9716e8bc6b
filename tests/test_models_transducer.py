"""Transducer, predictors, joiner, conformer_lite and LSTM encoders (tiny models, seconds in total)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from asrkit.errors import ConfigError, DataError
from asrkit.models import build_transducer, count_parameters, presets
from asrkit.models.common import Conv2dSubsampling4, FeatureNorm, conv2d_subsampling4_lengths
from asrkit.models.config import (
    ConformerLiteConfig,
    EncoderConfig,
    JoinerConfig,
    LstmEncoderConfig,
    ModelConfig,
    PredictorConfig,
)
from asrkit.models.lstm_encoder import reverse_padded
from asrkit.models.transducer import LstmPredictor, StatelessPredictor
from asrkit.utils.dataclass_io import from_dict, to_dict

PAD_VALUE = -23.0259  # ln(1e-10): what sherpa-onnx pads feature batches with
V = 11


def tiny_config(encoder: str = "conformer_lite", predictor: str = "stateless", **kw) -> ModelConfig:
    return ModelConfig(
        feature_dim=20,
        vocab_size=V,
        encoder=EncoderConfig(
            type=encoder,
            feature_norm=kw.pop("feature_norm", "none"),
            conformer_lite=ConformerLiteConfig(
                dim=32, num_layers=2, num_heads=4, feedforward_dim=64, cnn_module_kernel=7, subsampling_channels=8
            ),
            lstm=LstmEncoderConfig(hidden_dim=16, num_layers=2, output_dim=24, subsampling_channels=8),
        ),
        predictor=PredictorConfig(type=predictor, embedding_dim=16, context_size=2, lstm_hidden_dim=16),
        joiner=JoinerConfig(dim=24),
        **kw,
    )


def tiny_model(encoder: str = "conformer_lite", predictor: str = "stateless", **kw):
    torch.manual_seed(0)
    return build_transducer(tiny_config(encoder, predictor, **kw)).eval()


ENCODER_TYPES = ["conformer_lite", "lstm"]


@pytest.mark.parametrize("encoder", ENCODER_TYPES)
def test_encode_predict_join_shapes(encoder):
    model = tiny_model(encoder)
    x = torch.randn(3, 57, 20)
    x_lens = torch.tensor([57, 40, 30])
    raw, raw_lens = model.run_encoder(x, x_lens)
    out, lens = model.encode(x, x_lens)
    expected = ((x_lens - 1) // 2 - 1) // 2
    assert torch.equal(lens, expected) and torch.equal(raw_lens, expected)
    assert raw.shape == (3, int(expected.max()), model.encoder.output_dim)
    assert out.shape == (3, int(expected.max()), 24)
    y = torch.randint(0, V, (3, 5))
    dec = model.predict(y)
    assert dec.shape == (3, 5, 24)
    logits = model.join(out.unsqueeze(2), dec.unsqueeze(1))
    assert logits.shape == (3, out.size(1), 5, V)


def test_subsampling_length_formula_matches_conv_output():
    sub = Conv2dSubsampling4(20, 8, channels=4)
    for t in range(7, 40):
        y, lens = sub(torch.randn(1, t, 20), torch.tensor([t]))
        assert y.size(1) == int(lens) == int(conv2d_subsampling4_lengths(torch.tensor(t)))


def test_predictor_maps_minus_one_to_zero_embedding_and_blank_is_learned():
    torch.manual_seed(0)
    pred = StatelessPredictor(vocab_size=V, embedding_dim=16, blank_id=0, context_size=2)
    emb = pred.embedding(torch.tensor([[-1, 0, 3]]))
    assert torch.all(emb[0, 0] == 0)
    assert emb[0, 1].abs().sum() > 0  # blank has an ordinary embedding
    # a history of only -1 gives relu(conv(0)) = 0 (the conv has no bias)
    assert torch.all(pred(torch.tensor([[-1, -1]]), need_pad=False) == 0)


def test_predictor_training_padding_equals_search_context():
    """need_pad=True on [blank, a, b] must equal need_pad=False on the windows sherpa-onnx/search build."""
    torch.manual_seed(0)
    pred = StatelessPredictor(vocab_size=V, embedding_dim=16, blank_id=0, context_size=3)
    y = torch.tensor([[0, 4, 7, 2]])
    train = pred(y, need_pad=True)
    ctx = pred.initial_context(1, torch.device("cpu"))
    assert ctx.tolist() == [[-1, -1, 0]]
    history = ctx[0].tolist() + [4, 7, 2]
    windows = torch.tensor([history[i : i + 3] for i in range(4)])  # (4, 3)
    search = pred(windows, need_pad=False)  # (4, 1, D)
    torch.testing.assert_close(train[0], search[:, 0])


def test_predictor_output_depends_only_on_last_context_tokens():
    torch.manual_seed(0)
    pred = StatelessPredictor(vocab_size=V, embedding_dim=16, blank_id=0, context_size=2)
    y = torch.tensor([[0, 3, 5, 6, 1]])
    y2 = y.clone()
    y2[0, 1] = 9
    a, b = pred(y), pred(y2)
    torch.testing.assert_close(a[:, [0, 3, 4]], b[:, [0, 3, 4]])
    assert not torch.allclose(a[:, 1], b[:, 1]) and not torch.allclose(a[:, 2], b[:, 2])


def test_lstm_predictor_step_matches_forward():
    torch.manual_seed(0)
    pred = LstmPredictor(vocab_size=V, embedding_dim=8, hidden_dim=12, num_layers=2).eval()
    y = torch.tensor([[0, 3, 5, 6]])
    full = pred(y)
    state = pred.initial_state(1, torch.device("cpu"))
    outs = []
    for u in range(4):
        out, state = pred.step(y[:, u : u + 1], state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=1), full)
    assert pred.embedding(torch.tensor([-1])).abs().sum() == 0


@pytest.mark.parametrize("encoder", ENCODER_TYPES)
@pytest.mark.parametrize("feature_norm", ["none", "utterance_mean"])
def test_encoder_ignores_padding_frames(encoder, feature_norm):
    model = tiny_model(encoder, feature_norm=feature_norm)
    torch.manual_seed(1)
    alone = torch.randn(1, 43, 20)
    other = torch.randn(1, 80, 20)
    batch = torch.full((2, 80, 20), PAD_VALUE)
    batch[0, :43] = alone[0]
    batch[1] = other[0]
    x_lens = torch.tensor([43, 80])
    with torch.no_grad():
        ref, ref_lens = model.encode(alone, torch.tensor([43]))
        out, lens = model.encode(batch, x_lens)
        batch[0, 43:] = 1000.0 * torch.randn(37, 20)  # any padding value
        out2, _ = model.encode(batch, x_lens)
    n = int(ref_lens[0])
    assert int(lens[0]) == n
    torch.testing.assert_close(out[0, :n], ref[0, :n], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out2[0, :n], ref[0, :n], atol=1e-5, rtol=1e-4)


def test_feature_norm_subtracts_mean_of_real_frames_only():
    x = torch.randn(2, 10, 4) + 5.0
    x[1, 6:] = PAD_VALUE
    y = FeatureNorm("utterance_mean")(x, torch.tensor([10, 6]))
    torch.testing.assert_close(y[1, :6].mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[0].mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    assert torch.equal(y[1, 6:], x[1, 6:])
    assert torch.equal(FeatureNorm("none")(x, torch.tensor([10, 6])), x)


def test_reverse_padded_reverses_within_length():
    x = torch.arange(10.0).reshape(2, 5, 1)
    out = reverse_padded(x, torch.tensor([5, 3]))
    assert out[:, :, 0].tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]


@pytest.mark.parametrize("encoder,predictor", [("conformer_lite", "stateless"), ("lstm", "lstm")])
def test_torchscript_matches_eager(encoder, predictor):
    model = tiny_model(encoder, predictor, ctc_head=True)
    scripted = torch.jit.script(model)
    x = torch.randn(2, 50, 20)
    x_lens = torch.tensor([50, 33])
    y = torch.tensor([[0, 3, 4], [-1, 0, 2]])
    with torch.no_grad():
        e1, l1 = model.encode(x, x_lens)
        e2, l2 = scripted.encode(x, x_lens)
        torch.testing.assert_close(e1, e2)
        assert torch.equal(l1, l2)
        d1, d2 = model.predict(y, False), scripted.predict(y, False)
        torch.testing.assert_close(d1, d2)
        torch.testing.assert_close(model.join(e1[:, :1], d1[:, -1:]), scripted.join(e2[:, :1], d2[:, -1:]))
        raw, _ = model.run_encoder(x, x_lens)
        torch.testing.assert_close(model.ctc_log_probs(raw), scripted.ctc_log_probs(raw))
    assert scripted.blank_id == 0 and scripted.vocab_size == V
    assert scripted.context_size == (2 if predictor == "stateless" else 1)


def _batch(b: int = 3, t: int = 120, u: int = 6):
    torch.manual_seed(2)
    x = torch.randn(b, t, 20)
    x_lens = torch.tensor([t] + [t - 17 * (i + 1) for i in range(b - 1)])
    y = torch.randint(1, V, (b, u))
    y_lens = torch.tensor([u] + [u - i - 1 for i in range(b - 1)])
    for i in range(b):
        y[i, y_lens[i] :] = 0
    return x, x_lens, y, y_lens


@pytest.mark.parametrize("encoder,predictor", [("conformer_lite", "stateless"), ("lstm", "lstm")])
def test_forward_losses_finite_and_decrease(encoder, predictor):
    model = tiny_model(encoder, predictor, ctc_head=True).train()
    x, x_lens, y, y_lens = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    totals = []
    for _ in range(12):
        losses = model(x, x_lens, y, y_lens, prune_range=3)
        assert losses.simple_loss.dim() == 0 and losses.pruned_loss.dim() == 0 and losses.ctc_loss.dim() == 0
        total = 0.5 * losses.simple_loss + losses.pruned_loss + 0.1 * losses.ctc_loss
        assert torch.isfinite(total)
        totals.append(total.item())
        opt.zero_grad()
        total.backward()
        opt.step()
    assert totals[-1] < 0.8 * totals[0], totals


def test_forward_loss_is_summed_over_batch():
    """Without smoothing (which averages a unigram LM over the batch) and with a prune range covering every
    symbol, each loss of a padded batch is the sum of the per-utterance losses."""
    model = tiny_model()  # eval(): no dropout
    x, x_lens, y, y_lens = _batch()
    kw = dict(prune_range=y.size(1) + 1, am_scale=0.0, lm_scale=0.0)
    with torch.no_grad():
        full = model(x, x_lens, y, y_lens, **kw)
        parts = [
            model(x[i : i + 1, : x_lens[i]], x_lens[i : i + 1], y[i : i + 1, : y_lens[i]], y_lens[i : i + 1], **kw)
            for i in range(3)
        ]
    assert full.ctc_loss is None
    for name in ("simple_loss", "pruned_loss"):
        total = sum(getattr(p, name) for p in parts)
        torch.testing.assert_close(getattr(full, name), total, rtol=1e-4, atol=1e-3)


def test_forward_rejects_transcripts_longer_than_encoder_output():
    model = tiny_model()
    x = torch.randn(2, 40, 20)  # 40 frames -> 9 encoder frames
    y = torch.ones(2, 12, dtype=torch.int64)
    with pytest.raises(DataError, match=r"batch entries \[1\]"):
        model(x, torch.tensor([40, 40]), y, torch.tensor([5, 12]))
    with pytest.raises(DataError, match="y_lens"):
        model(x, torch.tensor([40, 40]), y, torch.tensor([5, 13]))


def test_unknown_types_raise_config_error_listing_choices():
    cfg = tiny_config()
    bad = dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, type="transformer"))
    with pytest.raises(ConfigError) as err:
        build_transducer(bad)
    assert "conformer_lite" in err.value.hint and "zipformer" in err.value.hint
    with pytest.raises(ConfigError, match=r"encoder\.type"):
        from_dict(ModelConfig, {"encoder": {"type": "transformer"}})
    with pytest.raises(ConfigError, match="embedding_dim"):
        build_transducer(dataclasses.replace(cfg, predictor=PredictorConfig(embedding_dim=18)))


@pytest.mark.parametrize("name", ["conformer-lite-xs", "lstm-xs"])
def test_presets_roundtrip_through_dict_and_build(name):
    cfg = presets.PRESETS[name](vocab_size=500)
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg
    n = count_parameters(build_transducer(cfg))
    assert 1_500_000 <= n <= 3_500_000, n
