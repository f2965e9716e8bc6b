"""``asrkit bench``: measured speed/memory figures (docs/benchmarks.md quotes their output)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Benchmarks.\n\nExample: asrkit bench loss --quick", no_args_is_help=True)


@app.command("loss")
def loss(
    quick: Annotated[bool, typer.Option(help="A small smoke-test setting.")] = False,
    num_steps: Annotated[int, typer.Option(help="Timed steps per configuration.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the (T, U) distribution.")] = 0,
) -> None:
    """Pruned vs full RNN-T loss: step time and peak memory per backend.

    Example: asrkit bench loss --num-steps 10
    """
    from asrkit.bench.loss import bench_loss, format_table

    rows = bench_loss(num_steps=2 if quick else num_steps, seed=seed, quick=quick)
    typer.echo(format_table(rows))
