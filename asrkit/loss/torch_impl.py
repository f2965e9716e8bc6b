"""The ``torch`` backend: k2's RNN-T loss functions in pure PyTorch (any device, float32/64).

This module has the same function names and keyword arguments as ``k2``/``fast_rnnt``, so the
dispatcher in :mod:`asrkit.loss.api` can call any backend the same way.  Legend: ``B`` batch,
``T`` frames, ``S`` symbols, ``C`` vocabulary, ``R`` pruning range.
"""

from __future__ import annotations

import torch
from torch import Tensor

from asrkit.loss.logprobs import (
    get_rnnt_logprobs,
    get_rnnt_logprobs_joint,
    get_rnnt_logprobs_pruned,
    get_rnnt_logprobs_smoothed,
)
from asrkit.loss.mutual_information import mutual_information_recursion
from asrkit.loss.pruning import do_rnnt_pruning, get_rnnt_prune_ranges
from asrkit.loss.validation import REDUCTIONS, LossInputError, check_choice, upcast

__all__ = [
    "mutual_information_recursion",
    "get_rnnt_logprobs",
    "get_rnnt_logprobs_smoothed",
    "get_rnnt_logprobs_joint",
    "get_rnnt_logprobs_pruned",
    "rnnt_loss_simple",
    "rnnt_loss_smoothed",
    "rnnt_loss",
    "rnnt_loss_pruned",
    "get_rnnt_prune_ranges",
    "do_rnnt_pruning",
]


def _add_delay_penalty(px: Tensor, boundary: Tensor | None, rnnt_type: str, delay_penalty: float) -> Tensor:
    """Reward early symbols: add ``delay_penalty * ((t_end - 1) / 2 - t)`` to ``px[b, :, t]``
    (k2 issue 955: time masking otherwise teaches the model to emit late)."""
    if delay_penalty <= 0.0:
        return px
    B, _, T0 = px.shape
    T = T0 - 1 if rnnt_type == "regular" else T0
    if boundary is None:
        center = px.new_full((B, 1, 1), (T - 1) / 2)
    else:
        center = ((boundary[:, 3].to(px.dtype) - 1) / 2).reshape(B, 1, 1)
    frames = torch.arange(T0, device=px.device, dtype=px.dtype).reshape(1, 1, T0)
    return px + (center - frames) * delay_penalty


def _reduce(scores: Tensor, reduction: str) -> Tensor:
    """``scores`` are log-likelihoods ``[B]``; the loss is their negation, reduced."""
    if reduction == "none":
        return -scores
    if reduction == "mean":
        return -scores.mean()
    return -scores.sum()


def _loss_from_logprobs(
    px: Tensor,
    py: Tensor,
    boundary: Tensor | None,
    rnnt_type: str,
    delay_penalty: float,
    reduction: str,
    return_grad: bool,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    px = _add_delay_penalty(px, boundary, rnnt_type, delay_penalty)
    if return_grad:
        scores, grads = mutual_information_recursion(px, py, boundary, return_grad=True)
        return _reduce(scores, reduction), grads
    return _reduce(mutual_information_recursion(px, py, boundary), reduction)


def rnnt_loss_simple(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """RNN-T loss with the "simple" additive joiner ``logits[b, t, s] = lm[b, s] + am[b, t]``.

    Args:
        lm: ``[B, S+1, C]``; am: ``[B, T, C]``; symbols: int64 ``[B, S]``.
        termination_symbol: blank id.
        boundary: optional int64 ``[B, 4]`` ``[s_begin, t_begin, s_end, t_end]``.
        rnnt_type: regular | modified | constrained.
        delay_penalty: > 0 rewards emitting symbols early.
        reduction: none (``[B]``) | mean | sum.
        return_grad: also return ``(px_grad, py_grad)``, the occupation probabilities
            (gradients of ``-loss`` with reduction none, summed), for :func:`get_rnnt_prune_ranges`.
    """
    check_choice(reduction, REDUCTIONS, "reduction")
    lm, am = upcast(lm, "lm"), upcast(am, "am")
    px, py = get_rnnt_logprobs(lm, am, symbols, termination_symbol, boundary, rnnt_type)
    return _loss_from_logprobs(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def rnnt_loss_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """:func:`rnnt_loss_simple` on log-probabilities smoothed with an lm-only and an am-only
    (unigram-lm) model; see :func:`asrkit.loss.logprobs.get_rnnt_logprobs_smoothed`.

    icefall calls it with ``lm_only_scale=0.25, am_only_scale=0.0, reduction="sum",
    return_grad=True`` and feeds the grads to :func:`get_rnnt_prune_ranges`.
    """
    check_choice(reduction, REDUCTIONS, "reduction")
    lm, am = upcast(lm, "lm"), upcast(am, "am")
    px, py = get_rnnt_logprobs_smoothed(
        lm, am, symbols, termination_symbol, lm_only_scale, am_only_scale, boundary, rnnt_type
    )
    return _loss_from_logprobs(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def rnnt_loss(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """Full (unpruned) RNN-T loss from joiner output ``logits`` ``[B, T, S+1, C]``.

    Other arguments as in :func:`rnnt_loss_simple`.  Memory is ``O(B T S C)``; see
    :func:`asrkit.loss.sub_batched.rnnt_loss_sub_batched` for a lower-memory variant.
    """
    check_choice(reduction, REDUCTIONS, "reduction")
    logits = upcast(logits, "logits")
    px, py = get_rnnt_logprobs_joint(logits, symbols, termination_symbol, boundary, rnnt_type)
    return _loss_from_logprobs(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def rnnt_loss_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """RNN-T loss over the pruned lattice.

    Args:
        logits: ``[B, T, R, C]`` joiner output on the nodes chosen by ``ranges``.
        symbols: int64 ``[B, S]``.
        ranges: int64 ``[B, T, R]`` from :func:`get_rnnt_prune_ranges`.
        Other arguments as in :func:`rnnt_loss_simple`.
    """
    check_choice(reduction, REDUCTIONS, "reduction")
    logits = upcast(logits, "logits")
    if ranges.dtype != torch.int64:
        raise LossInputError(f"rnnt_loss_pruned: ranges must be int64, got {ranges.dtype}")
    px, py = get_rnnt_logprobs_pruned(logits, symbols, ranges, termination_symbol, boundary, rnnt_type)
    return _loss_from_logprobs(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)
