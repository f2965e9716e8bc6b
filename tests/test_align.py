"""``asrkit align``: lattice occupation, pruning bounds, best alignment, the picture and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from asrkit.cli.main import app
from asrkit.decoding.align import best_alignment, lattice_view
from asrkit.errors import ExportError
from asrkit.inference import _features, align_file
from test_export_formats import exported, make_wavs  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    return make_wavs(tmp_path_factory.mktemp("wavs"))


def test_best_alignment_on_a_hand_built_lattice():
    # T=3 frames, tokens [5, 7]: emitting 5 is only likely at frame 0, 7 only at frame 2
    log_probs = torch.full((3, 3, 8), -10.0)
    log_probs[:, :, 0] = -0.1  # blank everywhere
    log_probs[0, 0, 5] = 0.0
    log_probs[2, 1, 7] = 0.0
    path, emissions = best_alignment(log_probs, [5, 7], blank_id=0)
    assert emissions == [(5, 0), (7, 2)]
    assert path == [(0, 0), (0, 1), (1, 1), (2, 1), (2, 2), (3, 2)]


def test_lattice_view_is_a_probability_picture(exported, wavs):  # noqa: F811
    model, tokenizer = exported["model"], exported["tokenizer"]
    feats = _features(wavs[0])
    tokens = tokenizer.encode(["ENTER FIVE"])[0]
    view = lattice_view(model, feats, tokens, prune_range=3)
    num_frames = view.occupation.shape[1] - 1
    assert view.occupation.shape == (len(tokens) + 1, num_frames + 1)
    assert view.occupation[0, 0] == pytest.approx(1.0, abs=1e-4) and view.occupation[-1, -1] == 1.0
    # every alignment crosses each anti-diagonal t + u = k exactly once
    for k in range(0, num_frames + len(tokens), 3):
        diag = sum(view.occupation[u, k - u] for u in range(len(tokens) + 1) if 0 <= k - u <= num_frames)
        assert diag == pytest.approx(1.0, abs=1e-3)
    assert view.prune_start.shape == (num_frames,)
    assert np.all(view.prune_start >= 0) and np.all(view.prune_start + 3 <= len(tokens) + 1)
    assert np.all(np.diff(view.prune_start) >= 0)
    assert view.path[0] == (0, 0) and view.path[-1] == (num_frames, len(tokens))
    assert [tok for tok, _ in view.emissions] == tokens


def test_align_cli_writes_the_picture(exported, wavs, tmp_path):  # noqa: F811
    out = tmp_path / "lattice.png"
    result = CliRunner().invoke(app, ["align", "--model", str(exported["root"] / "pretrained.pt"), str(wavs[0]),
                                      "--text", "ENTER FIVE", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = result.output.splitlines()[0]
    assert first.startswith(str(wavs[0])) and "@" in first


def test_align_refuses_exports_without_simple_projections(exported, wavs):  # noqa: F811
    with pytest.raises(ExportError, match="pretrained.pt"):
        align_file(exported["root"] / "onnx", wavs[0], text="ENTER")
