"""Predictor left-context handling shared by every transducer search.

The predictor must see in search exactly the left context it saw in training, or it gets
inputs it never learned and the search emits garbage although the training loss is low.
Training (``asrkit.models.transducer.predictor``) feeds ``[blank, y_1, ...]`` and pads the
history before ``blank`` with token ``-1`` (a zero embedding), so every hypothesis here starts
from ``[-1] * (context_size - 1) + [blank]`` -- also the context sherpa-onnx starts from, so
exported models decode alike. Every search builds its predictor inputs through this module;
the convention lives nowhere else in :mod:`asrkit.decoding`.

Stateless predictors look at the last ``context_size`` tokens (``predict(y, need_pad=False)``);
a recurrent predictor (one with ``initial_state``, e.g. ``LstmPredictor``) has no fixed window,
so it is run over the whole history and its last output is taken.

Shape legend: N hypotheses (or utterances), C context size, U history length, J joiner dim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

PAD_TOKEN = -1
"""Token id of "no history" (embedded as zeros by the predictor)."""


def initial_context(context_size: int, blank_id: int) -> list[int]:
    """The history every hypothesis starts from: ``[-1] * (context_size - 1) + [blank_id]``.

    Hypotheses store their token history *including* this prefix, so the last ``context_size``
    items are always a valid predictor input; :func:`strip_context` removes it.
    """
    return [PAD_TOKEN] * (context_size - 1) + [blank_id]


def strip_context(ys: Sequence[int], context_size: int) -> list[int]:
    """Drop the prefix added by :func:`initial_context` from a token history."""
    return list(ys[context_size:])


def uses_full_history(model: Any) -> bool:
    """True when the model's predictor is recurrent (its output depends on the whole history).

    Exported models (:func:`asrkit.inference.load_model`) say so in ``recurrent_predictor``;
    for a ``Transducer`` it is read off the predictor (recurrent ones have ``initial_state``).
    """
    flag = getattr(model, "recurrent_predictor", None)
    if flag is not None:
        return bool(flag)
    predictor = getattr(model, "predictor", None)
    return predictor is not None and hasattr(predictor, "initial_state")


def history_key(model: Any, ys: Sequence[int]) -> tuple[int, ...]:
    """The part of a history the predictor output depends on (usable as a cache key)."""
    if uses_full_history(model):
        return tuple(ys)
    return tuple(ys[-int(model.context_size):])


def context_tensor(
    histories: Sequence[Sequence[int]], context_size: int, device: torch.device | str
) -> torch.Tensor:
    """Stack the last ``context_size`` tokens of each history into an int64 tensor (N, C)."""
    rows = [list(h[-context_size:]) for h in histories]
    return torch.tensor(rows, dtype=torch.int64, device=device).reshape(len(rows), context_size)


def predictor_outputs(
    model: Any, histories: Sequence[Sequence[int]], device: torch.device | str
) -> torch.Tensor:
    """Predictor output after each token history.

    Args:
        model: anything with ``predict(y (N, U) int64, need_pad) -> (N, U', J)`` and
            ``context_size``.
        histories: N token histories, each starting with :func:`initial_context`.
        device: where to build the input tensor.

    Returns:
        (N, J) predictor outputs with the joiner's decoder projection already applied.
    """
    n = len(histories)
    if uses_full_history(model):
        lens = torch.tensor([len(h) for h in histories], dtype=torch.int64, device=device)
        width = int(lens.max())
        y = torch.tensor([list(h) + [int(model.blank_id)] * (width - len(h)) for h in histories],
                         dtype=torch.int64, device=device)
        out = model.predict(y, need_pad=True)  # (N, U, J); recurrent, so padding on the right is harmless
        return out[torch.arange(n, device=device), lens - 1]
    context_size = int(model.context_size)
    out = model.predict(context_tensor(histories, context_size, device), need_pad=False)
    return out.reshape(n, -1)
