"""Benchmark: real-time factor of decoding, per method and batch size, and sherpa-onnx's on the same ONNX export.

RTF = wall time / audio duration, measured from reading the audio files to the final texts (audio I/O and
feature extraction included, for asrkit and sherpa-onnx alike). sherpa-onnx runs in a subprocess
(:mod:`asrkit.export.sherpa_onnx`), timed inside that process after its models are loaded, as asrkit's models are.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence


def audio_seconds(wavs: Sequence[Path]) -> float:
    import soundfile as sf

    return sum(sf.info(str(w)).duration for w in wavs)


def bench_asrkit(model_path: Path, wavs: Sequence[Path], method: str, batch_size: int, threads: int) -> float:
    """Seconds to transcribe ``wavs`` (after one untimed warm-up file)."""
    import torch

    from asrkit.inference import load_model, transcribe

    torch.set_num_threads(threads)
    model = load_model(model_path, num_threads=threads)
    transcribe(model, list(wavs[:1]), method=method, batch_size=1)
    started = time.perf_counter()
    transcribe(model, list(wavs), method=method, batch_size=batch_size)
    return time.perf_counter() - started


def bench_sherpa(onnx_dir: Path, wavs: Sequence[Path], method: str, threads: int) -> float:
    """Seconds sherpa-onnx takes for the same files (batch = all files, as ``decode_streams`` does)."""
    from asrkit.export.sherpa_onnx import run_sherpa_onnx

    return run_sherpa_onnx(onnx_dir, wavs, method=method, threads=threads, timeout=None).seconds


def bench_decode(model_path: Path, wavs: Sequence[Path], methods: Sequence[str], batch_sizes: Sequence[int],
                 threads: int = 2, onnx_dir: Path | None = None) -> list[dict]:
    """One row per (engine, method, batch size): seconds and RTF."""
    total = audio_seconds(wavs)
    rows = []
    for method in methods:
        for batch_size in batch_sizes:
            seconds = bench_asrkit(model_path, wavs, method, batch_size, threads)
            rows.append({"engine": f"asrkit ({Path(model_path).name})", "method": method, "batch_size": batch_size,
                         "seconds": seconds, "rtf": seconds / total})
        if onnx_dir is not None:
            seconds = bench_sherpa(onnx_dir, wavs, method, threads)
            rows.append({"engine": "sherpa-onnx", "method": method, "batch_size": len(wavs), "seconds": seconds,
                         "rtf": seconds / total})
    return rows


def format_rows(rows: list[dict], audio: float, threads: int) -> str:
    lines = [f"{audio:.1f} s of audio, {threads} thread(s)", "| engine | method | batch | seconds | RTF |",
             "|---|---|---:|---:|---:|"]
    lines += [f"| {r['engine']} | {r['method']} | {r['batch_size']} | {r['seconds']:.2f} | {r['rtf']:.4f} |"
              for r in rows]
    return "\n".join(lines)
