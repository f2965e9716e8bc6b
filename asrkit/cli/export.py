"""``asrkit export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from asrkit.cli.common import Avg, Epoch, ExpDir, Iter, LangDir, UseAveragedModel


def export(
    exp_dir: ExpDir = Path("exp"),
    lang_dir: LangDir = Path("data/lang"),
    epoch: Epoch = 0,
    iter: Iter = 0,
    avg: Avg = 1,
    use_averaged_model: UseAveragedModel = False,
    format: Annotated[
        list[str], typer.Option("--format", help="pretrained | torchscript | onnx (repeat the option).")
    ] = ["pretrained"],
    output_dir: Annotated[Optional[Path], typer.Option(help="Default: EXP_DIR/exported.")] = None,
    int8: Annotated[bool, typer.Option(help="ONNX: also write dynamically quantized *.int8.onnx.")] = True,
    streaming: Annotated[bool, typer.Option(
        "--streaming/--no-streaming",
        help="Causal models: export the chunk-wise API (torchscript-streaming/jit_script_streaming.pt; "
             "onnx-streaming/ for sherpa-onnx's OnlineRecognizer).")] = False,
    chunk_size: Annotated[Optional[int], typer.Option(
        help="--streaming: chunk size in 50 Hz frames fixed in the export; default: the model's first chunk_size.")
    ] = None,
    left_context_frames: Annotated[Optional[int], typer.Option(
        help="--streaming: left context in 50 Hz frames; default: the model's first left_context_frames.")] = None,
) -> None:
    """Export the selected (averaged) model: pretrained.pt, TorchScript (torchscript/jit_script.pt) or ONNX (sherpa-onnx ready).

    Example: asrkit export --exp-dir exp/zipformer-xs --epoch 10 --avg 3 --use-averaged-model --format onnx

    Streaming: asrkit export --exp-dir exp/zipformer-xs-streaming --epoch 10 --format onnx --streaming --chunk-size 16
    """
    from asrkit.export.stage import export_model
    from asrkit.training.selection import Selection
    from asrkit.utils.logging import setup_logging

    setup_logging(exp_dir / "log" / "export.log")
    outputs = export_model(exp_dir, Selection(epoch, iter, avg, use_averaged_model), lang_dir, format,
                           output_dir or exp_dir / "exported", int8=int8, streaming=streaming,
                           chunk_size=chunk_size, left_context_frames=left_context_frames)
    for path in outputs:
        typer.echo(str(path))
