"""Tests for the synthetic corpus (real synthesis of a few dozen short utterances, engines mixed)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from asrkit.data.corpora.synth import (
    COMMANDS,
    DIGITS,
    LETTERS,
    generate_synth,
    make_an4_text,
    make_sentence,
    on_top_sizes,
    parse_engine_mix,
    prepare_synth,
)
from asrkit.errors import ConfigError, DataError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not installed")

TINY = dict(hours=0.012, seed=3, train_speakers=4, dev_speakers=2, test_speakers=2, num_jobs=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synth(tmp_path_factory.mktemp("synth") / "c", **TINY)


@pytest.fixture(scope="module")
def manifests(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("manifests")
    return prepare_synth(corpus, out), out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != ".completed"}


def test_texts_are_an4_like() -> None:
    rng = random.Random(0)
    vocab = set(LETTERS) | set(DIGITS) | {"OH"} | set(COMMANDS)
    texts = [make_an4_text(rng) for _ in range(300)]
    for t in texts:
        assert t == t.upper() and "  " not in t and t.strip() == t and t
    words = [w for t in texts for w in t.split()]
    assert vocab & set(words) >= {"A", "Z", "OH", "ZERO", "ENTER", "RUBOUT"}
    assert any(all(len(w) == 1 for w in t.split()) and len(t.split()) >= 3 for t in texts)  # spelled
    sentence = make_sentence(random.Random(1))
    assert sentence == sentence.upper() and len(sentence.split()) >= 3


def test_manifests_splits_and_files(corpus: Path, manifests: tuple[dict, Path]) -> None:
    m, out = manifests
    assert sorted(m) == ["dev", "test", "train"]
    total = 0.0
    for split, pair in m.items():
        recs, sups = pair["recordings"], pair["supervisions"]
        assert len(recs) == len(sups) > 0
        assert (out / f"synth_recordings_{split}.jsonl.gz").is_file()
        assert (out / f"synth_supervisions_{split}.jsonl.gz").is_file()
        for sup in sups:
            rec = recs[sup.recording_id]
            assert rec.sampling_rate == 16000 and rec.num_channels == 1
            assert 0.4 < sup.duration < 6.0 and sup.duration == pytest.approx(rec.duration)
            assert sup.text == sup.text.upper() and sup.text.split()
            assert sup.id.startswith(sup.speaker + "-")
            total += sup.duration
        audio = recs[0].load_audio()
        assert audio.shape == (1, recs[0].num_samples) and 0.01 < abs(audio).max() <= 1.0
    # Size is approximately the requested amount of audio.
    assert 0.6 * TINY["hours"] * 3600 < total < 1.6 * TINY["hours"] * 3600


def test_splits_are_disjoint_by_speaker_and_variant(corpus: Path, manifests: tuple[dict, Path]) -> None:
    m, _ = manifests
    spk = {split: {s.speaker for s in pair["supervisions"]} for split, pair in m.items()}
    assert len(spk["train"]) == 4 and len(spk["dev"]) == 2 and len(spk["test"]) == 2
    assert not (spk["train"] & spk["dev"]) and not (spk["train"] & spk["test"]) and not (spk["dev"] & spk["test"])
    info = {s["speaker_id"]: s for s in json.loads((corpus / "speakers.json").read_text())}
    variants = {split: {info[s]["voice"].split("+")[1] for s in ids} for split, ids in spk.items()}
    assert not (variants["train"] & variants["test"]) and not (variants["train"] & variants["dev"])
    assert not (variants["dev"] & variants["test"])


def test_deterministic_and_independent_of_num_jobs(corpus: Path, tmp_path: Path) -> None:
    again = generate_synth(tmp_path / "again", **{**TINY, "num_jobs": 1})
    assert _files(again) == _files(corpus)
    other = generate_synth(tmp_path / "other", **{**TINY, "seed": 4})
    assert (other / "metadata" / "train.jsonl").read_text() != (corpus / "metadata" / "train.jsonl").read_text()


def test_completed_marker_skips_and_guards(tmp_path: Path) -> None:
    small = {**TINY, "hours": 0.004, "num_jobs": 1}
    d = generate_synth(tmp_path / "c", **small)
    params = json.loads((d / ".completed").read_text())["params"]
    assert params["seed"] == 3 and params["hours"] == 0.004
    wav = next((d / "wav").rglob("*.wav"))
    wav.write_bytes(b"tampered")
    generate_synth(d, **small)  # same parameters: skipped, nothing rewritten
    assert wav.read_bytes() == b"tampered"
    with pytest.raises(DataError, match="other parameters"):
        generate_synth(d, **{**small, "seed": 9})
    generate_synth(d, **{**small, "seed": 9}, force=True)
    assert json.loads((d / ".completed").read_text())["params"]["seed"] == 9
    assert not wav.exists() or wav.read_bytes() != b"tampered"


def test_prepare_requires_finished_corpus(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no .completed"):
        prepare_synth(tmp_path)


def test_invalid_parameters(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="hours"):
        generate_synth(tmp_path, hours=0)
    with pytest.raises(DataError, match="eval_engine"):
        generate_synth(tmp_path, hours=0.01, eval_engine="mbrola")


def _mixed_engines() -> tuple[str, str]:
    """A training engine besides espeak-ng and a left-out one, from those installed (CI installs all)."""
    from asrkit.data.corpora.tts import ENGINES

    have = [e for e in ("flite", "festival", "pico") if ENGINES[e].available()]
    if len(have) < 2:
        pytest.skip(f"needs two of flite, festival, pico installed (have {have})")
    return have[0], have[1]


MIXED = dict(hours=0.01, seed=1, train_speakers=6, dev_speakers=1, test_speakers=2, sentences=True)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    train_engine, left_out = _mixed_engines()
    d = generate_synth(tmp_path_factory.mktemp("mixed") / "m", **MIXED, num_jobs=2,
                       engine_mix=(("espeak", 2.0), (train_engine, 1.0)), eval_engine=left_out)
    return d, train_engine, left_out


def test_mixed_engines_and_a_left_out_engine(mixed: tuple[Path, str, str]) -> None:
    d, train_engine, left_out = mixed
    m = prepare_synth(d)
    assert sorted(m) == sorted(["train", "dev", "test", f"dev_{left_out}", f"test_{left_out}"])
    info = {s["speaker_id"]: s for s in json.loads((d / "speakers.json").read_text())}
    engines = {split: {info[s.speaker]["engine"] for s in pair["supervisions"]} for split, pair in m.items()}
    assert engines["train"] == {"espeak", train_engine}
    assert engines["dev"] == engines["test"] == {"espeak"}
    assert engines[f"dev_{left_out}"] == engines[f"test_{left_out}"] == {left_out}
    train_spk = {s.speaker for s in m["train"]["supervisions"]}
    assert sum(info[s]["engine"] == train_engine for s in train_spk) == 2  # a third of 6
    # The manifest records engine and voice of every utterance.
    for pair in m.values():
        for sup in pair["supervisions"]:
            assert sup.custom == {"engine": info[sup.speaker]["engine"], "voice": info[sup.speaker]["voice"]}
    # Left-out speakers: as many utterances each as the test speakers, non-silent 16 kHz audio.
    per = {split: len(pair["supervisions"]) / len({s.speaker for s in pair["supervisions"]})
           for split, pair in m.items()}
    assert per[f"test_{left_out}"] == pytest.approx(per["test"], abs=1)
    rec = m[f"test_{left_out}"]["recordings"][0]
    assert rec.sampling_rate == 16000 and abs(rec.load_audio()).max() > 0.01


def test_mixed_corpus_is_deterministic(mixed: tuple[Path, str, str], tmp_path: Path) -> None:
    d, train_engine, left_out = mixed
    again = generate_synth(tmp_path / "again", **MIXED, num_jobs=1,
                           engine_mix=(("espeak", 2.0), (train_engine, 1.0)), eval_engine=left_out)
    assert _files(again) == _files(d)


def test_espeak_speakers_do_not_depend_on_the_mix(corpus: Path, tmp_path: Path) -> None:
    """Training 4 espeak-ng speakers + 2 of another engine: the espeak-ng speakers, dev and test are those of the
    espeak-ng-only corpus with 4 training speakers."""
    train_engine, _ = _mixed_engines()
    d = generate_synth(tmp_path / "mix", **{**TINY, "train_speakers": 6, "num_jobs": 2},
                       engine_mix=(("espeak", 4.0), (train_engine, 2.0)))
    base = json.loads((corpus / "speakers.json").read_text())
    info = json.loads((d / "speakers.json").read_text())
    assert [s for s in info if s["engine"] == "espeak"] == base
    for split in ("dev", "test"):
        assert _files(d / "wav" / split) == _files(corpus / "wav" / split)


def test_train_hours_put_other_engines_on_top_of_the_espeak_speakers(corpus: Path, tmp_path: Path) -> None:
    """4 espeak-ng speakers + 2 of another engine with 1.5x the training hours: the espeak-ng speakers keep the
    speakers *and* about the audio of the 4-speaker espeak-ng-only corpus; dev and test do not change."""
    from asrkit.data.corpora.synth import EVAL_SHARE

    train_engine, _ = _mixed_engines()
    base_train_hours = TINY["hours"] * (1 - 2 * EVAL_SHARE)
    d = generate_synth(tmp_path / "top", **{**TINY, "train_speakers": 6, "num_jobs": 2},
                       engine_mix=(("espeak", 4.0), (train_engine, 2.0)), train_hours=1.5 * base_train_hours)
    info = json.loads((d / "speakers.json").read_text())
    assert [s for s in info if s["engine"] == "espeak"] == json.loads((corpus / "speakers.json").read_text())
    for split in ("dev", "test"):
        assert _files(d / "wav" / split) == _files(corpus / "wav" / split)

    def espeak_train_seconds(root: Path) -> float:
        stats = json.loads((root / ".completed").read_text())["stats"]
        rows = [json.loads(line) for line in (root / "metadata" / "train.jsonl").read_text().splitlines()]
        return stats["seconds"]["train"] * sum(r["speaker"] in espeak_ids for r in rows) / len(rows)

    espeak_ids = {s["speaker_id"] for s in info if s["engine"] == "espeak" and s["split"] == "train"}
    assert espeak_train_seconds(d) == pytest.approx(espeak_train_seconds(corpus), rel=0.3)
    assert json.loads((d / ".completed").read_text())["params"]["train_hours"] == 1.5 * base_train_hours
    with pytest.raises(DataError, match="train_hours"):
        generate_synth(tmp_path / "bad", **TINY, train_hours=0.0)

    # engines_on_top computes those sizes from the espeak-ng-only corpus's: the same corpus, file for file.
    mix = (("espeak", 4.0), (train_engine, 2.0))
    speakers, hours = on_top_sizes(TINY["hours"], 4, mix, TINY["dev_speakers"], TINY["test_speakers"])
    assert speakers == 6 and hours == pytest.approx(1.5 * base_train_hours)
    on_top = generate_synth(tmp_path / "on-top", **{**TINY, "num_jobs": 2}, engine_mix=mix, engines_on_top=True)
    assert _files(on_top) == _files(d)
    params = json.loads((on_top / ".completed").read_text())["params"]
    assert params["train_speakers"] == 6 and "engine_counts" not in params


def test_engines_on_top_keep_the_espeak_speakers_where_the_shares_would_split_otherwise(tmp_path: Path) -> None:
    """6 espeak-ng speakers and espeak=4 X=1 Y=1 on top: 6 + 2 + 2, although 10 split by the shares is 7 + 2 + 1;
    the espeak-ng training speakers are those of the 6-speaker espeak-ng-only corpus."""
    from dataclasses import asdict

    from asrkit.data.corpora.synth import _make_speakers, on_top_counts

    train_engine, other_engine = _mixed_engines()
    mix = (("espeak", 4.0), (train_engine, 1.0), (other_engine, 1.0))
    assert on_top_counts(6, mix) == {"espeak": 6, train_engine: 2, other_engine: 2}
    assert on_top_sizes(TINY["hours"], 6, mix, TINY["dev_speakers"], TINY["test_speakers"])[0] == 10
    d = generate_synth(tmp_path / "c", **{**TINY, "train_speakers": 6}, engine_mix=mix, engines_on_top=True)
    info = json.loads((d / "speakers.json").read_text())
    engines = [s["engine"] for s in info if s["split"] == "train"]
    assert {e: engines.count(e) for e in set(engines)} == {"espeak": 6, train_engine: 2, other_engine: 2}
    alone = _make_speakers(TINY["seed"], 6, TINY["dev_speakers"], TINY["test_speakers"])
    assert [s for s in info if s["engine"] == "espeak"] == [asdict(s) for s in alone]
    params = json.loads((d / ".completed").read_text())["params"]
    assert params["engine_counts"] == {"espeak": 6, train_engine: 2, other_engine: 2}
    assert generate_synth(tmp_path / "c", **{**TINY, "train_speakers": 6}, engine_mix=mix,
                          engines_on_top=True) == d  # the marker matches: nothing is redone
    with pytest.raises(DataError, match="not both"):
        generate_synth(tmp_path / "bad", **TINY, engine_mix=mix, engines_on_top=True, train_hours=1.0)


def test_engine_mix_validation(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="eval_engine"):
        generate_synth(tmp_path, hours=0.01, eval_engine="espeak")
    with pytest.raises(DataError, match="eval_engine"):
        generate_synth(tmp_path, hours=0.01, engine_mix=(("espeak", 1.0), ("flite", 1.0)), eval_engine="flite")
    with pytest.raises(DataError, match="engine_mix"):
        generate_synth(tmp_path, hours=0.01, engine_mix=(("flite", 1.0),))
    with pytest.raises(DataError, match="engine_mix"):
        generate_synth(tmp_path, hours=0.01, engine_mix=(("espeak", 1.0), ("mbrola", 1.0)))
    assert parse_engine_mix(["espeak=0.8", "flite=0.2"]) == (("espeak", 0.8), ("flite", 0.2))
    for bad in ("espeak", "espeak=0", "mbrola=1", "flite=x"):
        with pytest.raises(ConfigError, match="engine mix"):
            parse_engine_mix([bad])


def test_no_reserved_voice_in_any_split(mixed: tuple[Path, str, str], corpus: Path) -> None:
    from asrkit.data.corpora.tts import is_reserved

    for d in (mixed[0], corpus):
        for s in json.loads((d / "speakers.json").read_text()):
            assert not is_reserved(s["engine"], s["voice"]), s


def test_generated_voices_change_only_the_chosen_training_speakers(corpus: Path, tmp_path: Path) -> None:
    d = generate_synth(tmp_path / "gv", **{**TINY, "generated_voice_speakers": 2})
    base = json.loads((corpus / "speakers.json").read_text())
    info = json.loads((d / "speakers.json").read_text())
    changed = [(a, b) for a, b in zip(base, info) if a != b]
    assert len(changed) == 2
    for old, new in changed:
        assert new["split"] == "train" and "+asrkit_rv" in new["voice"]
        assert {**old, "voice": None} == {**new, "voice": None}  # only the variant differs
        assert old["voice"].split("+")[0] == new["voice"].split("+")[0]  # same accent
        variant = new["voice"].split("+")[1]
        text = (d / "voices" / variant).read_text()
        assert f"name {variant}" in text and text.count("\nformant ") == 9
    # Every text, and dev/test audio byte for byte, are what the corpus without generated voices has.
    for split in ("train", "dev", "test"):
        assert (d / "metadata" / f"{split}.jsonl").read_text() == (corpus / "metadata" / f"{split}.jsonl").read_text()
    for split in ("dev", "test"):
        assert _files(d / "wav" / split) == _files(corpus / "wav" / split)
    speaker = changed[0][1]["speaker_id"]
    new_wavs, old_wavs = _files(d / "wav" / "train" / speaker), _files(corpus / "wav" / "train" / speaker)
    assert new_wavs.keys() == old_wavs.keys() and all(new_wavs[k] != old_wavs[k] for k in new_wavs)
    with pytest.raises(DataError, match="generated_voice_speakers"):
        generate_synth(tmp_path / "bad", **{**TINY, "generated_voice_speakers": 5})


def test_dev_and_test_do_not_depend_on_the_training_speakers(corpus: Path, tmp_path: Path) -> None:
    d = generate_synth(tmp_path / "more", **{**TINY, "train_speakers": 7})
    base = {s["speaker_id"]: s for s in json.loads((corpus / "speakers.json").read_text())}
    info = {s["speaker_id"]: s for s in json.loads((d / "speakers.json").read_text())}
    assert sum(s["split"] == "train" for s in info.values()) == 7
    for split in ("dev", "test"):
        assert {k: v for k, v in info.items() if v["split"] == split} == \
               {k: v for k, v in base.items() if v["split"] == split}
        assert (d / "metadata" / f"{split}.jsonl").read_text() == (corpus / "metadata" / f"{split}.jsonl").read_text()
        assert _files(d / "wav" / split) == _files(corpus / "wav" / split)
    # The training hours are the same, shared by more speakers: about as many utterances, fewer per speaker.
    n_base = len((corpus / "metadata" / "train.jsonl").read_text().splitlines())
    n_more = len((d / "metadata" / "train.jsonl").read_text().splitlines())
    assert abs(n_more - n_base) <= 0.25 * n_base


# ---------------------------------------------------------------------------------------------------------------
# egs/synth/run.sh: the two reports of stage 8
# ---------------------------------------------------------------------------------------------------------------
def _run_report_stage(work: Path, *args: str):
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    return subprocess.run(["bash", str(repo / "egs/synth/run.sh"), "--work-dir", str(work), "--exp-dir", "exp/x",
                           "--epoch", "3", "--avg", "2", "--stage", "8", "--stop-stage", "8", *args],
                          capture_output=True, text=True)


def _summary(work: Path, method: str, split: str, wer: float) -> None:
    d = work / "exp/x" / method
    d.mkdir(parents=True, exist_ok=True)
    (d / f"wer-summary-{split}-epoch-3-avg-2-use-averaged-model-blank-penalty-0.5.txt").write_text(
        f"settings\tWER\n{split}\t{wer:.2f}\n")


def test_recipe_prints_the_left_out_engine_wer_and_then_the_unseen_voices_wer(tmp_path: Path) -> None:
    for method, offset in (("modified_beam_search", 0.0), ("greedy_search", 1.0)):
        _summary(tmp_path, method, "test", 3.25 + offset)
        _summary(tmp_path, method, "test_flite", 12.5 + offset)
    proc = _run_report_stage(tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "%WER[test_flite] = 12.50" in lines
    assert lines[-1] == "%WER = 3.25"  # the unseen voices of the training engines, last
    assert any("left out of training (flite)" in line for line in lines)
    assert any("greedy_search: %WER 13.50" in line for line in lines)
    # Without a left-out engine only the unseen-voice WER is printed; with one whose decode is missing, an error.
    proc = _run_report_stage(tmp_path, "--eval-engine", "none")
    assert proc.returncode == 0 and "test_flite" not in proc.stdout and proc.stdout.strip().endswith("%WER = 3.25")
    proc = _run_report_stage(tmp_path, "--eval-engine", "festival")
    assert proc.returncode == 1 and "wer-summary-test_festival" in proc.stderr


def test_prepare_synth_cli_passes_the_engine_mix_and_the_left_out_engine(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from asrkit.cli.main import app

    train_engine, left_out = _mixed_engines()
    args = ["prepare", "synth", "--corpus-dir", str(tmp_path / "c"), "--manifest-dir", str(tmp_path / "m"),
            "--hours", "0.004", "--train-speakers", "3", "--engine-mix", "espeak=2", "--engine-mix",
            f"{train_engine}=1", "--engines-on-top", "--eval-engine", left_out]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    params = json.loads((tmp_path / "c" / ".completed").read_text())["params"]
    assert params["engine_mix"] == [["espeak", 2.0], [train_engine, 1.0]] and params["eval_engine"] == left_out
    assert params["train_speakers"] == 5 and params["train_hours"] == pytest.approx(0.004 * 0.86 * 5 / 3)
    assert (tmp_path / "m" / f"synth_supervisions_test_{left_out}.jsonl.gz").is_file()
    bad = CliRunner().invoke(app, args[:-2] + ["--engine-mix", "espeak"])
    assert isinstance(bad.exception, ConfigError) and "engine mix" in str(bad.exception)
