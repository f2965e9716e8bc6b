"""sherpa-onnx loads asrkit's ONNX export and decodes exactly like asrkit.

sherpa-onnx ends the whole process on a bad model file, so it always runs in a subprocess.
The model is untrained: both sides produce the same "garbage", which is still an exact test
of features, context handling, decoder/joiner wiring and detokenisation.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from test_export_formats import exported, make_wavs  # noqa: F401  (fixture)

pytest.importorskip("sherpa_onnx")

SHERPA_SCRIPT = r"""
import json, sys
import soundfile as sf
import sherpa_onnx
d, model_type, suffix, method, beam = sys.argv[1:6]
rec = sherpa_onnx.OfflineRecognizer.from_transducer(
    encoder=f"{d}/encoder{suffix}", decoder=f"{d}/decoder{suffix}", joiner=f"{d}/joiner{suffix}",
    tokens=f"{d}/tokens.txt", num_threads=1, sample_rate=16000, feature_dim=80,
    decoding_method=method, max_active_paths=int(beam), model_type=model_type)
streams = []
for path in sys.argv[6:]:
    samples, sr = sf.read(path, dtype="float32")
    s = rec.create_stream()
    s.accept_waveform(sr, samples)
    streams.append(s)
rec.decode_streams(streams)
print(json.dumps([{"text": s.result.text, "tokens": list(s.result.tokens),
                   "timestamps": list(s.result.timestamps)} for s in streams]))
"""


def run_sherpa(onnx_dir, wavs, model_type: str = "transducer", suffix: str = ".onnx",
               method: str = "greedy_search", beam_size: int = 4) -> list[dict]:
    """Decode ``wavs`` with sherpa-onnx's OfflineRecognizer in a subprocess: per file, its
    ``text``, ``tokens`` and ``timestamps`` (seconds)."""
    proc = subprocess.run(
        [sys.executable, "-c", SHERPA_SCRIPT, str(onnx_dir), model_type, suffix, method, str(beam_size),
         *map(str, wavs)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"sherpa-onnx died (rc={proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_same_as_sherpa(sherpa: list[dict], ours: list[tuple]) -> None:
    """asrkit's ``transcribe(..., timestamps=True)`` output equals sherpa-onnx's results:
    tokens, words and per-token times."""
    assert len(sherpa) == len(ours)
    for theirs, (path, text, stamps) in zip(sherpa, ours):
        # sherpa-onnx shows sentencepiece's word-start mark "▁" as a space in result.tokens
        ours_tokens = [tok.replace("▁", " ") for tok, _ in stamps]
        assert ours_tokens == [tok.replace("▁", " ") for tok in theirs["tokens"]], path
        assert text.split() == theirs["text"].split(), path
        # both: encoder frame index x 4 (subsampling) x 10 ms
        assert [t for _, t in stamps] == pytest.approx(theirs["timestamps"], abs=1e-4)


@pytest.mark.parametrize(
    "model_type,method",
    [("transducer", "greedy_search"), ("", "greedy_search"),  # "" makes sherpa-onnx read encoder metadata
     ("transducer", "modified_beam_search")],
)
def test_sherpa_onnx_equals_asrkit(exported, tmp_path, model_type, method):  # noqa: F811
    from asrkit.inference import load_model, transcribe

    wavs = make_wavs(tmp_path / "wavs")
    onnx_dir = exported["root"] / "onnx"
    sherpa = run_sherpa(onnx_dir, wavs, model_type, method=method, beam_size=4)
    model = load_model(onnx_dir)
    ours = transcribe(model, wavs, method, batch_size=2, timestamps=True, **(
        {"beam_size": 4} if method == "modified_beam_search" else {}))
    assert any(r["tokens"] for r in sherpa), "untrained model emitted nothing; the test would be vacuous"
    assert_same_as_sherpa(sherpa, ours)


def test_sherpa_onnx_loads_int8_files(exported, tmp_path):  # noqa: F811
    wavs = make_wavs(tmp_path / "wavs")[:1]
    result = run_sherpa(exported["root"] / "onnx", wavs, "transducer", ".int8.onnx")
    assert len(result) == 1
