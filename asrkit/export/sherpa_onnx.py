"""Run sherpa-onnx's OfflineRecognizer (or OnlineRecognizer, on a streaming export) on an asrkit ONNX export (for
equality tests and the decoding benchmark).

sherpa-onnx ends the whole process on a bad model file (not catchable in Python), so it always runs in a
subprocess. Decoding is timed inside that process after the models are loaded, from reading the audio files to
the final texts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

_SCRIPT = r"""
import json, sys, time
import soundfile as sf
import sherpa_onnx
opts = json.loads(sys.argv[1])
d, suffix = opts["onnx_dir"], opts["suffix"]
rec = sherpa_onnx.OfflineRecognizer.from_transducer(
    encoder=f"{d}/encoder{suffix}", decoder=f"{d}/decoder{suffix}", joiner=f"{d}/joiner{suffix}",
    tokens=f"{d}/tokens.txt", num_threads=opts["threads"], sample_rate=16000, feature_dim=80,
    decoding_method=opts["method"], max_active_paths=opts["beam_size"], model_type=opts["model_type"],
    blank_penalty=opts["blank_penalty"])
started = time.perf_counter()
streams = []
for path in sys.argv[2:]:
    samples, sr = sf.read(path, dtype="float32")
    s = rec.create_stream()
    s.accept_waveform(sr, samples)
    streams.append(s)
rec.decode_streams(streams)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "results": [
    {"text": s.result.text, "tokens": list(s.result.tokens), "timestamps": list(s.result.timestamps)}
    for s in streams]}))
"""


@dataclass
class SherpaOnnxRun:
    """What sherpa-onnx made of the files: per file ``{"text", "tokens", "timestamps"}`` (seconds), in input
    order, and the decoding wall time in seconds (models already loaded)."""

    results: list[dict]
    seconds: float


def run_sherpa_onnx(
    onnx_dir: Path,
    wavs: Sequence[Path],
    method: str = "greedy_search",
    beam_size: int = 4,
    threads: int = 1,
    model_type: str = "transducer",
    suffix: str = ".onnx",
    blank_penalty: float = 0.0,
    timeout: float | None = 600.0,
) -> SherpaOnnxRun:
    """Decode ``wavs`` (one batch) with sherpa-onnx in a subprocess.

    Args:
        onnx_dir: an asrkit ONNX export (``encoder{suffix}``, ``decoder{suffix}``, ``joiner{suffix}``, tokens.txt).
        method: ``greedy_search`` or ``modified_beam_search``; ``beam_size`` is its ``max_active_paths``.
        model_type: ``"transducer"``, or ``""`` to make sherpa-onnx read the encoder's metadata.
        suffix: ``.onnx`` or ``.int8.onnx``.
        blank_penalty: subtracted from the blank logit, as asrkit's ``--blank-penalty`` (sherpa-onnx applies
            positive values only).

    Raises:
        RuntimeError: sherpa-onnx failed or died (with the end of its stderr).
    """
    opts = {"onnx_dir": str(onnx_dir), "suffix": suffix, "threads": int(threads), "method": method,
            "beam_size": int(beam_size), "model_type": model_type, "blank_penalty": float(blank_penalty)}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(opts), *map(str, wavs)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"sherpa-onnx failed on {onnx_dir} (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return SherpaOnnxRun(results=out["results"], seconds=float(out["seconds"]))


_ONLINE_SCRIPT = r"""
import json, sys
import numpy as np
import soundfile as sf
import sherpa_onnx
opts = json.loads(sys.argv[1])
d, suffix = opts["onnx_dir"], opts["suffix"]
rec = sherpa_onnx.OnlineRecognizer.from_transducer(
    encoder=f"{d}/encoder{suffix}", decoder=f"{d}/decoder{suffix}", joiner=f"{d}/joiner{suffix}",
    tokens=f"{d}/tokens.txt", num_threads=opts["threads"], sample_rate=16000, feature_dim=80,
    decoding_method=opts["method"], max_active_paths=opts["beam_size"], model_type="zipformer2")
out = []
for path in sys.argv[2:]:
    samples, sr = sf.read(path, dtype="float32")
    samples = np.concatenate([samples, np.zeros(int(opts["tail_seconds"] * sr), dtype=np.float32)])
    piece = int(opts["piece_seconds"] * sr)
    s = rec.create_stream()
    partials = []
    for start in range(0, len(samples), piece):
        s.accept_waveform(sr, samples[start : start + piece])
        while rec.is_ready(s):
            rec.decode_stream(s)
        partials.append(rec.get_result(s))
    s.input_finished()
    while rec.is_ready(s):
        rec.decode_stream(s)
    out.append({"text": rec.get_result(s), "tokens": list(rec.tokens(s)), "timestamps": list(rec.timestamps(s)),
                "partials": partials})
print(json.dumps({"results": out}))
"""


def run_sherpa_onnx_online(
    onnx_dir: Path,
    wavs: Sequence[Path],
    suffix: str = ".onnx",
    method: str = "greedy_search",
    beam_size: int = 4,
    piece_seconds: float = 0.1,
    tail_seconds: float = 0.0,
    threads: int = 1,
    timeout: float | None = 600.0,
) -> list[dict]:
    """Decode each of ``wavs`` with sherpa-onnx's OnlineRecognizer in a subprocess, fed as a live client does:
    ``accept_waveform`` in ``piece_seconds`` pieces (decoding whatever chunks are ready after each), then
    ``tail_seconds`` of silence and ``input_finished``.

    Returns:
        Per file ``{"text", "tokens", "timestamps" (seconds), "partials" (the text after each piece)}``.

    Raises:
        RuntimeError: sherpa-onnx failed or died (with the end of its stderr).
    """
    opts = {"onnx_dir": str(onnx_dir), "suffix": suffix, "threads": int(threads), "method": method,
            "beam_size": int(beam_size), "piece_seconds": float(piece_seconds), "tail_seconds": float(tail_seconds)}
    proc = subprocess.run([sys.executable, "-c", _ONLINE_SCRIPT, json.dumps(opts), *map(str, wavs)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"sherpa-onnx failed on {onnx_dir} (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["results"]
