"""``asrkit align``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def align(
    audio: Annotated[Path, typer.Argument(help="One audio file.")],
    model: Annotated[Path, typer.Option(help="pretrained.pt (or a training checkpoint with its config).")],
    text: Annotated[Optional[str], typer.Option(help="Transcript to align (default: the greedy hypothesis).")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write the lattice picture (PNG) here.")] = None,
    prune_range: Annotated[int, typer.Option(help="Pruning range S drawn as bounds.")] = 5,
) -> None:
    """Align a transcript to an utterance: per-token emission times, and (--plot) the RNN-T lattice with
    occupation probabilities, pruning bounds and the best path.

    Example: asrkit align --model exp/x/exported/pretrained.pt a.wav --text "ENTER FIVE" --plot lattice.png
    """
    from asrkit.inference import align_file

    result = align_file(model, audio, text=text, plot=plot, prune_range=prune_range)
    typer.echo(f"{audio}\t" + " ".join(f"{tok}@{sec:.2f}" for tok, sec in result))
    if plot is not None:
        typer.echo(f"lattice picture: {plot}")
