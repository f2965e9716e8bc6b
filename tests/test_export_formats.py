"""pretrained.pt, TorchScript and ONNX exports: same outputs and transcripts as PyTorch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from asrkit.decoding.search import run_search
from asrkit.errors import CheckpointError, ExportError
from asrkit.inference import load_model

TEXTS = ["HELLO WORLD", "THE QUICK BROWN FOX", "JUMPS OVER THE LAZY DOG", "YES NO MAYBE GO STOP"]
UTTERANCES = ["hello world", "the quick brown fox", "yes no maybe"]


def tiny_config(vocab_size: int, predictor: str = "stateless"):
    from asrkit.models.config import (
        ConformerLiteConfig, EncoderConfig, JoinerConfig, ModelConfig, PredictorConfig,
    )

    return ModelConfig(
        vocab_size=vocab_size,
        encoder=EncoderConfig(type="conformer_lite", conformer_lite=ConformerLiteConfig(
            dim=32, num_layers=1, num_heads=2, feedforward_dim=64, subsampling_channels=8)),
        predictor=PredictorConfig(type=predictor, embedding_dim=16, context_size=2, lstm_hidden_dim=16),
        joiner=JoinerConfig(dim=24),
    )


def tiny_model(vocab_size: int, predictor: str = "stateless", seed: int = 0):
    """An untrained tiny transducer whose blank is made less likely, so greedy emits tokens."""
    from asrkit.models.build import build_transducer

    torch.manual_seed(seed)
    cfg = tiny_config(vocab_size, predictor)
    model = build_transducer(cfg).eval()
    with torch.no_grad():
        model.joiner.output_linear.bias[0] -= 2.0
    return model, cfg


def make_wavs(directory: Path) -> list[Path]:
    """Speak :data:`UTTERANCES` with espeak-ng and store them as 16 kHz 16-bit wavs."""
    import soundfile as sf

    from asrkit.data.audio import read_audio, resample

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, text in enumerate(UTTERANCES):
        raw = directory / f"raw-{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
        samples, sr = read_audio(raw)
        path = directory / f"utt-{i}.wav"
        sf.write(path, resample(samples, sr, 16000), 16000, subtype="PCM_16")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model exported in all three formats (built once per test module)."""
    from asrkit.data.tokenizer import Tokenizer, train_tokenizer
    from asrkit.export import export_onnx, export_pretrained, export_torchscript
    from asrkit.utils.dataclass_io import to_dict

    root = tmp_path_factory.mktemp("export")
    bpe = train_tokenizer(TEXTS * 5, root / "lang", vocab_size=30)
    tokenizer = Tokenizer.load(bpe)
    model, cfg = tiny_model(tokenizer.vocab_size)
    export_pretrained(model, {"model": to_dict(cfg), "seed": 1}, bpe, root / "pretrained.pt")
    export_torchscript(model, root / "jit", bpe)
    export_onnx(model, root / "onnx", bpe, int8=True)
    return {"root": root, "model": model, "tokenizer": tokenizer, "bpe": bpe, "cfg": cfg}


def _batch(seed: int = 0):
    torch.manual_seed(seed)
    return torch.randn(3, 160, 80), torch.tensor([160, 121, 57])


@pytest.mark.parametrize("fmt", ["pretrained.pt", "jit", "jit/jit_script.pt", "onnx", "onnx/encoder.onnx"])
def test_formats_give_identical_outputs_and_transcripts(exported, fmt):
    model, unk = exported["model"], exported["tokenizer"].unk_id
    loaded = load_model(exported["root"] / fmt)
    x, lens = _batch()
    with torch.no_grad():
        ref_enc, ref_lens = model.encode(x, lens)
        enc, enc_lens = loaded.encode(x, lens)
        assert torch.equal(enc_lens, ref_lens)
        for i, n in enumerate(ref_lens.tolist()):  # padding frames may differ; real frames may not
            torch.testing.assert_close(enc[i, :n], ref_enc[i, :n], atol=1e-4, rtol=1e-4)
    for method in ("greedy_search", "modified_beam_search"):
        ref, ref_ts, _ = run_search(model, x, lens, method, return_timestamps=True, unk_id=unk)
        got, got_ts, _ = run_search(loaded, x, lens, method, return_timestamps=True)
        assert sum(map(len, ref)) > 0
        assert got == ref and got_ts == ref_ts
    assert loaded.decode_tokens(ref) == exported["tokenizer"].decode(ref)


def test_int8_onnx_loads_and_decodes(exported):
    loaded = load_model(exported["root"] / "onnx", int8=True)
    x, lens = _batch()
    tokens, _, _ = run_search(loaded, x, lens, "greedy_search")
    assert len(tokens) == 3
    ref, _, _ = run_search(exported["model"], x, lens, "greedy_search", unk_id=exported["tokenizer"].unk_id)
    # quantisation perturbs an untrained model a little: most tokens must still agree
    from asrkit.decoding.scoring import compute_wer

    results = [(str(i), list(map(str, r)), list(map(str, h))) for i, (r, h) in enumerate(zip(ref, tokens))]
    assert compute_wer(results) < 50.0
    # 7-bit weights keep int8 close on CPUs without VNNI too (8-bit ones saturated there: 18 % off)
    fp32, _ = load_model(exported["root"] / "onnx").encode(x, lens)
    int8, _ = loaded.encode(x, lens)
    assert float((int8 - fp32).norm() / fp32.norm()) < 0.05


def test_onnx_files_metadata(exported):
    import onnxruntime as ort

    out = exported["root"] / "onnx"
    for suffix in (".onnx", ".int8.onnx"):
        sess = {n: ort.InferenceSession(str(out / f"{n}{suffix}"), providers=["CPUExecutionProvider"])
                for n in ("encoder", "decoder", "joiner")}
        enc_meta = sess["encoder"].get_modelmeta().custom_metadata_map
        dec_meta = sess["decoder"].get_modelmeta().custom_metadata_map
        join_meta = sess["joiner"].get_modelmeta().custom_metadata_map
        assert enc_meta["model_type"] == "zipformer2" and enc_meta["version"] == "1"
        assert dec_meta["vocab_size"] == str(exported["tokenizer"].vocab_size)
        assert dec_meta["context_size"] == "2"
        assert join_meta["joiner_dim"] == "24"
        assert [i.name for i in sess["encoder"].get_inputs()] == ["x", "x_lens"]
        assert [o.name for o in sess["joiner"].get_outputs()] == ["logit"]
    tokens = (out / "tokens.txt").read_text().splitlines()
    assert tokens[0] == "<blk> 0" and len(tokens) == exported["tokenizer"].vocab_size


def test_onnx_decoder_maps_minus_one_like_training(exported):
    """sherpa-onnx starts from [-1, blank]: the ONNX decoder must give what the PyTorch
    predictor gives for that context (zero embedding for -1)."""
    loaded = load_model(exported["root"] / "onnx")
    y = torch.tensor([[-1, 0], [0, 0], [3, 5]])
    with torch.no_grad():
        ref = exported["model"].predict(y, need_pad=False)
    got = loaded.predict(y)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got[0], got[1])  # -1 and blank really differ in this model


def test_onnx_rejects_lstm_predictor(exported, tmp_path):
    from asrkit.export import export_onnx

    model, _ = tiny_model(exported["tokenizer"].vocab_size, predictor="lstm")
    with pytest.raises(ExportError, match="stateless"):
        export_onnx(model, tmp_path / "onnx", exported["bpe"])


def test_lstm_predictor_pretrained_and_torchscript_agree(exported, tmp_path):
    from asrkit.export import export_pretrained, export_torchscript
    from asrkit.utils.dataclass_io import to_dict

    model, cfg = tiny_model(exported["tokenizer"].vocab_size, predictor="lstm")
    export_pretrained(model, {"model": to_dict(cfg)}, exported["bpe"], tmp_path / "pretrained.pt")
    export_torchscript(model, tmp_path / "jit", exported["bpe"])
    x, lens = _batch(1)
    ref, _, _ = run_search(model, x, lens, "greedy_search", unk_id=exported["tokenizer"].unk_id)
    assert sum(map(len, ref)) > 0
    for path in (tmp_path / "pretrained.pt", tmp_path / "jit"):
        got, _, _ = run_search(load_model(path), x, lens, "greedy_search")
        assert got == ref


def test_pretrained_payload(exported):
    payload = torch.load(exported["root"] / "pretrained.pt", weights_only=True)
    assert payload["format"] == "asrkit-pretrained" and payload["config"]["seed"] == 1
    assert payload["tokens"] == exported["tokenizer"].symbols
    assert isinstance(payload["tokenizer"], bytes)


def test_pretrained_config_mismatch_is_an_export_error(exported, tmp_path):
    from asrkit.export import export_pretrained
    from asrkit.utils.dataclass_io import to_dict

    cfg = to_dict(exported["cfg"])
    cfg["joiner"]["dim"] = 40
    with pytest.raises(ExportError, match="config does not describe"):
        export_pretrained(exported["model"], {"model": cfg}, exported["bpe"], tmp_path / "p.pt")


def _truncate(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) // 2])
    return dst


def test_corrupt_or_truncated_models_raise_checkpoint_error(exported, tmp_path):
    import shutil

    root = exported["root"]
    bad = [
        _truncate(root / "pretrained.pt", tmp_path / "a" / "pretrained.pt"),
        _truncate(root / "jit" / "jit_script.pt", tmp_path / "b" / "jit_script.pt"),
        tmp_path / "missing.pt",
    ]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "garbage.pt").write_bytes(b"not a model at all")
    bad.append(tmp_path / "c" / "garbage.pt")
    shutil.copytree(root / "onnx", tmp_path / "onnx")
    _truncate(root / "onnx" / "joiner.onnx", tmp_path / "onnx" / "joiner.onnx")
    bad.append(tmp_path / "onnx")
    (tmp_path / "empty").mkdir()
    bad.append(tmp_path / "empty")
    for path in bad:
        with pytest.raises(CheckpointError) as err:
            load_model(path)
        assert "\n" not in str(err.value)
        assert str(path.name) in str(err.value) or str(path) in str(err.value)


def test_ctc_head_survives_export(exported, tmp_path):
    import dataclasses

    from asrkit.export import export_pretrained, export_torchscript
    from asrkit.models.build import build_transducer
    from asrkit.utils.dataclass_io import to_dict

    cfg = dataclasses.replace(tiny_config(exported["tokenizer"].vocab_size), ctc_head=True)
    torch.manual_seed(0)
    model = build_transducer(cfg).eval()
    export_pretrained(model, {"model": to_dict(cfg)}, exported["bpe"], tmp_path / "pretrained.pt")
    export_torchscript(model, tmp_path / "jit", exported["bpe"])
    x, lens = _batch(2)
    ref, ref_ts, _ = run_search(model, x, lens, "ctc_greedy_search", return_timestamps=True)
    assert sum(map(len, ref)) > 0
    for path in (tmp_path / "pretrained.pt", tmp_path / "jit"):
        got, got_ts, _ = run_search(load_model(path), x, lens, "ctc_greedy_search", return_timestamps=True)
        assert got == ref and got_ts == ref_ts


@pytest.mark.parametrize("predictor", ["stateless", "lstm"])
def test_torchscript_falls_back_to_tracing(exported, tmp_path, monkeypatch, predictor):
    """A model that cannot be scripted is traced; the traced file decodes like the model."""
    import dataclasses

    from asrkit.export import export_torchscript
    from asrkit.models.build import build_transducer

    def refuse(*args, **kwargs):
        raise RuntimeError("not scriptable (simulated)")

    cfg = dataclasses.replace(tiny_config(exported["tokenizer"].vocab_size, predictor), ctc_head=True)
    torch.manual_seed(0)
    model = build_transducer(cfg).eval()
    with torch.no_grad():
        model.joiner.output_linear.bias[0] -= 2.0
    monkeypatch.setattr(torch.jit, "script", refuse)
    export_torchscript(model, tmp_path / "jit", exported["bpe"])
    monkeypatch.undo()
    loaded = load_model(tmp_path / "jit")
    x, lens = _batch(3)
    for method in ("greedy_search", "ctc_greedy_search"):
        ref, ref_ts, _ = run_search(model, x, lens, method, return_timestamps=True, unk_id=exported["tokenizer"].unk_id)
        got, got_ts, _ = run_search(loaded, x, lens, method, return_timestamps=True)
        assert sum(map(len, ref)) > 0
        assert got == ref and got_ts == ref_ts
