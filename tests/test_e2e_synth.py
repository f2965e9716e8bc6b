"""End to end: egs/synth/run.sh on a tiny generated corpus, every stage, through the real CLI.

The model must learn: greedy WER on its own (small) training set must fall below TRAIN_WER_THRESHOLD, far
below the ~100% of an untrained transducer (which emits nothing or garbage).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from asrkit.config import TrainConfig, save_yaml
from asrkit.training.distributed import resolve_world_size

REPO = Path(__file__).resolve().parents[1]
TRAIN_WER_THRESHOLD = 50.0  # percent; an untrained model scores ~100%
EPOCHS = 40
HOURS = "0.08"
PENALTY = "0.5"  # egs/synth/run.sh's default --blank-penalty; its decode reports carry it in their names

pytestmark = pytest.mark.slow


def _tiny_recipe(path: Path) -> Path:
    """conformer-lite-xs with plain AdamW and no augmentation: on a tiny corpus it memorizes within a few minutes."""
    from asrkit.models.presets import conformer_lite_xs

    cfg = TrainConfig(model=conformer_lite_xs(), num_epochs=EPOCHS, seed=1, average_period=10, log_interval=50)
    cfg.optim.name, cfg.optim.base_lr, cfg.optim.scheduler = "adamw", 1e-3, "warmup_inverse_sqrt"
    cfg.optim.warmup_batches = 50
    cfg.loss.warm_step, cfg.loss.ctc_loss_scale = 100, 0.1
    # 20 s per process: run.sh trains with --world-size auto, i.e. 2 DDP processes on a 2-core machine, 40 s a step
    cfg.data.max_duration, cfg.data.num_workers, cfg.data.spec_augment = 20.0, 0, False
    save_yaml(cfg, path)
    return path


def _run(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, **kw)


def _assert_sherpa_onnx_agrees(onnx_dir: Path, wavs: list[Path]) -> None:
    """sherpa-onnx's OfflineRecognizer and asrkit give the same tokens, words and times on ``wavs``."""
    from test_export_sherpa import assert_same_as_sherpa, run_sherpa

    from asrkit.inference import load_model, transcribe

    assert len(wavs) >= 12, wavs
    model = load_model(onnx_dir)
    # (sherpa-onnx applies only positive blank penalties; the untrained model of test_export_sherpa.py never emits
    # blank, so the trained one is where a penalty can show)
    plain = {}
    for method, opts in (("greedy_search", {}), ("modified_beam_search", {"beam_size": 4}),
                         ("greedy_search", {"blank_penalty": 1.0}),
                         ("modified_beam_search", {"beam_size": 4, "blank_penalty": 1.0})):
        ours = transcribe(model, wavs, method, batch_size=8, timestamps=True, **opts)
        assert sum(bool(text) for _, text, _ in ours) >= len(wavs) // 4, ours  # a trained model says something
        assert_same_as_sherpa(run_sherpa(onnx_dir, wavs, method=method, beam_size=4,
                                         blank_penalty=opts.get("blank_penalty", 0.0)), ours)
        if "blank_penalty" in opts:
            assert ours != plain[method], f"{method}: a blank penalty of 1.0 changed nothing"
        else:
            plain[method] = ours


def test_synth_recipe_end_to_end(tmp_path):
    recipe = _tiny_recipe(tmp_path / "tiny.yaml")
    work = tmp_path / "work"
    proc = _run(["bash", str(REPO / "egs/synth/run.sh"), "--work-dir", str(work), "--hours", HOURS,
                 "--recipe", str(recipe), "--exp-dir", "exp/tiny", "--vocab-size", "60", "--avg", "2"], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    processes = resolve_world_size("auto")  # run.sh's default; the rule itself is tested in test_training.py
    # run.sh's default corpus: festival and Pico speakers on top of the 100 espeak-ng ones
    params = json.loads((work / "data/synth/.completed").read_text())["params"]
    assert params["engine_mix"] == [["espeak", 4.0], ["festival", 1.0], ["pico", 1.0]]
    assert params["train_speakers"] == 150 and params["eval_engine"] == "flite"
    assert f"world size: {processes}" in (work / "exp/tiny/log/train.log").read_text()
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"%WER = \d+\.\d\d", last), last

    exp = work / "exp/tiny"
    for name in ("config.yaml", f"epoch-{EPOCHS}.pt", f"epoch-{EPOCHS}-avg-2-use-averaged-model.pt", "exported/pretrained.pt",
                 "exported/onnx/encoder.onnx", "exported/onnx/decoder.onnx", "exported/onnx/joiner.onnx"):
        assert (exp / name).exists(), name
    # stage 5 decodes with greedy search and the reported method (modified beam search by default)
    assert list((exp / "greedy_search").glob("errs-test-*.txt"))
    mbs_summary = (exp / "modified_beam_search" /
                   f"wer-summary-test-epoch-{EPOCHS}-avg-2-use-averaged-model-blank-penalty-{PENALTY}.txt")
    assert float(mbs_summary.read_text().splitlines()[1].split()[1]) == float(last.split("=")[1])
    # and the test set of the engine left out of training (flite by default), printed before the unseen voices'
    left_out = (exp / "modified_beam_search" /
                f"wer-summary-test_flite-epoch-{EPOCHS}-avg-2-use-averaged-model-blank-penalty-{PENALTY}.txt")
    left_out_wer = float(left_out.read_text().splitlines()[1].split()[1])
    assert f"%WER[test_flite] = {left_out_wer:.2f}" in proc.stdout
    # per voice: every speaker of the left-out set was spoken by flite
    per_voice = left_out.with_name(left_out.name.replace("wer-summary-", "wer-by-speaker-"))
    rows = [line.split("\t") for line in per_voice.read_text().splitlines()[1:]]
    assert rows and all(row[1].startswith("flite ") for row in rows), rows
    # stage 7 printed "<path>\t<transcript>" lines
    assert re.search(r"\.wav\t", proc.stdout)

    # the model learned: WER on its own training utterances (no speed-perturbed copies)
    decode = _run([sys.executable, "-m", "asrkit.cli.main", "decode", "--exp-dir", "exp/tiny", "--epoch", str(EPOCHS),
                   "--avg", "2", "--use-averaged-model", "--lang-dir", "data/lang",
                   "--cuts", "data/fbank/synth_cuts_train.jsonl.gz", "--timestamps"], cwd=work)
    assert decode.returncode == 0, decode.stderr[-3000:]
    stamps = (exp / "greedy_search" / f"timestamps-train-epoch-{EPOCHS}-avg-2-use-averaged-model.txt").read_text()
    assert re.search(r"^\S+\t\S+@\d+\.\d\d", stamps, flags=re.M), stamps[:500]
    wer = float(re.search(r"%WER = (\d+\.\d+)", decode.stdout).group(1))
    assert wer < TRAIN_WER_THRESHOLD, f"training-set WER {wer}% is not below {TRAIN_WER_THRESHOLD}%"

    # a token 3-gram from the training transcripts, fused into modified beam search
    lm = _run([sys.executable, "-m", "asrkit.cli.main", "prepare", "lm", "--cuts", "data/fbank/synth_cuts_train.jsonl.gz",
               "--lang-dir", "data/lang", "--order", "3", "--dev-cuts", "data/fbank/synth_cuts_dev.jsonl.gz"], cwd=work)
    assert lm.returncode == 0 and (work / "data/lang/lm-3gram.arpa").is_file(), lm.stderr[-2000:]
    assert "perplexity on data/fbank/synth_cuts_dev.jsonl.gz" in (work / "data/lang/log/lm.log").read_text()
    fused = _run([sys.executable, "-m", "asrkit.cli.main", "decode", "--exp-dir", "exp/tiny", "--epoch", str(EPOCHS),
                  "--avg", "2", "--use-averaged-model", "--lang-dir", "data/lang", "--method", "modified_beam_search",
                  "--lm", "data/lang/lm-3gram.arpa", "--lm-scale", "0.2",
                  "--cuts", "data/fbank/synth_cuts_train.jsonl.gz"], cwd=work)
    assert fused.returncode == 0, fused.stderr[-3000:]
    fused_wer = float(re.search(r"%WER = (\d+\.\d+)", fused.stdout).group(1))
    assert fused_wer < TRAIN_WER_THRESHOLD
    assert (exp / "modified_beam_search" /
            f"wer-summary-train-epoch-{EPOCHS}-avg-2-use-averaged-model-lm-3gram-scale-0.2.txt").is_file()
    greedy_lm = _run([sys.executable, "-m", "asrkit.cli.main", "decode", "--exp-dir", "exp/tiny", "--epoch", str(EPOCHS),
                      "--lang-dir", "data/lang", "--lm", "data/lang/lm-3gram.arpa",
                      "--cuts", "data/fbank/synth_cuts_train.jsonl.gz"], cwd=work)
    assert greedy_lm.returncode == 1 and "does not accept option(s) lm" in greedy_lm.stderr, greedy_lm.stderr[-2000:]

    # re-running finished stages skips them quickly and gives the same WER line
    again = _run(["bash", str(REPO / "egs/synth/run.sh"), "--work-dir", str(work), "--hours", HOURS,
                  "--recipe", str(recipe), "--exp-dir", "exp/tiny", "--vocab-size", "60", "--avg", "2",
                  "--stage", "0", "--stop-stage", "3"], cwd=REPO)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "skipped" in again.stderr + again.stdout

    # exported models decode the test set too: fp32 ONNX gives the PyTorch WER, int8 ONNX is reported beside it
    wers = {}
    for tag, extra in (("onnx", []), ("onnx-int8", ["--int8"])):
        res = _run([sys.executable, "-m", "asrkit.cli.main", "decode", "--exp-dir", "exp/tiny", "--model",
                    str(exp / "exported/onnx"), *extra, "--blank-penalty", PENALTY,
                    "--cuts", "data/fbank/synth_cuts_test.jsonl.gz"], cwd=work)
        assert res.returncode == 0, res.stderr[-2000:]
        wers[tag] = float(re.search(r"%WER = (\d+\.\d+)", res.stdout).group(1))
        assert (exp / "greedy_search" / f"wer-summary-test-{tag}-blank-penalty-{PENALTY}.txt").exists()
    greedy_summary = (exp / "greedy_search" /
                      f"wer-summary-test-epoch-{EPOCHS}-avg-2-use-averaged-model-blank-penalty-{PENALTY}.txt")
    pytorch_wer = float(greedy_summary.read_text().splitlines()[1].split()[1])
    # the same transcripts up to float rounding of near-ties (tests/test_export_formats.py checks exact equality)
    assert abs(wers["onnx"] - pytorch_wer) <= 1.0, (wers, pytorch_wer)

    # sherpa-onnx decodes the unseen-voice test set exactly as asrkit does, greedy and modified beam search
    # (the test voices, plus training voices on which the tiny model surely says something)
    wavs = sorted((work / "data/synth/wav/test").rglob("*.wav")) + sorted((work / "data/synth/wav/train").rglob("*.wav"))[:8]
    _assert_sherpa_onnx_agrees(exp / "exported/onnx", wavs)

    # the decoding benchmark runs on the export, for asrkit and sherpa-onnx
    bench = _run([sys.executable, "-m", "asrkit.cli.main", "bench", "decode", "--model", str(exp / "exported/pretrained.pt"),
                  "--onnx-dir", str(exp / "exported/onnx"), "--wav-dir", "data/synth/wav/test", "--max-files", "4",
                  "--batch-size", "2", "--threads", "1"], cwd=work)
    assert bench.returncode == 0, bench.stderr[-2000:]
    assert re.search(r"\| asrkit \(pretrained.pt\) \| greedy_search \| 2 \| [\d.]+ \| [\d.]+ \|", bench.stdout)
    assert re.search(r"\| sherpa-onnx \| greedy_search \| 4 \|", bench.stdout)

    # transcribe: a missing, an empty and a corrupt file each give one line naming the file, exit 1
    model = exp / "exported/pretrained.pt"
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    for bad in (tmp_path / "missing.wav", tmp_path / "empty.wav", tmp_path / "corrupt.wav"):
        res = _run([sys.executable, "-m", "asrkit.cli.main", "transcribe", "--model", str(model), str(bad)], cwd=work)
        assert res.returncode == 1
        first = res.stderr.strip().splitlines()[0]
        assert first.startswith("error:") and bad.name in first and "Traceback" not in res.stderr


def _tiny_streaming_recipe(path: Path) -> Path:
    """recipes/zipformer-xs-streaming.yaml's model (causal zipformer-xs, random chunk sizes and left contexts) with
    _tiny_recipe's optimisation, so that it learns the tiny corpus within minutes."""
    from asrkit.config import load_train_config

    cfg = load_train_config(REPO / "recipes" / "zipformer-xs-streaming.yaml")
    cfg.num_epochs, cfg.seed, cfg.max_minutes, cfg.save_every_n = STREAMING_EPOCHS, 1, 0.0, 0
    cfg.optim.name, cfg.optim.base_lr, cfg.optim.scheduler = "adamw", 2e-3, "warmup_inverse_sqrt"
    cfg.optim.warmup_batches = 50
    cfg.loss.warm_step = 100
    cfg.data.max_duration, cfg.data.spec_augment, cfg.data.mel_warp = 20.0, False, 0.0
    save_yaml(cfg, path)
    return path


STREAMING_EPOCHS = 30
# percent: the causal zipformer-xs learns the tiny corpus more slowly than conformer-lite-xs; after these epochs it
# scores ~71 % on its training utterances (seed 1), an untrained one ~100 %
STREAMING_TRAIN_WER_THRESHOLD = 85.0
CHUNK_TAG = "chunk-16-left-64"  # egs/synth/run.sh's default --chunk-size / --left-context-frames


def test_synth_streaming_stages(tmp_path):
    """Stages 9-14 on the corpus of stages 0-2: train the causal model, decode it as simulated streaming and chunk
    by chunk (the same recognitions), export it for sherpa-onnx's OnlineRecognizer (which decodes the trained
    model, fp32 and int8, as asrkit's chunk-wise decoding does), transcribe live with partial results."""
    work = tmp_path / "work"
    common = ["--work-dir", str(work), "--hours", HOURS, "--vocab-size", "60", "--avg", "2"]
    prep = _run(["bash", str(REPO / "egs/synth/run.sh"), *common, "--stage", "0", "--stop-stage", "2"], cwd=REPO)
    assert prep.returncode == 0, prep.stdout[-3000:] + prep.stderr[-3000:]
    recipe = _tiny_streaming_recipe(tmp_path / "tiny-streaming.yaml")
    proc = _run(["bash", str(REPO / "egs/synth/run.sh"), *common, "--streaming-recipe", str(recipe),
                 "--streaming-exp-dir", "exp/tiny-streaming", "--num-decode-streams", "3",
                 "--stage", "9", "--stop-stage", "14"], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = work / "exp/tiny-streaming"
    assert not (work / "exp/zipformer-xs").exists()  # the offline stages did not run

    # stage 14: simulated, then chunk-wise, the left-out engine's set before the unseen voices'; the same numbers
    lines = [line for line in proc.stdout.splitlines() if line.startswith("%WER")]
    wers = {line.split(" = ")[0]: float(line.split(" = ")[1]) for line in lines}
    assert list(wers) == [f"%WER[test_flite, {CHUNK_TAG}]", f"%WER[{CHUNK_TAG}]",
                          f"%WER[test_flite, {CHUNK_TAG}-streaming]", f"%WER[{CHUNK_TAG}-streaming]"], lines
    assert lines[-1] == proc.stdout.strip().splitlines()[-1]
    assert wers[f"%WER[{CHUNK_TAG}]"] == wers[f"%WER[{CHUNK_TAG}-streaming]"] < 100.0
    selection = f"epoch-{STREAMING_EPOCHS}-avg-2-use-averaged-model"
    for method in ("greedy_search", "modified_beam_search"):
        for split in ("test", "test_flite"):
            simulated, chunkwise = (
                (exp / method / f"recogs-{split}-{selection}-{tag}-blank-penalty-{PENALTY}.txt").read_text()
                for tag in (CHUNK_TAG, f"{CHUNK_TAG}-streaming"))
            assert simulated == chunkwise, (method, split)

    # stage 12: the streaming exports; stage 13: partial results, then the final text, per file
    onnx_dir = exp / "exported/onnx-streaming"
    for name in ("encoder.onnx", "encoder.int8.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"):
        assert (onnx_dir / name).is_file(), name
    assert (exp / "exported/torchscript-streaming/jit_script_streaming.pt").is_file()
    rows = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith(("partial\t", "final\t"))]
    assert [r[0] for r in rows].count("final") == 2 and rows[-1][0] == "final", rows

    # the model learned: WER on its own training utterances at 320 ms chunks (simulated: equal to chunk-wise above)
    decode = _run([sys.executable, "-m", "asrkit.cli.main", "decode", "--exp-dir", "exp/tiny-streaming", "--epoch",
                   str(STREAMING_EPOCHS), "--avg", "2", "--use-averaged-model", "--lang-dir", "data/lang",
                   "--chunk-size", "16", "--left-context-frames", "64",
                   "--cuts", "data/fbank/synth_cuts_train.jsonl.gz"], cwd=work)
    assert decode.returncode == 0, decode.stderr[-3000:]
    wer = float(re.search(r"%WER = (\d+\.\d+)", decode.stdout).group(1))
    assert wer < STREAMING_TRAIN_WER_THRESHOLD, f"training-set WER {wer}% is not below {STREAMING_TRAIN_WER_THRESHOLD}%"

    # sherpa-onnx's OnlineRecognizer, fed 0.1 s pieces, recognizes the trained export as asrkit does
    pytest.importorskip("sherpa_onnx")
    from test_streaming_onnx import asrkit_live, wav_features

    from asrkit.export.sherpa_onnx import run_sherpa_onnx_online
    from asrkit.streaming_model import load_streaming_model

    wavs = sorted((work / "data/synth/wav/train").rglob("*.wav"))[:6]
    for suffix in (".onnx", ".int8.onnx"):
        model, tokenizer = load_streaming_model(onnx_dir, int8=suffix == ".int8.onnx")
        theirs = run_sherpa_onnx_online(onnx_dir, wavs, suffix=suffix, piece_seconds=0.1, timeout=300)
        said = 0
        for path, feats, result in zip(wavs, wav_features(wavs), theirs):
            tokens, _ = asrkit_live(model, feats, tokenizer)
            said += bool(tokens)
            assert "".join(tokens).replace("▁", " ").strip() == result["text"].strip(), (suffix, path)
        assert said >= len(wavs) // 2, f"{suffix}: the trained model says nothing on its training utterances"
