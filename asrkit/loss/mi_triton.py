"""The mutual-information recursion as two fused Triton kernels (forward and backward).

Legend: ``B`` batch, ``S`` symbols (rows), ``T`` frames (columns), ``W = S + 1`` cells per
wavefront, ``K`` the last wavefront (``S + T`` regular, ``T`` modified).

This module imports triton at import time; :mod:`asrkit.loss.mutual_information` imports it only
when the kernel is going to run (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``).

Layout (the same re-indexing as the pure-PyTorch code): lattice node ``(s, t)`` lives on
wavefront ``k = s + t`` (regular, ``px`` ``[B, S, T+1]``) or ``k = t`` (modified, ``px``
``[B, S, T]``), and in both cases the x-predecessor of cell ``s`` of wavefront ``k`` is cell
``s - 1`` of wavefront ``k - 1`` and its y-predecessor cell ``s``.  One program handles one
sequence of the batch (one launch for the whole batch): it walks its wavefronts in order inside
the kernel, a block of cells at a time, and synchronises its threads between wavefronts
(``debug_barrier``; the previous wavefront is read back from the ``p`` buffer, as k2's CUDA
kernel reads it from shared memory).  Only cells inside the sequence's ``boundary`` box
``[s_begin, s_end] x [t_begin, t_end]`` are computed; the rest are ``-inf``.

The backward kernel sweeps the wavefronts in reverse and computes, for every cell, the share of
the score's gradient that arrives through each of its two out-going steps, with k2's rules for
the edge cases: a target cell's x-share is ``w = exp(p[pred_x] + px - p[target])`` (``p`` of a
non-finite target counts as 0), its y-share ``1 - w``, and a non-finite ``w`` passes nothing.
"""

from __future__ import annotations

import triton
import triton.language as tl
import torch
from torch import Tensor

#: Kernel launches so far, by kind ("forward", "backward"): lets tests prove the kernel ran.
LAUNCHES: dict[str, int] = {"forward": 0, "backward": 0}

# Cells per block of a wavefront; larger lattices loop over blocks inside the kernel.
_MAX_BLOCK = 512


@triton.jit
def _logaddexp(a, b):
    hi = tl.maximum(a, b)
    lo = tl.minimum(a, b)
    # hi = -inf means both are -inf: subtract 0 instead of -inf, so the result is -inf, not NaN.
    shift = tl.where(hi == float("-inf"), 0.0, hi)
    return hi + tl.log(1.0 + tl.exp(lo - shift))


@triton.jit
def _finite(x):
    return (x == x) & (tl.abs(x) != float("inf"))


@triton.jit
def _sequence(bnd_ptr, b, T, REGULAR: tl.constexpr):
    """Sequence ``b``'s box ``s0, t0, s1, t1``, its first and last wavefronts ``k0, k1``, and ``TX``, the
    length of px's last axis."""
    s0 = tl.load(bnd_ptr + 4 * b)
    t0 = tl.load(bnd_ptr + 4 * b + 1)
    s1 = tl.load(bnd_ptr + 4 * b + 2)
    t1 = tl.load(bnd_ptr + 4 * b + 3)
    if REGULAR:
        k0 = s0 + t0
        k1 = s1 + t1
        TX = T + 1
    else:
        k0 = t0
        k1 = t1
        TX = T
    return s0, t0, s1, t1, k0, k1, TX


@triton.jit
def _mi_forward_kernel(
    px_ptr, py_ptr, bnd_ptr, p_ptr, score_ptr,
    S, T, K,
    REGULAR: tl.constexpr, BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    s0, t0, s1, t1, k0, k1, TX = _sequence(bnd_ptr, b, T, REGULAR)
    W = S + 1
    p_b = p_ptr + b * (K + 1) * W
    px_b = px_ptr + b * S * TX
    py_b = py_ptr + b * W * T
    neg = float("-inf")
    cells = tl.arange(0, BLOCK)

    for c in range(0, W, BLOCK):
        s = c + cells
        start = tl.where(s == s0, 0.0, neg)
        tl.store(p_b + k0 * W + s, start.to(p_ptr.dtype.element_ty), mask=s < W)
    tl.debug_barrier()

    for k in range(k0 + 1, k1 + 1):
        prev = p_b + (k - 1) * W
        for c in range(0, W, BLOCK):
            s = c + cells
            if REGULAR:
                t = k - s
                tx = t
            else:
                t = k + 0 * s
                tx = t - 1
            inside = (s >= s0) & (s <= s1) & (t >= t0) & (t <= t1)
            x_ok = inside & (s > s0) & (tx >= t0)
            y_ok = inside & (t > t0)
            term_x = tl.load(prev + s - 1, mask=x_ok, other=neg, volatile=True) + tl.load(
                px_b + (s - 1) * TX + tx, mask=x_ok, other=neg
            )
            term_y = tl.load(prev + s, mask=y_ok, other=neg, volatile=True) + tl.load(
                py_b + s * T + t - 1, mask=y_ok, other=neg
            )
            tl.store(p_b + k * W + s, _logaddexp(term_x, term_y), mask=s < W)
        tl.debug_barrier()

    tl.store(score_ptr + b, tl.load(p_b + k1 * W + s1, volatile=True))


@triton.jit
def _mi_backward_kernel(
    px_ptr, py_ptr, bnd_ptr, p_ptr, g_ptr, px_grad_ptr, py_grad_ptr,
    S, T, K,
    REGULAR: tl.constexpr, BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    s0, t0, s1, t1, k0, k1, TX = _sequence(bnd_ptr, b, T, REGULAR)
    W = S + 1
    p_b = p_ptr + b * (K + 1) * W
    g_b = g_ptr + b * 2 * W  # two wavefronts of d score / d p, used in turn
    px_b = px_ptr + b * S * TX
    py_b = py_ptr + b * W * T
    pxg_b = px_grad_ptr + b * S * TX
    pyg_b = py_grad_ptr + b * W * T
    neg = float("-inf")
    cells = tl.arange(0, BLOCK)

    for c in range(0, W, BLOCK):
        s = c + cells
        seed = tl.where(s == s1, 1.0, 0.0)
        tl.store(g_b + (k1 % 2) * W + s, seed.to(g_ptr.dtype.element_ty), mask=s < W)
    tl.debug_barrier()

    for i in range(0, k1 - k0):
        k = k1 - 1 - i
        here = p_b + k * W
        nxt = p_b + (k + 1) * W
        g_here = g_b + (k % 2) * W
        g_next = g_b + ((k + 1) % 2) * W
        for c in range(0, W, BLOCK):
            s = c + cells
            if REGULAR:
                t = k - s
            else:
                t = k + 0 * s
            inside = (s >= s0) & (s <= s1) & (t >= t0) & (t <= t1)
            p_s = tl.load(here + s, mask=inside, other=neg, volatile=True)
            # x-step (s, t) -> cell s + 1 of wavefront k + 1, with weight px[s, t].
            if REGULAR:
                x_ok = inside & (s < s1)
            else:
                x_ok = inside & (s < s1) & (t < t1)
            target = tl.load(nxt + s + 1, mask=x_ok, other=0.0, volatile=True)
            target = tl.where(_finite(target), target, 0.0)
            w_x = tl.exp(p_s + tl.load(px_b + s * TX + t, mask=x_ok, other=neg) - target)
            w_x = tl.where(_finite(w_x), w_x, 0.0)
            grad_x = tl.where(x_ok, w_x * tl.load(g_next + s + 1, mask=x_ok, other=0.0, volatile=True), 0.0)
            tl.store(pxg_b + s * TX + t, grad_x, mask=x_ok)
            # y-step (s, t) -> cell s of wavefront k + 1: its share is 1 - (the target's x-share);
            # the target's x-predecessor is cell s - 1 of this wavefront.
            y_ok = inside & (t < t1)
            pred_ok = y_ok & (s > s0)
            if REGULAR:
                t_pred = t + 1
            else:
                t_pred = t
            term = tl.load(here + s - 1, mask=pred_ok, other=neg, volatile=True) + tl.load(
                px_b + (s - 1) * TX + t_pred, mask=pred_ok, other=neg
            )
            target = tl.load(nxt + s, mask=y_ok, other=0.0, volatile=True)
            target = tl.where(_finite(target), target, 0.0)
            share = tl.exp(term - target)
            w_y = tl.where(_finite(share), 1.0 - share, 0.0)
            grad_y = tl.where(y_ok, w_y * tl.load(g_next + s, mask=y_ok, other=0.0, volatile=True), 0.0)
            tl.store(pyg_b + s * T + t, grad_y, mask=y_ok)
            tl.store(g_here + s, grad_x + grad_y, mask=s < W)
        tl.debug_barrier()


def _launch_config(W: int) -> tuple[int, int]:
    """``(BLOCK, num_warps)`` for wavefronts of ``W`` cells."""
    block = min(max(triton.next_power_of_2(W), 16), _MAX_BLOCK)
    return block, max(1, min(8, block // 64))


def mutual_information_triton(
    px: Tensor, py: Tensor, boundary: Tensor, want_grads: bool
) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """Scores (and occupation gradients) of the recursion, by the fused kernels.

    Args:
        px: ``[B, S, T+1]`` (regular) or ``[B, S, T]`` (modified), float32/float64, on a CUDA
            device (or the CPU under ``TRITON_INTERPRET=1``).
        py: ``[B, S+1, T]``, same dtype and device.
        boundary: int64 ``[B, 4]`` ``[s_begin, t_begin, s_end, t_end]``, already validated.
        want_grads: also compute ``(px_grad, py_grad)`` (gradients of ``scores.sum()``).

    Returns:
        ``(scores [B], (px_grad, py_grad) or None)``.
    """
    px, py = px.contiguous(), py.contiguous()
    boundary = boundary.to(device=px.device, dtype=torch.int64).contiguous()
    B, S, TX = px.shape
    T = py.shape[2]
    regular = TX == T + 1
    K = S + T if regular else T
    W = S + 1
    block, warps = _launch_config(W)
    p = torch.empty((B, K + 1, W), dtype=px.dtype, device=px.device)
    scores = torch.empty((B,), dtype=px.dtype, device=px.device)
    if B == 0:
        return scores, ((torch.zeros_like(px), torch.zeros_like(py)) if want_grads else None)
    _mi_forward_kernel[(B,)](px, py, boundary, p, scores, S, T, K, REGULAR=regular, BLOCK=block, num_warps=warps)
    LAUNCHES["forward"] += 1
    if not want_grads:
        return scores, None
    g = torch.empty((B, 2, W), dtype=px.dtype, device=px.device)
    px_grad = torch.zeros_like(px)
    py_grad = torch.zeros_like(py)
    _mi_backward_kernel[(B,)](
        px, py, boundary, p, g, px_grad, py_grad, S, T, K, REGULAR=regular, BLOCK=block, num_warps=warps
    )
    LAUNCHES["backward"] += 1
    return scores, (px_grad, py_grad)
