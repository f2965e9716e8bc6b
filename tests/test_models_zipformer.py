"""Zipformer2: module shapes, padding/causality invariances, masks, schedules/regularizers, presets, export."""

from __future__ import annotations

import dataclasses
import io
import warnings

import pytest
import torch

from asrkit.errors import ConfigError
from asrkit.models import build_transducer, count_parameters, presets, set_batch_count
from asrkit.models.config import ModelConfig, ZipformerConfig
from asrkit.models.zipformer import build_zipformer, chunk_attention_mask
from asrkit.models.zipformer.attention import (
    CompactRelPositionalEncoding,
    NonlinAttention,
    RelPositionMultiheadAttentionWeights,
    SelfAttention,
)
from asrkit.models.zipformer.layer import SimpleDownsample, Zipformer2EncoderLayer, ZipformerStack, upsample
from asrkit.models.zipformer.modules import (
    BypassModule,
    ChunkCausalDepthwiseConv1d,
    ConvolutionModule,
    FeedforwardModule,
)
from asrkit.models.zipformer.scaling import (
    Balancer,
    BiasNorm,
    ScheduledFloat,
    swoosh_l,
    swoosh_r,
    whitening_metric,
)
from asrkit.models.zipformer.subsampling import Conv2dSubsampling
from asrkit.utils.dataclass_io import from_dict, to_dict

PAD_VALUE = -23.0259
F = 20

# icefall's published transducer sizes (vocab 500, decoder/joiner 512, context 2)
ICEFALL_PARAMS = {"zipformer-s": 23_285_615, "zipformer-m": 65_549_011, "zipformer-l": 148_439_574}
# its streaming (causal) medium, which icefall publishes (2023-05-17 LibriSpeech model): the chunk-causal
# convolutions add a causal and a chunk-wise kernel per module
ICEFALL_STREAMING_PARAMS = {"zipformer-m-streaming": 66_110_931}


def tiny_cfg(**kw) -> ZipformerConfig:
    base = dict(
        num_encoder_layers=(1, 1, 1, 1, 1, 1),
        encoder_dim=(32, 48, 48, 48, 48, 48),
        encoder_unmasked_dim=(32, 32, 32, 32, 32, 32),
        feedforward_dim=(64, 96, 96, 96, 96, 96),
        num_heads=(4, 4, 4, 4, 4, 4),
        cnn_module_kernel=(7, 7, 5, 5, 5, 7),
        subsampling_channels=16,
    )
    base.update(kw)
    return ZipformerConfig(**base)


def tiny_encoder(**kw):
    torch.manual_seed(0)
    return build_zipformer(tiny_cfg(**kw), feature_dim=F).eval()


# ----------------------------------------------------------------------------- presets / parameter counts
@pytest.mark.parametrize("name", sorted(ICEFALL_STREAMING_PARAMS))
def test_streaming_preset_parameter_counts_match_icefall(name):
    from pathlib import Path

    from asrkit.config import load_train_config

    cfg = load_train_config(Path(__file__).resolve().parents[1] / "recipes" / f"{name}.yaml")
    assert cfg.model.encoder.zipformer.causal
    with torch.device("meta"):
        n = count_parameters(build_transducer(cfg.model))
    expected = ICEFALL_STREAMING_PARAMS[name]
    assert abs(n - expected) / expected < 0.001, (name, n, expected)


@pytest.mark.parametrize("name", sorted(ICEFALL_PARAMS))
def test_preset_parameter_counts_match_icefall(name):
    with torch.device("meta"):  # count without allocating 600 MB
        model = build_transducer(presets.PRESETS[name](vocab_size=500))
    n = count_parameters(model)
    expected = ICEFALL_PARAMS[name]
    assert abs(n - expected) / expected < 0.01, (name, n, expected)


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_builds_and_roundtrips(name):
    cfg = presets.PRESETS[name](vocab_size=500)
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg
    with torch.device("meta"):
        n = count_parameters(build_transducer(cfg))
    print(f"{name}: {n:,} parameters")
    assert n > 1_000_000


def test_zipformer_xs_size_and_forward():
    torch.manual_seed(0)
    model = build_transducer(presets.zipformer_xs(vocab_size=500)).eval()
    n = count_parameters(model)
    assert 1_500_000 <= n <= 3_000_000, n
    x = torch.randn(2, 123, 80)
    out, lens = model.encode(x, torch.tensor([123, 90]))
    assert out.shape == (2, (((123 - 7) // 2) + 1) // 2, 256)
    assert lens.tolist() == [29, 21]  # ((T - 7) // 2 + 1) // 2


# ----------------------------------------------------------------------------- module shapes
def test_module_output_shapes():
    t, b, d = 10, 3, 32
    x = torch.randn(t, b, d)
    pos = CompactRelPositionalEncoding(16, dropout_rate=0.0)(x)
    assert pos.shape == (1, 2 * t - 1, 16)
    weights = RelPositionMultiheadAttentionWeights(d, pos_dim=16, num_heads=4, query_head_dim=8, pos_head_dim=2)(x, pos)
    assert weights.shape == (4, b, t, t)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, b, t))
    assert SelfAttention(d, 4, 6)(x, weights).shape == (t, b, d)
    assert NonlinAttention(d, 24)(x, weights[0:1]).shape == (t, b, d)
    assert FeedforwardModule(d, 64, 0.1)(x).shape == (t, b, d)
    assert ConvolutionModule(d, 5, causal=False)(x).shape == (t, b, d)
    assert ConvolutionModule(d, 5, causal=True)(x, None, 4).shape == (t, b, d)
    assert ChunkCausalDepthwiseConv1d(d, 5)(x.permute(1, 2, 0), 3).shape == (b, d, t)
    assert BypassModule(d)(x, torch.randn(t, b, d)).shape == (t, b, d)
    assert BiasNorm(d)(x).shape == (t, b, d)
    layer = Zipformer2EncoderLayer(d, 16, 4, 8, 2, 6, 64, cnn_module_kernel=5)
    assert layer(x, pos).shape == (t, b, d)
    stack = ZipformerStack(2, dict(embed_dim=d, pos_dim=16, num_heads=4, query_head_dim=8, pos_head_dim=2,
                                   value_head_dim=6, feedforward_dim=64, cnn_module_kernel=5), 16, 0.0, 10.0)
    assert stack(x).shape == (t, b, d)
    assert SimpleDownsample(4)(x).shape == (3, b, d)
    assert upsample(torch.randn(3, b, d), 4).shape == (12, b, d)
    sub, lens = Conv2dSubsampling(F, d, 4, 8, 16)(torch.randn(b, 50, F), torch.tensor([50, 40, 9]))
    assert sub.shape == (b, (50 - 7) // 2, d) and lens.tolist() == [21, 16, 1]


def test_encoder_output_shape_and_lengths():
    enc = tiny_encoder()
    x = torch.randn(3, 150, F)
    out, lens = enc(x, torch.tensor([150, 97, 31]))
    expected = (((torch.tensor([150, 97, 31]) - 7) // 2) + 1) // 2
    assert lens.tolist() == expected.tolist()
    assert out.shape == (3, int(expected.max()), 48)
    assert torch.all(out[1, int(expected[1]) :] == 0)


def test_full_dim_output_uses_widest_stack():
    enc = tiny_encoder(encoder_dim=(32, 48, 64, 64, 48, 32), encoder_unmasked_dim=(32, 32, 32, 32, 32, 32))
    assert enc.output_dim == 64
    out, _ = enc(torch.randn(1, 60, F), torch.tensor([60]))
    assert out.shape[-1] == 64


# ----------------------------------------------------------------------------- padding and causality
@pytest.mark.parametrize("causal", [False, True])
def test_padding_frames_do_not_change_real_frames(causal):
    enc = tiny_encoder(causal=causal, chunk_size=(16,), left_context_frames=(32,))
    torch.manual_seed(1)
    alone = torch.randn(1, 97, F)
    batch = torch.full((2, 160, F), PAD_VALUE)
    batch[0, :97] = alone[0]
    batch[1] = torch.randn(160, F)
    with torch.no_grad():
        ref, ref_lens = enc(alone, torch.tensor([97]))
        out, lens = enc(batch, torch.tensor([97, 160]))
    n = int(ref_lens[0])
    assert int(lens[0]) == n
    torch.testing.assert_close(out[0, :n], ref[0, :n], atol=1e-5, rtol=1e-4)


def test_causal_outputs_do_not_depend_on_future_chunks():
    enc = tiny_encoder(causal=True, chunk_size=(16,), left_context_frames=(-1,))
    torch.manual_seed(2)
    x = torch.randn(1, 400, F)
    x2 = x.clone()
    x2[0, 250:] = torch.randn(150, F)
    with torch.no_grad():
        a, _ = enc(x, torch.tensor([400]))
        b, _ = enc(x2, torch.tensor([400]))
    # Input frame 250 first reaches 50 Hz frame 118 (9-frame conv window + 3 frames of ConvNeXt lookahead),
    # i.e. chunk 7 = frames 112..127; everything in chunks 0..6 (output frames 0..55 at 25 Hz) is fixed.
    torch.testing.assert_close(a[:, :56], b[:, :56], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 56:], b[:, 56:])

    full = tiny_encoder(causal=False)
    with torch.no_grad():
        c, _ = full(x, torch.tensor([400]))
        d, _ = full(x2, torch.tensor([400]))
    assert not torch.allclose(c[:, :56], d[:, :56])  # the non-causal model does look ahead


def test_chunk_attention_mask_honours_chunk_size_and_left_context():
    m = chunk_attention_mask(8, chunk_size=2, left_context_chunks=1, device=torch.device("cpu"))
    allowed = ~m
    for i in range(8):
        ci = i // 2
        for j in range(8):
            cj = j // 2
            assert bool(allowed[i, j]) == (ci - 1 <= cj <= ci), (i, j)
    unlimited = ~chunk_attention_mask(8, chunk_size=4, left_context_chunks=-1, device=torch.device("cpu"))
    assert unlimited[7].all() and not unlimited[0, 4:].any()


def test_left_context_limit_bounds_how_far_back_the_encoder_looks():
    torch.manual_seed(3)
    x = torch.randn(1, 1100, F)  # 546 frames at 50 Hz = 34 chunks of 16
    x2 = x.clone()
    x2[0, :50] = torch.randn(50, F)
    lens = torch.tensor([1100])
    limited = tiny_encoder(causal=True, chunk_size=(16,), left_context_frames=(16,))
    unlimited = tiny_encoder(causal=True, chunk_size=(16,), left_context_frames=(-1,))
    with torch.no_grad():
        a, _ = limited(x, lens)
        b, _ = limited(x2, lens)
        c, _ = unlimited(x, lens)
        d, _ = unlimited(x2, lens)
    # 6 layers, each reaching back at most ~3 chunks (attention + two convolutions): chunk >= 30 is out of reach
    torch.testing.assert_close(a[:, 240:], b[:, 240:], atol=1e-6, rtol=0)
    assert not torch.allclose(c[:, 240:], d[:, 240:], atol=1e-6, rtol=0)


def test_chunk_causal_conv_is_causal_across_chunks():
    torch.manual_seed(0)
    conv = ChunkCausalDepthwiseConv1d(3, 5)
    with torch.no_grad():
        conv.chunkwise_conv_scale.normal_()
    x = torch.randn(1, 3, 12)
    x2 = x.clone()
    x2[..., 8:] = torch.randn(1, 3, 4)
    torch.testing.assert_close(conv(x, 4)[..., :8], conv(x2, 4)[..., :8])
    assert not torch.allclose(conv(x, -1)[..., :8], conv(x2, -1)[..., :8])  # one chunk = full context


def test_relative_position_encoding_depends_only_on_offset():
    enc = CompactRelPositionalEncoding(16, dropout_rate=0.0)
    short = enc(torch.zeros(3, 1, 1))[0]  # offsets -2..2
    long = enc(torch.zeros(6, 1, 1))[0]  # offsets -5..5
    torch.testing.assert_close(short, long[3:8])
    assert torch.all(long[:, -1] == 1.0)


def test_attention_ignores_masked_keys():
    torch.manual_seed(0)
    attn = RelPositionMultiheadAttentionWeights(16, pos_dim=8, num_heads=2, query_head_dim=4, pos_head_dim=2)
    x = torch.randn(5, 2, 16)
    pos = CompactRelPositionalEncoding(8, 0.0)(x)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    w = attn(x, pos, key_padding_mask=pad)
    assert w[:, 1, :, 3:].abs().max() < 1e-30
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 5))


def test_simple_downsample_replaces_padding_with_last_real_frame():
    down = SimpleDownsample(4)
    with torch.no_grad():
        down.bias.normal_()
    alone = torch.randn(6, 1, 3)
    batch = torch.full((11, 2, 3), 1000.0)
    batch[:6, 0] = alone[:, 0]
    out = down(batch, torch.tensor([6, 11]))
    torch.testing.assert_close(out[:2, 0], down(alone)[:, 0])


# ----------------------------------------------------------------------------- scaling machinery
def test_scheduled_float_interpolates_and_defaults():
    s = ScheduledFloat((0.0, 0.3), (100.0, 0.1), default=0.05)
    assert float(s) == 0.05  # no batch count yet
    s.batch_count = 50.0
    assert float(s) == pytest.approx(0.2)
    s.batch_count = 1000.0
    assert float(s) == pytest.approx(0.1)
    s.eval()
    assert float(s) == 0.05
    holder = torch.nn.Module()
    holder.s = ScheduledFloat((0.0, 1.0), (10.0, 0.0))
    holder.train()
    set_batch_count(holder, 5)
    assert float(holder.s) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        ScheduledFloat((10.0, 1.0), (5.0, 0.0))


def test_swoosh_definitions():
    x = torch.linspace(-10, 10, 41)
    torch.testing.assert_close(swoosh_l(x), torch.log1p(torch.exp(x - 4)) - 0.08 * x - 0.035)
    torch.testing.assert_close(swoosh_r(x), torch.log1p(torch.exp(x - 1)) - 0.08 * x - 0.313261687)
    assert abs(float(swoosh_r(torch.tensor(0.0)))) < 1e-6


def test_bias_norm_normalizes_rms_around_bias():
    norm = BiasNorm(8, log_scale=0.0).eval()
    with torch.no_grad():
        norm.bias.fill_(0.5)
    x = torch.randn(4, 8) * 7 + 0.5
    y = norm(x)
    torch.testing.assert_close(((x - 0.5) ** 2).mean(-1).rsqrt().unsqueeze(-1) * x, y)


def test_balancer_is_identity_forward_and_pushes_small_channels_up():
    torch.manual_seed(0)
    bal = Balancer(4, channel_dim=-1, min_abs=1.0, max_abs=10.0, prob=1.0).train()
    x = (0.01 * torch.randn(100, 4)).requires_grad_(True)
    g = torch.randn(100, 4)
    out = bal(x)
    assert torch.equal(out, x)
    (out * g).sum().backward()
    extra = x.grad - g
    # a descent step along -extra increases |x| (moves the too-small channels toward min_abs)
    assert float((extra * x.detach()).sum()) < 0
    bal.eval()
    y = bal(x)
    assert y is x


def test_balancer_closed_form_gradient_matches_autograd_of_its_penalty():
    torch.manual_seed(0)
    x = torch.randn(50, 3) * torch.tensor([0.01, 1.0, 30.0]) + torch.tensor([0.0, 3.0, 0.0])  # too small/biased/big
    g = torch.randn(50, 3)
    min_mean, max_mean, min_rms, max_rms, scale = -0.5, 0.5, 0.5, 5.0, 0.04
    from asrkit.models.zipformer.scaling import _BalancerFunction

    xa = x.clone().requires_grad_(True)
    _BalancerFunction.apply(xa, (min_mean, max_mean, min_rms, max_rms), scale, 1).backward(g)
    # reference: autograd of the penalty, normalized per channel, scaled by |g|
    xr = x.clone().requires_grad_(True)
    mean, sq = xr.mean(0), (xr**2).mean(0)
    std, rms = (sq - mean**2).sqrt(), sq.sqrt()
    m = mean / std
    pen = (m - m.clamp(min_mean, max_mean)).abs() + (rms.clamp(min_rms, max_rms) / rms).log().abs()
    (pg,) = torch.autograd.grad(pen.sum(), xr)
    pg = pg * scale / (pg**2).mean(0).sqrt().clamp(min=1e-20)
    torch.testing.assert_close(xa.grad, g + g.abs() * pg, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(xa.grad, g)


def test_swoosh_custom_backward_matches_autograd_of_formula():
    x = torch.linspace(-8, 8, 33, dtype=torch.float64)
    for fn, off, const in ((swoosh_l, 4.0, 0.035), (swoosh_r, 1.0, 0.313261687)):
        a = x.clone().requires_grad_(True)
        fn(a).sum().backward()
        b = x.clone().requires_grad_(True)
        (torch.nn.functional.softplus(b - off) - 0.08 * b - const).sum().backward()
        torch.testing.assert_close(a.grad, b.grad)


def test_whitening_metric_is_one_for_white_data_and_large_for_correlated():
    torch.manual_seed(0)
    white = torch.randn(20000, 8)
    assert float(whitening_metric(white, 1)) < 1.05
    correlated = torch.randn(20000, 1).expand(20000, 8) + 0.01 * torch.randn(20000, 8)
    assert float(whitening_metric(correlated, 1)) > 7.0


def test_training_step_runs_with_schedules_and_regularizers():
    enc = tiny_encoder(causal=True, chunk_size=(16, -1), left_context_frames=(32, -1)).train()
    set_batch_count(enc, 1000.0)
    opt = torch.optim.SGD(enc.parameters(), lr=0.01)
    x = torch.randn(2, 120, F)
    for _ in range(3):
        out, lens = enc(x, torch.tensor([120, 100]))
        loss = (out**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


# ----------------------------------------------------------------------------- config validation
def test_invalid_configs_raise_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="feedforward_dim"):
        build_zipformer(tiny_cfg(feedforward_dim=(64, 96)), F)
    with pytest.raises(ConfigError, match="chunk_size"):
        build_zipformer(tiny_cfg(causal=True, chunk_size=(12,), left_context_frames=(64,)), F)
    with pytest.raises(ConfigError, match="left_context_frames"):
        build_zipformer(
            tiny_cfg(causal=True, chunk_size=(8,), left_context_frames=(8,), cnn_module_kernel=(31,)), F
        )
    with pytest.raises(ConfigError, match="encoder_unmasked_dim"):
        build_zipformer(tiny_cfg(encoder_unmasked_dim=(64,)), F)
    one = build_zipformer(tiny_cfg(num_heads=(4,)), F)  # a single value is broadcast to all stacks
    assert len(one.encoders) == 6


# ----------------------------------------------------------------------------- TorchScript / ONNX
def _tiny_transducer(causal: bool = False):
    cfg = presets.zipformer_xs(vocab_size=20, feature_dim=F)
    z = dataclasses.replace(tiny_cfg(), causal=causal, chunk_size=(16,), left_context_frames=(32,))
    cfg = dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, zipformer=z))
    torch.manual_seed(0)
    return build_transducer(cfg).eval()


def test_torchscript_transducer_matches_eager():
    model = _tiny_transducer(causal=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    x = torch.randn(2, 90, F)
    x_lens = torch.tensor([90, 61])
    with torch.no_grad():
        e1, l1 = model.encode(x, x_lens)
        e2, l2 = scripted.encode(x, x_lens)
    torch.testing.assert_close(e1, e2)
    assert torch.equal(l1, l2)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    torch.testing.assert_close(loaded.encode(x, x_lens)[0], e1)


def test_onnx_export_of_encode_runs_in_onnxruntime_with_dynamic_axes():
    import onnxruntime as ort  # dev dependency (asrkit[dev])

    class Encode(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, x_lens):
            return self.model.encode(x, x_lens)

    model = _tiny_transducer(causal=False)
    wrapper = Encode(model).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (torch.randn(2, 100, F), torch.tensor([100, 80])), buf, dynamo=False, opset_version=17,
            input_names=["x", "x_lens"], output_names=["encoder_out", "encoder_out_lens"],
            dynamic_axes={"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "encoder_out": {0: "N", 1: "T_out"},
                          "encoder_out_lens": {0: "N"}},
        )
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for t, lens in ((100, [100, 80]), (257, [257, 120, 33])):  # other batch size and length than traced
        x = torch.randn(len(lens), t, F)
        x_lens = torch.tensor(lens)
        with torch.no_grad():
            ref, ref_lens = model.encode(x, x_lens)
        out, out_lens = sess.run(None, {"x": x.numpy(), "x_lens": x_lens.numpy()})
        assert out_lens.tolist() == ref_lens.tolist()
        torch.testing.assert_close(torch.from_numpy(out), ref, atol=1e-4, rtol=1e-4)


def test_transducer_with_zipformer_trains_and_every_parameter_gets_a_gradient():
    """Loss decreases on a tiny batch; every parameter is in the graph (DDP without find_unused_parameters)."""
    model = _tiny_transducer(causal=True).train()
    set_batch_count(model, 500.0)
    torch.manual_seed(4)
    x = torch.randn(2, 150, F)
    x_lens = torch.tensor([150, 120])
    y = torch.randint(1, 20, (2, 6))
    y_lens = torch.tensor([6, 4])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    totals = []
    for _ in range(8):
        losses = model(x, x_lens, y, y_lens, prune_range=3)
        total = 0.5 * losses.simple_loss + losses.pruned_loss + 0.1 * losses.ctc_loss
        opt.zero_grad()
        total.backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, missing
        opt.step()
        totals.append(total.item())
    assert all(torch.isfinite(torch.tensor(totals)))
    assert min(totals[-3:]) < totals[0], totals


# ----------------------------------------------------------------------------- CUDA (pytest -m cuda)
def _zipformer_xs_batch(vocab: int = 50):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, 300, 80, generator=g)
    x_lens = torch.tensor([300, 251, 190])
    y = torch.randint(1, vocab, (3, 12), generator=g)
    y_lens = torch.tensor([12, 9, 7])
    return x, x_lens, y, y_lens


@pytest.mark.cuda
def test_zipformer_xs_losses_and_gradients_on_cuda_match_cpu():
    """The demo's model, in float32 without TF32: the same losses and gradients on both devices."""
    torch.manual_seed(0)
    cpu_model = build_transducer(presets.zipformer_xs(vocab_size=50)).eval()  # eval(): no dropout/balancers
    cuda_model = build_transducer(presets.zipformer_xs(vocab_size=50)).eval()
    cuda_model.load_state_dict(cpu_model.state_dict())
    cuda_model.cuda()
    batch = _zipformer_xs_batch()
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        results = []
        for model, device in ((cpu_model, "cpu"), (cuda_model, "cuda")):
            losses = model(*(t.to(device) for t in batch), loss_backend="torch")
            total = 0.5 * losses.simple_loss + losses.pruned_loss + 0.2 * losses.ctc_loss
            total.backward()
            grads = {n: p.grad.cpu() for n, p in model.named_parameters() if p.grad is not None}
            results.append((losses.simple_loss.item(), losses.pruned_loss.item(), losses.ctc_loss.item(), grads))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    (*cpu_losses, cpu_grads), (*cuda_losses, cuda_grads) = results
    torch.testing.assert_close(torch.tensor(cuda_losses), torch.tensor(cpu_losses), rtol=1e-4, atol=1e-3)
    assert cpu_grads.keys() == cuda_grads.keys() and len(cpu_grads) > 100

    def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
        return ((got - want).norm() / want.norm().clamp_min(1e-12)).item()

    # float32 sums in another order: each gradient to 1 % of its norm (a bias gradient sums thousands of frames
    # with cancellation: 0.2 % seen), all of them together to 0.1 %
    errors = {name: relative_error(cuda_grads[name], want) for name, want in cpu_grads.items()}
    assert max(errors.values()) < 1e-2, max(errors.items(), key=lambda kv: kv[1])
    flat = [torch.cat([g[name].flatten() for name in sorted(cpu_grads)]) for g in (cuda_grads, cpu_grads)]
    assert relative_error(*flat) < 1e-3


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_zipformer_xs_trains_under_cuda_autocast(dtype):
    """Mixed precision on the GPU: forward under autocast (the losses themselves stay float32), a GradScaler for
    float16, finite losses that fall on a repeated batch, and float32 parameters throughout."""
    torch.manual_seed(0)
    model = build_transducer(presets.zipformer_xs(vocab_size=50)).cuda().train()
    set_batch_count(model, 500.0)
    x, x_lens, y, y_lens = (t.cuda() for t in _zipformer_xs_batch())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    totals = []
    for _ in range(15):
        with torch.autocast("cuda", dtype=dtype):
            losses = model(x, x_lens, y, y_lens, loss_backend="torch")
        assert losses.simple_loss.dtype == losses.pruned_loss.dtype == torch.float32
        total = 0.5 * losses.simple_loss + losses.pruned_loss + 0.2 * losses.ctc_loss
        assert torch.isfinite(total)
        opt.zero_grad()
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()
        totals.append(total.item())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert min(totals[-3:]) < 0.8 * totals[0], totals
