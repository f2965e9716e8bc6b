"""Streaming ONNX export: onnxruntime's chunks equal StreamingTransducer's, and sherpa-onnx's OnlineRecognizer,
fed 0.1 s pieces as a live client does, decodes it (fp32 and int8) exactly as asrkit's chunk-wise decoding.

sherpa-onnx ends the process on a bad file, so it runs in a subprocess (:mod:`asrkit.export.sherpa_onnx`). The
model is a random-init causal transducer whose joiner is made to follow the encoder (test_streaming_decoding's
``causal_transducer``): both sides must produce the same non-trivial token sequences, which checks features,
chunking, every encoder state, the decoder context and detokenisation.
"""

from __future__ import annotations

import pytest
import torch
from test_export_formats import TEXTS, make_wavs
from test_streaming_decoding import causal_transducer

from asrkit.errors import ConfigError, ExportError

pytest.importorskip("onnxruntime")

CHUNK, LEFT = 16, 32


def wav_features(wavs) -> list[torch.Tensor]:
    from asrkit.data.audio import read_audio
    from asrkit.data.features import compute_fbank

    return [compute_fbank(*read_audio(w)) for w in wavs]


@pytest.fixture(scope="module", params=["none", "running_mean"])
def streaming_export(tmp_path_factory, request):
    """Exports of the causal transducer without feature normalization and with ``running_mean`` (whose running
    sum rides in the front-end state sherpa-onnx allocates)."""
    from asrkit.data.tokenizer import Tokenizer, train_tokenizer
    from asrkit.export.onnx_streaming import export_onnx_streaming

    root = tmp_path_factory.mktemp("streaming-onnx")
    bpe = train_tokenizer(TEXTS * 5, root / "lang", vocab_size=30)
    tokenizer = Tokenizer.load(bpe)
    wavs = make_wavs(root / "wavs")
    feats = wav_features(wavs)
    model = causal_transducer(feats, CHUNK, LEFT, vocab_size=tokenizer.vocab_size, feature_dim=80,
                              feature_norm=request.param)
    export_onnx_streaming(model, root / "onnx", bpe, int8=True)
    return {"root": root, "model": model, "tokenizer": tokenizer, "wavs": wavs, "feats": feats,
            "feature_norm": request.param}


def test_metadata_is_what_sherpa_onnx_reads(streaming_export):
    from asrkit.export.onnx_streaming import validate_streaming_onnx_export

    meta = validate_streaming_onnx_export(streaming_export["root"] / "onnx")["encoder"]
    enc = streaming_export["model"].encoder
    assert meta["model_type"] == "zipformer2"
    assert meta["T"] == str(2 * CHUNK + 13) and meta["decode_chunk_len"] == str(2 * CHUNK)
    assert meta["num_encoder_layers"] == ",".join(map(str, enc.num_encoder_layers))
    assert meta["encoder_dims"] == ",".join(map(str, enc.encoder_dim))
    assert meta["left_context_len"] == ",".join(str(LEFT // d) for d in enc.downsampling_factor)
    assert meta["num_heads"] == "4,4,4,4,4,4" and meta["query_head_dims"] == "32,32,32,32,32,32"
    validate_streaming_onnx_export(streaming_export["root"] / "onnx", int8=True)


def test_validation_names_a_missing_key(streaming_export, tmp_path):
    import shutil

    import onnx

    from asrkit.export.onnx_streaming import validate_streaming_onnx_export

    bad = tmp_path / "bad"
    shutil.copytree(streaming_export["root"] / "onnx", bad)
    proto = onnx.load(str(bad / "encoder.onnx"))
    keep = [p for p in proto.metadata_props if p.key != "left_context_len"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    onnx.save(proto, str(bad / "encoder.onnx"))
    with pytest.raises(ExportError, match="left_context_len"):
        validate_streaming_onnx_export(bad)


@pytest.fixture(scope="module")
def plain_export(streaming_export):
    """The same encoder with the joiner's random encoder projection left as initialised. The decoding model's
    projection amplifies the encoder's tiny frame-to-frame changes (see ``causal_transducer``) and cancels its
    mean with the bias, which int8's per-tensor activation scales cannot resolve; a trained encoder varies."""
    from asrkit.export.onnx_streaming import export_onnx_streaming
    from test_streaming_encoder import enlarge_

    root = streaming_export["root"]
    model = causal_transducer(streaming_export["feats"], CHUNK, LEFT, vocab_size=30, feature_dim=80,
                              feature_norm=streaming_export["feature_norm"])
    torch.manual_seed(1)
    with torch.no_grad():
        fresh = torch.nn.Linear(model.joiner.encoder_proj.in_features, model.joiner.encoder_proj.out_features)
        model.joiner.encoder_proj.weight.copy_(fresh.weight)
        model.joiner.encoder_proj.bias.copy_(fresh.bias)
    enlarge_(model)
    export_onnx_streaming(model, root / "plain", root / "lang" / "bpe.model", int8=True)
    return {"root": root / "plain", "model": model, "feats": streaming_export["feats"]}


@pytest.mark.parametrize("suffix,tol", [(".onnx", 1e-5), (".int8.onnx", 0.05)])
def test_onnxruntime_chunks_equal_streaming_transducer(plain_export, suffix, tol):
    import onnxruntime as ort

    from asrkit.export.onnx_streaming import sherpa_init_states
    from asrkit.models.transducer.streaming import StreamingTransducer

    st = StreamingTransducer(plain_export["model"]).eval()
    sess = ort.InferenceSession(str(plain_export["root"] / f"encoder{suffix}"),
                                providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    batch = 3  # a batch of streams, as sherpa-onnx decodes them
    speech = torch.cat(plain_export["feats"])
    feats = [speech[i * 37 :] for i in range(batch)]  # three streams over different audio
    states, onnx_states = st.get_init_states(batch), sherpa_init_states(st, batch)
    for k in range(4):
        x = torch.stack([f[k * st.shift : k * st.shift + st.window] for f in feats[:batch]])
        assert x.size(1) == st.window
        with torch.no_grad():
            out, _, states = st.streaming_encode(x, torch.full((batch,), st.window), states)
        res = sess.run(None, dict(zip(names, [x.numpy()] + [s.numpy() for s in onnx_states])))
        onnx_states = [torch.from_numpy(r) for r in res[1:]]
        err = float((torch.from_numpy(res[0]) - out).abs().max() / out.abs().max())
        assert err < tol, (k, err)
    embed = onnx_states[-2]
    assert embed.size(1) == 128 and embed[:, states[-2].size(1) :].abs().max() == 0
    assert torch.equal(onnx_states[-1], states[-1])  # processed lengths


def asrkit_live(model, feats: torch.Tensor, tokenizer) -> tuple[list[str], list[float]]:
    """asrkit's chunk-wise greedy decoding of the chunks a live client completes: features arrive, a chunk is
    decoded once the frames after its window exist (sherpa-onnx's rule). Returns (tokens, seconds)."""
    from asrkit.decoding.streaming import STREAMING_SEARCHES, DecodeStream, as_streaming, decode_chunk, stream_result

    st = as_streaming(model)
    stream = DecodeStream(st, STREAMING_SEARCHES["greedy_search"].start(st), "u")
    stream.accept_features(feats)
    while stream.buffered_frames > stream.window:
        decode_chunk(st, [stream], "greedy_search", unk_id=tokenizer.unk_id)
    result = stream_result(st, stream, "greedy_search", unk_id=tokenizer.unk_id)
    return [tokenizer.symbols[t] for t in result.tokens], [0.04 * t for t in result.timestamps]


@pytest.mark.parametrize("asrkit_model,suffix", [("pytorch", ".onnx"), ("onnx", ".onnx"), ("onnx", ".int8.onnx")])
def test_sherpa_onnx_online_recognizer_equals_asrkit(streaming_export, suffix, asrkit_model):
    """sherpa-onnx on the fp32 / int8 files against asrkit's chunk-wise decoding with the PyTorch model (for the
    fp32 files; int8 weights change the numbers) or with the same ONNX files (:class:`OnnxStreamingTransducer`)."""
    pytest.importorskip("sherpa_onnx")
    from asrkit.export.sherpa_onnx import run_sherpa_onnx_online
    from asrkit.streaming_model import load_streaming_model

    model = streaming_export["model"]
    if asrkit_model == "onnx":
        model, _ = load_streaming_model(streaming_export["root"] / "onnx", int8=suffix == ".int8.onnx")

    theirs = run_sherpa_onnx_online(streaming_export["root"] / "onnx", streaming_export["wavs"], suffix=suffix,
                                    piece_seconds=0.1, timeout=300)
    tokenizer = streaming_export["tokenizer"]
    for path, feats, result in zip(streaming_export["wavs"], streaming_export["feats"], theirs):
        tokens, seconds = asrkit_live(model, feats, tokenizer)
        assert len(tokens) >= 5, f"{path}: too few tokens for a meaningful comparison"
        assert [t.replace("▁", " ") for t in tokens] == [t.replace("▁", " ") for t in result["tokens"]], path
        # (sherpa-onnx renders consecutive word-boundary tokens as fewer spaces: compare words)
        assert "".join(tokens).replace("▁", " ").split() == result["text"].split(), path
        assert seconds == pytest.approx(result["timestamps"], abs=1e-4), path
        assert len(result["partials"]) >= 5 and result["partials"][-1] == result["text"]


def test_non_causal_model_is_refused(tmp_path):
    import dataclasses

    from test_streaming_encoder import tiny_causal_config

    from asrkit.export.onnx_streaming import export_onnx_streaming
    from asrkit.models import presets
    from asrkit.models.build import build_transducer

    cfg = presets.zipformer_xs(vocab_size=30, feature_dim=80, feature_norm="none", ctc_head=False)
    zcfg = dataclasses.replace(tiny_causal_config(), causal=False)
    model = build_transducer(dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, zipformer=zcfg)))
    with pytest.raises(ConfigError, match="causal"):
        export_onnx_streaming(model, tmp_path / "out", tmp_path / "missing.model")


def test_a_front_end_state_too_wide_for_sherpa_onnx_is_refused(tmp_path):
    """128 front-end channels plus running_mean's 2 channels of feature sums do not fit the (N, 128, 3, 19) state
    sherpa-onnx allocates: a clear error naming both, before anything is written."""
    import dataclasses

    from test_export_formats import TEXTS
    from test_streaming_encoder import tiny_causal_config

    from asrkit.data.tokenizer import train_tokenizer
    from asrkit.export.onnx_streaming import export_onnx_streaming
    from asrkit.models import presets
    from asrkit.models.build import build_transducer

    bpe = train_tokenizer(TEXTS * 5, tmp_path / "lang", vocab_size=30)
    cfg = presets.zipformer_xs(vocab_size=30, feature_dim=80, feature_norm="running_mean", ctc_head=False)
    zcfg = dataclasses.replace(tiny_causal_config(), subsampling_channels=128)
    model = build_transducer(dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, zipformer=zcfg)))
    with pytest.raises(ExportError, match="130 channels .*running_mean.*allocates 128"):
        export_onnx_streaming(model, tmp_path / "out", bpe)
    assert not (tmp_path / "out").exists()
