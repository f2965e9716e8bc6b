"""Acoustic augmentation: what each effect does to a signal, the augmenter's draws, and the dataset hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asrkit.config import DataConfig
from asrkit.data.acoustic import (
    EFFECTS,
    AcousticAugment,
    add_noise,
    apply_gain,
    babble,
    band_limit,
    build_acoustic_augment,
    coloured_noise,
    hum,
    pitch_shift,
    reverberate,
    simulated_rir,
    telephone,
    time_stretch,
)
from asrkit.errors import ConfigError

SR = 16000


def _tone(freq: float = 200.0, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * SR / x.size)


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, np.float64) ** 2))


def _band_share(x: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1.0 / SR)
    return float(spectrum[(f >= low) & (f < high)].sum() / spectrum.sum())


def _speech_like(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A harmonic signal with a moving pitch and syllable-like envelope, plus a little broadband noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    x = 0.2 * x / np.max(np.abs(x)) + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


@pytest.mark.parametrize("rate", [0.8, 0.9, 1.15, 1.25])
def test_tempo_changes_duration_not_pitch(rate: float) -> None:
    x = _tone(200.0, 2.0)
    y = time_stretch(x, rate)
    assert y.size == round(x.size / rate)
    assert _peak_hz(y) == pytest.approx(200.0, abs=2.0)
    assert _power(y) == pytest.approx(_power(x), rel=0.15)  # overlap-add keeps the level


@pytest.mark.parametrize("semitones", [-3.0, 2.0, 5.0])
def test_pitch_shift_moves_the_frequency_keeps_the_duration(semitones: float) -> None:
    x = _tone(200.0, 2.0)
    y = pitch_shift(x, semitones)
    assert y.size == x.size
    assert _peak_hz(y) == pytest.approx(200.0 * 2 ** (semitones / 12), rel=0.01)


@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_noise_is_added_at_the_asked_snr(colour: str, snr: float) -> None:
    x = _speech_like()
    noise = coloured_noise(np.random.default_rng(1), x.size, colour)
    y = add_noise(x, noise, snr)
    measured = 10 * np.log10(_power(x) / _power(y - x))
    assert measured == pytest.approx(snr, abs=0.05)


def test_noise_colours_have_their_spectral_slopes() -> None:
    rng = np.random.default_rng(2)
    low = {c: _band_share(coloured_noise(rng, 4 * SR, c), 20, 500) for c in ("white", "pink", "brown")}
    # White noise spreads evenly (500/8000 of the band below 500 Hz); pink leans low, brown more so.
    assert low["white"] == pytest.approx(480 / 8000, abs=0.01)
    assert low["white"] < 0.3 < low["pink"] < low["brown"] and low["brown"] > 0.9


def test_hum_is_mains_frequency_and_harmonics() -> None:
    h = hum(np.random.default_rng(3), 2 * SR)
    assert _peak_hz(h) in (pytest.approx(50.0, abs=1), pytest.approx(60.0, abs=1),
                           pytest.approx(100.0, abs=1), pytest.approx(120.0, abs=1))
    assert _band_share(h, 40, 400) > 0.99
    assert _power(h) == pytest.approx(1.0, rel=1e-3)


def test_babble_is_made_of_the_other_utterances() -> None:
    others = [_speech_like(1.0, seed=s) for s in range(4)]
    b = babble(np.random.default_rng(4), 2 * SR, others)
    assert b.shape == (2 * SR,) and _power(b) == pytest.approx(1.0, rel=1e-3)
    # Its spectrum is the utterances' (harmonics of ~90-150 Hz), not flat noise.
    assert _band_share(b, 50, 2500) > 0.9
    assert babble(np.random.default_rng(4), SR, []) is None


@pytest.mark.parametrize("cutoff", [2500.0, 4000.0, 6500.0])
def test_band_limit_removes_energy_above_the_cutoff(cutoff: float) -> None:
    x = coloured_noise(np.random.default_rng(5), SR, "white") * 0.1
    y = band_limit(x, cutoff)
    assert _band_share(y, cutoff, SR / 2) < 1e-6
    assert _band_share(y, 0, cutoff - 150) > 0.9  # (the raised-cosine edge is the last 150 Hz)
    # Below the cut-off the signal is kept.
    assert _power(y) == pytest.approx(_power(x) * (cutoff - 75) / 8000, rel=0.05)


def test_telephone_channel_is_narrow_band_and_quantized() -> None:
    x = coloured_noise(np.random.default_rng(6), SR, "white") * 0.1
    y = telephone(x)
    assert _band_share(y, 3500, SR / 2) < 1e-3 and _band_share(y, 0, 250) < 1e-3
    assert len(np.unique(np.round(y / np.max(np.abs(y)), 6))) <= 256  # 8-bit mu-law codes


@pytest.mark.parametrize("gain_db", [-20.0, -6.0, 3.0])
def test_gain_changes_rms_by_its_decibels(gain_db: float) -> None:
    x = _speech_like()
    y = apply_gain(x, gain_db)
    assert 10 * np.log10(_power(y) / _power(x)) == pytest.approx(gain_db, abs=0.01)
    assert np.max(np.abs(apply_gain(x, 30.0))) <= 1.0  # clipped at full scale


def test_reverb_adds_a_decaying_tail_and_keeps_length_and_power() -> None:
    x = _tone(300.0, 1.0)
    x = np.concatenate([x, np.zeros(SR // 2, np.float32)])
    y = reverberate(x, np.random.default_rng(7))
    assert y.shape == x.shape
    assert _power(y) == pytest.approx(_power(x), rel=1e-3)
    after = y[SR + 800:SR + 2400]  # 50-150 ms after the tone stopped: the room still rings
    assert _power(after) > 1e-6 * _power(x) and np.all(x[SR:] == 0)
    assert np.array_equal(y, reverberate(x, np.random.default_rng(7)))


def test_simulated_rir_decays_by_60_db_in_t60() -> None:
    h = simulated_rir(np.random.default_rng(8), t60=0.5)[0]
    assert h.size == SR // 2 and np.argmax(np.abs(h)) == 0
    late = h[SR // 20:]  # after the direct sound and the early reflections
    energy = np.cumsum((late[::-1] ** 2))[::-1]  # Schroeder backward integration
    db = 10 * np.log10(energy / energy[0])
    # Between -5 and -25 dB the late tail decays at 60 dB per t60 (within 20 %).
    i5, i25 = np.argmax(db < -5), np.argmax(db < -25)
    slope = (db[i25] - db[i5]) / ((i25 - i5) / SR)
    assert slope == pytest.approx(-60 / 0.5, rel=0.2)


# ---------------------------------------------------------------------------------------------------------------
# The augmenter
# ---------------------------------------------------------------------------------------------------------------
def test_default_config_has_every_effect_off() -> None:
    assert build_acoustic_augment(DataConfig(), seed=1, epoch=1) is None


def test_draws_are_a_function_of_seed_epoch_and_utterance() -> None:
    cfg = DataConfig(noise_prob=0.5, gain_prob=0.5, band_limit_prob=0.5, tempo_prob=0.3)
    x = _speech_like()
    aug = AcousticAugment(cfg, seed=3, epoch=2)
    first = {u: aug(x, u) for u in ("a", "b", "c")}
    again = AcousticAugment(cfg, seed=3, epoch=2)
    for u in ("c", "a", "b"):  # any order, a fresh object: the same output
        assert np.array_equal(again(x, u), first[u])
    again.set_epoch(3)
    assert any(not np.array_equal(again(x, u), first[u]) for u in first)
    # The draws do not touch the global random streams.
    torch.manual_seed(0)
    np.random.seed(0)
    before = (torch.rand(1), np.random.rand())
    torch.manual_seed(0)
    np.random.seed(0)
    AcousticAugment(DataConfig(reverb_prob=1.0, noise_prob=1.0), seed=1)(x, "u")
    assert (torch.rand(1), np.random.rand()) == before


@pytest.mark.parametrize("effect", EFFECTS)
def test_each_probability_sets_how_often_its_effect_is_drawn(effect: str) -> None:
    aug = AcousticAugment(DataConfig(**{f"{effect}_prob": 0.3}), seed=0)
    share = np.mean([effect in aug.plan(f"utt{i}").effects for i in range(2000)])
    assert share == pytest.approx(0.3, abs=0.04)
    assert all(aug.plan(f"utt{i}").effects in ([], [effect]) for i in range(200))


def test_config_ranges_are_checked() -> None:
    for bad in (dict(noise_prob=1.5), dict(tempo_range=(1.2, 0.9)), dict(noise_types=("rain",)),
                dict(band_limit_cutoff=(100.0, 4000.0)), dict(pitch_semitones=-1.0)):
        with pytest.raises(ConfigError, match="data\\."):
            AcousticAugment(DataConfig(**bad), seed=0)


def test_recipe_fields_load_strictly(tmp_path) -> None:
    from asrkit.config import load_train_config

    path = tmp_path / "r.yaml"
    path.write_text("data: {noise_prob: 0.5, noise_snr: [10, 20], noise_types: [babble, hum]}\n")
    cfg = load_train_config(path)
    assert cfg.data.noise_snr == (10.0, 20.0) and cfg.data.noise_types == ("babble", "hum")
    path.write_text("data: {noise_probability: 0.5}\n")
    with pytest.raises(ConfigError, match="noise_probability"):
        load_train_config(path)


# ---------------------------------------------------------------------------------------------------------------
# The dataset hook
# ---------------------------------------------------------------------------------------------------------------
def test_dataset_recomputes_features_of_augmented_utterances_only(tone_corpus, tmp_path) -> None:
    from asrkit.data.datamodule import AsrDataset, load_cut_audio, load_cut_features, load_cuts
    from asrkit.data.fbank import compute_fbank_for_splits
    from asrkit.data.features import compute_fbank
    from asrkit.data.prepare_lang import prepare_tokenizer
    from asrkit.data.tokenizer import Tokenizer

    out = compute_fbank_for_splits(tone_corpus, "tiny", ["train"], tmp_path / "fbank", num_jobs=1)
    prepare_tokenizer(out["train"], tmp_path / "lang", vocab_size=30)
    tok = Tokenizer.load(tmp_path / "lang")
    cuts = load_cuts(out["train"]).to_eager()
    plain = AsrDataset(tok)[cuts]
    aug = AcousticAugment(DataConfig(noise_prob=0.5, noise_types=("babble",), noise_snr=(0.0, 0.0)), seed=5)
    batch = AsrDataset(tok, acoustic=aug)[cuts]
    assert batch.cut_ids == plain.cut_ids and batch.texts == plain.texts
    by_id = {c.id: c for c in cuts}
    changed = 0
    for i, cid in enumerate(batch.cut_ids):
        n = int(batch.feature_lens[i])
        feats = batch.features[i, :n]
        if aug.plan(cid).effects:
            changed += 1
            cut = by_id[cid]
            assert not torch.allclose(feats, load_cut_features(cut)[:n], atol=0.1)
            clean = compute_fbank(load_cut_audio(cut), SR)
            assert n == clean.shape[0]
        else:
            assert torch.equal(feats, plain.features[plain.cut_ids.index(cid), :n])
    assert 0 < changed < len(cuts)
    again = AsrDataset(tok, acoustic=AcousticAugment(aug.cfg, seed=5))[cuts]
    assert torch.equal(again.features, batch.features)  # deterministic, babble included


def test_loading_cost_benchmark_runs_on_a_corpus(tone_corpus, tmp_path, capsys) -> None:
    from asrkit.data.acoustic_bench import main
    from asrkit.data.fbank import compute_fbank_for_splits
    from asrkit.data.prepare_lang import prepare_tokenizer

    out = compute_fbank_for_splits(tone_corpus, "tiny", ["train"], tmp_path / "fbank", num_jobs=1)
    prepare_tokenizer(out["train"], tmp_path / "lang", vocab_size=30)
    main(["--cuts", str(out["train"]), "--lang-dir", str(tmp_path / "lang"), "--set", "noise_prob=1.0,gain_prob=0.5"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 3 and "noise_prob=1.0,gain_prob=0.5" in rows[2]
    assert all(float(r.split("|")[2]) > 0 for r in rows[1:])


def test_training_with_acoustic_augmentation_resumes_exactly(tone_corpus, tmp_path) -> None:
    """Stopped after 3 steps and resumed to 6, a run with every effect on ends with the parameters of an
    uninterrupted 6-step run: the draws depend on (seed, epoch, utterance) only."""
    from test_training import tiny_config

    from asrkit.data.fbank import compute_fbank_for_splits
    from asrkit.data.prepare_lang import prepare_tokenizer
    from asrkit.training.checkpoint import load_checkpoint
    from asrkit.training.loop import TrainJob, train

    cuts = compute_fbank_for_splits(tone_corpus, "tiny", ["train"], tmp_path / "fbank", num_jobs=1)["train"]
    prepare_tokenizer(cuts, tmp_path / "lang", vocab_size=30)
    probs = {f"data.{e}_prob": 0.4 for e in EFFECTS}

    def run(exp, max_steps, resume=False, augment=True):
        job = TrainJob(exp_dir=exp, train_cuts=cuts, lang_dir=tmp_path / "lang", device="cpu", progress=False,
                       tensorboard=False, resume=resume)
        return train(job, tiny_config(num_epochs=50, max_steps=max_steps, **(probs if augment else {})))

    ref = run(tmp_path / "ref", 6)
    run(tmp_path / "cut", 3)
    resumed = run(tmp_path / "cut", 6, resume=True)
    a, b = load_checkpoint(ref)["model"], load_checkpoint(resumed)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    plain = load_checkpoint(run(tmp_path / "plain", 6, augment=False))["model"]
    assert any(not torch.equal(a[k], plain[k]) for k in a)  # the augmentation did change what was trained on
