"""``asrkit decode``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from asrkit.cli.common import Avg, BlankPenalty, Device, Epoch, ExpDir, Iter, LangDir, SkipBadAudio, UseAveragedModel


def decode(
    cuts: Annotated[list[Path], typer.Option("--cuts", help="Test cut sets (repeat the option).")],
    exp_dir: ExpDir = Path("exp"),
    lang_dir: LangDir = Path("data/lang"),
    epoch: Epoch = 0,
    iter: Iter = 0,
    avg: Avg = 1,
    use_averaged_model: UseAveragedModel = False,
    method: Annotated[
        str,
        typer.Option(help="greedy_search | beam_search | modified_beam_search | ctc_greedy_search | fast_beam_search"),
    ] = "greedy_search",
    beam_size: Annotated[int, typer.Option(help="Beam size (beam searches).")] = 4,
    max_sym_per_frame: Annotated[int, typer.Option(help="Greedy search: symbols per frame.")] = 1,
    blank_penalty: BlankPenalty = 0.0,
    max_duration: Annotated[float, typer.Option(help="Seconds of audio per batch.")] = 300.0,
    device: Device = "cpu",
    timestamps: Annotated[
        bool, typer.Option(help="Also write timestamps-*.txt: per token, its start time in seconds.")
    ] = False,
    model: Annotated[
        Optional[Path],
        typer.Option(help="Decode with an exported model (pretrained.pt, TorchScript, ONNX dir) instead of "
                          "--epoch/--iter checkpoints; reports still go under --exp-dir."),
    ] = None,
    int8: Annotated[bool, typer.Option(help="With an ONNX --model: use the int8-quantized files.")] = False,
    lm: Annotated[
        Optional[Path],
        typer.Option(help="modified_beam_search: shallow fusion with this token n-gram LM (ARPA, from "
                          "`asrkit prepare lm`)."),
    ] = None,
    lm_scale: Annotated[float, typer.Option(help="Weight of the --lm log-probabilities (tune it on a dev set).")] = 0.3,
    chunk_size: Annotated[
        Optional[int],
        typer.Option(help="Causal models: decoding chunk size in 50 Hz frames (16 = 320 ms; -1 full context); "
                          "default: the model's first chunk_size."),
    ] = None,
    left_context_frames: Annotated[
        Optional[int],
        typer.Option(help="Causal models: left context in 50 Hz frames (whole chunks); default: the model's first "
                          "left_context_frames."),
    ] = None,
    streaming: Annotated[
        bool,
        typer.Option("--streaming/--no-streaming", help="Decode chunk by chunk with encoder caches (greedy_search, "
                                                        "modified_beam_search) instead of simulated streaming."),
    ] = False,
    num_decode_streams: Annotated[
        int, typer.Option(help="--streaming: utterances decoded together as live streams.")
    ] = 8,
    skip_bad_audio: SkipBadAudio = False,
) -> None:
    """Decode test sets and write recogs-/errs-/wer-summary-*.txt (icefall format); prints %WER per set.

    A non-zero --blank-penalty P adds "-blank-penalty-P" to the report names, --lm data/lang/lm-3gram.arpa
    "-lm-3gram-scale-S", --chunk-size/--left-context-frames "-chunk-C-left-L", --streaming "-streaming".

    Example: asrkit decode --exp-dir exp/zipformer-xs --epoch 10 --avg 3 --use-averaged-model
    --method modified_beam_search --cuts data/fbank/synth_cuts_test.jsonl.gz
    """
    from asrkit.config import DecodeConfig
    from asrkit.evaluate import decode_test_sets
    from asrkit.training.selection import Selection
    from asrkit.utils.logging import setup_logging

    setup_logging(exp_dir / "log" / f"decode-{method}.log")
    opts = {}
    if method in ("beam_search", "modified_beam_search"):
        opts["beam_size"] = beam_size
    if method == "greedy_search":
        opts["max_sym_per_frame"] = max_sym_per_frame
    if blank_penalty != 0.0:
        opts["blank_penalty"] = blank_penalty
    selection = model if model is not None else Selection(epoch, iter, avg, use_averaged_model)
    counts: dict[str, dict] = {}
    wers = decode_test_sets(exp_dir, selection, cuts, lang_dir, method, opts, max_duration, device,
                            timestamps=timestamps, int8=int8, lm=lm, lm_scale=lm_scale,
                            skip_bad_audio=skip_bad_audio, report=counts,
                            decode_config=DecodeConfig(chunk_size, left_context_frames, streaming, num_decode_streams))
    for name, wer in wers.items():
        line = f"{name} {method}: %WER = {wer:.2f}"
        if counts[name]["skipped"]:
            line += (f" over {counts[name]['decoded']} utterances; {counts[name]['skipped']} skipped for unreadable "
                     f"audio (listed in {counts[name]['skipped_file']})")
        typer.echo(line)
