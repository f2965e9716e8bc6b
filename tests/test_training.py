"""Training loop: loss goes down, exact resume after SIGKILL, 2-process DDP == 1 process, averaging stage."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import assert_same_state

from asrkit.config import TrainConfig, save_yaml
from asrkit.errors import ConfigError
from asrkit.data.fbank import compute_fbank_for_splits
from asrkit.data.prepare_lang import prepare_tokenizer
from asrkit.models.config import ConformerLiteConfig, EncoderConfig, JoinerConfig, ModelConfig, PredictorConfig
from asrkit.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def tiny_config(**overrides) -> TrainConfig:
    model = ModelConfig(
        encoder=EncoderConfig(
            type="conformer_lite",
            conformer_lite=ConformerLiteConfig(dim=32, num_layers=1, num_heads=2, feedforward_dim=64,
                                               cnn_module_kernel=7, subsampling_channels=8, dropout=0.0),
        ),
        predictor=PredictorConfig(embedding_dim=32, dropout=0.0),
        joiner=JoinerConfig(dim=32),
    )
    cfg = TrainConfig(model=model, num_epochs=2, seed=7, average_period=2, log_interval=1)
    cfg.optim.name = "adamw"
    cfg.optim.base_lr = 1e-3
    cfg.optim.scheduler = "warmup_inverse_sqrt"
    cfg.optim.warmup_batches = 2
    cfg.data.max_duration = 4.0
    cfg.data.num_buckets = 2
    cfg.data.num_workers = 0
    cfg.loss.warm_step = 4
    for key, value in overrides.items():
        obj = cfg
        *parts, last = key.split(".")
        for p in parts:
            obj = getattr(obj, p)
        setattr(obj, last, value)
    return cfg


@pytest.fixture(scope="module")
def prepared(tone_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    cuts = compute_fbank_for_splits(tone_corpus, "tiny", ["train", "test"], root / "fbank",
                                    speed_perturb_splits=["train"], num_jobs=1)
    prepare_tokenizer(cuts["train"], root / "lang", vocab_size=30)
    return {"train": cuts["train"], "test": cuts["test"], "lang": root / "lang"}


def _train_cmd(recipe: Path, exp_dir: Path, prepared, *extra: str) -> list[str]:
    return [sys.executable, "-m", "asrkit.cli.main", "train", "--recipe", str(recipe), "--exp-dir", str(exp_dir),
            "--train-cuts", str(prepared["train"]), "--lang-dir", str(prepared["lang"]), "--device", "cpu", *extra]


def _params(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_train_writes_config_checkpoints_and_tensorboard(prepared, tmp_path):
    from asrkit.training.loop import TrainJob, train

    cfg = tiny_config(num_epochs=2)
    job = TrainJob(exp_dir=tmp_path / "exp", train_cuts=prepared["train"], lang_dir=prepared["lang"],
                   valid_cuts=prepared["test"], device="cpu", progress=False)
    train(job, cfg)
    exp = tmp_path / "exp"
    assert (exp / "config.yaml").exists() and (exp / "epoch-1.pt").exists() and (exp / "epoch-2.pt").exists()
    assert list((exp / "tensorboard").glob("events.out.tfevents.*"))
    assert "pruned RNN-T loss backend" in (exp / "log" / "train.log").read_text()
    ckpt = load_checkpoint(exp / "epoch-2.pt")
    assert ckpt["config"]["model"]["vocab_size"] == ckpt["model"]["joiner.output_linear.weight"].shape[0]
    assert ckpt["train_state"]["epoch"] == 2 and ckpt["train_state"]["epoch_done"]
    assert all(v.dtype == torch.float64 for v in ckpt["model_avg"].values() if v.is_floating_point())


def test_step_budget_stops_mid_epoch_with_a_checkpoint_and_counts_resumed_steps(prepared, tmp_path):
    from asrkit.training.loop import TrainJob, train

    exp = tmp_path / "exp"
    job = TrainJob(exp_dir=exp, train_cuts=prepared["train"], lang_dir=prepared["lang"], device="cpu",
                   progress=False, tensorboard=False)
    last = train(job, tiny_config(num_epochs=50, max_steps=3))
    assert last == exp / "checkpoint-3.pt" and not (exp / "epoch-1.pt").exists()
    state = load_checkpoint(last)["train_state"]
    assert state["batch_idx_train"] == 3 and not state["epoch_done"]
    assert "step budget of 3 reached; stopped mid-epoch 1" in (exp / "log" / "train.log").read_text()

    # The budget counts all steps of the run, resumes included: raising it to 5 trains exactly 2 more.
    resumed = TrainJob(exp_dir=exp, train_cuts=prepared["train"], lang_dir=prepared["lang"], device="cpu",
                       progress=False, tensorboard=False, resume=True)
    assert train(resumed, tiny_config(num_epochs=50, max_steps=5)) == exp / "checkpoint-5.pt"


def test_cooldown_fraction_lowers_the_lr_over_the_end_of_the_budget(prepared, tmp_path):
    from asrkit.training import distributed as D
    from asrkit.training.loop import TrainJob, Trainer

    job = TrainJob(exp_dir=tmp_path / "exp", train_cuts=prepared["train"], lang_dir=prepared["lang"], device="cpu",
                   progress=False, tensorboard=False)
    cfg = tiny_config(max_steps=10, **{"optim.cooldown_fraction": 0.4})
    trainer = Trainer(job, cfg, D.DistContext())
    started = time.monotonic()
    lrs = []
    for step in (2, 6, 8, 9, 10):
        trainer.state.batch_idx_train = step
        trainer.scheduler.step_batch(step)
        spent = trainer._spent_budget(started)
        lrs.append(trainer.scheduler.get_last_lr()[0] / (cfg.optim.base_lr * trainer.scheduler.lr_factor()))
        assert (spent is not None) == (step == 10)
    assert lrs == pytest.approx([1.0, 1.0, 0.5, 0.25, 0.0])

    # A time budget cools down the same way; without any budget the setting is an error.
    trainer.cfg = tiny_config(max_minutes=1.0, **{"optim.cooldown_fraction": 0.5})
    trainer.state.batch_idx_train = 3
    trainer._spent_budget(time.monotonic() - 45.0)  # 3/4 of the minute used
    assert trainer.scheduler.budget_factor == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ConfigError, match="cooldown_fraction"):
        Trainer(job, tiny_config(**{"optim.cooldown_fraction": 0.3}), D.DistContext())


def test_checkpoints_hold_every_stateful_part_of_the_demo_trainer(prepared, tmp_path):
    """Every trainer attribute with a ``state_dict()`` is among ``Trainer.stateful_parts`` (what checkpoints save
    and resume restores); the payload has exactly the documented keys, one process state per rank, and loading it
    into a fresh trainer restores each part's state. Uses the demo preset (zipformer-xs, ScaledAdam, Eden)."""
    from asrkit.config import load_train_config
    from asrkit.training import distributed as D
    from asrkit.training.loop import TrainJob, Trainer

    cfg = load_train_config(REPO / "recipes" / "zipformer-xs.yaml",
                            {"max_minutes": 0.0, "max_steps": 2, "save_every_n": 0})
    job = TrainJob(exp_dir=tmp_path / "exp", train_cuts=prepared["train"], lang_dir=prepared["lang"], device="cpu",
                   progress=False, tensorboard=False)
    trainer = Trainer(job, cfg, D.DistContext())
    parts = trainer.stateful_parts()
    with_state = {name for name, value in vars(trainer).items()
                  if callable(getattr(value, "state_dict", None)) and value is not trainer.ddp_model}
    assert {name for name, value in vars(trainer).items() if any(value is p for p in parts.values())} >= with_state
    last = trainer.run()
    ckpt = load_checkpoint(last)
    assert set(ckpt) == set(parts) | {"model_avg", "train_state", "config", "process_states"}
    assert len(ckpt["process_states"]) == 1 and set(ckpt["process_states"][0]) == {"rng", "modules"}
    assert ckpt["process_states"][0]["modules"], "the zipformer's whiteners carry state"

    resumed = Trainer(TrainJob(exp_dir=job.exp_dir, train_cuts=prepared["train"], lang_dir=prepared["lang"],
                               device="cpu", progress=False, tensorboard=False, resume=True), cfg, D.DistContext())
    for key, part in resumed.stateful_parts().items():
        if part is None:
            assert ckpt[key] is None
            continue
        assert_same_state(part.state_dict(), ckpt[key], key)


def test_resume_after_sigkill_gives_identical_parameters(prepared, tmp_path):
    cfg = tiny_config(num_epochs=2, save_every_n=2, keep_last_k=10)
    recipe = tmp_path / "tiny.yaml"
    save_yaml(cfg, recipe)
    ref_dir, cut_dir = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run(_train_cmd(recipe, ref_dir, prepared), check=True, capture_output=True)

    proc = subprocess.Popen(_train_cmd(recipe, cut_dir, prepared), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (cut_dir / "checkpoint-4.pt").exists():
        assert proc.poll() is None, "training finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut_dir / "epoch-2.pt").exists(), "the run must be killed mid-training"
    subprocess.run(_train_cmd(recipe, cut_dir, prepared, "--resume"), check=True, capture_output=True)

    ref, resumed = _params(ref_dir / "epoch-2.pt"), _params(cut_dir / "epoch-2.pt")
    assert ref.keys() == resumed.keys()
    for key in ref:
        assert torch.equal(ref[key], resumed[key]), key


def test_sigterm_writes_checkpoint_and_exits_cleanly(prepared, tmp_path):
    cfg = tiny_config(num_epochs=50)
    recipe = tmp_path / "tiny.yaml"
    save_yaml(cfg, recipe)
    exp = tmp_path / "exp"
    proc = subprocess.Popen(_train_cmd(recipe, exp, prepared), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (exp / "epoch-1.pt").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "interrupted" in err and "--resume" in err
    assert list(exp.glob("checkpoint-*.pt")), "an interruption checkpoint must be written"


def _spawn_ddp(rank: int, world_size: int, job, cfg, port: int) -> None:
    from asrkit.training import distributed as D
    from asrkit.training.loop import Trainer

    ctx = D.init_process_group(rank, world_size, rank, "cpu", port)
    try:
        Trainer(job, cfg, ctx).run()
    finally:
        D.destroy_process_group()



def test_two_process_ddp_equals_one_process(prepared, tmp_path):
    import torch.multiprocessing as mp

    from asrkit.data.datamodule import AsrDataset, make_loader, make_sampler
    from asrkit.training import distributed as D
    from asrkit.training.loop import TrainJob, Trainer

    cfg = tiny_config(num_epochs=1)
    cfg.data.spec_augment = False
    cfg.data.shuffle = False

    ddp_job = TrainJob(exp_dir=tmp_path / "ddp", train_cuts=prepared["train"], lang_dir=prepared["lang"],
                       world_size=2, device="cpu", progress=False, tensorboard=False)
    mp.spawn(_spawn_ddp, args=(2, ddp_job, cfg, 29611), nprocs=2, join=True)

    class MergedRanks(Trainer):
        """One process whose batch k is the union of what ranks 0 and 1 get as their batch k."""

        def _train_loader(self, epoch, skip):
            per_rank = []
            for rank in (0, 1):
                sampler = make_sampler(self.train_cuts, self.cfg.data, train=True, seed=self.cfg.seed,
                                       world_size=2, rank=rank)
                sampler.set_epoch(epoch)
                per_rank.append(list(sampler))
            merged = [a + b for a, b in zip(*per_rank)]
            return make_loader(AsrDataset(self.tokenizer), merged)

    single_job = TrainJob(exp_dir=tmp_path / "single", train_cuts=prepared["train"], lang_dir=prepared["lang"],
                          device="cpu", progress=False, tensorboard=False)
    MergedRanks(single_job, cfg, D.DistContext()).run()

    a, b = _params(tmp_path / "ddp" / "epoch-1.pt"), _params(tmp_path / "single" / "epoch-1.pt")
    steps = load_checkpoint(tmp_path / "single" / "epoch-1.pt")["train_state"]["batch_idx_train"]
    assert steps >= 2
    assert load_checkpoint(tmp_path / "ddp" / "epoch-1.pt")["train_state"]["batch_idx_train"] == steps
    for key in a:
        if key.endswith("attn.in_proj.bias"):
            # drop the key bias: it adds q.b_k to every logit of a softmax row, so its true gradient is 0 and
            # it receives float32 rounding noise, which the optimizer normalizes into steps of order lr (on an
            # Intel Xeon the two runs' key biases differ by ~2e-5 while every other parameter agrees to 1e-7)
            a[key], b[key] = (torch.cat(t.chunk(3)[::2]) for t in (a[key], b[key]))  # query and value biases
        # tolerance: gradient all-reduce sums in another order than the single process (float32 rounding)
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_torch_and_fast_rnnt_backends_train_alike(prepared, tmp_path):
    pytest.importorskip("fast_rnnt")
    from asrkit.bench.backends import compare_backends, max_relative_difference

    cfg = tiny_config()
    recipe = tmp_path / "tiny.yaml"
    save_yaml(cfg, recipe)
    torch_curve, fast_curve = compare_backends(recipe, prepared["train"], prepared["lang"], ("torch", "fast_rnnt"),
                                               steps=12)
    assert len(torch_curve.losses) == len(fast_curve.losses) == 12
    assert all(math.isfinite(x) for x in torch_curve.losses + fast_curve.losses)
    # the backends agree to ~1e-6 per call; 12 optimizer steps amplify that only slightly
    assert max_relative_difference(torch_curve.losses, fast_curve.losses) < 1e-3


def _bad_data_cuts(tone_corpus: Path, out: Path) -> tuple[Path, Path]:
    """Cuts (audio only, features computed on the fly) with a corrupt wav, an empty transcript and a 0.05 s cut."""
    import soundfile as sf
    from lhotse import CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recs = RecordingSet.from_file(tone_corpus / "tiny_recordings_train.jsonl.gz")
    sups = SupervisionSet.from_file(tone_corpus / "tiny_supervisions_train.jsonl.gz")
    cuts = list(CutSet.from_manifests(recordings=recs, supervisions=sups).trim_to_supervisions())
    corrupt = out / "corrupt.wav"
    sf.write(corrupt, [0.0] * 16000, 16000)
    bad_rec = Recording.from_file(corrupt, recording_id="corrupt")
    corrupt.write_bytes(b"RIFF garbage that is not a wave file" * 20)  # corrupted after the manifest was made
    bad = MonoCut(id="corrupt-cut", start=0.0, duration=1.0, channel=0, recording=bad_rec,
                  supervisions=[SupervisionSegment(id="corrupt-cut", recording_id="corrupt", start=0.0, duration=1.0,
                                                   text="YES")])
    empty = cuts[1].with_id("empty-cut")
    empty.supervisions[0].text = ""
    short = cuts[2].truncate(duration=0.05).with_id("short-cut")
    path = out / "bad_cuts.jsonl.gz"
    CutSet.from_cuts(cuts[3:] + [bad, empty, short]).to_file(path)
    return path, corrupt


def test_bad_data_is_named_or_skipped_and_counted(tone_corpus, prepared, tmp_path, caplog):
    import logging

    from asrkit.errors import DataError
    from asrkit.training.loop import TrainJob, train

    cuts, corrupt = _bad_data_cuts(tone_corpus, tmp_path)
    cfg = tiny_config(num_epochs=1)
    cfg.data.max_duration = 100.0  # one batch holds every utterance
    job = TrainJob(exp_dir=tmp_path / "strict", train_cuts=cuts, lang_dir=prepared["lang"], device="cpu",
                   progress=False, tensorboard=False)
    with pytest.raises(DataError, match=r"corrupt-cut.*corrupt\.wav"):
        train(job, cfg)

    cfg.data.skip_bad_audio = True
    job.exp_dir = tmp_path / "skip"
    with caplog.at_level(logging.INFO):
        train(job, cfg)
    log_text = (tmp_path / "skip" / "log" / "train.log").read_text()
    assert "dropped 1 utterance(s): empty transcript (e.g. empty-cut)" in log_text
    assert "dropped 1 utterance(s): shorter than 0.3 s (e.g. short-cut)" in log_text
    assert "skipped (1 so far in this process)" in log_text and "corrupt.wav" in log_text
    assert (tmp_path / "skip" / "epoch-1.pt").exists()


def test_train_streams_lhotse_shar_input(prepared, tmp_path):
    from lhotse import CutSet

    from asrkit.data.shar import export_shar
    from asrkit.training.loop import TrainJob, train

    cuts = CutSet.from_file(prepared["train"]).to_eager()
    cut_list = list(cuts)
    cut_list[0] = cut_list[0].with_id("no-text")
    cut_list[0].supervisions[0].text = ""
    export_shar(CutSet.from_cuts(cut_list), tmp_path / "shar", shard_size=7)
    cfg = tiny_config(num_epochs=1)
    job = TrainJob(exp_dir=tmp_path / "exp", train_cuts=tmp_path / "shar", lang_dir=prepared["lang"], device="cpu",
                   progress=False, tensorboard=False)
    train(job, cfg)
    ckpt = load_checkpoint(tmp_path / "exp" / "epoch-1.pt")
    assert ckpt["train_state"]["batch_idx_train"] > 0
    assert "dropped no-text: empty transcript" in (tmp_path / "exp" / "log" / "train.log").read_text()


def test_preflight_runs_pessimistic_batches_without_changing_training(prepared, tmp_path):
    from asrkit.training.loop import TrainJob, train

    finals = []
    for preflight in (0, 1):
        cfg = tiny_config(num_epochs=1, preflight=preflight)
        exp = tmp_path / f"preflight-{preflight}"
        train(TrainJob(exp_dir=exp, train_cuts=prepared["train"], lang_dir=prepared["lang"], device="cpu",
                       progress=False, tensorboard=False), cfg)
        finals.append(_params(exp / "epoch-1.pt"))
        if preflight:
            assert "pre-flight: batch with the largest" in (exp / "log" / "train.log").read_text()
    for key in finals[0]:
        assert torch.equal(finals[0][key], finals[1][key]), key


def test_preflight_out_of_memory_is_a_clear_error(prepared, tmp_path, monkeypatch):
    from asrkit.errors import ConfigError
    from asrkit.training.loop import Trainer, TrainJob, train

    def out_of_memory(self, model, batch):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(Trainer, "_forward", out_of_memory)
    cfg = tiny_config(num_epochs=1, preflight=1)
    with pytest.raises(ConfigError, match="pre-flight.*runs out of memory") as info:
        train(TrainJob(exp_dir=tmp_path / "exp", train_cuts=prepared["train"], lang_dir=prepared["lang"],
                       device="cpu", progress=False, tensorboard=False), cfg)
    assert "--max-duration" in info.value.hint


def test_non_finite_losses_are_skipped_counted_and_abort(prepared, tmp_path, monkeypatch):
    from asrkit.training.loop import TooManyNonFiniteLosses, Trainer, TrainJob, train

    real_forward = Trainer._forward
    calls = {"n": 0}

    def sometimes_nan(self, model, batch):
        losses = real_forward(self, model, batch)
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch: its loss becomes NaN
            return losses._replace(pruned_loss=losses.pruned_loss * float("nan"))
        return losses

    monkeypatch.setattr(Trainer, "_forward", sometimes_nan)
    cfg = tiny_config(num_epochs=1)
    exp = tmp_path / "exp"
    train(TrainJob(exp_dir=exp, train_cuts=prepared["train"], lang_dir=prepared["lang"], device="cpu",
                   progress=False, tensorboard=False), cfg)
    log_text = (exp / "log" / "train.log").read_text()
    assert "non-finite loss at batch 2 (skipped, 1 so far)" in log_text
    state = load_checkpoint(exp / "epoch-1.pt")["train_state"]
    assert state["nonfinite_batches"] == 1
    assert all(torch.isfinite(v).all() for v in _params(exp / "epoch-1.pt").values() if v.is_floating_point())

    calls["n"] = 0
    monkeypatch.setattr(Trainer, "_forward", lambda self, model, batch: real_forward(self, model, batch)._replace(
        simple_loss=torch.tensor(float("inf"), requires_grad=True)))
    with pytest.raises(TooManyNonFiniteLosses, match="max_nonfinite_batches=2"):
        train(TrainJob(exp_dir=tmp_path / "abort", train_cuts=prepared["train"], lang_dir=prepared["lang"],
                       device="cpu", progress=False, tensorboard=False), tiny_config(num_epochs=1,
                                                                                    max_nonfinite_batches=2))


@pytest.mark.parametrize("precision", ["use_bf16", "use_fp16"])
def test_mixed_precision_trains_on_cpu(prepared, tmp_path, precision):
    from asrkit.training.loop import TrainJob, train

    cfg = tiny_config(num_epochs=1, **{precision: True})
    exp = tmp_path / precision
    train(TrainJob(exp_dir=exp, train_cuts=prepared["train"], lang_dir=prepared["lang"], device="cpu",
                   progress=False, tensorboard=False), cfg)
    ckpt = load_checkpoint(exp / "epoch-1.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    if precision == "use_fp16":
        assert ckpt["grad_scaler"] and ckpt["grad_scaler"]["scale"] > 0


def _torchrun_cmd(recipe: Path, exp_dir: Path, prepared, port: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
            "-m", "asrkit.cli.main", "train", "--recipe", str(recipe), "--exp-dir", str(exp_dir), "--train-cuts",
            str(prepared["train"]), "--lang-dir", str(prepared["lang"]), "--device", "cpu"]


def test_torchrun_env_rendezvous_trains_two_ranks(prepared, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    save_yaml(tiny_config(num_epochs=1), recipe)
    proc = subprocess.run(_torchrun_cmd(recipe, tmp_path / "exp", prepared, 29623), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "exp" / "epoch-1.pt").exists()
    assert "world size: 2" in (tmp_path / "exp" / "log" / "train.log").read_text()
    assert (tmp_path / "exp" / "log" / "train-rank1.log").exists()


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def test_a_dying_rank_stops_the_others(prepared, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    save_yaml(tiny_config(num_epochs=100, save_every_n=2), recipe)
    proc = subprocess.Popen(_torchrun_cmd(recipe, tmp_path / "exp", prepared, 29627), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not (tmp_path / "exp" / "checkpoint-2.pt").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)
    # torchrun's agent sees the dead rank and tears the job down instead of leaving rank 0 blocked in all_reduce
    assert proc.wait(timeout=120) != 0
    time.sleep(1)
    assert not [pid for pid in workers if _running(pid)]


def _running(pid: int) -> bool:
    """True for a live process (a zombie awaiting its parent does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "use_fp16", "use_bf16"])
def test_trainer_on_cuda_and_its_model_decodes_there_as_on_cpu(prepared, tmp_path, precision):
    """`asrkit train --device cuda` in each precision (the pre-flight pass is on by default on a GPU); the
    trained model gives the same greedy and modified-beam hypotheses on the GPU as on the CPU."""
    from lhotse import CutSet

    from asrkit.decoding.search import run_search
    from asrkit.export.pretrained import build_model_from_config
    from asrkit.training.loop import TrainJob, train

    cfg = tiny_config(num_epochs=2, **({} if precision == "fp32" else {precision: True}))
    exp = tmp_path / precision
    train(TrainJob(exp_dir=exp, train_cuts=prepared["train"], lang_dir=prepared["lang"], valid_cuts=prepared["test"],
                   device="cuda", progress=False, tensorboard=False), cfg)
    ckpt = load_checkpoint(exp / "epoch-2.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    if precision == "use_fp16":
        assert ckpt["grad_scaler"] and ckpt["grad_scaler"]["scale"] > 0

    model = build_model_from_config(ckpt["config"]).eval()
    model.load_state_dict(ckpt["model"])
    cuts = CutSet.from_file(prepared["test"]).to_eager()
    feats = [torch.from_numpy(c.load_features()) for c in cuts]
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    x_lens = torch.tensor([f.size(0) for f in feats])
    with torch.no_grad():
        found = {(method, device): run_search(model.to(device), x, x_lens, method)[0]
                 for method in ("greedy_search", "modified_beam_search") for device in ("cpu", "cuda")}
    assert found["greedy_search", "cuda"] == found["greedy_search", "cpu"]
    # two epochs leave near-tied beam hypotheses whose order float rounding decides (seen: 1 of 6 after fp16)
    same = sum(a == b for a, b in zip(found["modified_beam_search", "cuda"], found["modified_beam_search", "cpu"]))
    assert same >= len(cuts) - 2, (found["modified_beam_search", "cuda"], found["modified_beam_search", "cpu"])


def test_bench_train_reads_a_small_corpus_again(prepared, tmp_path):
    """`asrkit bench train` times more steps than one epoch has batches by starting the next epoch."""
    from lhotse import CutSet

    from asrkit.bench.train import bench_train, format_result

    recipe = tmp_path / "tiny.yaml"
    save_yaml(tiny_config(), recipe)
    corpus_seconds = sum(c.duration for c in CutSet.from_file(prepared["train"]))
    result = bench_train(recipe, prepared["train"], prepared["lang"], steps=16, warmup=1)
    assert result.audio_seconds > 1.5 * corpus_seconds  # the 16 timed batches span more than one epoch
    assert result.peak_gpu_gib is None and "audio-s/s" in format_result(result)


def test_device_names_that_torch_cannot_serve_are_clear_errors(monkeypatch):
    from asrkit.training.distributed import pick_device

    assert pick_device("cpu", 3) == torch.device("cpu")
    with pytest.raises(ConfigError, match="'gpu0' is not a device"):
        pick_device("gpu0", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto", 0) == torch.device("cpu")
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        pick_device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("auto", 0) == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="process 1 would use cuda:1, but torch sees 1 GPU"):
        pick_device("cuda", 1)  # --world-size 2 on a one-GPU machine


def test_world_size_auto_is_one_process_per_gpu_or_two_on_a_multicore_cpu(monkeypatch):
    import asrkit.training.distributed as D

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(D, "usable_cores", lambda: 2)
    assert D.resolve_world_size("auto") == D.resolve_world_size("auto", "cpu") == 2
    monkeypatch.setattr(D, "usable_cores", lambda: 16)
    assert D.resolve_world_size("AUTO") == 2  # never more CPU processes than were measured to pay
    monkeypatch.setattr(D, "usable_cores", lambda: 1)
    assert D.resolve_world_size("auto") == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert D.resolve_world_size("auto") == D.resolve_world_size("auto", "cuda") == 4
    assert D.resolve_world_size("auto", "cuda:2") == 1  # one named GPU
    assert D.resolve_world_size("auto", "cpu") == 1  # CPU training on this 1-core machine
    assert D.resolve_world_size("3", "cpu") == D.resolve_world_size(3) == 3  # a number is taken as given
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ConfigError, match="is not a number of processes"):
            D.resolve_world_size(bad)


def test_usable_cores_follows_the_cpu_affinity():
    from asrkit.training.distributed import usable_cores

    assert usable_cores() == len(os.sched_getaffinity(0))


def test_more_processes_than_gpus_fails_before_spawning(prepared, tmp_path, monkeypatch):
    import torch.multiprocessing as mp

    from asrkit.training.loop import TrainJob, train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(mp, "spawn", lambda *a, **k: pytest.fail("spawned processes"))
    with pytest.raises(ConfigError, match="process 1 would use cuda:1, but torch sees 1 GPU"):
        train(TrainJob(exp_dir=tmp_path / "exp", train_cuts=prepared["train"], lang_dir=prepared["lang"],
                       world_size=2, device="cuda", progress=False, tensorboard=False), tiny_config())
