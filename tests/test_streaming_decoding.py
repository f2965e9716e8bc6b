"""Chunk-wise decoding (a pool of live streams, encoder caches, step-wise searches) against simulated streaming
(whole-utterance forward with the chunk mask), token for token."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_streaming_encoder import F, enlarge_, tiny_causal_config, utterances

from asrkit.decoding.search import run_search
from asrkit.decoding.streaming import (
    STREAMING_SEARCHES,
    DecodeStream,
    StreamResult,
    as_streaming,
    decode_chunk,
    decode_streaming,
    stream_result,
)
from asrkit.errors import ConfigError
from asrkit.models import presets
from asrkit.models.build import build_transducer

LENGTHS = [301, 187, 95, 66, 250, 140, 8, 173]  # 8 frames: too short for any encoder output


def causal_transducer(feats: list[torch.Tensor], chunk: int = 16, left: int = 32, vocab_size: int = 12,
                      feature_dim: int = F, feature_norm: str = "none"):
    """A random-init transducer on the tiny causal encoder. At random init the encoder output hardly changes from
    frame to frame (std over time ~1 % of that over channels), so every search would emit one token throughout;
    the joiner's encoder projection is set to a random projection of the output standardised over ``feats``'
    frames, which makes the hypotheses depend on the encoder (and on every one of its caches).
    ``feature_norm``: ``none`` or ``running_mean`` (the causal normalization, whose state rides in the front
    end's)."""
    cfg = presets.zipformer_xs(vocab_size=vocab_size, feature_dim=feature_dim, feature_norm=feature_norm,
                               ctc_head=False)
    cfg = dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, zipformer=tiny_causal_config(chunk, left)))
    torch.manual_seed(0)
    model = build_transducer(cfg).eval()
    enlarge_(model)
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    with torch.no_grad():
        raw, lens = model.run_encoder(x, torch.tensor([f.size(0) for f in feats]))
        frames = torch.cat([raw[i, :n] for i, n in enumerate(lens.tolist())])
        mean, std = frames.mean(0), frames.std(0).clamp(min=1e-6)
        proj = model.joiner.encoder_proj
        w = 2.0 * torch.randn(proj.weight.shape) / proj.weight.size(1) ** 0.5 / std
        proj.weight.copy_(w)
        proj.bias.copy_(-(w @ mean))
        model.joiner.output_linear.weight.mul_(4.0)
        model.joiner.output_linear.bias[0] += 1.0
    return model


def simulated(model, feats, method, **opts) -> list[list[int]]:
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True, padding_value=-23.0)
    tokens, stamps, _ = run_search(model, x, torch.tensor([f.size(0) for f in feats]), method,
                                   return_timestamps=True, **opts)
    return tokens, stamps


METHODS = [
    ("greedy_search", {"max_sym_per_frame": 1}),
    ("greedy_search", {"max_sym_per_frame": 2}),
    ("modified_beam_search", {"beam_size": 4}),
]


@pytest.mark.parametrize("method,opts", METHODS)
@pytest.mark.parametrize("num_streams", [1, 3])
def test_chunkwise_decoding_equals_simulated_streaming(method, opts, num_streams):
    feats = utterances(LENGTHS)
    model = causal_transducer(feats)
    ref_tokens, ref_stamps = simulated(model, feats, method, **opts)
    # non-trivial hypotheses: many tokens, most of the vocabulary, blanks too (fewer tokens than frames)
    assert sum(map(len, ref_tokens)) > 100 and len({y for t in ref_tokens for y in t}) >= 8
    frames = int(model.encoder.output_lengths(torch.tensor([LENGTHS[0]])))
    assert len(ref_tokens[0]) < opts.get("max_sym_per_frame", 1) * frames
    results = decode_streaming(model, [(f"u{i}", f) for i, f in enumerate(feats)], method, num_streams, **opts)
    assert [r.utt_id for r in results] == [f"u{i}" for i in range(len(feats))]
    assert [r.tokens for r in results] == ref_tokens
    assert [r.timestamps for r in results] == ref_stamps


def test_features_fed_in_small_pieces_as_a_live_client_does():
    feats = utterances([250, 333, 120])
    model = causal_transducer(feats, chunk=32, left=64)
    ref, _ = simulated(model, feats, "modified_beam_search", beam_size=3)
    model = as_streaming(model)
    search = STREAMING_SEARCHES["modified_beam_search"]
    streams = [DecodeStream(model, search.start(model), f"u{i}") for i in range(3)]
    fed = [0, 0, 0]
    piece = [7, 23, 41]  # frames per arrival, different per stream
    partials: list[list[int]] = []
    while not all(s.done for s in streams):
        for i, s in enumerate(streams):
            if fed[i] < feats[i].size(0):
                s.accept_features(feats[i][fed[i] : fed[i] + piece[i]])
                fed[i] += piece[i]
                if fed[i] >= feats[i].size(0):
                    s.input_finished()
        ready = [s for s in streams if s.ready]
        decode_chunk(model, ready, "modified_beam_search", beam_size=3)
        partials.append(stream_result(model, streams[1], "modified_beam_search").tokens)
    assert [stream_result(model, s, "modified_beam_search").tokens for s in streams] == ref
    assert len({tuple(p) for p in partials}) > 2  # partial results grow as audio arrives


def test_short_utterance_gives_empty_result_and_bad_options_are_named():
    model = causal_transducer(utterances([100]))
    (r,) = decode_streaming(model, [("tiny", torch.zeros(5, F))], "greedy_search")
    assert r == StreamResult("tiny", [], [], 0)
    with pytest.raises(ConfigError, match="beam_search"):
        decode_streaming(model, [], "beam_search")
    with pytest.raises(ConfigError, match="beam_size"):
        decode_streaming(model, [], "greedy_search", beam_size=4)
    with pytest.raises(ConfigError, match="num_decode_streams"):
        decode_streaming(model, [], "greedy_search", num_streams=0)
