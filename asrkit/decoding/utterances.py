"""Searching utterances of any length: too short for the model's front end gives an empty hypothesis, too long
for whole-utterance attention is searched in segments cut at pauses.

Shared by ``asrkit decode`` (:func:`asrkit.decoding.driver.decode_cuts`) and ``asrkit transcribe``
(:func:`asrkit.inference.transcribe_files`). Shapes: T feature frames (10 ms), F feature bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from asrkit.errors import CheckpointError


def min_input_frames(model: Any, feature_dim: int = 80, limit: int = 1024) -> int:
    """The fewest feature frames (10 ms each) the model's encoder turns into at least one output frame.

    ``model``: an :class:`InferenceModel` or a ``Transducer`` (anything with ``encode(x, x_lens)``).

    Measured on the model itself (its convolutional front end decides; exports have no formula), by bisection
    over encoder runs on silence, and cached on the model. Shorter input gets an empty transcript.

    Raises:
        CheckpointError: the encoder fails even on ``limit`` frames (the model is broken).
    """
    cached = getattr(model, "_min_input_frames", None)
    if cached is not None:
        return cached

    def works(frames: int) -> bool:
        from asrkit.data.features import FEATURE_PADDING_VALUE

        x = torch.full((1, frames, feature_dim), FEATURE_PADDING_VALUE / 2)
        try:
            with torch.no_grad():
                _, lens = model.encode(x, torch.tensor([frames]))
        except Exception:  # a front end's convolution (torch) or shape check (onnxruntime) refusing the input
            return False
        return int(lens[0]) >= 1

    if not works(limit):
        kind = getattr(model, "format", "") or type(model).__name__
        raise CheckpointError(f"the {kind} model's encoder fails even on {limit} frames of input")
    lo, hi = 0, limit  # works(hi) holds; works(lo) does not (0 frames is no input)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if works(mid) else (mid, hi)
    model._min_input_frames = hi
    return hi


def pause_cuts(features: torch.Tensor, max_frames: int, search_frames: int) -> list[int]:
    """Start frames of the segments a long utterance is decoded in.

    Each segment is at most ``max_frames`` long and ends at the quietest frame (lowest mean log-mel energy) of
    its last ``search_frames`` frames, so that cuts fall into pauses where there are any.

    Args:
        features: (T, F) log-mel features.
    Returns:
        ``[0, s1, s2, ...]``: segment ``k`` is ``features[s_k:s_{k+1}]`` (the last one runs to T).
    """
    energy = features.mean(dim=1)
    starts, total = [0], features.shape[0]
    search_frames = max(1, min(search_frames, max_frames - 1))
    while total - starts[-1] > max_frames:
        lo = starts[-1] + max_frames - search_frames
        starts.append(lo + 1 + int(torch.argmin(energy[lo + 1:starts[-1] + max_frames + 1])))
    return starts


def search_utterances(
    model: Any,
    features: Sequence[torch.Tensor],
    method: str,
    min_frames: int,
    segment_frames: int = 0,
    return_timestamps: bool = False,
    **opts: Any,
) -> tuple[list[list[int]], list[list[float]] | None]:
    """Search each utterance of ``features`` ((T_i, F) tensors) in one batched search.

    Utterances shorter than ``min_frames`` (see :func:`min_input_frames`) get no tokens without running the model;
    with ``segment_frames > 0`` longer ones are cut with :func:`pause_cuts` (search window: the last tenth of each
    segment) and the tokens of their segments concatenated.

    Returns:
        Per utterance its token ids and, with ``return_timestamps``, each token's start in seconds (else None).
    """
    from asrkit.data.features import FRAME_SHIFT_S, pad_features
    from asrkit.decoding.search import run_search
    from asrkit.decoding.timestamps import frames_to_seconds

    segments: list[tuple[int, int, torch.Tensor]] = []  # (utterance, start frame, features), in time order
    for i, f in enumerate(features):
        long = segment_frames > 0 and f.shape[0] > segment_frames
        starts = pause_cuts(f, segment_frames, segment_frames // 10) if long else [0]
        segments += [(i, start, f[start:end]) for start, end in zip(starts, starts[1:] + [f.shape[0]])]
    tokens: list[list[int]] = [[] for _ in features]
    seconds: list[list[float]] = [[] for _ in features]
    runnable = [s for s in segments if s[2].shape[0] >= min_frames]
    if runnable:
        x, x_lens = pad_features([f for _, _, f in runnable])
        found, stamps, enc_lens = run_search(model, x, x_lens, method, return_timestamps=return_timestamps, **opts)
        for k, (i, start, _) in enumerate(runnable):
            tokens[i] += found[k]
            if return_timestamps:
                seconds[i] += [start * FRAME_SHIFT_S + s
                               for s in frames_to_seconds(stamps[k], int(x_lens[k]), int(enc_lens[k]))]
    return tokens, (seconds if return_timestamps else None)
