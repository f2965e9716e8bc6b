"""Fast beam search (FSA-based, needs k2). k2 has no wheel for this Python/torch, so these
functions raise :class:`~asrkit.errors.MissingDependencyError` unless k2 is importable."""

from __future__ import annotations

from typing import Any

import torch

from asrkit.errors import MissingDependencyError


def _import_k2() -> Any:
    try:
        import k2
    except ImportError as exc:
        raise MissingDependencyError("k2", "k2", "fast_beam_search") from exc
    return k2


def _lattice(
    model: Any,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    beam: float,
    max_contexts: int,
    max_states: int,
) -> Any:
    """Run k2's RNN-T decoding streams over a trivial graph and return the lattice (FsaVec)."""
    k2 = _import_k2()
    vocab_size = int(model.vocab_size)
    graph = k2.trivial_graph(vocab_size - 1, device=encoder_out.device)
    config = k2.RnntDecodingConfig(
        vocab_size=vocab_size,
        decoder_history_len=int(model.context_size),
        beam=beam,
        max_contexts=max_contexts,
        max_states=max_states,
    )
    streams = k2.RnntDecodingStreams([k2.RnntDecodingStream(graph) for _ in range(encoder_out.size(0))], config)
    for t in range(encoder_out.size(1)):
        shape, contexts = streams.get_contexts()  # contexts: (N, context_size)
        decoder_out = model.predict(contexts.to(torch.int64), need_pad=False).squeeze(1)  # (N, J)
        owner = shape.row_ids(1).to(torch.int64)
        logits = model.join(encoder_out[:, t].index_select(0, owner), decoder_out)  # (N, V)
        streams.advance(logits.log_softmax(dim=-1))
    streams.terminate_and_flush_to_streams()
    return streams.format_output(encoder_out_lens.tolist())


def _best_paths_to_tokens(k2: Any, paths: Any) -> list[list[int]]:
    labels = k2.RaggedTensor(paths.arcs.shape().remove_axis(1), paths.labels.contiguous())
    return labels.remove_values_leq(0).tolist()


@torch.no_grad()
def fast_beam_search(
    model: Any,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    beam: float = 20.0,
    max_contexts: int = 8,
    max_states: int = 64,
) -> list[list[int]]:
    """FSA-based beam search (k2 ``RnntDecodingStreams``), one-best path of the lattice.

    Args:
        model: object with ``predict``, ``join``, ``vocab_size``, ``context_size``.
        encoder_out: (B, T, J) output of ``model.encode``.
        encoder_out_lens: (B,) valid frames per utterance.
        beam, max_contexts, max_states: k2 pruning parameters.

    Returns:
        ``B`` token-id lists.

    Raises:
        MissingDependencyError: k2 is not installed.
    """
    k2 = _import_k2()
    lattice = _lattice(model, encoder_out, encoder_out_lens, beam, max_contexts, max_states)
    return _best_paths_to_tokens(k2, k2.shortest_path(lattice, use_double_scores=True))


@torch.no_grad()
def fast_beam_search_nbest(
    model: Any,
    encoder_out: torch.Tensor,
    encoder_out_lens: torch.Tensor,
    beam: float = 20.0,
    max_contexts: int = 8,
    max_states: int = 64,
    num_paths: int = 200,
    nbest_scale: float = 0.5,
) -> list[list[int]]:
    """Fast beam search, then rescore ``num_paths`` sampled lattice paths by their total
    (un-scaled) score and keep the best token sequence per utterance.

    Raises:
        MissingDependencyError: k2 is not installed.
    """
    k2 = _import_k2()
    lattice = _lattice(model, encoder_out, encoder_out_lens, beam, max_contexts, max_states)
    saved_scores = lattice.scores.clone()
    lattice.scores = saved_scores * nbest_scale  # flatter distribution -> more diverse samples
    paths = k2.random_paths(lattice, num_paths=num_paths, use_double_scores=True)  # [utt][path][arc]
    lattice.scores = saved_scores
    arc_scores = saved_scores[paths.values.to(torch.int64)]
    arc_labels = lattice.labels[paths.values.to(torch.int64)].tolist()
    path_shape = paths.shape  # RaggedShape [utt][path][arc]
    row_splits1 = path_shape.row_splits(1).tolist()
    row_splits2 = path_shape.row_splits(2).tolist()
    results: list[list[int]] = []
    for u in range(len(row_splits1) - 1):
        best_tokens: list[int] = []
        best_score = -float("inf")
        for p in range(row_splits1[u], row_splits1[u + 1]):
            lo, hi = row_splits2[p], row_splits2[p + 1]
            score = float(arc_scores[lo:hi].sum())
            if score > best_score:
                best_score = score
                best_tokens = [y for y in arc_labels[lo:hi] if y > 0]
        results.append(best_tokens)
    return results
