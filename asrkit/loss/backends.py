"""Choosing the implementation behind the loss functions: ``torch`` (ours), ``fast_rnnt`` or ``k2``.

All three expose the same k2 function names and semantics, so a backend is just the module whose
functions get called.  ``auto`` prefers k2, then fast_rnnt (both compiled), then our pure-PyTorch
code, which always works (any device, any float dtype).
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from types import ModuleType

import torch

from asrkit.errors import ConfigError, MissingDependencyError

#: Every name a ``backend=`` argument accepts.
BACKEND_CHOICES: tuple[str, ...] = ("auto", "torch", "fast_rnnt", "k2")

# Preference order of ``auto``.
_AUTO_ORDER: tuple[str, ...] = ("k2", "fast_rnnt", "torch")

# How each optional backend is installed (named in the error when it is missing).
_INSTALL_HINTS = {
    "fast_rnnt": "tools/install_fast_rnnt.sh .venv/bin/python",
    "k2": "pip install k2 (a build matching your torch version; see k2-fsa.github.io)",
}


@lru_cache(maxsize=None)
def _import_optional(name: str) -> ModuleType | None:
    """Import an optional backend module once; ``None`` when it is missing or broken."""
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a broken build (ABI mismatch) counts as unavailable
        return None


def available_backends() -> list[str]:
    """Return the backends usable in this environment, in ``auto``'s order of preference.

    ``torch`` is always present.  Example: ``['fast_rnnt', 'torch']``.
    """
    return [name for name in _AUTO_ORDER if name == "torch" or _import_optional(name) is not None]


def supports_cuda(name: str) -> bool:
    """Whether the installed backend ``name`` can take CUDA tensors (``torch`` always can)."""
    if name == "torch":
        return True
    module = _import_optional(name)
    if module is None:
        return False
    with_cuda = getattr(module, "with_cuda", None)
    if callable(with_cuda):
        try:
            return bool(with_cuda())
        except Exception:  # noqa: BLE001
            return False
    # k2 exposes its build options differently; assume a k2 install matches the torch it was
    # built for (the common case).
    return name == "k2" and torch.cuda.is_available()


def resolve_backend(name: str = "auto", device: torch.device | str | None = None) -> str:
    """Turn a ``backend=`` argument into a concrete backend name.

    Args:
        name: ``"auto"``, ``"torch"``, ``"fast_rnnt"`` or ``"k2"``.
        device: device of the tensors to be processed.  With ``"auto"`` and a CUDA device, a
            compiled backend built without CUDA is skipped.

    Returns:
        ``"torch"``, ``"fast_rnnt"`` or ``"k2"``.

    Raises:
        ConfigError: unknown name (the message lists the valid choices).
        MissingDependencyError: the named backend is not installed.
    """
    if not isinstance(name, str) or name not in BACKEND_CHOICES:
        raise ConfigError(
            f"unknown RNN-T loss backend {name!r}; valid choices: {', '.join(BACKEND_CHOICES)}"
        )
    on_cuda = device is not None and torch.device(device).type == "cuda"
    if name == "auto":
        for candidate in _AUTO_ORDER:
            if candidate == "torch":
                return "torch"
            if _import_optional(candidate) is None:
                continue
            if on_cuda and not supports_cuda(candidate):
                continue
            return candidate
    if name != "torch" and _import_optional(name) is None:
        error = MissingDependencyError(name, "loss", f"the '{name}' RNN-T loss backend")
        error.hint = f"install it with: {_INSTALL_HINTS[name]}, or use backend='torch'"
        raise error
    if on_cuda and name == "fast_rnnt" and not supports_cuda(name):
        raise ConfigError(
            "the installed fast_rnnt was built without CUDA and cannot take CUDA tensors",
            hint="use backend='torch' or 'auto', or rebuild fast_rnnt with -DFT_WITH_CUDA=ON",
        )
    return name


def backend_module(name: str) -> ModuleType:
    """The module implementing a resolved backend name (our own for ``"torch"``)."""
    if name == "torch":
        from asrkit.loss import torch_impl

        return torch_impl
    module = _import_optional(name)
    if module is None:  # resolve_backend() ran first, so this is an internal error
        raise RuntimeError(f"backend {name!r} vanished after resolution")
    return module
