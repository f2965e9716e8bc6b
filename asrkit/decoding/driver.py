"""Decode a whole test set: batches of features in, (id, reference, hypothesis) words out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from asrkit.decoding.search import check_options, get_search_function
from asrkit.decoding.utterances import min_input_frames, search_utterances


@torch.no_grad()
def decode_cuts(
    model: Any,
    batches: Iterable[Any],
    tokenizer: Any,
    method: str = "greedy_search",
    progress: bool = True,
    timestamps: dict | None = None,
    segment_frames: int = 6000,
    **opts: Any,
) -> list[tuple[str, list[str], list[str]]]:
    """Run ``method`` over every batch and detokenize the results.

    Utterances too short for the model's front end get an empty hypothesis; utterances longer than
    ``segment_frames`` (default 60 s; 0: never) are searched in segments cut at pauses, as ``asrkit transcribe``
    does (see :func:`asrkit.decoding.utterances.search_utterances`).

    Args:
        model: a ``Transducer`` (put in eval mode here) or a model from
            :func:`asrkit.inference.load_model`.
        batches: iterable of objects with ``features`` (B, T, 80), ``feature_lens`` (B,),
            ``texts`` (B reference strings) and ``cut_ids`` (B ids).
        tokenizer: object with ``decode(list[list[int]]) -> list[str]`` (and optionally
            ``unk_id``, a token the searches then never emit).
        method: ``greedy_search``, ``beam_search``, ``modified_beam_search``,
            ``ctc_greedy_search``, ``fast_beam_search`` or ``fast_beam_search_nbest``.
        progress: show a tqdm progress bar.
        timestamps: if a dict is given, it is filled with ``cut_id -> [(token, start seconds), ...]``
            (greedy and modified beam search).
        **opts: options of the method, e.g. ``beam_size=4`` or ``max_sym_per_frame=1``.

    Returns:
        ``[(cut_id, ref_words, hyp_words), ...]`` in batch order, ready for
        :func:`asrkit.decoding.scoring.save_results`.

    Raises:
        ConfigError: unknown method (listing the valid ones) or option.
    """
    from tqdm import tqdm

    get_search_function(method)  # fail on a bad method before touching any data
    check_options(method, opts)
    if isinstance(model, torch.nn.Module):
        model.eval()
    unk_id = getattr(tokenizer, "unk_id", None)  # <unk> is never emitted (as in icefall/sherpa-onnx)
    min_frames: int | None = None
    results: list[tuple[str, list[str], list[str]]] = []
    for batch in tqdm(batches, desc=f"decode ({method})", unit="batch", disable=not progress):
        if batch is None:  # every utterance of the batch had unreadable audio (skipped and counted by the dataset)
            continue
        if min_frames is None:
            min_frames = min_input_frames(model, feature_dim=batch.features.shape[-1])
        features = [batch.features[k, :n] for k, n in enumerate(batch.feature_lens.tolist())]
        tokens, seconds = search_utterances(model, features, method, min_frames, segment_frames, unk_id=unk_id,
                                            return_timestamps=timestamps is not None, **opts)
        add_results(results, timestamps, tokenizer, batch.cut_ids, batch.texts, tokens, seconds)
    return results


def add_results(
    results: list[tuple[str, list[str], list[str]]],
    timestamps: dict | None,
    tokenizer: Any,
    cut_ids: Sequence[str],
    refs: Sequence[str],
    tokens: list[list[int]],
    seconds: list[list[float]] | None,
) -> None:
    """Detokenize searched utterances into ``results`` (and, when ``timestamps`` is a dict, fill it with
    ``cut_id -> [(token, start seconds), ...]`` from each token's start ``seconds``)."""
    texts = tokenizer.decode(tokens)
    for k, (cut_id, ref, hyp) in enumerate(zip(cut_ids, refs, texts)):
        results.append((str(cut_id), ref.split(), hyp.split()))
        if timestamps is not None and seconds is not None:
            timestamps[str(cut_id)] = [(tokenizer.id_to_symbol(t), s) for t, s in zip(tokens[k], seconds[k])]
