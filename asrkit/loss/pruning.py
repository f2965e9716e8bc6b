"""Pruning bounds for the pruned RNN-T loss (k2's ``get_rnnt_prune_ranges``/``do_rnnt_pruning``).

Legend: ``B`` batch, ``T`` frames, ``S`` symbols, ``C`` joiner dim or vocab, ``R`` s_range.

Idea (Kuang et al., "Pruned RNN-T for fast, memory-efficient ASR training", 2022, sec. 3.2): the
occupation probabilities of the cheap "simple" loss say where the alignment goes.  For each frame
we keep the ``R`` consecutive symbol positions ``[s, s + R)`` whose blank-occupation mass, minus
the symbol mass entering the window from below, is largest; the window starts are then made
non-decreasing, start at 0, and never skip a symbol from one frame to the next.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from asrkit.loss.validation import LossInputError, check_st_lengths


def _non_decreasing_from_right(x: Tensor) -> Tensor:
    """Largest non-decreasing sequence below ``x`` along the last dim:
    ``y[i] = min(x[i:])``.  E.g. ``[0, 2, 1, 3, 6, 5, 8] -> [0, 1, 1, 3, 5, 5, 8]``."""
    return torch.cummin(x.flip(-1), dim=-1).values.flip(-1)


def _constrain_window_starts(s_begin: Tensor, max_step: int) -> Tensor:
    """Make window starts ``[B, T]`` non-decreasing, start at >= 0, and grow by at most
    ``max_step - 1`` per frame (so consecutive windows overlap and no symbol is skipped).

    The growth limit is the non-decreasing constraint applied to ``(max_step - 1) * t - s[t]``:
    that sequence being non-decreasing is exactly ``s[t+1] - s[t] <= max_step - 1``.
    """
    T = s_begin.shape[1]
    ramp = (max_step - 1) * torch.arange(T, device=s_begin.device)
    s = _non_decreasing_from_right(s_begin)
    slack = _non_decreasing_from_right(ramp - s).clamp(min=0)
    return ramp - slack


def get_rnnt_prune_ranges(
    px_grad: Tensor,
    py_grad: Tensor,
    boundary: Tensor,
    s_range: int,
) -> Tensor:
    """Symbol positions to keep for each frame.

    Args:
        px_grad: ``[B, S, T+1]`` (regular) or ``[B, S, T]`` occupation gradients of ``px`` from
            ``rnnt_loss_smoothed(..., return_grad=True)`` / ``rnnt_loss_simple``.
        py_grad: ``[B, S+1, T]``.
        boundary: int64 ``[B, 4]`` ``[s_begin, t_begin, s_end, t_end]``.
        s_range: symbols kept per frame.  Raised (with a warning) to the minimum that lets a
            regular RNN-T path through (``(S-1)//T + 2``), capped at ``S+1``.

    Returns:
        int64 ``[B, T, R]`` with ``ranges[b, t] = [s, s+1, ..., s+R-1]``.
    """
    if px_grad.ndim != 3 or py_grad.ndim != 3:
        raise LossInputError("get_rnnt_prune_ranges: px_grad and py_grad must be 3-D")
    B, S, T1 = px_grad.shape
    T = py_grad.shape[-1]
    if T1 not in (T, T + 1) or tuple(py_grad.shape) != (B, S + 1, T):
        raise LossInputError(
            f"get_rnnt_prune_ranges: px_grad {tuple(px_grad.shape)} / py_grad {tuple(py_grad.shape)} "
            "are not [B, S, T(+1)] / [B, S+1, T]"
        )
    if boundary is None or tuple(boundary.shape) != (B, 4):
        raise LossInputError(f"get_rnnt_prune_ranges: boundary must be int64 [B={B}, 4]")
    regular = T1 == T + 1
    check_st_lengths(S, T, "regular" if regular else "modified", boundary, "get_rnnt_prune_ranges")

    if regular:
        s_ends, t_ends = boundary[:, 2], boundary[:, 3].clamp(min=1)
        needed = int((s_ends - 1).div(t_ends, rounding_mode="trunc").add(2).max().item())
        if s_range < needed:
            warnings.warn(
                f"get_rnnt_prune_ranges: s_range={s_range} cannot fit S={s_ends.tolist()} symbols in "
                f"T={t_ends.tolist()} frames; using s_range={needed}",
                stacklevel=2,
            )
            s_range = needed
    s_range = min(s_range, S + 1)  # wider than the lattice prunes nothing
    min_range = 2 if regular else 1
    if s_range < min_range:
        raise LossInputError(
            f"get_rnnt_prune_ranges: s_range must be >= {min_range} for "
            f"{'regular' if regular else 'modified/constrained'} RNN-T, got {s_range}"
        )

    n_windows = S + 2 - s_range
    # Blank mass inside each window [s, s + R): windows of py_grad along S, summed.
    windows = py_grad.unfold(1, s_range, 1).movedim(3, 2)  # [B, n_windows, R, T]
    window_mass = windows.sum(dim=2)  # [B, n_windows, T]
    # Minus the symbol mass entering the window from node s - 1 (none for s = 0).
    entering = torch.cat((px_grad.new_zeros(B, 1, T1), px_grad), dim=1)[:, :n_windows, :T]
    s_begin = torch.argmax(window_mass - entering, dim=1)  # [B, T]

    # From each sequence's last frame on (and in padding) the window must cover the final symbol.
    frames = torch.arange(T, device=px_grad.device).unsqueeze(0)
    last_start = (boundary[:, 2:3] - s_range + 1).clamp(min=0)  # [B, 1]
    s_begin = torch.where(frames < boundary[:, 3:4] - 1, s_begin, last_start)

    s_begin = _constrain_window_starts(s_begin, s_range if regular else 2)
    return s_begin.unsqueeze(2) + torch.arange(s_range, device=px_grad.device)


def do_rnnt_pruning(am: Tensor, lm: Tensor, ranges: Tensor) -> tuple[Tensor, Tensor]:
    """Expand encoder and predictor outputs to the pruned lattice nodes.

    Args:
        am: ``[B, T, C]`` encoder side (usually after the joiner's input projection).
        lm: ``[B, S+1, C]`` predictor side.
        ranges: int64 ``[B, T, R]`` from :func:`get_rnnt_prune_ranges`.

    Returns:
        ``(am_pruned, lm_pruned)``, both ``[B, T, R, C]`` (``am_pruned`` is an expanded view).
    """
    if am.ndim != 3 or lm.ndim != 3 or ranges.ndim != 3:
        raise LossInputError("do_rnnt_pruning: am, lm must be [B, T, C], [B, S+1, C] and ranges [B, T, R]")
    B, T, R = ranges.shape
    if am.shape[0] != B or lm.shape[0] != B or am.shape[1] != T:
        raise LossInputError(
            f"do_rnnt_pruning: am {tuple(am.shape)}, lm {tuple(lm.shape)} and ranges {tuple(ranges.shape)} disagree"
        )
    C = lm.shape[2]
    am_pruned = am.unsqueeze(2).expand(B, T, R, am.shape[2])
    index = ranges.reshape(B, T * R, 1).expand(B, T * R, C)
    lm_pruned = torch.gather(lm, 1, index).reshape(B, T, R, C)
    return am_pruned, lm_pruned
