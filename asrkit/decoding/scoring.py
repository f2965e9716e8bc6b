"""Word error rate and icefall-style result files.

For a test set ``<name>`` (e.g. ``test-clean-greedy_search``) :func:`save_results` writes, in
``out_dir``:

* ``recogs-<name>.txt``: per utterance two lines, ``<id>:\\tref=[...]`` and ``<id>:\\thyp=[...]``;
* ``errs-<name>.txt``: ``%WER = 12.34``, a line with the insertion/deletion/substitution
  counts, then sections ``PER-UTT DETAILS``,
  ``SUBSTITUTIONS``, ``DELETIONS``, ``INSERTIONS`` and ``PER-WORD STATS``;
* ``wer-summary-<name>.txt``: ``settings<TAB>WER`` header and one line per setting;
* ``wer-by-speaker-<name>.txt`` (when the speakers are known): one line per speaker with its voice (for synthetic
  corpora: the TTS engine and voice that spoke it), utterances, reference words, errors and WER, worst first.

The layout follows icefall's so existing tooling (grep for ``%WER``) keeps working.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

Result = tuple[str, Sequence[str], Sequence[str]]
"""(utterance id, reference words, hypothesis words)."""

_GAP = "*"


@dataclass
class ErrorStats:
    """Error counts of a set of alignments.

    Attributes:
        ref_words: number of reference words (the WER denominator).
        ins, dels, subs, corr: total insertions, deletions, substitutions and correct words.
        sub_pairs: how often each (ref, hyp) substitution happened.
        del_words / ins_words: how often each word was deleted / inserted.
        per_word: for each word, [correct, substituted-as-ref, substituted-as-hyp, inserted,
            deleted].
    """

    ref_words: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0
    corr: int = 0
    sub_pairs: Counter = field(default_factory=Counter)
    del_words: Counter = field(default_factory=Counter)
    ins_words: Counter = field(default_factory=Counter)
    per_word: defaultdict = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0, 0]))

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def wer(self) -> float:
        """Word error rate in percent; 0 when there are no reference words and no errors."""
        if self.ref_words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.ref_words


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str, str]]:
    """Levenshtein alignment of two word sequences; a gap is ``"*"`` (kaldialign)."""
    import kaldialign

    return kaldialign.align(list(ref), list(hyp), _GAP)


def compute_error_stats(results: Sequence[Result]) -> ErrorStats:
    """Accumulate insertion/deletion/substitution statistics over all utterances."""
    stats = ErrorStats()
    for _, ref, hyp in results:
        stats.ref_words += len(ref)
        for r, h in align(ref, hyp):
            if r == _GAP:
                stats.ins += 1
                stats.ins_words[h] += 1
                stats.per_word[h][3] += 1
            elif h == _GAP:
                stats.dels += 1
                stats.del_words[r] += 1
                stats.per_word[r][4] += 1
            elif r != h:
                stats.subs += 1
                stats.sub_pairs[(r, h)] += 1
                stats.per_word[r][1] += 1
                stats.per_word[h][2] += 1
            else:
                stats.corr += 1
                stats.per_word[r][0] += 1
    return stats


def compute_wer(results: Sequence[Result]) -> float:
    """Corpus-level WER in percent (total errors / total reference words * 100)."""
    return compute_error_stats(results).wer


def _utt_details(ref: Sequence[str], hyp: Sequence[str]) -> str:
    """``a b (c->d) (*->e)``; runs of consecutive errors are grouped into one bracket."""
    parts: list[str] = []
    run_ref: list[str] = []
    run_hyp: list[str] = []

    def flush() -> None:
        if run_ref:
            parts.append(f"({' '.join(run_ref)}->{' '.join(run_hyp)})")
            run_ref.clear()
            run_hyp.clear()

    for r, h in align(ref, hyp):
        if r == h:
            flush()
            parts.append(r)
        else:
            run_ref.append(r)
            run_hyp.append(h)
    flush()
    return " ".join(parts)


def write_recogs(path: str | Path, results: Sequence[Result]) -> None:
    """Write ``recogs-<name>.txt``: ref and hyp word lists per utterance, sorted by id."""
    with open(path, "w", encoding="utf-8") as f:
        for utt_id, ref, hyp in sorted(results, key=lambda r: r[0]):
            print(f"{utt_id}:\tref={list(ref)}", file=f)
            print(f"{utt_id}:\thyp={list(hyp)}", file=f)


def write_error_stats(f: TextIO, results: Sequence[Result]) -> float:
    """Write the ``errs-<name>.txt`` report to an open text file and return the WER (%)."""
    stats = compute_error_stats(results)
    print(f"%WER = {stats.wer:.2f}", file=f)
    print(f"Errors: {stats.ins} insertions, {stats.dels} deletions, {stats.subs} substitutions, "
          f"over {stats.ref_words} reference words ({stats.corr} correct)", file=f)
    print("Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, "
          "DELETIONS:, INSERTIONS:, PER-WORD STATS:", file=f)
    print("", file=f)
    print("PER-UTT DETAILS: corr or (ref->hyp)", file=f)
    for utt_id, ref, hyp in sorted(results, key=lambda r: r[0]):
        print(f"{utt_id}:\t{_utt_details(ref, hyp)}", file=f)
    print("", file=f)
    print("SUBSTITUTIONS: count ref -> hyp", file=f)
    for (r, h), n in sorted(stats.sub_pairs.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{n}   {r} -> {h}", file=f)
    print("", file=f)
    print("DELETIONS: count ref", file=f)
    for w, n in sorted(stats.del_words.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{n}   {w}", file=f)
    print("", file=f)
    print("INSERTIONS: count hyp", file=f)
    for w, n in sorted(stats.ins_words.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{n}   {w}", file=f)
    print("", file=f)
    print("PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp", file=f)
    rows = []
    for w, (corr, ref_sub, hyp_sub, ins, dels) in stats.per_word.items():
        rows.append((ref_sub + hyp_sub + ins + dels, w, corr, corr + ref_sub + dels, corr + hyp_sub + ins))
    for errs, w, corr, ref_n, hyp_n in sorted(rows, key=lambda r: (-r[0], r[1])):
        print(f"{w}   {corr} {errs} {ref_n} {hyp_n}", file=f)
    return stats.wer


def write_wer_summary(path: str | Path, wers: Mapping[str, float]) -> None:
    """Write ``wer-summary-<name>.txt``: one ``setting<TAB>WER`` line per entry, best first."""
    with open(path, "w", encoding="utf-8") as f:
        print("settings\tWER", file=f)
        for key, wer in sorted(wers.items(), key=lambda kv: kv[1]):
            print(f"{key}\t{wer:.2f}", file=f)


def _by_speaker(results: Sequence[Result], speakers: Mapping[str, str]) -> dict[str, list[Result]]:
    groups: defaultdict[str, list[Result]] = defaultdict(list)
    for result in results:
        groups[speakers.get(result[0], "?")].append(result)
    return groups


def speaker_wers(results: Sequence[Result], speakers: Mapping[str, str]) -> dict[str, ErrorStats]:
    """Error statistics per speaker: ``speakers`` maps an utterance id to its speaker label (utterances it does not
    name are grouped under ``"?"``)."""
    return {speaker: compute_error_stats(group) for speaker, group in _by_speaker(results, speakers).items()}


def write_speaker_wers(path: str | Path, results: Sequence[Result], speakers: Mapping[str, str],
                       voices: Mapping[str, str] | None = None) -> None:
    """Write ``wer-by-speaker-<name>.txt``: a header, then ``speaker, voice, utterances, words, errors, WER`` per
    speaker (tab-separated), highest WER first.

    Args:
        speakers: utterance id -> speaker label. voices: speaker label -> what spoke it (e.g. ``"espeak
            en+klatt"``; ``-`` where unknown).
    """
    groups = _by_speaker(results, speakers)
    rows = [(speaker, len(group), compute_error_stats(group)) for speaker, group in groups.items()]
    with open(path, "w", encoding="utf-8") as f:
        print("speaker\tvoice\tutterances\twords\terrors\tWER", file=f)
        for speaker, n, stats in sorted(rows, key=lambda row: (-row[2].wer, row[0])):
            voice = (voices or {}).get(speaker, "-")
            print(f"{speaker}\t{voice}\t{n}\t{stats.ref_words}\t{stats.errors}\t{stats.wer:.2f}", file=f)


def save_results(
    out_dir: str | Path, name: str, results: Sequence[Result], setting: str | None = None,
    speakers: Mapping[str, str] | None = None, voices: Mapping[str, str] | None = None,
) -> float:
    """Write ``recogs-<name>.txt``, ``errs-<name>.txt``, ``wer-summary-<name>.txt`` and, given ``speakers``,
    ``wer-by-speaker-<name>.txt``.

    Args:
        out_dir: directory for the files (created if missing).
        name: test-set/method name used in the file names, e.g. ``"test-greedy_search"``.
        results: (utterance id, reference words, hypothesis words) triples.
        setting: label of this decoding setting in the summary (defaults to ``name``).
        speakers: utterance id -> speaker label. voices: speaker label -> the voice that spoke it.

    Returns:
        The WER in percent.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_recogs(out / f"recogs-{name}.txt", results)
    with open(out / f"errs-{name}.txt", "w", encoding="utf-8") as f:
        wer = write_error_stats(f, results)
    write_wer_summary(out / f"wer-summary-{name}.txt", {setting or name: wer})
    if speakers:
        write_speaker_wers(out / f"wer-by-speaker-{name}.txt", results, speakers, voices)
    return wer
