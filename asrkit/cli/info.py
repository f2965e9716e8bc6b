"""``asrkit info``: what a recipe builds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def info(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML.")],
    vocab_size: Annotated[Optional[int], typer.Option(help="Vocabulary size to assume (default: the recipe's).")] = None,
) -> None:
    """Print a recipe's model type and parameter count.

    Example: asrkit info recipes/zipformer-s.yaml --vocab-size 500
    """
    from asrkit.config import load_train_config
    from asrkit.models.build import build_transducer, count_parameters

    overrides = {"model.vocab_size": vocab_size} if vocab_size else {}
    cfg = load_train_config(recipe, overrides)
    model = build_transducer(cfg.model)
    typer.echo(f"recipe: {recipe}")
    typer.echo(f"encoder: {cfg.model.encoder.type}, predictor: {cfg.model.predictor.type}, "
               f"vocab size: {cfg.model.vocab_size}")
    typer.echo(f"parameters: {count_parameters(model):,}")
