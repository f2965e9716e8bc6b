"""``asrkit transcribe``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from asrkit.cli.common import BlankPenalty


def transcribe(
    audio: Annotated[list[Path], typer.Argument(help="Audio files (wav, flac, sph, ...).")],
    model: Annotated[Path, typer.Option(help="pretrained.pt, a TorchScript model.pt, or an ONNX export directory.")],
    method: Annotated[str, typer.Option(help="greedy_search | modified_beam_search")] = "greedy_search",
    batch_size: Annotated[int, typer.Option(help="Files decoded together.")] = 16,
    timestamps: Annotated[bool, typer.Option(help="Also print per-token times in seconds.")] = False,
    blank_penalty: BlankPenalty = 0.0,
) -> None:
    """Transcribe audio files; prints one line per file: <path><TAB><transcript>.

    Example: asrkit transcribe --model exp/zipformer-xs/exported/pretrained.pt a.wav b.flac
    """
    from asrkit.inference import transcribe as run

    opts = {"blank_penalty": blank_penalty} if blank_penalty else {}
    for row in run(model, audio, method=method, batch_size=batch_size, timestamps=timestamps, **opts):
        path, text = row[0], row[1]
        line = f"{path}\t{text}"
        if timestamps and len(row) > 2:
            line += "\t" + " ".join(f"{tok}@{t:.2f}" for tok, t in row[2])
        typer.echo(line)
