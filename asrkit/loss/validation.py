"""Input checks shared by the loss functions (k2 uses bare asserts; we raise clear errors)."""

from __future__ import annotations

import torch
from torch import Tensor

from asrkit.errors import AsrkitError

RNNT_TYPES: tuple[str, ...] = ("regular", "modified", "constrained")
REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")


class LossInputError(AsrkitError, ValueError):
    """A tensor or option given to an RNN-T loss function has the wrong shape, dtype or value."""


def check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    """Raise :class:`LossInputError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise LossInputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def upcast(x: Tensor, name: str) -> Tensor:
    """float16/bfloat16 -> float32 (the recursion needs the range); other floats unchanged."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    if x.dtype not in (torch.float32, torch.float64):
        raise LossInputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def boundary_rows(boundary: Tensor | None, B: int, S: int, T: int, where: str) -> list[list[int]]:
    """Validate ``boundary`` (int64 ``[B, 4]``: ``s_begin, t_begin, s_end, t_end``) and return it
    as Python lists; ``None`` means ``[0, 0, S, T]`` for every sequence."""
    if boundary is None:
        return [[0, 0, S, T]] * B
    if boundary.dtype != torch.int64 or tuple(boundary.shape) != (B, 4):
        raise LossInputError(
            f"{where}: boundary must be an int64 tensor of shape ({B}, 4), got dtype "
            f"{boundary.dtype} shape {tuple(boundary.shape)}"
        )
    rows = boundary.tolist()
    for b, (s0, t0, s1, t1) in enumerate(rows):
        if not (0 <= s0 <= s1 <= S and 0 <= t0 <= t1 <= T):
            raise LossInputError(
                f"{where}: boundary[{b}] = {[s0, t0, s1, t1]} is outside the lattice; need "
                f"0 <= s_begin <= s_end <= S={S} and 0 <= t_begin <= t_end <= T={T}"
            )
    return rows


def check_st_lengths(S: int, T: int, rnnt_type: str, boundary: Tensor | None, where: str) -> None:
    """Every sequence needs >= 1 symbol, and the non-regular types need T >= S (one symbol per
    frame at most)."""
    if boundary is None:
        Ss, Ts = [S], [T]
    else:
        if boundary.dtype != torch.int64 or boundary.ndim != 2 or boundary.shape[1] != 4:
            raise LossInputError(
                f"{where}: boundary must be an int64 tensor of shape (B, 4), got dtype "
                f"{boundary.dtype} shape {tuple(boundary.shape)}"
            )
        Ss, Ts = boundary[:, 2].tolist(), boundary[:, 3].tolist()
    for b, (s, t) in enumerate(zip(Ss, Ts)):
        if s < 1:
            raise LossInputError(f"{where}: sequence {b} has S={s} symbols; at least 1 is needed")
        if rnnt_type != "regular" and t < s:
            raise LossInputError(
                f"{where}: rnnt_type={rnnt_type!r} emits at most one symbol per frame, but "
                f"sequence {b} has T={t} frames < S={s} symbols"
            )
