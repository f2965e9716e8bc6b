"""WER computation and icefall-format result files, against hand-computed values."""

from __future__ import annotations

import pytest

from asrkit.decoding.scoring import compute_error_stats, compute_wer, save_results

# u1: a (b->x) c d (*->e)   -> 1 sub, 1 ins;  u2: (f->*) g -> 1 del.  6 reference words.
RESULTS = [
    ("u2", "f g".split(), "g".split()),
    ("u1", "a b c d".split(), "a x c d e".split()),
]


def test_error_counts_and_wer():
    stats = compute_error_stats(RESULTS)
    assert (stats.subs, stats.ins, stats.dels, stats.corr, stats.ref_words) == (1, 1, 1, 4, 6)
    assert compute_wer(RESULTS) == pytest.approx(50.0)


def test_wer_edge_cases():
    assert compute_wer([("u", ["a"], ["a"])]) == 0.0
    assert compute_wer([("u", ["a", "b"], [])]) == 100.0
    assert compute_wer([("u", ["a"], ["b", "c", "d"])]) == 300.0  # WER is not capped at 100
    assert compute_wer([("u", [], [])]) == 0.0


def test_result_files(tmp_path):
    wer = save_results(tmp_path, "test-greedy_search", RESULTS)
    assert wer == pytest.approx(50.0)

    recogs = (tmp_path / "recogs-test-greedy_search.txt").read_text().splitlines()
    assert recogs == [
        "u1:\tref=['a', 'b', 'c', 'd']",
        "u1:\thyp=['a', 'x', 'c', 'd', 'e']",
        "u2:\tref=['f', 'g']",
        "u2:\thyp=['g']",
    ]

    errs = (tmp_path / "errs-test-greedy_search.txt").read_text()
    lines = errs.splitlines()
    assert lines[0] == "%WER = 50.00"
    assert lines[1] == "Errors: 1 insertions, 1 deletions, 1 substitutions, over 6 reference words (4 correct)"
    assert "u1:\ta (b->x) c d (*->e)" in lines
    assert "u2:\t(f->*) g" in lines

    def section(title: str) -> list[str]:
        start = next(i for i, line in enumerate(lines) if line.startswith(title))
        out = []
        for line in lines[start + 1:]:
            if not line:
                break
            out.append(line)
        return out

    assert section("SUBSTITUTIONS:") == ["1   b -> x"]
    assert section("DELETIONS:") == ["1   f"]
    assert section("INSERTIONS:") == ["1   e"]
    per_word = {line.split()[0]: line.split()[1:] for line in section("PER-WORD STATS:")}
    # word: corr tot_errs count_in_ref count_in_hyp
    assert per_word["b"] == ["0", "1", "1", "0"]
    assert per_word["x"] == ["0", "1", "0", "1"]
    assert per_word["e"] == ["0", "1", "0", "1"]
    assert per_word["f"] == ["0", "1", "1", "0"]
    assert per_word["a"] == ["1", "0", "1", "1"]
    assert per_word["g"] == ["1", "0", "1", "1"]

    summary = (tmp_path / "wer-summary-test-greedy_search.txt").read_text().splitlines()
    assert summary == ["settings\tWER", "test-greedy_search\t50.00"]


def test_consecutive_errors_are_grouped(tmp_path):
    save_results(tmp_path, "x", [("u", "a b c d".split(), "a y z d".split())])
    lines = (tmp_path / "errs-x.txt").read_text().splitlines()
    assert "u:\ta (b c->y z) d" in lines


def test_per_speaker_report(tmp_path):
    from asrkit.decoding.scoring import speaker_wers

    results = [*RESULTS, ("u3", "h i".split(), "h i".split())]
    speakers = {"u1": "spk-a", "u2": "spk-b", "u3": "spk-b"}
    stats = speaker_wers(results, speakers)
    assert stats["spk-a"].wer == pytest.approx(50.0) and stats["spk-b"].wer == pytest.approx(25.0)
    assert speaker_wers(results, {"u1": "spk-a"})["?"].ref_words == 4  # unnamed utterances are grouped as "?"

    save_results(tmp_path, "test-greedy_search", results, speakers=speakers, voices={"spk-a": "espeak en+klatt"})
    lines = (tmp_path / "wer-by-speaker-test-greedy_search.txt").read_text().splitlines()
    assert lines == ["speaker\tvoice\tutterances\twords\terrors\tWER",
                     "spk-a\tespeak en+klatt\t1\t4\t2\t50.00",  # worst first
                     "spk-b\t-\t2\t4\t1\t25.00"]
    save_results(tmp_path, "no-speakers", results)
    assert not (tmp_path / "wer-by-speaker-no-speakers.txt").exists()


def test_speakers_and_voices_come_from_the_supervisions():
    from lhotse import MonoCut, SupervisionSegment

    from asrkit.evaluate import speakers_and_voices

    def cut(cut_id, speaker, custom=None):
        sup = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0, duration=1, speaker=speaker, custom=custom)
        return MonoCut(id=cut_id, start=0, duration=1, channel=0, supervisions=[sup])

    cuts = [cut("a1", "ts01", {"engine": "flite", "voice": "kal16"}), cut("a2", "ts01", {"engine": "flite",
            "voice": "kal16"}), cut("b1", "1089"), cut("c1", None)]
    speakers, voices = speakers_and_voices(cuts)
    assert speakers == {"a1": "ts01", "a2": "ts01", "b1": "1089"}
    assert voices == {"ts01": "flite kal16"}
