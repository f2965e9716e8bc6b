"""The transducer: encoder + predictor + joiner (+ optional CTC head), trained with the pruned RNN-T loss.

Legend: B batch, T input frames, T' encoder frames, F feature bins, U tokens, E encoder dim, P predictor dim,
J joiner dim, V vocab, S prune range.

Inference/export API (TorchScript-scriptable; the ONNX export wraps exactly these):
``run_encoder``, ``encode``, ``predict``, ``join`` and ``ctc_log_probs``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from asrkit.errors import DataError


class TransducerLosses(NamedTuple):
    """Losses of one batch, each a scalar SUMMED over the batch (divide by frames/utterances yourself)."""

    simple_loss: Tensor
    pruned_loss: Tensor
    ctc_loss: Optional[Tensor]


class Transducer(nn.Module):
    """RNN-T model.

    Args:
        encoder: module ``forward(x (B,T,F), x_lens (B,)) -> (raw (B,T',E), lens (B,))`` with an ``output_dim``
            attribute (E).
        predictor: module ``forward(y (B,U) int64, need_pad: bool) -> (B,U,P)`` with ``output_dim`` (P),
            ``blank_id``, ``vocab_size`` and ``context_size`` attributes.
        joiner: :class:`~asrkit.models.transducer.joiner.Joiner`.
        ctc_head: optional :class:`~asrkit.models.transducer.ctc.CtcHead`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        predictor: nn.Module,
        joiner: nn.Module,
        ctc_head: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.joiner = joiner
        self.ctc_head = ctc_head
        self.blank_id: int = int(predictor.blank_id)
        self.vocab_size: int = int(predictor.vocab_size)
        self.context_size: int = int(predictor.context_size)
        encoder_dim = int(encoder.output_dim)
        predictor_dim = int(predictor.output_dim)
        # Linear "simple" joiner used only to compute the smoothed loss whose gradients pick the prune ranges.
        self.simple_am_proj = nn.Linear(encoder_dim, self.vocab_size)
        self.simple_lm_proj = nn.Linear(predictor_dim, self.vocab_size)

    # ------------------------------------------------------------------ inference / export API
    @torch.jit.export
    def run_encoder(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, F) float fbank, x_lens (B,) int64 -> (raw (B, T', E), lens (B,) int64).

        Frames at or beyond ``lens`` are padding; they never influence real frames.
        """
        return self.encoder(x, x_lens)

    @torch.jit.export
    def encode(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, F), x_lens (B,) -> (encoder_out (B, T', J) projected for the joiner, encoder_out_lens (B,))."""
        raw, lens = self.run_encoder(x, x_lens)
        return self.joiner.encoder_proj(raw), lens

    @torch.jit.export
    def predict(self, y: Tensor, need_pad: bool = True) -> Tensor:
        """y (B, U) int64 -> decoder_out (B, U', J) projected for the joiner.

        ``need_pad=True`` (training): U' = U. ``need_pad=False`` (search): each position needs ``context_size``
        tokens, U' = U - context_size + 1; start from ``predictor.initial_context`` = ``[-1, ..., -1, blank]``.
        """
        return self.joiner.decoder_proj(self.predictor(y, need_pad))

    @torch.jit.export
    def join(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        """encoder_out (..., J), decoder_out (..., J) (broadcastable) -> logits (..., V)."""
        return self.joiner(encoder_out, decoder_out)

    @torch.jit.export
    def ctc_log_probs(self, raw: Tensor) -> Tensor:
        """raw encoder output (B, T', E) -> CTC log-probabilities (B, T', V). Needs ``ctc_head``."""
        head = self.ctc_head
        if head is None:
            raise RuntimeError("this model has no CTC head (model.ctc_head: false)")
        return head(raw)

    # ------------------------------------------------------------------ training
    @torch.jit.unused
    def forward(
        self,
        x: Tensor,
        x_lens: Tensor,
        y: Tensor,
        y_lens: Tensor,
        prune_range: int = 5,
        am_scale: float = 0.0,
        lm_scale: float = 0.25,
        rnnt_type: str = "regular",
        loss_backend: str = "auto",
        delay_penalty: float = 0.0,
    ) -> TransducerLosses:
        """Pruned RNN-T training losses (icefall recipe: smoothed simple loss -> prune ranges -> pruned loss).

        Args:
            x: (B, T, F) features; x_lens: (B,) int64 frame counts.
            y: (B, U) int64 token ids padded (beyond ``y_lens``) with ``blank_id``; y_lens: (B,) int64.
            prune_range: S, symbols kept per frame for the pruned loss.
            am_scale / lm_scale: weights of the acoustic-only / LM-only terms of the smoothed simple loss.
            rnnt_type: ``"regular"``, ``"modified"`` or ``"constrained"`` (as k2).
            loss_backend: passed as ``backend=`` to :mod:`asrkit.loss`.
            delay_penalty: k2's emission-delay penalty, applied to the simple and the pruned loss (> 0 rewards
                early emission).

        Returns:
            :class:`TransducerLosses`, each summed over the batch; ``ctc_loss`` is None without a CTC head.

        Raises:
            DataError: if shapes disagree or an utterance has more tokens than encoder frames.
        """
        _check_batch(x, x_lens, y, y_lens)
        raw, enc_lens = self.run_encoder(x, x_lens)
        _check_lengths(enc_lens, y_lens, x_lens)

        from asrkit.loss import (
            do_rnnt_pruning,
            get_rnnt_prune_ranges,
            rnnt_loss_pruned,
            rnnt_loss_smoothed,
        )

        # Positions beyond y_lens may hold anything (blank, -1): make them blank so the loss can index them.
        y = y.masked_fill(torch.arange(y.size(1), device=y.device).unsqueeze(0) >= y_lens.unsqueeze(1), self.blank_id)
        sos_y = torch.nn.functional.pad(y, (1, 0), value=self.blank_id)  # (B, U+1): blank is start-of-sequence
        pred = self.predictor(sos_y, True)  # (B, U+1, P)

        boundary = torch.zeros(y.size(0), 4, dtype=torch.int64, device=x.device)
        boundary[:, 2] = y_lens
        boundary[:, 3] = enc_lens

        # projections run under the caller's autocast (if any); the losses always in float32
        lm_simple, am_simple = self.simple_lm_proj(pred), self.simple_am_proj(raw)
        with torch.autocast(device_type=x.device.type, enabled=False):
            simple_loss, (px_grad, py_grad) = rnnt_loss_smoothed(
                lm=lm_simple.float(),
                am=am_simple.float(),
                symbols=y,
                termination_symbol=self.blank_id,
                lm_only_scale=lm_scale,
                am_only_scale=am_scale,
                boundary=boundary,
                rnnt_type=rnnt_type,
                delay_penalty=delay_penalty,
                reduction="sum",
                return_grad=True,
                backend=loss_backend,
            )

        ranges = get_rnnt_prune_ranges(
            px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=prune_range, backend=loss_backend
        )
        am_pruned, lm_pruned = do_rnnt_pruning(
            am=self.joiner.encoder_proj(raw), lm=self.joiner.decoder_proj(pred), ranges=ranges, backend=loss_backend
        )  # (B, T', S, J) each
        logits = self.joiner(am_pruned, lm_pruned)  # (B, T', S, V)

        with torch.autocast(device_type=x.device.type, enabled=False):
            pruned_loss = rnnt_loss_pruned(
                logits=logits.float(),
                symbols=y,
                ranges=ranges,
                termination_symbol=self.blank_id,
                boundary=boundary,
                rnnt_type=rnnt_type,
                delay_penalty=delay_penalty,
                reduction="sum",
                backend=loss_backend,
            )

        ctc_loss: Optional[Tensor] = None
        if self.ctc_head is not None:
            log_probs = self.ctc_log_probs(raw)  # (B, T', V)
            ctc_loss = torch.nn.functional.ctc_loss(
                log_probs.permute(1, 0, 2).float(),
                targets=y,
                input_lengths=enc_lens,
                target_lengths=y_lens,
                blank=self.blank_id,
                reduction="sum",
                zero_infinity=True,
            )
        return TransducerLosses(simple_loss, pruned_loss, ctc_loss)


def _check_batch(x: Tensor, x_lens: Tensor, y: Tensor, y_lens: Tensor) -> None:
    """Raise DataError on inconsistent batch shapes or impossible lengths."""
    if x.dim() != 3:
        raise DataError(f"features must be (B, T, F), got shape {tuple(x.shape)}")
    b = x.size(0)
    for name, t, ndim in (("x_lens", x_lens, 1), ("y", y, 2), ("y_lens", y_lens, 1)):
        if t.dim() != ndim or t.size(0) != b:
            raise DataError(f"{name} has shape {tuple(t.shape)}, expected batch size {b} and {ndim} dim(s)")
    bad = ((x_lens <= 0) | (x_lens > x.size(1))).nonzero().flatten().tolist()
    if bad:
        raise DataError(f"batch entries {bad}: x_lens {x_lens[bad].tolist()} outside 1..{x.size(1)}")
    bad = ((y_lens < 0) | (y_lens > y.size(1))).nonzero().flatten().tolist()
    if bad:
        raise DataError(f"batch entries {bad}: y_lens {y_lens[bad].tolist()} outside 0..{y.size(1)}")


def _check_lengths(enc_lens: Tensor, y_lens: Tensor, x_lens: Tensor) -> None:
    """The pruned loss needs at least one encoder frame and no more tokens than encoder frames per utterance."""
    bad = ((enc_lens <= 0) | (y_lens > enc_lens)).nonzero().flatten().tolist()
    if bad:
        raise DataError(
            f"batch entries {bad} are too short for their transcripts: "
            f"{x_lens[bad].tolist()} input frames give {enc_lens[bad].tolist()} encoder frames "
            f"but have {y_lens[bad].tolist()} tokens",
            hint="drop utterances with more tokens than encoder frames (the trainer's length filter does this)",
        )
