"""sherpa-onnx loads asrkit's ONNX export and decodes exactly like asrkit.

sherpa-onnx ends the whole process on a bad model file, so it always runs in a subprocess
(:mod:`asrkit.export.sherpa_onnx`).
The model is untrained: both sides produce the same "garbage", which is still an exact test
of features, context handling, decoder/joiner wiring and detokenisation.
"""

from __future__ import annotations

import pytest

from test_export_formats import exported, make_wavs  # noqa: F401  (fixture)

pytest.importorskip("sherpa_onnx")


def run_sherpa(onnx_dir, wavs, model_type: str = "transducer", suffix: str = ".onnx",
               method: str = "greedy_search", beam_size: int = 4, blank_penalty: float = 0.0) -> list[dict]:
    """sherpa-onnx's per-file ``text``, ``tokens`` and ``timestamps`` (seconds) for ``wavs``."""
    from asrkit.export.sherpa_onnx import run_sherpa_onnx

    return run_sherpa_onnx(onnx_dir, wavs, method=method, beam_size=beam_size, model_type=model_type,
                           suffix=suffix, blank_penalty=blank_penalty, timeout=120).results


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
