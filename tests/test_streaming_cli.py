"""``asrkit decode --chunk-size/--left-context-frames`` (simulated streaming) and ``--streaming`` (chunk-wise,
a pool of live streams) on a causal zipformer trained for a few steps on the tone corpus, and the streaming preset."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from test_streaming_encoder import tiny_causal_config
from test_training import prepared, tiny_config  # noqa: F401  (fixture)
from typer.testing import CliRunner

from asrkit.cli.main import app
from asrkit.config import load_train_config
from asrkit.errors import ConfigError
from asrkit.models import presets
from asrkit.models.build import build_transducer, count_parameters
from asrkit.models.config import EncoderConfig

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 2


@pytest.fixture(scope="module")
def causal_exp(prepared, tmp_path_factory):  # noqa: F811
    from asrkit.training.loop import TrainJob, train

    cfg = tiny_config(num_epochs=EPOCHS)
    cfg.model.encoder = EncoderConfig(type="zipformer", feature_norm="none",
                                      zipformer=tiny_causal_config(16, 32, chunk_size=(16, 32), left_context_frames=(32, 64)))
    exp = tmp_path_factory.mktemp("causal") / "exp"
    train(TrainJob(exp_dir=exp, train_cuts=prepared["train"], lang_dir=prepared["lang"], device="cpu", progress=False),
          cfg)
    return exp


def _decode(exp: Path, prepared, method: str, *extra: str) -> dict[str, str]:  # noqa: F811
    args = ["decode", "--exp-dir", str(exp), "--epoch", str(EPOCHS), "--avg", "1", "--lang-dir", str(prepared["lang"]),
            "--cuts", str(prepared["test"]), "--method", method, "--blank-penalty", "4", *extra]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


def _recogs(exp: Path, method: str, tag: str) -> str:
    (path,) = (exp / method).glob(f"recogs-test-epoch-{EPOCHS}-avg-1{tag}-blank-penalty-4.txt")
    return path.read_text()


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search"])
def test_decode_streaming_equals_simulated_streaming(causal_exp, prepared, method):  # noqa: F811
    _decode(causal_exp, prepared, method, "--chunk-size", "32", "--left-context-frames", "64")
    out = _decode(causal_exp, prepared, method, "--chunk-size", "32", "--left-context-frames", "64", "--streaming",
                  "--num-decode-streams", "2")
    assert "%WER" in out
    simulated = _recogs(causal_exp, method, "-chunk-32-left-64")
    streaming = _recogs(causal_exp, method, "-chunk-32-left-64-streaming")
    assert "hyp=[]" not in simulated.replace(" ", "")  # the blank penalty makes every hypothesis non-empty
    assert streaming == simulated


def test_chunk_options_are_checked(causal_exp, prepared):  # noqa: F811
    res = CliRunner().invoke(app, ["decode", "--exp-dir", str(causal_exp), "--epoch", str(EPOCHS), "--lang-dir",
                                   str(prepared["lang"]), "--cuts", str(prepared["test"]), "--chunk-size", "12"])
    assert isinstance(res.exception, ConfigError)  # `asrkit` prints it as one line and exits 1
    assert "--chunk-size: 12 must be -1 or a positive multiple of" in str(res.exception)
    res = CliRunner().invoke(app, ["decode", "--exp-dir", str(causal_exp), "--epoch", str(EPOCHS), "--lang-dir",
                                   str(prepared["lang"]), "--cuts", str(prepared["test"]), "--streaming",
                                   "--left-context-frames", "-1"])
    assert isinstance(res.exception, ConfigError) and "finite left context" in str(res.exception)


def test_streaming_preset_builds_and_streams():
    cfg = load_train_config(REPO / "recipes" / "zipformer-xs-streaming.yaml")
    z = cfg.model.encoder.zipformer
    offline = presets.zipformer_xs(feature_norm="running_mean")
    causal = dataclasses.replace(offline.encoder, zipformer=dataclasses.replace(offline.encoder.zipformer, causal=True))
    assert cfg.model == dataclasses.replace(offline, encoder=causal), "only causal and feature_norm may differ"
    model = build_transducer(cfg.model).eval()
    n = count_parameters(model)
    print(f"zipformer-xs-streaming: {n:,} parameters")
    assert 1_000_000 < n < 5_000_000
    chunk, left = model.encoder.streaming_chunk_config()
    assert (chunk, left) == (z.chunk_size[0], z.left_context_frames[0])
    window, shift = model.encoder.streaming_input_frames()
    states = model.encoder.get_init_states(2)
    x = torch.randn(2, window, cfg.model.feature_dim)
    with torch.no_grad():
        out, out_lens, new = model.encoder.streaming_forward(x, torch.tensor([window, window]), states)
    assert out.shape == (2, chunk // 2, model.encoder.output_dim) and out_lens.tolist() == [chunk // 2] * 2
    assert [s.shape for s in new] == [s.shape for s in states] and new[-1].tolist() == [chunk, chunk]
    with pytest.raises(ConfigError):
        model.encoder.set_decoding_chunk(chunk_size=12)


def test_decode_writes_the_per_speaker_report(causal_exp, prepared):  # noqa: F811
    """The per-speaker WERs of `asrkit decode` add up to the test set's WER (the tone corpus has two speakers)."""
    from lhotse import CutSet

    _decode(causal_exp, prepared, "greedy_search")
    out = causal_exp / "greedy_search"
    (report,) = out.glob(f"wer-by-speaker-test-epoch-{EPOCHS}-avg-1-blank-penalty-4.txt")
    header, *rows = [line.split("\t") for line in report.read_text().splitlines()]
    assert header == ["speaker", "voice", "utterances", "words", "errors", "WER"]
    cuts = CutSet.from_file(prepared["test"])
    assert sorted(r[0] for r in rows) == sorted({c.supervisions[0].speaker for c in cuts})
    assert sum(int(r[2]) for r in rows) == len(cuts)
    words, errors = sum(int(r[3]) for r in rows), sum(int(r[4]) for r in rows)
    (summary,) = out.glob(f"wer-summary-test-epoch-{EPOCHS}-avg-1-blank-penalty-4.txt")
    assert float(summary.read_text().splitlines()[1].split("\t")[1]) == pytest.approx(100 * errors / words, abs=0.006)
