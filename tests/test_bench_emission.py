"""``asrkit bench emission``: emission-time differences of two timestamps reports, on identical recognitions only."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from asrkit.bench.emission import compare_emissions, read_timestamps
from asrkit.cli.main import app
from asrkit.errors import DataError


def _write(path, rows):
    path.write_text("".join(f"{u}\t" + " ".join(f"{t}@{s:.2f}" for t, s in toks) + "\n" for u, toks in rows))
    return path


def test_only_identical_recognitions_are_compared(tmp_path):
    a = _write(tmp_path / "a.txt", [("u1", [("▁A", 0.20), ("▁B", 0.60)]), ("u2", [("▁C", 1.00)]),
                                    ("u3", [("▁D", 0.5)])])
    b = _write(tmp_path / "b.txt", [("u1", [("▁A", 0.28), ("▁B", 0.64)]), ("u2", [("▁X", 0.10)]),
                                    ("u4", [("▁D", 0.5)])])
    c = compare_emissions(a, b)
    assert (c.utterances, c.compared, c.tokens) == (2, 1, 2)  # u3/u4 in one report only; u2 differs in tokens
    assert c.mean_delay == pytest.approx(0.06) and c.mean_abs_delay == pytest.approx(0.06)
    assert c.mean_last_token_delay == pytest.approx(0.04)
    assert compare_emissions(b, a).mean_delay == pytest.approx(-0.06)

    res = CliRunner().invoke(app, ["bench", "emission", "--reference", str(a), "--other", str(b)])
    assert res.exit_code == 0, res.output
    assert "| 1 / 2 | 2 | +0.060 | 0.060 | +0.040 |" in res.stdout


def test_malformed_report_names_the_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("u1\t▁A@0.20\nu2\t▁B@soon\n")
    with pytest.raises(DataError, match=r"bad.txt:2:"):
        read_timestamps(bad)
    good = _write(tmp_path / "g.txt", [("v", [("▁A", 0.1)])])
    with pytest.raises(DataError, match="share no utterance"):
        compare_emissions(good, _write(tmp_path / "h.txt", [("w", [("▁A", 0.1)])]))
