"""``asrkit bench``: measured speed/memory figures (docs/benchmarks.md quotes their output)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from asrkit.cli.common import BlankPenalty, Device, FeatureCuts, LangDir, Overrides, Recipe, overrides_dict

app = typer.Typer(help="Benchmarks.\n\nExample: asrkit bench loss --quick", no_args_is_help=True)


@app.command("loss")
def loss(
    quick: Annotated[bool, typer.Option(help="A small smoke-test setting.")] = False,
    num_steps: Annotated[int, typer.Option(help="Timed steps per configuration.")] = 6,
    max_frames: Annotated[int, typer.Option(help="Cap on the total encoder frames of a batch.")] = 1500,
    threads: Annotated[int, typer.Option(help="torch threads per configuration.")] = 1,
    repeats: Annotated[int, typer.Option(help="Runs of each pruned configuration (the fastest is kept).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the (T, U) distribution.")] = 0,
    device: Device = "cpu",
) -> None:
    """Pruned vs full RNN-T loss: step time and peak memory per backend (each in a fresh process).

    Example: asrkit bench loss --num-steps 6 --max-frames 1500 --threads 1 --repeats 3
    (on a GPU: asrkit bench loss --device cuda --max-frames 10000)
    """
    from asrkit.bench.loss import bench_loss, format_table

    rows = bench_loss(num_steps=num_steps, max_frames=max_frames, seed=seed, quick=quick, threads=threads,
                      repeats=repeats, device=device)
    typer.echo(format_table(rows))


@app.command("train")
def train(
    recipe: Recipe,
    train_cuts: FeatureCuts,
    lang_dir: LangDir = Path("data/lang"),
    world_size: Annotated[int, typer.Option(help="Processes (DDP).")] = 1,
    steps: Annotated[int, typer.Option(help="Timed steps per process.")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed steps first.")] = 3,
    device: Device = "cpu",
    precision: Annotated[str, typer.Option(
        help="Comma-separated precisions measured side by side: fp32, bf16 (CPU or CUDA), fp16 (CUDA only).")] = "fp32",
    librispeech_shaped: Annotated[bool, typer.Option(
        help="Synthesise LibriSpeech-shaped batches: the corpus's utterances joined into --utt-seconds "
             "utterances, --batch-seconds of audio per batch.")] = False,
    utt_seconds: Annotated[float, typer.Option(help="Seconds per synthesised utterance (at least).")] = 12.0,
    batch_seconds: Annotated[float, typer.Option(help="Seconds of audio per synthesised batch.")] = 1000.0,
    set_: Overrides = None,
) -> None:
    """Training throughput (audio seconds per second) and peak memory of a recipe.

    Example: asrkit bench train --recipe recipes/zipformer-xs.yaml --train-cuts data/fbank/synth_cuts_train.jsonl.gz
    --world-size 2
    (on a GPU, the recipe's conditions: --device cuda --librispeech-shaped --precision fp32,fp16,bf16)
    """
    from asrkit.bench.train import BatchShape, bench_train_precisions, format_result, format_table, parse_precisions

    precisions = parse_precisions(precision, device)
    shape = BatchShape(utt_seconds, batch_seconds) if librispeech_shaped else None
    results = bench_train_precisions(precisions, recipe=recipe, train_cuts=train_cuts, lang_dir=lang_dir,
                                     world_size=world_size, steps=steps, warmup=warmup, device=device,
                                     overrides=overrides_dict(set_), shape=shape)
    typer.echo(format_result(results[0]) if len(results) == 1 else format_table(results))


@app.command("backends")
def backends(
    recipe: Recipe,
    train_cuts: FeatureCuts,
    lang_dir: LangDir = Path("data/lang"),
    steps: Annotated[int, typer.Option(help="Training steps per backend.")] = 100,
    backend: Annotated[list[str], typer.Option("--backend", help="Backends to compare.")] = ["torch", "fast_rnnt"],
    set_: Overrides = None,
) -> None:
    """Train the same steps with each pruned-loss backend and compare the loss curves.

    Example: asrkit bench backends --recipe recipes/zipformer-xs.yaml --train-cuts data/fbank/synth_cuts_train.jsonl.gz
    --steps 100
    """
    from asrkit.bench.backends import compare_backends, format_curves

    curves = compare_backends(recipe, train_cuts, lang_dir, tuple(backend), steps, overrides_dict(set_))
    typer.echo(format_curves(curves))


@app.command("decode")
def decode(
    model: Annotated[Path, typer.Option(help="Any exported model (pretrained.pt, TorchScript, ONNX directory).")],
    wav_dir: Annotated[Path, typer.Option(help="Directory searched recursively for *.wav files.")],
    onnx_dir: Annotated[Path, typer.Option(help="ONNX export to time sherpa-onnx on (omit to skip it).")] = None,
    method: Annotated[list[str], typer.Option("--method", help="Search methods.")] = ["greedy_search"],
    batch_size: Annotated[list[int], typer.Option("--batch-size", help="Batch sizes.")] = [1, 16],
    threads: Annotated[int, typer.Option(help="Threads for asrkit and sherpa-onnx.")] = 2,
    max_files: Annotated[int, typer.Option(help="Use at most this many files.")] = 200,
) -> None:
    """Real-time factor of decoding per method and batch size (and sherpa-onnx's on the same export).

    Example: asrkit bench decode --model exp/x/exported/pretrained.pt --onnx-dir exp/x/exported/onnx
    --wav-dir data/synth/wav/test --method greedy_search --method modified_beam_search
    """
    from asrkit.bench.decode import audio_seconds, bench_decode, format_rows
    from asrkit.errors import DataError

    wavs = sorted(wav_dir.rglob("*.wav"))[:max_files]
    if not wavs:
        raise DataError(f"no .wav files under {wav_dir}")
    rows = bench_decode(model, wavs, method, batch_size, threads, onnx_dir)
    typer.echo(format_rows(rows, audio_seconds(wavs), threads))


@app.command("streaming")
def streaming(
    model: Annotated[list[Path], typer.Option("--model", help="Streaming exports (jit_script_streaming.pt or an "
                                              "onnx-streaming directory); repeat for several chunk sizes.")],
    wav_dir: Annotated[Path, typer.Option(help="Directory searched recursively for *.wav files.")],
    method: Annotated[str, typer.Option(help="greedy_search | modified_beam_search")] = "greedy_search",
    threads: Annotated[int, typer.Option(help="torch / onnxruntime threads.")] = 2,
    streams: Annotated[list[int], typer.Option("--streams", help="Pool sizes tried for the concurrency figure.")] = [
        1, 2, 4, 8, 16, 32, 64],
    int8: Annotated[bool, typer.Option(help="ONNX exports: the *.int8.onnx files.")] = False,
    blank_penalty: BlankPenalty = 0.0,
    max_files: Annotated[int, typer.Option(help="Use at most this many files.")] = 100,
) -> None:
    """Chunk-wise decoding of streaming exports: RTF, chunk compute time, first-partial latency, state memory per
    stream and the streams decoded concurrently in real time (definitions: asrkit/bench/streaming.py).

    Example: asrkit bench streaming --model exp/x/exported/onnx-streaming --wav-dir data/synth/wav/test
    """
    from asrkit.bench.streaming import bench_streaming, format_figures
    from asrkit.errors import DataError

    wavs = sorted(wav_dir.rglob("*.wav"))[:max_files]
    if not wavs:
        raise DataError(f"no .wav files under {wav_dir}")
    opts = {"blank_penalty": blank_penalty} if blank_penalty else {}
    rows = [bench_streaming(m, wavs, method, threads, streams, int8, **opts) for m in model]
    typer.echo(format_figures(rows, method, threads))


@app.command("emission")
def emission(
    reference: Annotated[Path, typer.Option(help="Timestamps report A (asrkit decode --timestamps).")],
    other: Annotated[list[Path], typer.Option("--other", help="Reports B compared to A (repeat).")],
) -> None:
    """Emission times of models compared on the utterances they recognise identically: mean (B - A) per token.

    Example: asrkit bench emission --reference exp/s0/modified_beam_search/timestamps-test-....txt
    --other exp/s1/modified_beam_search/timestamps-test-....txt
    """
    from asrkit.bench.emission import compare_emissions

    typer.echo("| report B | utterances (identical / both) | tokens | mean delay s | mean abs s | last token s |")
    typer.echo("|---|---:|---:|---:|---:|---:|")
    for path in other:
        c = compare_emissions(reference, path)
        typer.echo(f"| {path} | {c.compared} / {c.utterances} | {c.tokens} | {c.mean_delay:+.3f} | "
                   f"{c.mean_abs_delay:.3f} | {c.mean_last_token_delay:+.3f} |")
