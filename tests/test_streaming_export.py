"""TorchScript streaming export: the scripted chunk-wise API equals the eager one, chunk by chunk, and decodes to the
same tokens."""

from __future__ import annotations

import json

import pytest
import torch
from test_export_formats import TEXTS
from test_streaming_decoding import LENGTHS, causal_transducer, simulated
from test_streaming_encoder import utterances

from asrkit.decoding.streaming import as_streaming, decode_streaming
from asrkit.errors import ConfigError
from asrkit.export.torchscript_streaming import export_torchscript_streaming


@pytest.fixture(scope="module", params=["none", "running_mean"])
def streaming_export(tmp_path_factory, request):
    from asrkit.data.tokenizer import Tokenizer, train_tokenizer

    root = tmp_path_factory.mktemp("streaming-export")
    bpe = train_tokenizer(TEXTS * 5, root / "lang", vocab_size=30)
    feats = utterances(LENGTHS)
    model = causal_transducer(feats, vocab_size=Tokenizer.load(bpe).vocab_size, feature_norm=request.param)
    path = export_torchscript_streaming(model, root / "jit", bpe, chunk_size=32, left_context_frames=64)
    return {"model": model, "path": path, "feats": feats, "bpe": bpe}


def test_scripted_chunks_equal_eager_chunks(streaming_export):
    model = streaming_export["model"]
    model.encoder.set_decoding_chunk(32, 64)
    eager = as_streaming(model)
    files = {"asrkit.json": ""}
    loaded = torch.jit.load(str(streaming_export["path"]), _extra_files=files)
    meta = json.loads(files["asrkit.json"])
    assert meta["streaming"] and (meta["chunk_size"], meta["left_context_frames"]) == (32, 64)
    assert (loaded.window, loaded.shift, list(loaded.state_batch_dims)) == (
        eager.window, eager.shift, eager.state_batch_dims)
    assert (streaming_export["path"].parent / "tokens.txt").exists()
    g = torch.Generator().manual_seed(3)
    s_eager, s_loaded = eager.get_init_states(3), loaded.get_init_states(3)
    assert all(torch.equal(a, b) for a, b in zip(s_eager, s_loaded))
    for step in range(4):  # a full batch, then a batch with a short last chunk
        x = torch.randn(3, eager.window, 20, generator=g)
        x_lens = torch.tensor([eager.window, eager.window, eager.window if step < 3 else 30])
        with torch.no_grad():
            e_out, e_lens, s_eager = eager.streaming_encode(x, x_lens, s_eager)
            l_out, l_lens, s_loaded = loaded.streaming_encode(x, x_lens, s_loaded)
        assert torch.equal(e_lens, l_lens)
        torch.testing.assert_close(l_out, e_out, atol=1e-5, rtol=1e-5)
        for a, b in zip(s_eager, s_loaded):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method,opts", [("greedy_search", {}), ("modified_beam_search", {"beam_size": 4})])
def test_scripted_export_decodes_like_simulated_streaming(streaming_export, method, opts):
    model, feats = streaming_export["model"], streaming_export["feats"]
    model.encoder.set_decoding_chunk(32, 64)
    ref, _ = simulated(model, feats, method, **opts)
    assert sum(map(len, ref)) > 50
    loaded = torch.jit.load(str(streaming_export["path"]))
    got = decode_streaming(loaded, [(str(i), f) for i, f in enumerate(feats)], method, num_streams=3, **opts)
    assert [r.tokens for r in got] == ref


def test_non_causal_model_is_refused(streaming_export, tmp_path):
    from test_models_zipformer import _tiny_transducer

    with pytest.raises(ConfigError, match="causal"):
        export_torchscript_streaming(_tiny_transducer(causal=False), tmp_path, streaming_export["bpe"])
