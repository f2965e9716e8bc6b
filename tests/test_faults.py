"""Fault injection through the command line, as a user meets faults: a training killed at a random moment, bad
audio among good files, checkpoints and tokenizers that do not belong to the experiment.

Each case asserts the exact outcome: exit status, the one error line, what is (not) written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asrkit.training.checkpoint import load_checkpoint
from conftest import assert_same_state, write_tone_corpus

REPO = Path(__file__).resolve().parents[1]
DEMO_PRESET = REPO / "recipes" / "zipformer-xs.yaml"


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """A small generated corpus (~3 minutes of speed-perturbed training audio) with fbank and a tokenizer."""
    from asrkit.data.fbank import compute_fbank_for_splits
    from asrkit.data.prepare_lang import prepare_tokenizer

    root = tmp_path_factory.mktemp("faults")
    manifests = write_tone_corpus(root, n_per_split=48)
    cuts = compute_fbank_for_splits(manifests, "tiny", ["train", "test"], root / "fbank",
                                    speed_perturb_splits=["train"], num_jobs=1)
    prepare_tokenizer(cuts["train"], root / "lang", vocab_size=30)
    return {"train": cuts["train"], "test": cuts["test"], "lang": root / "lang"}


def _demo_train_cmd(data, exp_dir: Path, *extra: str) -> list[str]:
    """The demo's training (its preset, 2 DDP processes as egs/synth trains) with a step budget instead of the
    time budget, so that two runs are comparable step for step."""
    return [sys.executable, "-m", "asrkit.cli.main", "train", "--recipe", str(DEMO_PRESET), "--exp-dir", str(exp_dir),
            "--train-cuts", str(data["train"]), "--lang-dir", str(data["lang"]), "--device", "cpu",
            "--world-size", "2", "--set", "max_minutes=0", "--set", "max_steps=40", "--set", "save_every_n=10",
            "--set", "keep_last_k=10", "--set", "log_interval=1", *extra]


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"training ended (exit {proc.returncode}) before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_of_the_two_process_demo_training_resumes_bit_identically(demo_data, tmp_path):
    """SIGKILL every process of the demo training between two checkpoints (step 25 of 40, checkpoints every 10),
    resume with --resume: the later checkpoints equal the uninterrupted run's bit for bit -- weights, averaged
    model, optimizer state and run state."""
    ref, cut = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run(_demo_train_cmd(demo_data, ref), check=True, capture_output=True)

    proc = subprocess.Popen(_demo_train_cmd(demo_data, cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    log = cut / "log" / "train.log"
    try:
        _wait_for(lambda: (cut / "checkpoint-20.pt").exists(), proc, "checkpoint-20.pt")
        _wait_for(lambda: "(step 25)" in log.read_text(), proc, "step 25")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, as a pre-emption does
        proc.wait()
    assert not (cut / "checkpoint-30.pt").exists(), "killed between checkpoints 20 and 30"
    subprocess.run(_demo_train_cmd(demo_data, cut, "--resume"), check=True, capture_output=True)
    assert "resumed from" in log.read_text() and "checkpoint-20.pt" in log.read_text()

    for step in (30, 40):
        a, b = load_checkpoint(ref / f"checkpoint-{step}.pt"), load_checkpoint(cut / f"checkpoint-{step}.pt")
        for key in ("model", "model_avg", "optimizer", "scheduler", "train_state", "process_states"):
            assert_same_state(a[key], b[key], f"checkpoint-{step}.pt: {key}")


# ---------------------------------------------------------------------------------- bad audio in transcription
@pytest.fixture(scope="module")
def demo_exports(demo_data, tmp_path_factory):
    """The demo preset (random weights, blank made less likely so that it emits tokens) exported in all formats."""
    from asrkit.config import load_train_config
    from asrkit.export import export_onnx, export_pretrained, export_torchscript
    from asrkit.models.build import build_transducer
    from asrkit.utils.dataclass_io import to_dict

    root = tmp_path_factory.mktemp("demo-export")
    bpe = demo_data["lang"] / "bpe.model"
    from asrkit.data.tokenizer import Tokenizer

    cfg = load_train_config(DEMO_PRESET)
    cfg.model.vocab_size = Tokenizer.load(demo_data["lang"]).vocab_size
    torch.manual_seed(0)
    model = build_transducer(cfg.model).eval()
    with torch.no_grad():
        model.joiner.output_linear.bias[0] -= 2.0
    export_pretrained(model, {"model": to_dict(cfg.model)}, bpe, root / "pretrained.pt")
    export_torchscript(model, root / "jit", bpe)
    export_onnx(model, root / "onnx", bpe, int8=False)
    return {"pretrained": root / "pretrained.pt", "torchscript": root / "jit", "onnx": root / "onnx"}


def _wav(path: Path, seconds: float, silent: bool = False) -> Path:
    import numpy as np
    import soundfile as sf

    t = np.arange(int(round(seconds * 16000))) / 16000
    samples = np.zeros_like(t) if silent else 0.3 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    sf.write(path, samples.astype(np.float32), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def bad_and_good_audio(tmp_path_factory):
    """Input files in a fixed order: (path, kind) with kind 'good', 'short', 'silent' (readable) or the reason
    it cannot be read."""
    d = tmp_path_factory.mktemp("audio")
    files = [(_wav(d / "good-1.wav", 1.4), "good")]
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 3)
    files.append((d / "corrupt.wav", "cannot read audio file"))
    (d / "empty.wav").write_bytes(b"")
    files.append((d / "empty.wav", "audio file is empty (0 bytes)"))
    files.append((_wav(d / "zero-length.wav", 0.0), "audio file has no samples"))
    (d / "notes.txt").write_text("not audio at all\n")
    files.append((d / "notes.txt", "cannot read audio file"))
    files.append((d / "missing.wav", "audio file not found"))
    for seconds in (0.01, 0.05, 0.1, 0.2):
        files.append((_wav(d / f"short-{seconds:g}.wav", seconds), "short"))
    files.append((_wav(d / "silent.wav", 1.0, silent=True), "silent"))
    truncated = d / "truncated.wav"
    truncated.write_bytes(_wav(d / "full.wav", 1.0).read_bytes()[:30])  # the header cut mid-way
    files.append((truncated, "cannot read audio file"))
    files.append((_wav(d / "good-2.wav", 2.1), "good"))
    return files


def _transcribe_cli(model: Path, paths: list[Path], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asrkit.cli.main", "transcribe", "--model", str(model),
                           *map(str, paths), *extra], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("fmt", ["pretrained", "torchscript", "onnx"])
def test_bulk_transcription_survives_bad_files(demo_exports, bad_and_good_audio, fmt):
    """Every readable file gets a transcript line (in input order, the same as without the bad files), every
    unreadable one exactly one error line naming it and why, then a summary; exit status 1; no traceback."""
    from asrkit.decoding.utterances import min_input_frames
    from asrkit.inference import load_model

    model = demo_exports[fmt]
    paths = [p for p, _ in bad_and_good_audio]
    proc = _transcribe_cli(model, paths)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr

    readable = [str(p) for p, kind in bad_and_good_audio if kind in ("good", "short", "silent")]
    lines = proc.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == readable
    alone = _transcribe_cli(model, [p for p, kind in bad_and_good_audio if kind == "good"])
    assert alone.returncode == 0, alone.stderr
    good = {line.split("\t")[0]: line for line in alone.stdout.splitlines()}
    assert any(line.split("\t")[1] for line in good.values()), "the model should emit tokens for speech-like audio"
    assert [line for line in lines if line.split("\t")[0] in good] == list(good.values())

    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    unreadable = [(p, why) for p, why in bad_and_good_audio if why not in ("good", "short", "silent")]
    assert len(errors) == len(unreadable)
    for line, (path, why) in zip(errors, unreadable):
        assert str(path) in line and why in line, line
    assert f"transcribed {len(readable)} of {len(paths)} files; {len(unreadable)} could not be read" in proc.stderr

    # too-short audio: an empty transcript plus one note, exactly for the files below the model's minimum
    min_seconds = min_input_frames(load_model(model)) * 0.01
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note: ")]
    shorter = [str(p) for p, kind in bad_and_good_audio if kind == "short" and float(p.stem[6:]) < min_seconds]
    assert shorter and [n.split(": ")[1] for n in notes] == shorter
    assert all(line.split("\t")[1] == "" for line in lines if line.split("\t")[0] in shorter)


def test_the_minimum_input_comes_from_the_model_front_end(demo_exports):
    """min_input_frames is where the encoder starts giving output: one frame less fails or gives none, in every
    format, and it equals the zipformer's own length formula."""
    from asrkit.data.features import FEATURE_PADDING_VALUE
    from asrkit.decoding.utterances import min_input_frames
    from asrkit.inference import load_model

    found = {}
    for fmt, path in demo_exports.items():
        model = load_model(path)
        frames = found[fmt] = min_input_frames(model)
        x = torch.full((1, frames, 80), FEATURE_PADDING_VALUE / 2)
        assert int(model.encode(x, torch.tensor([frames]))[1][0]) >= 1
        try:
            out_len = int(model.encode(x[:, 1:], torch.tensor([frames - 1]))[1][0])
        except Exception:
            out_len = 0
        assert out_len < 1, fmt
    assert len(set(found.values())) == 1, found
    net = load_model(demo_exports["pretrained"]).net
    assert int(net.encoder.output_lengths(torch.tensor([found["pretrained"]]))[0]) >= 1
    assert int(net.encoder.output_lengths(torch.tensor([found["pretrained"] - 1]))[0]) < 1


@pytest.mark.slow
def test_ten_minutes_of_audio_are_transcribed_in_segments(demo_exports, tmp_path):
    """A 10-minute file is decoded in pause-cut segments (whole-file attention would need ~60 GB), in one line."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    parts = []
    for _ in range(260):  # 1.5-2.5 s "utterances" separated by pauses of 0.3-1 s
        t = np.arange(int(rng.uniform(1.5, 2.5) * 16000)) / 16000
        parts.append(0.3 * np.sin(2 * np.pi * rng.uniform(200, 500) * t))
        parts.append(np.zeros(int(rng.uniform(0.3, 1.0) * 16000)))
    audio = np.concatenate(parts)[: 600 * 16000]
    assert audio.size == 600 * 16000
    sf.write(tmp_path / "long.wav", audio.astype(np.float32), 16000, subtype="PCM_16")
    proc = _transcribe_cli(demo_exports["pretrained"], [tmp_path / "long.wav"])
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.split("\t")[0] == str(tmp_path / "long.wav") and line.split("\t")[1]


def test_pause_cuts_keep_segments_short_and_cut_in_pauses():
    from asrkit.decoding.utterances import pause_cuts

    feats = torch.zeros(1000, 80)
    feats[:, :] = 1.0
    feats[230] = -5.0  # a pause inside the search window of the first cut
    feats[480] = -5.0
    starts = pause_cuts(feats, max_frames=300, search_frames=100)
    assert starts[:2] == [0, 230]
    ends = starts[1:] + [1000]
    assert all(0 < e - s <= 300 for s, e in zip(starts, ends))
    assert 480 in starts
    assert pause_cuts(feats, max_frames=2000, search_frames=100) == [0]


# ---------------------------------------------------------------------------------- bad audio in decoding
@pytest.fixture()
def cuts_with_bad_audio(tmp_path):
    """A test cut set read from audio (no stored features): 6 good utterances, a 0.05 s one, a corrupt file and
    a missing file. Returns (cuts path, {kind: cut id})."""
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recs, sups, ids = [], [], {}
    for i in range(9):
        path = _wav(tmp_path / f"utt-{i}.wav", 0.05 if i == 6 else 1.0 + 0.1 * i)
        rec = Recording.from_file(path, recording_id=f"utt-{i}")
        recs.append(rec)
        sups.append(SupervisionSegment(id=rec.id, recording_id=rec.id, start=0.0, duration=rec.duration,
                                       text="YES NO"))
    (tmp_path / "utt-7.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 3)
    (tmp_path / "utt-8.wav").unlink()
    cuts = CutSet.from_manifests(RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups))
    cut_of = {cut.recording_id: cut.id for cut in cuts}
    ids = {"short": cut_of["utt-6"], "corrupt": cut_of["utt-7"], "missing": cut_of["utt-8"]}
    path = tmp_path / "bad_cuts_test.jsonl.gz"
    cuts.to_file(path)
    return path, ids


@pytest.mark.parametrize("audio_backend", ["default", "LibsndfileBackend"])
def test_decode_skips_unreadable_utterances_and_counts_them(demo_exports, demo_data, cuts_with_bad_audio,
                                                            tmp_path, monkeypatch, audio_backend):
    """(Also with lhotse's single LibsndfileBackend, as `asrkit prepare an4` selects: lhotse then re-raises
    soundfile's error in a form that cannot print itself; the line must still say what is wrong.)"""
    if audio_backend == "default":
        monkeypatch.delenv("LHOTSE_AUDIO_BACKEND", raising=False)
    else:
        monkeypatch.setenv("LHOTSE_AUDIO_BACKEND", audio_backend)
    cuts, ids = cuts_with_bad_audio
    cmd = [sys.executable, "-m", "asrkit.cli.main", "decode", "--exp-dir", str(tmp_path / "exp"), "--model",
           str(demo_exports["pretrained"]), "--lang-dir", str(demo_data["lang"]), "--cuts", str(cuts)]
    strict = subprocess.run(cmd, capture_output=True, text=True)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    (error,) = [line for line in strict.stderr.splitlines() if line.startswith("error: ")]
    assert ids["corrupt"] in error or ids["missing"] in error, error
    assert not list((tmp_path / "exp").glob("greedy_search/wer-summary-*"))

    proc = subprocess.run(cmd + ["--skip-bad-audio"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    skipped = tmp_path / "exp" / "greedy_search" / "skipped-test-pretrained.txt"
    assert f"over 7 utterances; 2 skipped for unreadable audio (listed in {skipped})" in proc.stdout
    lines = skipped.read_text().splitlines()
    assert len(lines) == 2 and {ids["corrupt"], ids["missing"]} == {line.split()[1].rstrip(":") for line in lines}
    assert "No 'data' chunk marker" in "".join(lines) and "Traceback" not in "".join(lines)
    recogs = (tmp_path / "exp" / "greedy_search" / "recogs-test-pretrained.txt").read_text()
    assert f"{ids['short']}:\thyp=[]" in recogs  # too short for the front end: an empty hypothesis
    assert ids["corrupt"] not in recogs and ids["missing"] not in recogs


# ---------------------------------------------------------------------------------- the experiment directory
def _tiny_demo_cmd(data, exp_dir: Path, *extra: str) -> list[str]:
    """The demo preset, one process, two steps."""
    return [sys.executable, "-m", "asrkit.cli.main", "train", "--recipe", str(DEMO_PRESET), "--exp-dir", str(exp_dir),
            "--train-cuts", str(data["train"]), "--lang-dir", str(data["lang"]), "--device", "cpu",
            "--set", "max_minutes=0", "--set", "max_steps=2", "--set", "save_every_n=1", *extra]


def test_train_refuses_an_exp_dir_of_another_run_unless_told(demo_data, tmp_path):
    exp = tmp_path / "exp"
    subprocess.run(_tiny_demo_cmd(demo_data, exp), check=True, capture_output=True)
    before = {p.name: p.read_bytes() for p in exp.glob("*.pt")} | {"config.yaml": (exp / "config.yaml").read_bytes()}

    def run(*extra):
        return subprocess.run(_tiny_demo_cmd(demo_data, exp, *extra), capture_output=True, text=True)

    def unchanged():
        now = {p.name: p.read_bytes() for p in exp.glob("*.pt")} | {"config.yaml": (exp / "config.yaml").read_bytes()}
        return now == before

    same = run()  # the same config again, without --resume: it would overwrite the checkpoints
    assert same.returncode == 1 and unchanged()
    assert f"error: {exp} already holds this run (2 checkpoints, newest checkpoint-2.pt)" in same.stderr
    assert "--resume" in same.stderr and "--force" in same.stderr

    other = run("--set", "optim.base_lr=0.01")
    assert other.returncode == 1 and unchanged()
    assert "holds a run with another config (optim.base_lr: 0.045 -> 0.01)" in other.stderr

    model = run("--resume", "--set", "model.joiner.dim=128")
    assert model.returncode == 1 and unchanged()
    assert "cannot resume the run in" in model.stderr and "model.joiner.dim: 256 -> 128" in model.stderr

    resumed = run("--resume", "--set", "max_steps=3")  # a raised budget: resumes and says what changed
    assert resumed.returncode == 0, resumed.stderr
    assert (exp / "checkpoint-3.pt").exists()
    assert "resuming with a changed setting: max_steps: 2 -> 3" in (exp / "log" / "train.log").read_text()

    forced = run("--force", "--set", "max_steps=1")
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.name for p in exp.glob("*.pt")) == ["checkpoint-1.pt"]
    assert "max_steps: 1" in (exp / "config.yaml").read_text()


# ---------------------------------------------------------------------------------- dying or failing writes
KILL_HOOK = '''
import os
if os.environ.get("FAULT_KILL_AT"):
    import io, signal
    module_name, function_name, at = os.environ["FAULT_KILL_AT"].split(":")
    module = __import__(module_name)
    original = getattr(module, function_name)
    calls = [0]

    def dying(obj, f, *args, **kwargs):
        """Write the first half of what would be written, then die as a SIGKILL does."""
        calls[0] += 1
        if calls[0] < int(at):
            return original(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        original(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        handle = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
        handle.write(data[: len(data) // 2])
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(module, function_name, dying)
'''


def _killed_at(tmp_path: Path, target: str) -> dict:
    """Environment for a subprocess that is SIGKILLed in the middle of the ``target`` call
    (``module:function:call number``), e.g. in the third ``torch.save``."""
    hook_dir = tmp_path / "kill-hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(KILL_HOOK)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook_dir), str(REPO)]), "FAULT_KILL_AT": target}


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_ones(demo_data, tmp_path):
    exp = tmp_path / "exp"
    cmd = _tiny_demo_cmd(demo_data, exp) + ["--set", "max_steps=4"]
    proc = subprocess.run(cmd, env=_killed_at(tmp_path, "torch:save:3"), capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in exp.glob("*.pt")) == ["checkpoint-1.pt", "checkpoint-2.pt"]
    assert load_checkpoint(exp / "checkpoint-2.pt")["train_state"]["batch_idx_train"] == 2
    assert list(exp.glob(".checkpoint-3.pt.*.tmp")), "the half-written file stays hidden under a temporary name"

    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(exp.glob(".*.tmp")), "the interrupted save's temporary file is removed at start-up"
    assert load_checkpoint(exp / "checkpoint-4.pt")["train_state"]["batch_idx_train"] == 4


def test_sigkill_while_averaging_leaves_the_previous_average(demo_data, tmp_path):
    exp = tmp_path / "exp"
    subprocess.run(_tiny_demo_cmd(demo_data, exp) + ["--set", "max_steps=3"], check=True, capture_output=True)
    average = [sys.executable, "-m", "asrkit.cli.main", "average", "--exp-dir", str(exp), "--iter", "3"]
    subprocess.run(average + ["--avg", "1"], check=True, capture_output=True)
    out = exp / "iter-3-avg-1.pt"
    before = out.read_bytes()
    proc = subprocess.run(average + ["--avg", "1", "--use-averaged-model"],
                          env=_killed_at(tmp_path, "torch:save:1"), capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not (exp / "iter-3-avg-1-use-averaged-model.pt").exists()
    proc = subprocess.run(average + ["--avg", "1"], env=_killed_at(tmp_path, "torch:save:1"), capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert out.read_bytes() == before, "an interrupted re-average leaves the complete old file"


def test_sigkill_while_exporting_onnx_leaves_the_previous_export(demo_data, tmp_path):
    exp = tmp_path / "exp"
    subprocess.run(_tiny_demo_cmd(demo_data, exp) + ["--set", "max_steps=2"], check=True, capture_output=True)
    export = [sys.executable, "-m", "asrkit.cli.main", "export", "--exp-dir", str(exp), "--iter", "2",
              "--lang-dir", str(demo_data["lang"]), "--format", "onnx", "--no-int8"]
    subprocess.run(export, check=True, capture_output=True)
    onnx_dir = exp / "exported" / "onnx"
    before = _snapshot(onnx_dir)
    proc = subprocess.run(export, env=_killed_at(tmp_path, "onnx:save:2"), capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert _snapshot(onnx_dir) == before, "the export directory is replaced as a whole or not at all"
    again = subprocess.run(export, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert not [p for p in onnx_dir.parent.iterdir() if p.name.startswith(".")], "staging directories are gone"


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint_and_says_so(demo_data, tmp_path,
                                                                                  monkeypatch, capsys):
    import errno

    import asrkit.training.checkpoint as checkpoint
    from asrkit.cli.main import main

    calls = []
    real_save = torch.save

    def filling_the_disk(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", filling_the_disk)
    exp = tmp_path / "exp"
    with pytest.raises(SystemExit) as stopped:
        main(_tiny_demo_cmd(demo_data, exp)[3:])  # the same command line, in this process
    assert stopped.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    (error,) = [line for line in lines if line.startswith("error: ")]
    assert error == (f"error: {exp / 'checkpoint-2.pt'}: writing the checkpoint failed: [Errno 28] No space left on "
                     f"device; the previous checkpoints are untouched, the newest is {exp / 'checkpoint-1.pt'}")
    assert "hint: free some space, then continue with --resume" in lines
    assert sorted(p.name for p in exp.iterdir() if p.suffix == ".pt" or p.name.endswith(".tmp")) == \
        ["checkpoint-1.pt"]
    assert load_checkpoint(exp / "checkpoint-1.pt")["train_state"]["batch_idx_train"] == 1


# ---------------------------------------------------------------------------------- files of other origins
class _RunsCode:
    """Unpickling this runs a command: what a malicious "checkpoint" carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_everywhere(demo_data, tmp_path):
    marker = tmp_path / "code-ran"
    exp = tmp_path / "exp"
    exp.mkdir()
    evil = exp / "checkpoint-5.pt"
    torch.save({"model": _RunsCode(marker), "train_state": {"batch_idx_train": 5}}, evil)
    wav = _wav(tmp_path / "a.wav", 1.0)
    commands = {
        "transcribe": [sys.executable, "-m", "asrkit.cli.main", "transcribe", "--model", str(evil), str(wav)],
        "average": [sys.executable, "-m", "asrkit.cli.main", "average", "--exp-dir", str(exp), "--iter", "5"],
        "train --resume": _tiny_demo_cmd(demo_data, exp, "--resume"),
    }
    for name, cmd in commands.items():
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 1, (name, proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and str(evil) in errors[0] and "not allowed with weights_only=True" in errors[0], \
            (name, proc.stderr)
        assert not marker.exists(), f"{name} ran the pickled code"


def test_a_tokenizer_from_another_experiment_is_refused(demo_data, tmp_path):
    from asrkit.data.tokenizer import train_tokenizer

    exp = tmp_path / "exp"
    subprocess.run(_tiny_demo_cmd(demo_data, exp), check=True, capture_output=True)
    other = tmp_path / "other-lang"
    train_tokenizer(["ALPHA BRAVO CHARLIE DELTA ECHO FOXTROT GOLF HOTEL"] * 20, other, vocab_size=25)
    cuts = demo_data["test"]
    common = ["--exp-dir", str(exp), "--iter", "2", "--lang-dir", str(other)]
    decode = [sys.executable, "-m", "asrkit.cli.main", "decode", *common, "--cuts", str(cuts)]
    export = [sys.executable, "-m", "asrkit.cli.main", "export", *common, "--format", "pretrained"]
    for cmd in (decode, export):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 1, proc.stderr
        (error,) = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert error.startswith(f"error: {other}") and f"is not the tokenizer {exp} was trained with" in error
    assert not (exp / "exported").exists() and not (exp / "greedy_search").exists()
    # the model's own tokenizer works
    ok = subprocess.run(decode[:-4] + ["--lang-dir", str(demo_data["lang"]), "--cuts", str(cuts)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


# ---------------------------------------------------------------------------------- bad audio in training
def test_training_names_bad_utterances_or_skips_and_counts_them(demo_data, tmp_path):
    """A training set read from audio with every kind of bad utterance: unusable ones are dropped by the filter
    (with a count per reason), unreadable ones stop training with one line naming them -- or, with
    --skip-bad-audio, are skipped and listed."""
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    specs = [(f"good-{i}", 1.0 + 0.05 * i, "YES NO GO") for i in range(10)] + [
        ("short", 0.05, "YES"), ("ten-minutes", 600.0, "YES"), ("no-text", 1.0, ""), ("oov", 1.0, "ZEBRA"),
        ("corrupt", 1.0, "STOP"), ("missing", 1.0, "HELP")]
    recs, sups = [], []
    for name, seconds, text in specs:
        rec = Recording.from_file(_wav(tmp_path / f"{name}.wav", seconds), recording_id=name)
        recs.append(rec)
        sups.append(SupervisionSegment(id=name, recording_id=name, start=0.0, duration=rec.duration, text=text))
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 3)
    (tmp_path / "missing.wav").unlink()
    cuts = tmp_path / "bad_cuts_train.jsonl.gz"
    CutSet.from_manifests(RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups)).to_file(cuts)
    data = {**demo_data, "train": cuts}

    exp = tmp_path / "strict"
    strict = subprocess.run(_tiny_demo_cmd(data, exp, "--set", "max_steps=20"), capture_output=True, text=True)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    (error,) = [line for line in strict.stderr.splitlines() if line.startswith("error: ")]
    assert "corrupt" in error or "missing" in error, error
    log = (exp / "log" / "train.log").read_text()
    for reason, name in (("shorter than 0.3 s", "short"), ("longer than 20.0 s", "ten-minutes"),
                         ("empty transcript", "no-text"), ("characters unknown to the tokenizer", "oov")):
        assert f"dropped 1 utterance(s): {reason} (e.g. {name}-" in log, name
    assert "kept 12 utterance(s), dropped 4" in log

    exp = tmp_path / "skipping"
    skipping = subprocess.run(_tiny_demo_cmd(data, exp, "--skip-bad-audio", "--set", "max_steps=6"),
                              capture_output=True, text=True)
    assert skipping.returncode == 0, skipping.stderr
    log = (exp / "log" / "train.log").read_text()
    assert "corrupt.wav" in log and "missing.wav" in log and "skipped (2 so far" in log
    assert (exp / "checkpoint-6.pt").exists()
