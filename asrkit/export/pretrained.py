"""``pretrained.pt``: everything needed to run a model, in one weights_only-loadable file.

Payload keys:

=================  ================================================================
``"format"``       ``"asrkit-pretrained"``
``"version"``      1
``"model"``        the model's state dict (CPU tensors)
``"config"``       the resolved experiment config as a plain dict; ``config["model"]``
                   is the :class:`~asrkit.models.config.ModelConfig` dict
``"tokenizer"``    the SentencePiece model (``bpe.model``) as bytes
``"tokens"``       the symbols of ``tokens.txt`` in id order
=================  ================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from asrkit.errors import ExportError

FORMAT_NAME = "asrkit-pretrained"
FORMAT_VERSION = 1


def model_config_dict(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ModelConfig dict inside a resolved config (``config["model"]``), or ``config``
    itself when it already is a model config."""
    inner = config.get("model")
    return dict(inner) if isinstance(inner, Mapping) else dict(config)


def build_model_from_config(config: Mapping[str, Any], where: str = "config") -> torch.nn.Module:
    """Build an (untrained) Transducer from a resolved config dict.

    Raises:
        ConfigError: the model config is invalid.
    """
    from asrkit.models.build import build_transducer
    from asrkit.models.config import ModelConfig
    from asrkit.utils.dataclass_io import from_dict

    return build_transducer(from_dict(ModelConfig, model_config_dict(config), path=f"{where}:model"))


def export_pretrained(
    model: torch.nn.Module,
    config_dict: Mapping[str, Any],
    tokenizer_path: str | Path,
    out_path: str | Path,
) -> Path:
    """Write ``pretrained.pt`` (weights + resolved config + tokenizer) atomically.

    Args:
        model: the trained (e.g. averaged) ``Transducer``.
        config_dict: the resolved experiment config as a plain dict (must contain the model
            config under ``"model"``, or be the model config itself).
        tokenizer_path: the SentencePiece ``bpe.model`` (or a directory containing it).
        out_path: destination file, e.g. ``exp/pretrained.pt``.

    Returns:
        ``out_path``.

    Raises:
        ExportError: the config does not describe ``model`` (different parameter names/shapes).
        DataError: the tokenizer cannot be read.
    """
    from asrkit.data.tokenizer import Tokenizer
    from asrkit.training.checkpoint import save_checkpoint

    tokenizer = Tokenizer.load(tokenizer_path)
    config = {k: v for k, v in config_dict.items()} if "model" in config_dict else {"model": dict(config_dict)}
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    if tokenizer.vocab_size != int(getattr(model, "vocab_size", tokenizer.vocab_size)):
        raise ExportError(
            f"tokenizer {tokenizer_path} has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{model.vocab_size}", hint="export with the tokenizer the model was trained with")
    try:
        build_model_from_config(config).load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ExportError(f"the config does not describe this model: {first}") from None
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "model": state,
        "config": config,
        "tokenizer": tokenizer.to_bytes(),
        "tokens": tokenizer.symbols,
    }
    return save_checkpoint(out_path, payload)
