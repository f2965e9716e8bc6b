"""Reducing RNN-T problems to the ``(px, py)`` form of the mutual-information recursion.

Legend: ``B`` batch, ``T`` frames, ``S`` symbols per sequence (so ``S+1`` predictor positions),
``C`` vocabulary incl. blank, ``R`` pruning range (``s_range``).

Every function returns ``(px, py)`` with ``px`` ``[B, S, T+1]`` for ``rnnt_type="regular"``
(column ``T`` is ``-inf``: no symbol can be emitted after the last frame) or ``[B, S, T]``
otherwise, and ``py`` ``[B, S+1, T]``.  ``px[b, s, t]`` is the log-probability of emitting the
``s``-th symbol from lattice node ``(s, t)``; ``py[b, s, t]`` that of emitting the termination
(blank) symbol there.  Semantics follow k2's ``rnnt_loss.py`` exactly (this is checked against
fast_rnnt in ``tests/test_loss_parity.py``).

``rnnt_type``: ``regular`` (a symbol keeps you on the frame), ``modified`` (a symbol also moves
to the next frame: at most one symbol per frame), ``constrained`` (like modified, scored as a
symbol followed by a forced blank from the next context on the same frame).
"""

from __future__ import annotations

import torch
from torch import Tensor

from asrkit.loss.validation import (
    RNNT_TYPES,
    LossInputError,
    check_choice,
    check_st_lengths,
)

_NEG_INF = float("-inf")


def _check_simple_inputs(lm: Tensor, am: Tensor, symbols: Tensor, where: str) -> tuple[int, int, int, int]:
    if lm.ndim != 3 or am.ndim != 3:
        raise LossInputError(f"{where}: lm must be [B, S+1, C] and am [B, T, C]; got {tuple(lm.shape)}, {tuple(am.shape)}")
    B, T, C = am.shape
    if lm.shape[0] != B or lm.shape[2] != C:
        raise LossInputError(f"{where}: lm {tuple(lm.shape)} and am {tuple(am.shape)} disagree on B or C")
    S = lm.shape[1] - 1
    if tuple(symbols.shape) != (B, S):
        raise LossInputError(f"{where}: symbols must be [B, S] = ({B}, {S}), got {tuple(symbols.shape)}")
    return B, S, T, C


def _finish(px: Tensor, py: Tensor, boundary: Tensor | None, rnnt_type: str) -> tuple[Tensor, Tensor]:
    """Common tail: -inf at each sequence's one-past-the-last frame (regular), or fold the forced
    blank into the symbol step (constrained)."""
    if rnnt_type == "regular":
        if boundary is not None:
            B, S, T1 = px.shape
            t_end = boundary[:, 3].reshape(B, 1, 1).expand(B, S, 1)
            px = px.scatter_(2, t_end, _NEG_INF)  # px is always a fresh tensor here
    elif rnnt_type == "constrained":
        px = px + py[:, 1:, :]
    return px, py


def _pad_last_frame(px: Tensor, rnnt_type: str) -> Tensor:
    """Regular RNN-T: append the ``-inf`` column ``t = T`` to a ``[B, S, T]`` px."""
    if rnnt_type != "regular":
        return px
    B, S, _ = px.shape
    return torch.cat((px, px.new_full((B, S, 1), _NEG_INF)), dim=2)


def _simple_normalizers(lm: Tensor, am: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """log sum_c exp(lm[b, s, c] + am[b, t, c]) as ``[B, S+1, T]``, via one batched matmul of the
    max-shifted probabilities.  Also returns the shifted probabilities and maxima."""
    am_max = am.amax(dim=2, keepdim=True)  # [B, T, 1]
    lm_max = lm.amax(dim=2, keepdim=True)  # [B, S+1, 1]
    am_probs = (am - am_max).exp()
    lm_probs = (lm - lm_max).exp()
    tiny = torch.finfo(am_probs.dtype).tiny
    normalizers = (torch.matmul(lm_probs, am_probs.transpose(1, 2)) + tiny).log()
    normalizers = normalizers + lm_max + am_max.transpose(1, 2)
    return normalizers, am_probs, lm_probs, am_max, lm_max


def get_rnnt_logprobs(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
) -> tuple[Tensor, Tensor]:
    """``(px, py)`` for the "simple" joiner ``logits = lm[b, s] + am[b, t]``.

    Args:
        lm: ``[B, S+1, C]`` predictor ("language model") part of the unnormalized logits.
        am: ``[B, T, C]`` encoder ("acoustic model") part.
        symbols: int64 ``[B, S]``.
        termination_symbol: blank id.
        boundary: optional int64 ``[B, 4]`` ``[s_begin, t_begin, s_end, t_end]``.
        rnnt_type: regular | modified | constrained.
    """
    check_choice(rnnt_type, RNNT_TYPES, "rnnt_type")
    B, S, T, C = _check_simple_inputs(lm, am, symbols, "get_rnnt_logprobs")
    check_st_lengths(S, T, rnnt_type, boundary, "get_rnnt_logprobs")
    normalizers, *_ = _simple_normalizers(lm, am)

    px_am = torch.gather(am.transpose(1, 2), 1, symbols.unsqueeze(2).expand(B, S, T))  # [B, S, T]
    px_lm = torch.gather(lm[:, :S], 2, symbols.unsqueeze(2))  # [B, S, 1]
    px = _pad_last_frame(px_am + px_lm - normalizers[:, :S], rnnt_type)

    py_am = am[:, :, termination_symbol].unsqueeze(1)  # [B, 1, T]
    py_lm = lm[:, :, termination_symbol].unsqueeze(2)  # [B, S+1, 1]
    py = py_am + py_lm - normalizers
    return _finish(px, py, boundary, rnnt_type)


def get_rnnt_logprobs_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
) -> tuple[Tensor, Tensor]:
    """Like :func:`get_rnnt_logprobs`, interpolating (in log space) three models::

        (1 - lm_only_scale - am_only_scale) * log p_joint
            + lm_only_scale * log p_lm_only          # lm alone, normalized over C
            + am_only_scale * log p_am_only          # am with a unigram lm averaged over the batch

    Shapes as in :func:`get_rnnt_logprobs`.  Scales of exactly 0 are replaced by 1e-20 (as k2
    does) so that ``0 * -inf`` never produces NaN.
    """
    check_choice(rnnt_type, RNNT_TYPES, "rnnt_type")
    B, S, T, C = _check_simple_inputs(lm, am, symbols, "get_rnnt_logprobs_smoothed")
    check_st_lengths(S, T, rnnt_type, boundary, "get_rnnt_logprobs_smoothed")
    normalizers, am_probs, lm_probs, am_max, lm_max = _simple_normalizers(lm, am)
    tiny = torch.finfo(lm_probs.dtype).tiny

    lm_only_norm = lm_probs.sum(dim=2, keepdim=True)  # [B, S+1, 1]
    # Unigram "lm": the lm distribution averaged over every position of the batch.
    unigram = (lm_probs / lm_only_norm).mean(dim=(0, 1)) + tiny  # [C]
    am_only_norm = (torch.mv(am_probs.reshape(-1, C), unigram).reshape(B, 1, T).log()
                    + am_max.transpose(1, 2))  # [B, 1, T]
    log_unigram = unigram.log()
    lm_only_norm = lm_only_norm.log() + lm_max  # [B, S+1, 1]

    px_am = torch.gather(am.transpose(1, 2), 1, symbols.unsqueeze(2).expand(B, S, T))  # [B, S, T]
    px_lm = torch.gather(lm[:, :S], 2, symbols.unsqueeze(2))  # [B, S, 1]
    px_unigram = log_unigram[symbols].unsqueeze(2)  # [B, S, 1]

    px_joint = px_am + px_lm - normalizers[:, :S]
    px_am_only = px_am + px_unigram - am_only_norm
    px_lm_only = px_lm - lm_only_norm[:, :S]  # [B, S, 1]

    py_am = am[:, :, termination_symbol].unsqueeze(1)  # [B, 1, T]
    py_lm = lm[:, :, termination_symbol].unsqueeze(2)  # [B, S+1, 1]
    py_joint = py_am + py_lm - normalizers
    py_am_only = py_am + log_unigram[termination_symbol] - am_only_norm  # [B, 1, T]
    py_lm_only = py_lm - lm_only_norm  # [B, S+1, 1]

    joint_scale = 1.0 - lm_only_scale - am_only_scale
    lm_only_scale = lm_only_scale if lm_only_scale != 0.0 else 1.0e-20
    am_only_scale = am_only_scale if am_only_scale != 0.0 else 1.0e-20

    px = px_joint * joint_scale + px_lm_only * lm_only_scale + px_am_only * am_only_scale
    py = py_joint * joint_scale + py_lm_only * lm_only_scale + py_am_only * am_only_scale
    px = _pad_last_frame(px, rnnt_type)
    return _finish(px, py, boundary, rnnt_type)


def get_rnnt_logprobs_joint(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
) -> tuple[Tensor, Tensor]:
    """``(px, py)`` from full joiner output ``logits`` ``[B, T, S+1, C]``."""
    check_choice(rnnt_type, RNNT_TYPES, "rnnt_type")
    if logits.ndim != 4:
        raise LossInputError(f"get_rnnt_logprobs_joint: logits must be [B, T, S+1, C], got {tuple(logits.shape)}")
    B, T, S1, C = logits.shape
    S = S1 - 1
    if tuple(symbols.shape) != (B, S):
        raise LossInputError(f"get_rnnt_logprobs_joint: symbols must be ({B}, {S}), got {tuple(symbols.shape)}")
    check_st_lengths(S, T, rnnt_type, boundary, "get_rnnt_logprobs_joint")
    px, py = _JointLogprobs.apply(logits, symbols, termination_symbol)
    px = _pad_last_frame(px, rnnt_type)
    return _finish(px, py, boundary, rnnt_type)


class _JointLogprobs(torch.autograd.Function):
    """Normalize and pick the two log-probs per lattice node from ``[B, T, S+1, C]`` logits.

    Written as one autograd op because the generic ``logsumexp`` + ``gather`` graph keeps two
    extra ``[B, T, S+1, C]`` tensors alive; here backward builds the single logits gradient
    ``softmax * -(g_x + g_y) + onehot(symbol) * g_x + onehot(blank) * g_y`` in place.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, symbols: Tensor, termination_symbol: int):  # type: ignore[override]
        B, T, S1, C = logits.shape
        S = S1 - 1
        norm = torch.logsumexp(logits, dim=3)  # [B, T, S+1]
        idx = symbols.reshape(B, 1, S, 1).expand(B, T, S, 1)
        px = torch.gather(logits[:, :, :S], 3, idx).squeeze(3) - norm[:, :, :S]  # [B, T, S]
        py = logits[:, :, :, termination_symbol] - norm  # [B, T, S+1]
        ctx.save_for_backward(logits, norm, symbols)
        ctx.termination_symbol = termination_symbol
        return px.permute(0, 2, 1), py.permute(0, 2, 1)

    @staticmethod
    def backward(ctx, px_grad: Tensor, py_grad: Tensor):  # type: ignore[override]
        logits, norm, symbols = ctx.saved_tensors
        B, T, S1, C = logits.shape
        S = S1 - 1
        gx = px_grad.permute(0, 2, 1) if px_grad is not None else logits.new_zeros(B, T, S)
        gy = py_grad.permute(0, 2, 1) if py_grad is not None else logits.new_zeros(B, T, S1)
        g_norm = gy.clone()
        g_norm[:, :, :S] += gx
        grad = torch.sub(logits, norm.unsqueeze(3)).exp_()  # softmax, [B, T, S+1, C]
        grad.mul_(g_norm.neg_().unsqueeze(3))
        idx = symbols.reshape(B, 1, S, 1).expand(B, T, S, 1)
        grad[:, :, :S].scatter_add_(3, idx, gx.unsqueeze(3))
        grad[:, :, :, ctx.termination_symbol] += gy
        return grad, None, None


def get_rnnt_logprobs_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
) -> tuple[Tensor, Tensor]:
    """``(px, py)`` from pruned joiner output.

    Args:
        logits: ``[B, T, R, C]``; ``logits[b, t, r]`` belongs to lattice node
            ``(ranges[b, t, 0] + r, t)``.
        symbols: int64 ``[B, S]``.
        ranges: int64 ``[B, T, R]`` from :func:`get_rnnt_prune_ranges` (consecutive symbol
            positions per frame; only ``ranges[:, :, 0]`` is read).
        termination_symbol: blank id.
        boundary: optional int64 ``[B, 4]``.
        rnnt_type: regular | modified | constrained.

    Nodes outside the kept range get ``-inf``.
    """
    check_choice(rnnt_type, RNNT_TYPES, "rnnt_type")
    if logits.ndim != 4:
        raise LossInputError(f"get_rnnt_logprobs_pruned: logits must be [B, T, R, C], got {tuple(logits.shape)}")
    B, T, R, C = logits.shape
    if tuple(ranges.shape) != (B, T, R):
        raise LossInputError(
            f"get_rnnt_logprobs_pruned: ranges must be ({B}, {T}, {R}) to match logits, got {tuple(ranges.shape)}"
        )
    if symbols.ndim != 2 or symbols.shape[0] != B:
        raise LossInputError(f"get_rnnt_logprobs_pruned: symbols must be [B={B}, S], got {tuple(symbols.shape)}")
    S = symbols.shape[1]
    if R > S + 1:
        raise LossInputError(f"get_rnnt_logprobs_pruned: s_range R={R} exceeds S+1={S + 1}")
    check_st_lengths(S, T, rnnt_type, boundary, "get_rnnt_logprobs_pruned")

    norm = torch.logsumexp(logits, dim=3)  # [B, T, R]
    with_blank = torch.cat((symbols, symbols.new_full((B, 1), termination_symbol)), dim=1)  # [B, S+1]
    # Node s of frame t sits at row s = ranges[b, t, 0] + r.
    rows = ranges[:, :, :1] + torch.arange(R, device=ranges.device)  # [B, T, R]
    kept_symbols = torch.gather(with_blank.unsqueeze(1).expand(B, T, S + 1), 2, rows)  # [B, T, R]
    px_kept = torch.gather(logits, 3, kept_symbols.unsqueeze(3)).squeeze(3) - norm  # [B, T, R]
    py_kept = logits[:, :, :, termination_symbol] - norm  # [B, T, R]

    # Scatter the kept nodes into the full lattice, -inf elsewhere.  (Regular RNN-T keeps the
    # extra -inf column t = T.)
    T_px = T + 1 if rnnt_type == "regular" else T
    index = rows.permute(0, 2, 1)  # [B, R, T]
    px_full = px_kept.new_full((B, S + 1, T_px), _NEG_INF)
    px_full[:, :, :T].scatter_(1, index, px_kept.permute(0, 2, 1))
    px = px_full[:, :S]
    py = py_kept.new_full((B, S + 1, T), _NEG_INF)
    py.scatter_(1, index, py_kept.permute(0, 2, 1))
    return _finish(px, py, boundary, rnnt_type)
