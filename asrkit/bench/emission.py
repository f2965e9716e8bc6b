"""Emission times of two models compared on the same utterances (``asrkit bench emission``).

Input: two timestamps reports of ``asrkit decode --timestamps`` (``<utt>\\t<token>@<seconds> ...`` lines) on the
same cut set, e.g. a streaming model with and without ``loss.delay_penalty``, or a streaming model against the
full-context model. Only utterances whose two token sequences are identical are compared, token by token, so the
figure is a pure timing difference: ``mean_delay`` = mean over those tokens of (time in B - time in A); positive
when B emits later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asrkit.errors import DataError


@dataclass(frozen=True)
class EmissionComparison:
    """B's emission times against A's on the utterances both recognise identically (seconds)."""

    utterances: int  # in both reports
    compared: int  # with identical token sequences
    tokens: int  # compared tokens
    mean_delay: float  # mean of t_B - t_A over the compared tokens
    mean_abs_delay: float
    mean_last_token_delay: float  # the same for each utterance's last token only


def read_timestamps(path: Path) -> dict[str, list[tuple[str, float]]]:
    """``{utt_id: [(token, seconds), ...]}`` of a timestamps report. Raises :class:`DataError` naming the file and
    line of a malformed entry."""
    stamps: dict[str, list[tuple[str, float]]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        utt, _, rest = line.partition("\t")
        try:
            stamps[utt] = [(tok, float(sec)) for tok, _, sec in (item.rpartition("@") for item in rest.split())]
        except ValueError:
            raise DataError(f"{path}:{n}: expected <utt>TAB<token>@<seconds> ..., got {line[:80]!r}") from None
    return stamps


def compare_emissions(a: Path, b: Path) -> EmissionComparison:
    """Compare report ``b``'s emission times to report ``a``'s (see the module docstring)."""
    sa, sb = read_timestamps(a), read_timestamps(b)
    common = sorted(set(sa) & set(sb))
    if not common:
        raise DataError(f"{a} and {b} share no utterance")
    same = [u for u in common if sa[u] and [t for t, _ in sa[u]] == [t for t, _ in sb[u]]]
    diffs = [tb - ta for u in same for (_, ta), (_, tb) in zip(sa[u], sb[u])]
    last = [sb[u][-1][1] - sa[u][-1][1] for u in same]
    n = max(1, len(diffs))
    return EmissionComparison(len(common), len(same), len(diffs), sum(diffs) / n, sum(map(abs, diffs)) / n,
                              sum(last) / max(1, len(last)))
