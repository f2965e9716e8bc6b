"""The mutual-information recursion of k2/fast_rnnt in pure PyTorch.

Legend: ``B`` batch, ``S`` symbols (rows of the lattice), ``T`` frames (columns).

The recursion over the ``(S+1) x (T+1)`` lattice is::

    p[b, s_begin, t_begin] = 0
    regular  (px is [B, S, T+1]):  p[s, t] = logaddexp(p[s-1, t]   + px[s-1, t],   p[s, t-1] + py[s, t-1])
    modified (px is [B, S, T]):    p[s, t] = logaddexp(p[s-1, t-1] + px[s-1, t-1], p[s, t-1] + py[s, t-1])

and the result is ``p[b, s_end, t_end]`` (``boundary[b] = [s_begin, t_begin, s_end, t_end]``).

Why it is fast in Python: both variants become the *same* one-dimensional recursion once the
lattice is re-indexed by "wavefront" ``k`` (``k = s + t`` for regular, ``k = t`` for modified):
every cell of wavefront ``k + 1`` depends only on cells ``s - 1`` (an x-step) and ``s`` (a y-step)
of wavefront ``k``.  We copy ``px``/``py`` once into that skewed layout, so each of the ``S + T``
(or ``T``) sequential steps is two vectorized ops over all ``B x (S+1)`` cells of a wavefront.

The backward pass is the same sweep in reverse over *occupation weights*: with
``w1 = exp(term1 - p[cell])`` the share of a cell's probability mass that came through its x-step
(``1 - w1`` through its y-step), the gradient of the score w.r.t. a cell is the weighted sum of its
successors' gradients.  Those weights are computed for the whole lattice at once; only the
weighted sums are sequential.  Edge cases (``-inf`` totals, unreachable cells) are handled the
way k2's kernels handle them, so ``return_grad=True`` gives k2's ``px_grad``/``py_grad``.

On CUDA tensors the S + T sequential steps cost one or two small kernel launches each, so when
triton is importable the recursion runs instead as one fused kernel per batch
(:mod:`asrkit.loss.mi_triton`, imported only then); :func:`recursion_kernel` says which path a
device gets.  ``ASRKIT_MI_KERNEL=wavefront`` forces this module's code (for baselines).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

import torch
from torch import Tensor

from asrkit.loss.validation import LossInputError, boundary_rows, upcast

_NEG_INF = float("-inf")

#: Values of the ``ASRKIT_MI_KERNEL`` environment variable.
KERNEL_CHOICES: tuple[str, ...] = ("auto", "wavefront")

# Devices (str(device)) on which the fused kernel failed to compile or run: they get the wavefront code.
_KERNEL_FAILED: set[str] = set()


@lru_cache(maxsize=None)
def _triton_kernels() -> ModuleType | None:
    """The fused-kernel module, or ``None`` when triton is missing or broken."""
    try:
        from asrkit.loss import mi_triton
    except Exception:  # noqa: BLE001 - a broken triton install counts as unavailable
        return None
    return mi_triton


def recursion_kernel(device: torch.device | str) -> str:
    """Which implementation runs the recursion for tensors on ``device``.

    Returns ``"triton"`` (the fused kernel) for CUDA devices, and for the CPU when
    ``TRITON_INTERPRET=1`` is set (triton's interpreter then runs the same kernel, slowly; the
    tests use this), provided triton is importable and ``ASRKIT_MI_KERNEL`` is not
    ``wavefront``; otherwise ``"wavefront"`` (this module's pure-PyTorch code).

    Raises:
        LossInputError: ``ASRKIT_MI_KERNEL`` holds something other than auto/wavefront.
    """
    choice = os.environ.get("ASRKIT_MI_KERNEL", "auto") or "auto"
    if choice not in KERNEL_CHOICES:
        raise LossInputError(
            f"ASRKIT_MI_KERNEL must be one of {', '.join(KERNEL_CHOICES)}; got {choice!r}"
        )
    kind = torch.device(device).type
    wants_kernel = kind == "cuda" or (kind == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")
    if choice == "auto" and wants_kernel and str(device) not in _KERNEL_FAILED and _triton_kernels() is not None:
        return "triton"
    return "wavefront"


@dataclass(frozen=True)
class _Plan:
    """Where each sequence starts and ends in wavefront coordinates ``(k, s)``."""

    regular: bool
    B: int
    S: int
    T: int
    K: int  # number of transitions (wavefront k -> k + 1)
    starts: dict[int, tuple[list[int], list[int]]]  # k -> (batch indices, s)
    ends: dict[int, tuple[list[int], list[int]]]
    k_lo: int
    k_hi: int
    end_k: list[int]
    end_s: list[int]

    @staticmethod
    def make(regular: bool, B: int, S: int, T: int, rows: list[list[int]]) -> "_Plan":
        K = S + T if regular else T
        starts: dict[int, tuple[list[int], list[int]]] = {}
        ends: dict[int, tuple[list[int], list[int]]] = {}
        end_k, end_s = [], []
        for b, (s0, t0, s1, t1) in enumerate(rows):
            k0 = s0 + t0 if regular else t0
            k1 = s1 + t1 if regular else t1
            starts.setdefault(k0, ([], []))[0].append(b)
            starts[k0][1].append(s0)
            ends.setdefault(k1, ([], []))[0].append(b)
            ends[k1][1].append(s1)
            end_k.append(k1)
            end_s.append(s1)
        k_lo = min(starts) if starts else 0
        k_hi = max(ends) if ends else 0
        return _Plan(regular, B, S, T, K, starts, ends, k_lo, k_hi, end_k, end_s)


def _lattice_views(buf: Tensor, plan: _Plan, x_offset: int, y_offset: int) -> tuple[Tensor, Tensor]:
    """``px``/``py``-shaped views (``[B, S, T(+1)]``, ``[B, S+1, T]``) of a ``[K, B, 2, S+1]``
    wavefront buffer, whose entry for lattice node ``(s, t)`` of sequence ``b`` is at
    ``buf[k, b, half, s + offset]`` with ``k = s + t`` (regular) or ``k = t`` (modified)."""
    B, S, T = plan.B, plan.S, plan.T
    row = buf.stride(0)  # elements per wavefront: B * 2 * (S + 1)
    bstride = buf.stride(1)
    half = buf.stride(2)
    base = buf.storage_offset()
    if plan.regular:
        # node (s, t) at (s + t) * row + s  ==  s * (row + 1) + t * row
        strides = (bstride, row + 1, row)
        T1 = T + 1
    else:
        strides = (bstride, 1, row)
        T1 = T
    px_view = buf.as_strided((B, S, T1), strides, base + x_offset)
    py_view = buf.as_strided((B, S + 1, T), strides, base + half + y_offset)
    return px_view, py_view


def _inject_starts(q: Tensor, plan: _Plan, k: int) -> None:
    """p = 0 at the start cells on wavefront ``k``."""
    if k in plan.starts:
        bs, ss = plan.starts[k]
        q[k, bs, [s + 1 for s in ss]] = 0.0


def _seed(g: Tensor, plan: _Plan, k: int) -> None:
    """d score / d p = 1 at the end cells on wavefront ``k``."""
    if k in plan.ends:
        bs, ss = plan.ends[k]
        g[k, bs, ss] += 1.0


def _forward(px: Tensor, py: Tensor, plan: _Plan) -> tuple[Tensor, Tensor, Tensor]:
    """Run the recursion.  Returns ``(scores [B], q, steps)``.

    Buffers are wavefront-major so that each step touches one contiguous block:

    * ``steps`` ``[K, B, 2, S+1]``: ``steps[k, b, 0, s]`` is the x-step *into* cell ``s`` of
      wavefront ``k+1`` (``px`` of cell ``s-1``; ``-inf`` for ``s = 0``), ``steps[k, b, 1, s]``
      the y-step into it (``py`` of cell ``s``).  On return each holds ``p[pred] + step``.
    * ``q`` ``[K+1, B, S+2]``: ``q[k, b, s+1]`` is ``p`` of cell ``s`` on wavefront ``k``
      (column 0 is a permanent ``-inf`` pad).
    """
    B, S, K = plan.B, plan.S, plan.K
    steps = px.new_full((K, B, 2, S + 1), _NEG_INF)
    x_view, y_view = _lattice_views(steps, plan, x_offset=1, y_offset=0)
    x_view.copy_(px)
    y_view.copy_(py)

    q = px.new_full((K + 1, B, S + 2), _NEG_INF)
    lo, hi = plan.k_lo, plan.k_hi
    _inject_starts(q, plan, lo)
    # Per-step views are made up front by unbind() (in C++): creating them one at a time with
    # Python indexing would cost more than the two ops of each step.
    # window[b, 0, s] = q[k, b, s] (cell s-1, the x-predecessor of cell s),
    # window[b, 1, s] = q[k, b, s+1] (cell s itself, its y-predecessor).
    windows = q.as_strided((K + 1, B, 2, S + 1), (B * (S + 2), S + 2, 1, 1))
    per_step = zip(
        steps[lo:hi].unbind(0),
        windows[lo:hi].unbind(0),
        steps[lo:hi, :, 0].unbind(0),
        steps[lo:hi, :, 1].unbind(0),
        q[lo + 1 : hi + 1, :, 1:].unbind(0),
    )
    if len(plan.starts) == 1:  # the common case: every sequence starts on wavefront k_lo
        for terms, window, x_term, y_term, q_next in per_step:
            terms.add_(window)
            torch.logaddexp(x_term, y_term, out=q_next)
    else:
        for k, (terms, window, x_term, y_term, q_next) in enumerate(per_step, start=lo + 1):
            terms.add_(window)
            torch.logaddexp(x_term, y_term, out=q_next)
            if k in plan.starts:
                _inject_starts(q, plan, k)

    device = px.device
    scores = q[torch.tensor(plan.end_k, device=device), torch.arange(B, device=device),
               torch.tensor(plan.end_s, device=device) + 1]
    return scores, q, steps


def _backward(q: Tensor, steps: Tensor, plan: _Plan) -> tuple[Tensor, Tensor]:
    """Occupation-probability gradients ``(px_grad, py_grad)`` of the scores (one each).

    Consumes ``q`` and ``steps`` (their storage is reused).
    """
    B, S, K = plan.B, plan.S, plan.K
    # w_x[k, b, s]: share of target cell (k+1, s) that arrived through its x-step,
    # exp(term_x - total); the y-step carries 1 - w_x.  Non-finite totals count as 0 and
    # non-finite shares as "no gradient" (k2's kernels do the same), so cells that no path
    # reaches pass nothing on and NaN never spreads.
    w_x = torch.nan_to_num(q[1:, :, 1:], nan=0.0, posinf=0.0, neginf=0.0)
    torch.sub(steps[:, :, 0], w_x, out=w_x).exp_()  # [K, B, S+1]

    # Re-use `steps` as the weights per *source* cell: [k, b, 0, s] y-step (s -> s),
    # [k, b, 1, s] x-step (s -> s+1).
    weights = steps
    torch.neg(w_x, out=weights[:, :, 0]).add_(1.0)
    weights[:, :, 1, :S].copy_(w_x[:, :, 1:])
    weights[:, :, 1, S].zero_()
    del w_x
    weights.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
    # A start cell has no predecessors: nothing flows back out of it.
    for k, (bs, ss) in plan.starts.items():
        if k > 0:
            weights[k - 1, bs, 0, ss] = 0.0
            keep = [(b, s - 1) for b, s in zip(bs, ss) if s >= 1]
            if keep:
                weights[k - 1, [b for b, _ in keep], 1, [s for _, s in keep]] = 0.0

    # g[k, b, s] = d score / d p(cell s of wavefront k); column S+1 is a zero pad.
    # Only g is swept (one fused dot product per step); the step gradients, weight times the
    # successor's g, are formed for the whole lattice afterwards.
    g = q.zero_()
    lo, hi = plan.k_lo, plan.k_hi
    # successors[k, b, 0, s] = g[k+1, b, s] (y-step target), [k, b, 1, s] = g[k+1, b, s+1].
    successors = g.as_strided((K, B, 2, S + 1), (B * (S + 2), S + 2, 1, 1), g.storage_offset() + B * (S + 2))
    _seed(g, plan, hi)
    per_step = zip(
        reversed(weights[lo:hi].unbind(0)),
        reversed(successors[lo:hi].unbind(0)),
        reversed(g[lo:hi, :, : S + 1].unbind(0)),
    )
    for k, (w, succ, g_k) in enumerate(per_step):
        torch.linalg.vecdot(w, succ, dim=1, out=g_k)
        if hi - 1 - k in plan.ends:
            _seed(g, plan, hi - 1 - k)
    weights.mul_(successors)
    # Wavefronts the sweep never reached still hold weights, not gradients.
    weights[:lo].zero_()
    weights[hi:].zero_()
    px_view, py_view = _lattice_views(weights, plan, x_offset=S + 1, y_offset=-(S + 1))
    return px_view.contiguous(), py_view.contiguous()


_Compute = Callable[[Tensor, Tensor, bool], tuple[Tensor, "tuple[Tensor, Tensor] | None"]]


def _wavefront(plan: _Plan) -> _Compute:
    """This module's implementation, as ``(px, py, want_grads) -> (scores, grads or None)``."""

    def compute(px: Tensor, py: Tensor, want_grads: bool) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        scores, q, steps = _forward(px, py, plan)
        return scores, (_backward(q, steps, plan) if want_grads else None)

    return compute


def _fused(boundary: Tensor | None, rows: list[list[int]], fallback: Callable[[], _Compute]) -> _Compute:
    """The Triton kernels, as ``(px, py, want_grads) -> (scores, grads or None)``.

    If triton cannot compile or run them on this device (an unsupported GPU, a broken driver), a
    warning says so once and the ``fallback`` computes the result; the device then keeps the
    wavefront code.  Running out of memory is not such a failure and is raised.
    """

    def compute(px: Tensor, py: Tensor, want_grads: bool) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        # the caller's (validated) boundary is already on the device; the default one is made there
        bnd = boundary if boundary is not None else torch.tensor(rows, dtype=torch.int64).reshape(-1, 4)
        try:
            return _triton_kernels().mutual_information_triton(px, py, bnd, want_grads)
        except torch.OutOfMemoryError:
            raise
        except Exception as err:  # noqa: BLE001 - any compile/launch failure: use the always-working code
            _KERNEL_FAILED.add(str(px.device))
            warnings.warn(
                f"the fused Triton kernel of mutual_information_recursion failed on {px.device} "
                f"({type(err).__name__}: {err}); using the wavefront implementation there from now on",
                RuntimeWarning,
                stacklevel=2,
            )
            return fallback()(px, py, want_grads)

    return compute


class _MutualInformation(torch.autograd.Function):
    """Autograd wrapper: the occupation gradients are computed in forward (k2 does the same, so
    ``return_grad`` costs nothing extra) and scaled by the incoming gradient in backward."""

    @staticmethod
    def forward(ctx, px: Tensor, py: Tensor, compute: _Compute, want_grads: bool, out: list):  # type: ignore[override]
        scores, grads = compute(px.detach(), py.detach(), want_grads)
        if grads is not None:
            px_grad, py_grad = grads
            ctx.save_for_backward(px_grad, py_grad)
            out[0], out[1] = px_grad, py_grad
        else:
            ctx.save_for_backward()
        return scores

    @staticmethod
    def backward(ctx, scores_grad: Tensor):  # type: ignore[override]
        px_grad, py_grad = ctx.saved_tensors
        scale = scores_grad.reshape(-1, 1, 1)
        return px_grad * scale, py_grad * scale, None, None, None


def mutual_information_recursion(
    px: Tensor,
    py: Tensor,
    boundary: Tensor | None = None,
    return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """Log-sum over all monotonic paths through the lattice (k2's ``mutual_information_recursion``).

    Args:
        px: ``[B, S, T+1]`` (regular) or ``[B, S, T]`` (modified) log-weights of x-steps
            (emitting a symbol), float32/float64 (float16/bfloat16 are upcast: the scores and
            gradients are then float32).
        py: ``[B, S+1, T]`` log-weights of y-steps (emitting blank / next frame).
        boundary: optional int64 ``[B, 4]`` rows ``[s_begin, t_begin, s_end, t_end]``; default
            ``[0, 0, S, T]``.  (On CUDA the fused Triton kernel runs; see
            :func:`recursion_kernel`.)
        return_grad: also return ``(px_grad, py_grad)``, the gradients of ``scores.sum()`` w.r.t.
            ``px``/``py`` (occupation probabilities), same shapes as ``px``/``py``.

    Returns:
        ``scores`` ``[B]``, or ``(scores, (px_grad, py_grad))`` when ``return_grad``.
    """
    if px.ndim != 3 or py.ndim != 3:
        raise LossInputError(f"px and py must be 3-D, got shapes {tuple(px.shape)} and {tuple(py.shape)}")
    B, S, T1 = px.shape
    T = py.shape[-1]
    if T1 not in (T, T + 1) or tuple(py.shape) != (B, S + 1, T):
        raise LossInputError(
            f"px must be [B, S, T+1] or [B, S, T] and py [B, S+1, T]; got px {tuple(px.shape)}, "
            f"py {tuple(py.shape)}"
        )
    if px.dtype != py.dtype:
        raise LossInputError(f"px and py must have the same dtype, got {px.dtype} and {py.dtype}")
    regular = T1 == T + 1
    rows = boundary_rows(boundary, B, S, T, "mutual_information_recursion")

    px, py = upcast(px, "px"), upcast(py, "py")
    def wavefront() -> _Compute:
        return _wavefront(_Plan.make(regular, B, S, T, rows))

    compute = _fused(boundary, rows, wavefront) if recursion_kernel(px.device) == "triton" else wavefront()
    want_grads = return_grad or (torch.is_grad_enabled() and (px.requires_grad or py.requires_grad))
    out: list = [None, None]
    scores = _MutualInformation.apply(px, py, compute, want_grads, out)
    if return_grad:
        return scores, (out[0], out[1])
    return scores
