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
    segment_seconds: Annotated[float, typer.Option(
        help="Longer files are decoded in segments of at most this length, cut at pauses (whole-file attention "
             "needs memory growing with the square of the length); 0: never cut.")] = 60.0,
    blank_penalty: BlankPenalty = 0.0,
    streaming: Annotated[bool, typer.Option(
        "--streaming/--no-streaming",
        help="Decode chunk by chunk with a streaming export (jit_script_streaming.pt or an onnx-streaming "
             "directory), printing partial results as audio arrives: 'partial<TAB>path<TAB>seconds<TAB>text' "
             "lines, then 'final<TAB>path<TAB>seconds<TAB>text'.")] = False,
    real_time: Annotated[bool, typer.Option(
        "--real-time/--no-real-time", help="--streaming: feed each file at real time (default: as fast as "
                                           "possible).")] = False,
    piece_seconds: Annotated[float, typer.Option(help="--streaming: audio fed per step.")] = 0.1,
    int8: Annotated[bool, typer.Option(help="--streaming ONNX: use the *.int8.onnx files.")] = False,
) -> None:
    """Transcribe audio files; prints one line per readable file: <path><TAB><transcript>.

    An unreadable file does not stop the run (with or without --streaming): it gets one 'error:' line on stderr,
    the others are transcribed, a summary follows and the exit status is 1. Audio shorter than the model's minimum
    input gets an empty transcript and a 'note:' line.

    Example: asrkit transcribe --model exp/zipformer-xs/exported/pretrained.pt a.wav b.flac

    Streaming: asrkit transcribe --streaming --real-time --model exp/zipformer-xs-streaming/exported/onnx-streaming a.wav
    """
    if streaming:
        from asrkit.streaming_transcribe import transcribe_streaming

        opts = {"blank_penalty": blank_penalty} if blank_penalty else {}
        failed = 0
        for update in transcribe_streaming(model, list(audio), method=method, piece_seconds=piece_seconds,
                                           real_time=real_time, int8=int8, **opts):
            if update.error:
                failed += 1
                typer.echo(f"error: {update.error}", err=True)
                continue
            tag = "final" if update.final else "partial"
            typer.echo(f"{tag}\t{update.path}\t{update.audio_seconds:.2f}\t{update.text}")
        if failed:
            _fail_summary(len(audio) - failed, len(audio), failed)
        return
    from asrkit.inference import transcribe_files

    opts = {"blank_penalty": blank_penalty} if blank_penalty else {}
    report = transcribe_files(model, audio, method=method, batch_size=batch_size, timestamps=timestamps,
                              segment_seconds=segment_seconds, **opts)
    for row in report.transcripts:
        path, text = row[0], row[1]
        line = f"{path}\t{text}"
        if timestamps and len(row) > 2:
            line += "\t" + " ".join(f"{tok}@{t:.2f}" for tok, t in row[2])
        typer.echo(line)
    for path in report.too_short:
        typer.echo(f"note: {path}: shorter than the model's minimum input of {report.min_seconds:.2f} s; "
                   "empty transcript", err=True)
    for failure in report.errors:
        typer.echo(f"error: {failure.reason}", err=True)
    if report.errors:
        _fail_summary(len(report.transcripts), len(audio), len(report.errors))


def _fail_summary(done: int, total: int, failed: int) -> None:
    """The last stderr line when some files could not be read; exit status 1."""
    typer.echo(f"transcribed {done} of {total} files; {failed} could not be read", err=True)
    raise typer.Exit(1)
