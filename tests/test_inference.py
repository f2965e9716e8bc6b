"""transcribe(): batching, formats, timestamps and error reporting."""

from __future__ import annotations

import pytest

from asrkit.errors import ConfigError, DataError
from asrkit.inference import load_model, transcribe
from test_export_formats import exported, make_wavs  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    return make_wavs(tmp_path_factory.mktemp("wavs"))


def test_batching_and_order_do_not_change_results(exported, wavs):  # noqa: F811
    model = load_model(exported["root"] / "pretrained.pt")
    one = transcribe(model, wavs, batch_size=1)
    many = transcribe(model, list(reversed(wavs)), batch_size=3)
    assert [p for p, _ in one] == [str(w) for w in wavs]
    assert list(reversed(many)) == one
    assert any(text for _, text in one)


def test_formats_transcribe_alike(exported, wavs):  # noqa: F811
    root = exported["root"]
    ref = transcribe(root / "pretrained.pt", wavs, "modified_beam_search", beam_size=3)
    assert transcribe(root / "jit", wavs, "modified_beam_search", beam_size=3) == ref
    assert transcribe(root / "onnx", wavs, "modified_beam_search", beam_size=3) == ref


def test_timestamps(exported, wavs):  # noqa: F811
    import soundfile as sf

    model = load_model(exported["root"] / "onnx")
    for path, text, stamps in transcribe(model, wavs, timestamps=True):
        duration = sf.info(path).duration
        times = [t for _, t in stamps]
        assert times == sorted(times) and all(0 <= t <= duration for t in times)
        assert "".join(tok for tok, _ in stamps).replace("\u2581", " ").split() == text.split()


def test_other_sample_rates_are_resampled(exported, tmp_path, wavs):  # noqa: F811
    import soundfile as sf

    from asrkit.data.audio import read_audio, resample

    samples, sr = read_audio(wavs[0])
    sf.write(tmp_path / "8k.wav", resample(samples, sr, 8000), 8000)
    ((_, text),) = transcribe(exported["root"] / "onnx", [tmp_path / "8k.wav"])
    assert isinstance(text, str)


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt"])
def test_bad_audio_is_a_data_error_naming_the_file(exported, tmp_path, wavs, kind):  # noqa: F811
    bad = tmp_path / f"{kind}.wav"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "corrupt":
        bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 3)
    with pytest.raises(DataError, match=bad.name):
        transcribe(exported["root"] / "onnx", [wavs[0], bad])


def test_unknown_method(exported, wavs):  # noqa: F811
    with pytest.raises(ConfigError, match="fastest_search") as err:
        transcribe(exported["root"] / "onnx", wavs, method="fastest_search")
    assert "modified_beam_search" in err.value.hint
