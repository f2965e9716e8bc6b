"""Full (unpruned) RNN-T loss with the joiner run in sub-batches to bound peak memory.

Legend: ``B`` batch, ``T`` frames, ``S`` symbols, ``D`` joiner dim, ``C`` vocabulary.

The full loss needs ``[B, T, S+1, C]`` joiner logits, plus as much again for their gradient.
Following NeMo's "fused batch" idea, we instead run joiner + loss for a few utterances at a
time, each sub-batch trimmed to *its own* longest ``T`` and ``S`` (utterances are grouped by
length, so little padding is computed), and take the gradients of that sub-batch right away.
Only one sub-batch's logits are alive at any moment; the gradients w.r.t. the encoder/predictor
projections and the joiner parameters are accumulated and handed to autograd in backward.
They equal the one-shot gradients (checked in ``tests/test_loss_sub_batched.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from asrkit.loss.backends import resolve_backend
from asrkit.loss.validation import REDUCTIONS, RNNT_TYPES, LossInputError, boundary_rows, check_choice

Joiner = Callable[[Tensor, Tensor], Tensor]


@dataclass
class _Config:
    joiner: Joiner
    symbols: Tensor
    termination_symbol: int
    boundary: Tensor
    rnnt_type: str
    delay_penalty: float
    backend: str
    groups: list[list[int]]


def _length_groups(rows: list[list[int]], max_nodes: int) -> list[list[int]]:
    """Group utterance indices (longest first) so each group's padded lattice
    ``len(group) * max_T * (max_S + 1)`` stays within ``max_nodes`` (at least one per group)."""
    order = sorted(range(len(rows)), key=lambda b: (rows[b][3], rows[b][2]), reverse=True)
    groups: list[list[int]] = []
    current: list[int] = []
    max_t = max_s = 0
    for b in order:
        t, s = rows[b][3], rows[b][2]
        new_t, new_s = max(max_t, t), max(max_s, s)
        if current and (len(current) + 1) * max(new_t, 1) * (new_s + 1) > max_nodes:
            groups.append(current)
            current, new_t, new_s = [], t, s
        current.append(b)
        max_t, max_s = new_t, new_s
    if current:
        groups.append(current)
    return groups


def _run(
    cfg: _Config,
    encoder_proj: Tensor,
    decoder_proj: Tensor,
    params: Sequence[Tensor],
    weights: Tensor | None,
) -> tuple[Tensor, list[Tensor | None] | None]:
    """Per-utterance losses ``[B]``; with ``weights`` ``[B]`` also the gradients of
    ``(weights * losses).sum()`` w.r.t. ``[encoder_proj, decoder_proj, *params]``."""
    from asrkit.loss.backends import backend_module

    module = backend_module(cfg.backend)
    B = encoder_proj.shape[0]
    losses = encoder_proj.new_zeros(B, dtype=torch.float32 if encoder_proj.dtype != torch.float64 else torch.float64)
    grads: list[Tensor | None] | None = None
    want = [p for p in params if p.requires_grad]
    if weights is not None:
        grads = [torch.zeros_like(encoder_proj), torch.zeros_like(decoder_proj)]
        grads += [torch.zeros_like(p) if p.requires_grad else None for p in params]
    for group in cfg.groups:
        idx = torch.tensor(group, device=encoder_proj.device)
        bnd = cfg.boundary[idx]
        t_max = int(bnd[:, 3].max())
        s_max = int(bnd[:, 2].max())
        with torch.enable_grad():
            enc = encoder_proj[idx, :t_max].detach().requires_grad_(weights is not None)
            dec = decoder_proj[idx, : s_max + 1].detach().requires_grad_(weights is not None)
            logits = cfg.joiner(enc.unsqueeze(2), dec.unsqueeze(1))  # [b, T', S'+1, C]
            if logits.dtype in (torch.float16, torch.bfloat16):
                logits = logits.float()
            loss = module.rnnt_loss(
                logits=logits,
                symbols=cfg.symbols[idx, :s_max],
                termination_symbol=cfg.termination_symbol,
                boundary=bnd,
                rnnt_type=cfg.rnnt_type,
                delay_penalty=cfg.delay_penalty,
                reduction="none",
            )
            if weights is not None and grads is not None:
                inputs = [enc, dec, *want]
                got = torch.autograd.grad(loss, inputs, grad_outputs=weights[idx].to(loss.dtype),
                                          allow_unused=True)
                grads[0][idx, :t_max] += got[0].to(encoder_proj.dtype)
                grads[1][idx, : s_max + 1] += got[1].to(decoder_proj.dtype)
                it = iter(got[2:])
                for i, p in enumerate(params):
                    if p.requires_grad:
                        g = next(it)
                        if g is not None:
                            grads[2 + i] += g
        losses[idx] = loss.detach().to(losses.dtype)
        del logits, loss
    return losses, grads


class _SubBatchedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg: _Config, encoder_proj: Tensor, decoder_proj: Tensor, *params: Tensor):  # type: ignore[override]
        needs_grad = any(ctx.needs_input_grad[1:])
        weights = encoder_proj.new_ones(encoder_proj.shape[0]) if needs_grad else None
        losses, grads = _run(cfg, encoder_proj, decoder_proj, params, weights)
        ctx.cfg = cfg
        ctx.grads = grads
        ctx.save_for_backward(encoder_proj, decoder_proj, *params)
        return losses

    @staticmethod
    def backward(ctx, losses_grad: Tensor):  # type: ignore[override]
        grads = ctx.grads
        ctx.grads = None
        if grads is None:  # pragma: no cover - autograd only calls us when a grad is needed
            return (None,) * (3 + len(ctx.saved_tensors) - 2)
        first = losses_grad[0]
        if bool((losses_grad == first).all()):
            # The usual case (sum / mean): the stored gradients, scaled.
            scaled = [None if g is None else g * first.to(g.dtype) for g in grads]
        else:
            # Per-utterance weights: param gradients can't be re-weighted after summation, so
            # recompute (like activation checkpointing, one sub-batch at a time).
            encoder_proj, decoder_proj, *params = ctx.saved_tensors
            _, scaled = _run(ctx.cfg, encoder_proj, decoder_proj, params, losses_grad)
        return (None, *scaled)


def rnnt_loss_sub_batched(
    encoder_proj: Tensor,
    decoder_proj: Tensor,
    joiner: Joiner,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    max_nodes: int = 200_000,
    params: Sequence[Tensor] | None = None,
    backend: str = "auto",
) -> Tensor:
    """Full RNN-T loss of ``joiner(encoder_proj, decoder_proj)``, computed in sub-batches.

    Args:
        encoder_proj: ``[B, T, D]`` encoder output (already projected to the joiner dim).
        decoder_proj: ``[B, S+1, D]`` predictor output (projected).
        joiner: called as ``joiner(enc [b, T', 1, D], dec [b, 1, S'+1, D])`` and must return
            logits ``[b, T', S'+1, C]`` (e.g. ``lambda e, d: lin(torch.tanh(e + d))``).
        symbols: int64 ``[B, S]``.
        termination_symbol: blank id.
        boundary: optional int64 ``[B, 4]`` ``[s_begin, t_begin, s_end, t_end]``.
        rnnt_type, delay_penalty, reduction: as in :func:`asrkit.loss.rnnt_loss`.
        max_nodes: lattice nodes (``b * T' * (S'+1)``) per sub-batch; logits memory is about
            ``max_nodes * C * 4`` bytes (times ~3 with gradients).  One utterance is always allowed.
        params: tensors the joiner uses that need gradients; default: ``joiner.parameters()``
            when ``joiner`` is an ``nn.Module``, else none (pass them for a closure!).
        backend: loss backend for each sub-batch (auto | torch | fast_rnnt | k2).

    Returns:
        ``[B]`` losses (reduction none) or a scalar.  Gradients equal those of
        ``rnnt_loss(joiner(encoder_proj[:, :, None], decoder_proj[:, None]), ...)``.
    """
    check_choice(rnnt_type, RNNT_TYPES, "rnnt_type")
    check_choice(reduction, REDUCTIONS, "reduction")
    if encoder_proj.ndim != 3 or decoder_proj.ndim != 3:
        raise LossInputError(
            "rnnt_loss_sub_batched: encoder_proj must be [B, T, D] and decoder_proj [B, S+1, D], got "
            f"{tuple(encoder_proj.shape)} and {tuple(decoder_proj.shape)}"
        )
    B, T, _ = encoder_proj.shape
    S = decoder_proj.shape[1] - 1
    if decoder_proj.shape[0] != B or tuple(symbols.shape) != (B, S):
        raise LossInputError(
            f"rnnt_loss_sub_batched: decoder_proj {tuple(decoder_proj.shape)} / symbols "
            f"{tuple(symbols.shape)} do not match B={B}, S={S}"
        )
    if max_nodes < 1:
        raise LossInputError(f"rnnt_loss_sub_batched: max_nodes must be >= 1, got {max_nodes}")
    if boundary is None:
        # Explicit, so that trimming a sub-batch keeps each utterance's own T (delay penalty).
        boundary = torch.tensor([[0, 0, S, T]] * B, dtype=torch.int64, device=encoder_proj.device)
    rows = boundary_rows(boundary, B, S, T, "rnnt_loss_sub_batched")
    if params is None:
        params = list(joiner.parameters()) if isinstance(joiner, nn.Module) else []
    cfg = _Config(
        joiner=joiner,
        symbols=symbols,
        termination_symbol=termination_symbol,
        boundary=boundary,
        rnnt_type=rnnt_type,
        delay_penalty=delay_penalty,
        backend=resolve_backend(backend, encoder_proj.device),
        groups=_length_groups(rows, max_nodes),
    )
    losses = _SubBatchedLoss.apply(cfg, encoder_proj, decoder_proj, *params)
    if reduction == "none":
        return losses
    if reduction == "mean":
        return losses.mean()
    return losses.sum()
