"""Pruned RNN-T loss with k2's API and a choice of backend (``torch`` | ``fast_rnnt`` | ``k2``).

Legend used in all docstrings: ``B`` batch, ``T`` frames, ``S`` symbols (``S+1`` predictor
positions), ``C`` vocabulary incl. blank, ``R`` pruning range, ``D`` joiner dim.

Every function takes ``backend="auto"`` (k2, else fast_rnnt, else our pure-PyTorch code); use
:func:`resolve_backend` to log which one runs.  See :mod:`asrkit.loss.api` for the icefall-style
pruned pipeline.
"""

from asrkit.loss.api import (
    do_rnnt_pruning,
    get_rnnt_logprobs,
    get_rnnt_logprobs_joint,
    get_rnnt_logprobs_pruned,
    get_rnnt_logprobs_smoothed,
    get_rnnt_prune_ranges,
    mutual_information_recursion,
    rnnt_loss,
    rnnt_loss_pruned,
    rnnt_loss_simple,
    rnnt_loss_smoothed,
)
from asrkit.loss.backends import BACKEND_CHOICES, available_backends, resolve_backend
from asrkit.loss.sub_batched import rnnt_loss_sub_batched
from asrkit.loss.validation import LossInputError

__all__ = [
    "BACKEND_CHOICES",
    "LossInputError",
    "available_backends",
    "do_rnnt_pruning",
    "get_rnnt_logprobs",
    "get_rnnt_logprobs_joint",
    "get_rnnt_logprobs_pruned",
    "get_rnnt_logprobs_smoothed",
    "get_rnnt_prune_ranges",
    "mutual_information_recursion",
    "resolve_backend",
    "rnnt_loss",
    "rnnt_loss_pruned",
    "rnnt_loss_simple",
    "rnnt_loss_smoothed",
    "rnnt_loss_sub_batched",
]
