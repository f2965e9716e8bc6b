"""``asrkit export --streaming`` (TorchScript and ONNX) and ``asrkit transcribe --streaming`` through the CLI, on
the causal zipformer of test_streaming_cli (trained a few steps on the tone corpus), and the online fbank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_export_stage import exp_dir  # noqa: F401  (fixture: a non-causal experiment)
from test_export_formats import exported  # noqa: F401  (fixture used by exp_dir)
from test_streaming_cli import EPOCHS, causal_exp  # noqa: F401  (fixture)
from test_training import prepared  # noqa: F401  (fixture)
from typer.testing import CliRunner

from asrkit.cli.main import app
from asrkit.errors import ConfigError

CHUNK, LEFT = "32", "64"


@pytest.fixture(scope="module")
def streaming_exports(causal_exp, prepared):  # noqa: F811
    out = causal_exp.parent / "exported"
    res = CliRunner().invoke(app, ["export", "--exp-dir", str(causal_exp), "--epoch", str(EPOCHS), "--lang-dir",
                                   str(prepared["lang"]), "--format", "torchscript", "--format", "onnx", "--streaming",
                                   "--chunk-size", CHUNK, "--left-context-frames", LEFT, "--output-dir", str(out)])
    assert res.exit_code == 0, res.output
    return {"jit": out / "torchscript-streaming" / "jit_script_streaming.pt", "onnx": out / "onnx-streaming"}


def test_online_fbank_equals_whole_file_fbank():
    from asrkit.data.features import compute_fbank
    from asrkit.streaming_features import OnlineFbank

    rng = np.random.default_rng(0)
    for n in (16123, 5000, 300):
        x = (0.1 * rng.standard_normal(n)).astype(np.float32)
        for piece in (1600, 777, 160):
            fb = OnlineFbank()
            parts = [fb.accept_waveform(x[s : s + piece]) for s in range(0, n, piece)] + [fb.input_finished()]
            got, ref = torch.cat(parts), compute_fbank(x)
            assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-5), (n, piece)


def test_streaming_export_files(streaming_exports):
    from asrkit.export.onnx_streaming import validate_streaming_onnx_export

    assert streaming_exports["jit"].is_file()
    meta = validate_streaming_onnx_export(streaming_exports["onnx"], int8=True)["encoder"]
    assert meta["chunk_size"] == CHUNK and meta["left_context_frames"] == LEFT


def _wavs(prepared, n: int = 2) -> list[Path]:  # noqa: F811
    from lhotse import CutSet

    cuts = list(CutSet.from_file(prepared["test"]))[:n]
    return [Path(c.recording.sources[0].source) for c in cuts]


def _transcribe(model: Path, wavs: list[Path], *extra: str) -> list[tuple[str, str, float, str]]:
    res = CliRunner().invoke(app, ["transcribe", "--streaming", "--model", str(model), "--blank-penalty", "4",
                                   *extra, *map(str, wavs)])
    assert res.exit_code == 0, res.output
    rows = [line.split("\t") for line in res.stdout.splitlines() if line.startswith(("partial\t", "final\t"))]
    return [(tag, path, float(t), text) for tag, path, t, text in rows]


def test_transcribe_streaming_prints_partials_then_the_chunkwise_decoding(streaming_exports, causal_exp, prepared):  # noqa: F811,E501
    from asrkit.data.audio import read_audio
    from asrkit.data.features import compute_fbank
    from asrkit.data.tokenizer import Tokenizer
    from asrkit.decoding.streaming import decode_streaming
    from asrkit.training.selection import Selection, load_selected_model

    wavs = _wavs(prepared)
    rows = _transcribe(streaming_exports["jit"], wavs)
    model, _ = load_selected_model(causal_exp, Selection(epoch=EPOCHS), device="cpu")
    model.encoder.set_decoding_chunk(int(CHUNK), int(LEFT))
    tokenizer = Tokenizer.load(prepared["lang"] / "bpe.model")
    ref = decode_streaming(model, [(str(w), compute_fbank(*read_audio(w))) for w in wavs], "greedy_search", 1,
                           blank_penalty=4.0, unk_id=tokenizer.unk_id)
    for wav, r in zip(wavs, ref):
        mine = [row for row in rows if row[1] == str(wav)]
        partials, final = mine[:-1], mine[-1]
        assert final[0] == "final" and final[3] == tokenizer.decode([r.tokens])[0] and final[3], wav
        assert partials and all(p[0] == "partial" for p in partials), wav
        times = [p[2] for p in partials]
        assert times == sorted(times) and times[-1] <= final[2]
        assert all(final[3].startswith(p[3]) for p in partials)  # greedy only appends tokens
    # the ONNX export decodes the same full chunks (its last, padded chunk is not masked: no x_lens in the file)
    onnx_rows = _transcribe(streaming_exports["onnx"], wavs)
    assert [r for r in onnx_rows if r[0] == "partial"] == [r for r in rows if r[0] == "partial"]
    assert all(r[3] for r in onnx_rows if r[0] == "final")


def test_real_time_feeding_takes_the_audio_duration(streaming_exports, prepared):  # noqa: F811
    import time

    import soundfile as sf

    wav = _wavs(prepared, 1)[0]
    duration = sf.info(str(wav)).duration
    started = time.perf_counter()
    rows = _transcribe(streaming_exports["jit"], [wav], "--real-time")
    assert time.perf_counter() - started >= duration - 0.15  # fed at real time: not before the audio's end
    assert rows[-1][0] == "final"


def test_non_causal_models_are_refused(exp_dir):  # noqa: F811
    exp, lang, _ = exp_dir
    for fmt in ("onnx", "torchscript"):
        res = CliRunner().invoke(app, ["export", "--exp-dir", str(exp), "--epoch", "1", "--lang-dir", str(lang),
                                       "--format", fmt, "--streaming"])
        assert isinstance(res.exception, ConfigError) and "causal" in str(res.exception), res.output
    assert not (exp / "exported" / "onnx-streaming").exists()


def test_offline_model_is_not_a_streaming_export(exp_dir, tmp_path):  # noqa: F811
    from asrkit.errors import CheckpointError
    from asrkit.streaming_model import load_streaming_model

    exp, lang, _ = exp_dir
    res = CliRunner().invoke(app, ["export", "--exp-dir", str(exp), "--epoch", "1", "--lang-dir", str(lang),
                                   "--format", "onnx", "--no-int8", "--output-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    with pytest.raises(CheckpointError, match="not a streaming one"):
        load_streaming_model(tmp_path / "onnx")


def test_unreadable_files_do_not_stop_streaming_transcription(streaming_exports, prepared, tmp_path):  # noqa: F811
    wavs = _wavs(prepared)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    bad = [tmp_path / "missing.wav", tmp_path / "empty.wav", tmp_path / "corrupt.wav"]
    files = [bad[0], wavs[0], bad[1], wavs[1], bad[2]]
    res = CliRunner().invoke(app, ["transcribe", "--streaming", "--model", str(streaming_exports["onnx"]),
                                   *map(str, files)])
    assert res.exit_code == 1, res.output
    finals = [line.split("\t")[1] for line in res.stdout.splitlines() if line.startswith("final\t")]
    assert finals == [str(w) for w in wavs]  # the readable files, in order, each to its final result
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and all(b.name in e for b, e in zip(bad, errors)), res.stderr
    assert res.stderr.strip().splitlines()[-1] == "transcribed 2 of 5 files; 3 could not be read"
    assert "Traceback" not in res.output


def test_speech_onset_is_the_first_loud_frame():
    from asrkit.bench.streaming import speech_onset

    x = np.zeros(16000, dtype=np.float32)
    x[5000:] = 0.3 * np.sin(np.arange(11000) * 0.2)
    x[:5000] = 1e-4 * np.random.default_rng(0).standard_normal(5000)  # -70 dB of hiss before the onset
    assert speech_onset(x) == pytest.approx(0.31, abs=0.011)  # frame 31 is the first to include the tone's start
    assert speech_onset(x[5000:]) == 0.0


def test_bench_streaming_measures_each_export(streaming_exports, prepared):  # noqa: F811
    from asrkit.bench.streaming import bench_streaming
    from asrkit.streaming_model import load_streaming_model

    wavs = _wavs(prepared, 4)
    fig = bench_streaming(streaming_exports["onnx"], wavs, streams=(1, 2), blank_penalty=4.0)
    model, _ = load_streaming_model(streaming_exports["onnx"])
    assert fig.chunk_seconds == pytest.approx(2 * int(CHUNK) * 0.01)
    assert fig.left_context_seconds == pytest.approx(int(LEFT) * 0.02)
    assert fig.state_bytes == sum(s.numel() * s.element_size() for s in model.get_init_states(1))
    assert 0 < fig.chunk_compute_mean <= fig.chunk_compute_p95 and fig.rtf > 0
    # the blank penalty makes the model emit in its first chunks: the first partial is at most two chunks (plus
    # the right context and compute) after the onset
    assert 0 < fig.first_partial_mean <= fig.first_partial_max < 2 * fig.chunk_seconds + 0.5
    assert list(fig.capacity)[0] == 1 and all(c > 0 for c in fig.capacity.values())

    res = CliRunner().invoke(app, ["bench", "streaming", "--model", str(streaming_exports["jit"]), "--model",
                                   str(streaming_exports["onnx"]), "--wav-dir", str(wavs[0].parent), "--max-files",
                                   "3", "--streams", "1", "--streams", "2", "--threads", "1"])
    assert res.exit_code == 0, res.output
    rows = [line for line in res.stdout.splitlines() if line.startswith("| ") and "ms |" in line]
    assert len(rows) == 2 and "jit_script_streaming.pt" in rows[0] and "onnx-streaming" in rows[1], res.stdout


def test_bench_chunk_steps_include_the_partial_result(streaming_exports, prepared, monkeypatch):  # noqa: F811
    """Every timed chunk step takes the partial result, as a live client does (not only until the first token)."""
    import asrkit.decoding.streaming as streaming
    from asrkit.bench.streaming import _load, _one_stream
    from asrkit.streaming_model import load_streaming_model

    model, tokenizer = load_streaming_model(streaming_exports["jit"])
    utt_id, feats = max(_load(_wavs(prepared, 6))[0], key=lambda u: u[1].shape[0])
    calls = []
    real = streaming.stream_result

    def counted(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(len(result.tokens))
        return result

    monkeypatch.setattr(streaming, "stream_result", counted)
    times, first = _one_stream(model, utt_id, feats, "greedy_search", {"unk_id": tokenizer.unk_id,
                                                                        "blank_penalty": 4.0})
    assert first is not None and any(calls[:-1])  # tokens appear before the last chunk step...
    assert len(calls) == len(times)  # ...and every later step still takes the partial result
