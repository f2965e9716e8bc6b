"""Chunk-wise Zipformer2 (``streaming_forward`` with per-layer caches) against the whole-utterance forward with the
same chunk-causal attention mask and left context."""

from __future__ import annotations

import pytest
import torch
from test_models_zipformer import F, tiny_cfg

from asrkit.errors import ConfigError
from asrkit.models.config import ZipformerConfig
from asrkit.models.zipformer import build_zipformer
from asrkit.models.zipformer.encoder import Zipformer2

CHUNK = 16  # 50 Hz frames: 320 ms
LEFT = 32


def tiny_causal_config(chunk: int = CHUNK, left: int = LEFT, **kw) -> ZipformerConfig:
    """The tiny Zipformer2 of the model tests (six stacks, downsampling up to 8), causal, with two layers in the
    first stack (so layers pass states along)."""
    return tiny_cfg(**{"num_encoder_layers": (2, 1, 1, 1, 1, 1), "causal": True, "chunk_size": (chunk,),
                       "left_context_frames": (left,), **kw})


def enlarge_(model: torch.nn.Module) -> None:
    """Random init leaves the learned edge corrections of the chunk-wise convs at zero and keeps the attention
    scores and the front end's ConvNeXt branch tiny; enlarge them (as training does) so chunk edges and every
    cache visibly change the output."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("chunkwise_conv_scale"):
                p.normal_(0.0, 0.5)
            elif name.endswith("self_attn_weights.in_proj.weight"):
                p.mul_(10.0)
            elif name.endswith("convnext.pointwise_conv2.weight"):
                p.mul_(30.0)


def causal_encoder(chunk: int = CHUNK, left: int = LEFT, feature_norm: str = "none", **kw) -> Zipformer2:
    torch.manual_seed(0)
    enc = build_zipformer(tiny_causal_config(chunk, left, **kw), feature_dim=F, feature_norm=feature_norm).eval()
    enlarge_(enc)
    if feature_norm == "running_mean":
        with torch.no_grad():  # a trained prior is not flat
            enc.feature_norm.prior.copy_(torch.linspace(-1.0, 1.0, F))
    return enc


def run_chunkwise(
    enc: Zipformer2, feats: list[torch.Tensor], starts: list[int], drop_state: int | None = None
) -> tuple[list[list[tuple[int, torch.Tensor]]], int]:
    """Feed each utterance (T_i, F) chunk by chunk, stream i joining the batch at step ``starts[i]`` with fresh
    states; all live streams go through one ``streaming_forward`` call per step. ``drop_state``: index of a state
    tensor reset to zeros before every call (to show the cache matters).

    Returns per stream the list of (first output frame, output chunk (n, E)) and the number of steps."""
    window, shift = enc.streaming_input_frames()
    n_out = (shift // 2) // 2  # output frames per chunk
    states = [enc.get_init_states(1) for _ in feats]
    chunk_index = [0 for _ in feats]
    total = [int(enc.output_lengths(torch.tensor([f.size(0)]))) for f in feats]
    outputs: list[list[tuple[int, torch.Tensor]]] = [[] for _ in feats]
    step = 0
    while True:
        live = [i for i in range(len(feats)) if starts[i] <= step and chunk_index[i] * n_out < total[i]]
        if not live and step > max(starts):
            break
        if live:
            xs, lens = [], []
            for i in live:
                piece = feats[i][chunk_index[i] * shift : chunk_index[i] * shift + window]
                lens.append(piece.size(0))
                xs.append(torch.nn.functional.pad(piece, (0, 0, 0, window - piece.size(0)), value=-23.0))
            batch_states = enc.stack_states([states[i] for i in live])
            if drop_state is not None:
                batch_states[drop_state] = torch.zeros_like(batch_states[drop_state])
            with torch.no_grad():
                out, out_lens, new_states = enc.streaming_forward(torch.stack(xs), torch.tensor(lens), batch_states)
            for j, (i, s) in enumerate(zip(live, enc.unstack_states(new_states))):
                states[i] = s
                outputs[i].append((chunk_index[i] * n_out, out[j, : int(out_lens[j])]))
                chunk_index[i] += 1
        step += 1
    return outputs, step


def full_forward(enc: Zipformer2, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True, padding_value=-23.0)
    with torch.no_grad():
        return enc(x, torch.tensor([f.size(0) for f in feats]))


def utterances(lengths: list[int]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, F, generator=g) for n in lengths]


def max_chunk_error(enc: Zipformer2, feats, starts, drop_state=None) -> float:
    ref, ref_lens = full_forward(enc, feats)
    outputs, _ = run_chunkwise(enc, feats, starts, drop_state)
    worst = 0.0
    for i, chunks in enumerate(outputs):
        assert sum(c.size(0) for _, c in chunks) == int(ref_lens[i])  # every output frame, once
        for first, c in chunks:
            worst = max(worst, float((c - ref[i, first : first + c.size(0)]).abs().max()))
    return worst


TOL = 2e-5  # measured worst error 2e-6 (outputs up to ~5)
CACHE_MATTERS = 2e-4  # dropping the weakest cache (the attention keys of one layer) gives ~1e-3

LENGTHS = [301, 187, 95, 66, 250]
STARTS = [0, 0, 1, 3, 4]  # streams 2-4 join while 0 and 1 are under way


@pytest.mark.parametrize("feature_norm", ["none", "running_mean"])
def test_chunkwise_equals_masked_full_forward_for_streams_of_different_ages(feature_norm):
    enc = causal_encoder(feature_norm=feature_norm)
    feats = utterances(LENGTHS)
    ref, _ = full_forward(enc, feats)
    assert float(ref.abs().max()) > 0.1
    assert max_chunk_error(enc, feats, STARTS) < TOL


@pytest.mark.parametrize("feature_norm", ["none", "running_mean"])
def test_chunkwise_with_left_context_shorter_than_a_stream_and_chunk_of_32(feature_norm):
    enc = causal_encoder(chunk=32, left=64, feature_norm=feature_norm)
    feats = [f + 3.0 for f in utterances([411, 140, 73])]  # an offset for the running mean to remove
    assert max_chunk_error(enc, feats, [0, 2, 2]) < TOL


def test_running_mean_is_the_mean_of_the_frames_so_far_with_the_prior():
    from asrkit.models.common import RUNNING_MEAN_PRIOR_FRAMES as K
    from asrkit.models.common import FeatureNorm

    norm = FeatureNorm("running_mean", feature_dim=3)
    with torch.no_grad():
        norm.prior.copy_(torch.tensor([1.0, -2.0, 0.5]))
    x = torch.randn(2, 7, 3) + 4.0
    lens = torch.tensor([7, 4])
    y = norm(x, lens)
    for b, n in enumerate(lens.tolist()):
        for t in range(n):
            mean = (x[b, : t + 1].sum(0) + K * norm.prior) / (t + 1 + K)
            assert torch.allclose(y[b, t], x[b, t] - mean, atol=1e-5)
    assert torch.equal(y[1, 4:], x[1, 4:])  # padding unchanged
    # later frames do not change earlier ones (causal); an utterance-level offset shrinks as frames accumulate
    assert torch.allclose(norm(x[:, :3], torch.tensor([3, 3])), y[:, :3])
    shifted = norm(x + 10.0, lens)
    assert (shifted - y)[0, -1].abs().max() < (shifted - y)[0, 0].abs().min()


def test_running_mean_state_rides_in_the_front_end_state():
    enc = causal_encoder(feature_norm="running_mean")
    states = enc.get_init_states(3)
    plain = causal_encoder().get_init_states(3)
    assert len(states) == len(plain)
    assert states[-2].shape == (3, 16 + 2, 3, 4)  # F = 20 sums need ceil(20 / 12) = 2 more channels
    assert all(a.shape == b.shape for a, b in zip(states[:-2], plain[:-2]))
    with pytest.raises(ValueError, match="running_mean"):
        build_zipformer(tiny_causal_config(), feature_dim=F, feature_norm="global")


@pytest.mark.parametrize("which", ["key", "nonlin_attn", "val1", "val2", "conv1", "conv2", "embed", "processed",
                                   "embed+norm"])
def test_each_cache_matters(which):
    enc = causal_encoder(feature_norm="running_mean" if which == "embed+norm" else "none")
    feats = [f + 3.0 for f in utterances(LENGTHS)]
    names = ["key", "nonlin_attn", "val1", "val2", "conv1", "conv2"]
    n_states = len(enc.get_init_states(1))
    index = {"embed": n_states - 2, "embed+norm": n_states - 2, "processed": n_states - 1}.get(which)
    if index is None:
        index = names.index(which)  # first layer of the first stack
    assert max_chunk_error(enc, feats, STARTS, drop_state=index) > CACHE_MATTERS


def test_state_layout_is_documented_shapes():
    enc = causal_encoder()
    states = enc.get_init_states(3)
    assert len(states) == 6 * 7 + 2
    key, na, v1, v2, c1, c2 = states[:6]  # first stack: 50 Hz, dim 32, kernel 7, 4 heads
    assert key.shape == (LEFT, 3, 4 * 32)
    assert na.shape == (1, 3, LEFT, 24)
    assert v1.shape == v2.shape == (LEFT, 3, 4 * 12)
    assert c1.shape == c2.shape == (3, 32, 3)
    assert states[12 + 6 * 1].shape[0] == LEFT // 4  # third stack runs at 1/4 of the rate
    assert states[-2].shape == (3, 16, 3, 4) and states[-1].dtype == torch.int64
    back = enc.stack_states(enc.unstack_states(states))
    assert all(torch.equal(a, b) for a, b in zip(states, back))


def test_streaming_config_errors():
    with pytest.raises(ConfigError, match="causal"):
        causal_encoder(causal=False).get_init_states(1)
    with pytest.raises(ConfigError, match="left_context_frames"):
        causal_encoder(left=-1).get_init_states(1)
