"""Public RNN-T loss functions with a ``backend=`` choice ("auto" | "torch" | "fast_rnnt" | "k2").

Names, argument names, shapes and semantics are k2's (``k2/python/k2/rnnt_loss.py``), so code
written for k2 ports by changing the import.  Legend: ``B`` batch, ``T`` frames, ``S`` symbols,
``C`` vocabulary (incl. blank), ``R`` pruning range.

The pruned pipeline as a transducer uses it (icefall's recipe)::

    boundary = torch.stack([zeros, zeros, y_lens, x_lens], dim=1)          # [B, 4] int64
    simple_loss, (px_grad, py_grad) = rnnt_loss_smoothed(
        lm=simple_lm_proj(decoder_out), am=simple_am_proj(encoder_out), symbols=y_padded,
        termination_symbol=blank_id, lm_only_scale=0.25, am_only_scale=0.0,
        boundary=boundary, reduction="sum", return_grad=True)
    ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range=5)   # [B, T, 5]
    am_pruned, lm_pruned = do_rnnt_pruning(encoder_proj, decoder_proj, ranges)
    logits = joiner(am_pruned, lm_pruned)                                    # [B, T, 5, C]
    pruned_loss = rnnt_loss_pruned(logits, y_padded, ranges, blank_id, boundary, reduction="sum")

float16/bfloat16 inputs are computed in float32 by every backend.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from asrkit.loss.backends import backend_module, resolve_backend
from asrkit.loss.validation import REDUCTIONS, RNNT_TYPES, check_choice, upcast


def _call(backend: str, func: str, device: Any, **kwargs: Any) -> Any:
    name = resolve_backend(backend, device)
    return getattr(backend_module(name), func)(**kwargs)


def _check_options(rnnt_type: str, reduction: str | None = None) -> None:
    check_choice(rnnt_type, RNNT_TYPES, "rnnt_type")
    if reduction is not None:
        check_choice(reduction, REDUCTIONS, "reduction")


def mutual_information_recursion(
    px: Tensor,
    py: Tensor,
    boundary: Tensor | None = None,
    return_grad: bool = False,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """Log-sum over monotonic lattice paths; see
    :func:`asrkit.loss.mutual_information.mutual_information_recursion`.

    Args:
        px: ``[B, S, T+1]`` (regular) or ``[B, S, T]`` (modified).
        py: ``[B, S+1, T]``.
        boundary: optional int64 ``[B, 4]`` ``[s_begin, t_begin, s_end, t_end]``.
        return_grad: also return ``(px_grad, py_grad)`` (occupation probabilities).
        backend: auto | torch | fast_rnnt | k2.

    Returns:
        scores ``[B]`` (or ``(scores, (px_grad, py_grad))``).
    """
    px, py = upcast(px, "px"), upcast(py, "py")
    return _call(backend, "mutual_information_recursion", px.device,
                 px=px, py=py, boundary=boundary, return_grad=return_grad)


def get_rnnt_logprobs(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """``(px [B, S, T(+1)], py [B, S+1, T])`` for the additive joiner ``lm [B, S+1, C] + am [B, T, C]``."""
    _check_options(rnnt_type)
    lm, am = upcast(lm, "lm"), upcast(am, "am")
    return _call(backend, "get_rnnt_logprobs", am.device, lm=lm, am=am, symbols=symbols,
                 termination_symbol=termination_symbol, boundary=boundary, rnnt_type=rnnt_type)


def get_rnnt_logprobs_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Smoothed ``(px, py)``; see :func:`asrkit.loss.logprobs.get_rnnt_logprobs_smoothed`."""
    _check_options(rnnt_type)
    lm, am = upcast(lm, "lm"), upcast(am, "am")
    return _call(backend, "get_rnnt_logprobs_smoothed", am.device, lm=lm, am=am, symbols=symbols,
                 termination_symbol=termination_symbol, lm_only_scale=lm_only_scale,
                 am_only_scale=am_only_scale, boundary=boundary, rnnt_type=rnnt_type)


def get_rnnt_logprobs_joint(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """``(px, py)`` from full joiner output ``logits [B, T, S+1, C]``."""
    _check_options(rnnt_type)
    logits = upcast(logits, "logits")
    return _call(backend, "get_rnnt_logprobs_joint", logits.device, logits=logits, symbols=symbols,
                 termination_symbol=termination_symbol, boundary=boundary, rnnt_type=rnnt_type)


def get_rnnt_logprobs_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """``(px, py)`` from pruned joiner output ``logits [B, T, R, C]`` and ``ranges [B, T, R]``."""
    _check_options(rnnt_type)
    logits = upcast(logits, "logits")
    return _call(backend, "get_rnnt_logprobs_pruned", logits.device, logits=logits, symbols=symbols,
                 ranges=ranges, termination_symbol=termination_symbol, boundary=boundary,
                 rnnt_type=rnnt_type)


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
    backend: str = "auto",
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """RNN-T loss with the additive joiner ``lm [B, S+1, C] + am [B, T, C]``.

    Args:
        symbols: int64 ``[B, S]``; termination_symbol: blank id.
        boundary: optional int64 ``[B, 4]`` ``[s_begin, t_begin, s_end, t_end]``.
        rnnt_type: regular | modified | constrained.
        delay_penalty: > 0 rewards early symbol emission.
        reduction: none (``[B]``) | mean | sum.
        return_grad: also return ``(px_grad, py_grad)`` for :func:`get_rnnt_prune_ranges`.
        backend: auto | torch | fast_rnnt | k2.
    """
    _check_options(rnnt_type, reduction)
    lm, am = upcast(lm, "lm"), upcast(am, "am")
    return _call(backend, "rnnt_loss_simple", am.device, lm=lm, am=am, symbols=symbols,
                 termination_symbol=termination_symbol, boundary=boundary, rnnt_type=rnnt_type,
                 delay_penalty=delay_penalty, reduction=reduction, return_grad=return_grad)


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
    backend: str = "auto",
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """:func:`rnnt_loss_simple` with lm-only / am-only smoothing of the log-probabilities.

    Shapes: ``lm [B, S+1, C]``, ``am [B, T, C]``, ``symbols [B, S]``; returns the loss (``[B]``
    for reduction none, else a scalar) and, with ``return_grad``, ``(px_grad [B, S, T+1],
    py_grad [B, S+1, T])`` (regular; ``[B, S, T]`` px_grad otherwise).
    """
    _check_options(rnnt_type, reduction)
    lm, am = upcast(lm, "lm"), upcast(am, "am")
    return _call(backend, "rnnt_loss_smoothed", am.device, lm=lm, am=am, symbols=symbols,
                 termination_symbol=termination_symbol, lm_only_scale=lm_only_scale,
                 am_only_scale=am_only_scale, boundary=boundary, rnnt_type=rnnt_type,
                 delay_penalty=delay_penalty, reduction=reduction, return_grad=return_grad)


def rnnt_loss(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    backend: str = "auto",
) -> Tensor:
    """Full RNN-T loss from joiner output ``logits [B, T, S+1, C]``; other arguments as in
    :func:`rnnt_loss_simple`.  Returns ``[B]`` (reduction none) or a scalar."""
    _check_options(rnnt_type, reduction)
    logits = upcast(logits, "logits")
    return _call(backend, "rnnt_loss", logits.device, logits=logits, symbols=symbols,
                 termination_symbol=termination_symbol, boundary=boundary, rnnt_type=rnnt_type,
                 delay_penalty=delay_penalty, reduction=reduction)


def rnnt_loss_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    backend: str = "auto",
) -> Tensor:
    """RNN-T loss on the pruned lattice: ``logits [B, T, R, C]`` for the nodes in ``ranges
    [B, T, R]`` (from :func:`get_rnnt_prune_ranges`); other arguments as in
    :func:`rnnt_loss_simple`.  Returns ``[B]`` (reduction none) or a scalar."""
    _check_options(rnnt_type, reduction)
    logits = upcast(logits, "logits")
    return _call(backend, "rnnt_loss_pruned", logits.device, logits=logits, symbols=symbols,
                 ranges=ranges, termination_symbol=termination_symbol, boundary=boundary,
                 rnnt_type=rnnt_type, delay_penalty=delay_penalty, reduction=reduction)


def get_rnnt_prune_ranges(
    px_grad: Tensor,
    py_grad: Tensor,
    boundary: Tensor,
    s_range: int,
    backend: str = "auto",
) -> Tensor:
    """Symbol positions to keep per frame, int64 ``[B, T, R]``, from the occupation gradients
    ``px_grad [B, S, T(+1)]``/``py_grad [B, S+1, T]`` of the simple/smoothed loss."""
    return _call(backend, "get_rnnt_prune_ranges", py_grad.device, px_grad=px_grad,
                 py_grad=py_grad, boundary=boundary, s_range=s_range)


def do_rnnt_pruning(
    am: Tensor,
    lm: Tensor,
    ranges: Tensor,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Expand ``am [B, T, D]`` and gather ``lm [B, S+1, D]`` to the pruned nodes: two
    ``[B, T, R, D]`` tensors to feed the joiner."""
    return _call(backend, "do_rnnt_pruning", am.device, am=am, lm=lm, ranges=ranges)
