"""Registry of search methods: one entry point that runs any method on a batch of features.

Shape legend: B utterances, T input frames, T' encoder frames, J joiner dim.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from asrkit.errors import ConfigError

# Options that every transducer search function takes positionally, never from the user.
_POSITIONAL = {
    "model", "encoder_out", "encoder_out_lens", "ctc_log_probs", "lens", "blank_id", "unk_id", "return_timestamps",
}


def _greedy() -> Callable:
    from asrkit.decoding.greedy_search import greedy_search

    return greedy_search


def _beam() -> Callable:
    from asrkit.decoding.beam_search import beam_search

    return beam_search


def _modified_beam() -> Callable:
    from asrkit.decoding.modified_beam_search import modified_beam_search

    return modified_beam_search


def _ctc() -> Callable:
    from asrkit.decoding.ctc import ctc_greedy_search

    return ctc_greedy_search


def _fast_beam() -> Callable:
    from asrkit.decoding.fast_beam_search import _import_k2, fast_beam_search

    _import_k2()  # fail at lookup: the missing package is the real problem, not the options
    return fast_beam_search


def _fast_beam_nbest() -> Callable:
    from asrkit.decoding.fast_beam_search import _import_k2, fast_beam_search_nbest

    _import_k2()
    return fast_beam_search_nbest


SEARCH_METHODS: dict[str, Callable[[], Callable]] = {
    "greedy_search": _greedy,
    "beam_search": _beam,
    "modified_beam_search": _modified_beam,
    "ctc_greedy_search": _ctc,
    "fast_beam_search": _fast_beam,
    "fast_beam_search_nbest": _fast_beam_nbest,
}
"""Method name -> loader of its search function (imported lazily)."""

_NO_TIMESTAMPS = {"fast_beam_search", "fast_beam_search_nbest"}


def get_search_function(method: str) -> Callable:
    """The search function registered under ``method``.

    Raises:
        ConfigError: unknown method, listing the valid ones.
        MissingDependencyError: the method needs a package that is not installed (k2).
    """
    if method not in SEARCH_METHODS:
        raise ConfigError(
            f"unknown decoding method {method!r}",
            hint=f"valid methods: {', '.join(SEARCH_METHODS)}",
        )
    return SEARCH_METHODS[method]()


def search_options(method: str) -> list[str]:
    """Names of the keyword options that ``method`` accepts (e.g. ``beam_size``)."""
    params = inspect.signature(get_search_function(method)).parameters
    return [p for p in params if p not in _POSITIONAL]


def check_options(method: str, opts: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming any option ``method`` does not accept."""
    valid = search_options(method)
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise ConfigError(
            f"decoding method {method!r} does not accept option(s) {', '.join(unknown)}",
            hint=f"valid options for {method}: {', '.join(valid) or '(none)'}",
        )


def model_device(model: Any) -> torch.device:
    """Device of a torch model's parameters (CPU for parameter-less/ONNX models)."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


@torch.no_grad()
def run_search(
    model: Any,
    features: torch.Tensor,
    feature_lens: torch.Tensor,
    method: str = "greedy_search",
    return_timestamps: bool = False,
    unk_id: int | None = None,
    **opts: Any,
) -> tuple[list[list[int]], list[list[int]] | None, torch.Tensor]:
    """Encode a batch of features and search it with ``method``.

    Args:
        model: a ``Transducer`` or a model from :func:`asrkit.inference.load_model`.
        features: (B, T, 80) log-mel filterbank features.
        feature_lens: (B,) valid frames per utterance.
        method: a name in :data:`SEARCH_METHODS`.
        return_timestamps: also return per-token encoder frame indices.
        unk_id: token never emitted by transducer searches (defaults to ``model.unk_id`` when
            the model has one, e.g. models from :func:`asrkit.inference.load_model`).
        **opts: method options (see :func:`search_options`).

    Returns:
        ``(tokens, timestamps or None, encoder_out_lens (B,))``.

    Raises:
        ConfigError: unknown method or option, or CTC search on a model without a CTC head.
    """
    fn = get_search_function(method)
    check_options(method, opts)
    if return_timestamps and method in _NO_TIMESTAMPS:
        raise ConfigError(f"decoding method {method!r} does not produce timestamps",
                          hint="use greedy_search or modified_beam_search for timestamps")
    if unk_id is None:
        unk_id = getattr(model, "unk_id", None)
    if "unk_id" in inspect.signature(fn).parameters:
        opts = {**opts, "unk_id": unk_id}
    device = model_device(model)
    features = features.to(device)
    feature_lens = feature_lens.to(device)
    if method == "ctc_greedy_search":
        if getattr(model, "ctc_head", None) is None or not hasattr(model, "run_encoder"):
            raise ConfigError("ctc_greedy_search needs a model trained with a CTC head",
                              hint="use greedy_search or modified_beam_search")
        raw, out_lens = model.run_encoder(features, feature_lens)
        result = fn(model.ctc_log_probs(raw), out_lens, blank_id=int(model.blank_id),
                    return_timestamps=return_timestamps, **opts)
    else:
        encoder_out, out_lens = model.encode(features, feature_lens)
        if method in _NO_TIMESTAMPS:
            result = fn(model, encoder_out, out_lens, **opts)
        else:
            result = fn(model, encoder_out, out_lens, return_timestamps=return_timestamps, **opts)
    if return_timestamps:
        return result.tokens, result.timestamps, out_lens
    return result, None, out_lens
