"""The RNN-T lattice of one utterance: occupation probabilities, pruning bounds and the best alignment.

This is the picture researchers use to reason about pruning and emission latency: a (U+1) x T grid (token
position u up, encoder frame t right) in which

- the colour of node (u, t) is the probability that an alignment passes through it under the *simple* (trivial
  joiner) loss, i.e. the occupation probabilities whose gradients the pruned loss uses (``px_grad + py_grad``);
- two lines bound the ``prune_range`` token positions the pruned loss keeps at every frame;
- the path is the single best (Viterbi) alignment under the full joiner.

Shape legend: T encoder frames, U tokens, S prune range, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch


@dataclass
class LatticeView:
    """What :func:`plot_lattice` draws.

    Attributes:
        occupation: (U+1, T+1) occupation probability of every lattice node (simple loss).
        prune_start: (T,) first token position kept by pruning at each frame (positions start .. start+S-1).
        prune_range: S.
        path: the best alignment as (t, u) nodes from (0, 0) to (T, U).
        emissions: (token id, frame) of each emitted token on ``path``.
        tokens: the U token ids.
    """

    occupation: np.ndarray
    prune_start: np.ndarray
    prune_range: int
    path: list[tuple[int, int]]
    emissions: list[tuple[int, int]]
    tokens: list[int]


@torch.no_grad()
def lattice_view(model, features: torch.Tensor, tokens: Sequence[int], prune_range: int = 5,
                 lm_scale: float = 0.25, am_scale: float = 0.0) -> LatticeView:
    """Compute the lattice view of one utterance.

    Args:
        model: a ``Transducer`` (it needs the simple-loss projections, so exported ONNX/TorchScript files cannot be used).
        features: (T_in, F) fbank of the utterance.
        tokens: the U token ids to align (the reference, or a hypothesis).
    """
    from asrkit.loss import get_rnnt_prune_ranges, rnnt_loss_smoothed

    model.eval()
    x = features.unsqueeze(0)
    raw, enc_lens = model.run_encoder(x, torch.tensor([features.shape[0]]))
    num_frames = int(enc_lens[0])
    raw = raw[:, :num_frames]
    y = torch.tensor([list(tokens)], dtype=torch.int64)
    sos_y = torch.nn.functional.pad(y, (1, 0), value=model.blank_id)
    pred = model.predictor(sos_y, True)
    boundary = torch.tensor([[0, 0, len(tokens), num_frames]], dtype=torch.int64)
    _, (px_grad, py_grad) = rnnt_loss_smoothed(
        lm=model.simple_lm_proj(pred).float(), am=model.simple_am_proj(raw).float(), symbols=y,
        termination_symbol=model.blank_id, lm_only_scale=lm_scale, am_only_scale=am_scale, boundary=boundary,
        reduction="sum", return_grad=True, backend="torch",
    )
    # Every node but the last is left by exactly one transition (a token: px, or a blank: py), so the
    # probability of passing through it is the sum of the two.
    occupation = np.zeros((len(tokens) + 1, num_frames + 1))
    occupation[:-1, :] += px_grad[0].numpy()
    occupation[:, :-1] += py_grad[0].numpy()
    occupation[-1, -1] = 1.0
    ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, prune_range, backend="torch")  # (1, T, S)
    enc = model.joiner.encoder_proj(raw)[0]  # (T, J)
    dec = model.joiner.decoder_proj(pred)[0]  # (U+1, J)
    log_probs = model.join(enc.unsqueeze(1), dec.unsqueeze(0)).log_softmax(-1)  # (T, U+1, V)
    path, emissions = best_alignment(log_probs, list(tokens), model.blank_id)
    return LatticeView(occupation, ranges[0, :, 0].numpy(), prune_range, path, emissions, list(tokens))


def best_alignment(log_probs: torch.Tensor, tokens: list[int], blank_id: int
                   ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Viterbi alignment through a full RNN-T lattice.

    Args:
        log_probs: (T, U+1, V) joiner log-probabilities.
        tokens: the U token ids.

    Returns:
        (path as (t, u) nodes from (0, 0) to (T, U), [(token, frame) of every emission]).
    """
    num_frames, num_pos = log_probs.shape[0], len(tokens) + 1
    blank = log_probs[:, :, blank_id].numpy()  # (T, U+1)
    emit = np.full((num_frames, num_pos), -np.inf)
    for u, tok in enumerate(tokens):
        emit[:, u] = log_probs[:, u, tok].numpy()
    score = np.full((num_frames + 1, num_pos), -np.inf)
    from_blank = np.zeros((num_frames + 1, num_pos), dtype=bool)
    score[0, 0] = 0.0
    for t in range(num_frames + 1):
        for u in range(num_pos):
            if t == 0 and u == 0:
                continue
            via_blank = score[t - 1, u] + blank[t - 1, u] if t > 0 else -np.inf
            via_emit = score[t, u - 1] + emit[t, u - 1] if u > 0 and t < num_frames else -np.inf
            if u > 0 and t == num_frames:
                via_emit = -np.inf  # tokens are emitted on frames 0..T-1
            from_blank[t, u] = via_blank >= via_emit
            score[t, u] = max(via_blank, via_emit)
    path, emissions = [(num_frames, num_pos - 1)], []
    t, u = num_frames, num_pos - 1
    while (t, u) != (0, 0):
        if from_blank[t, u]:
            t -= 1
        else:
            u -= 1
            emissions.append((tokens[u], t))
        path.append((t, u))
    return path[::-1], emissions[::-1]


def plot_lattice(view: LatticeView, out: Path, symbols: Sequence[str] | None = None, title: str = "") -> Path:
    """Draw ``view`` into a PNG (matplotlib, the ``plot`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from asrkit.errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "plot", "asrkit align --plot") from None
    num_pos, width = view.occupation.shape
    fig, ax = plt.subplots(figsize=(max(6.0, width / 8), max(3.0, num_pos / 4)))
    image = ax.imshow(view.occupation, origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                      extent=(-0.5, width - 0.5, -0.5, num_pos - 0.5))
    frames = np.arange(len(view.prune_start))
    ax.step(frames, view.prune_start - 0.5, where="mid", color="orange", lw=1.2, ls="--", label="pruning bounds")
    ax.step(frames, view.prune_start + view.prune_range - 0.5, where="mid", color="orange", lw=1.2, ls="--")
    ts, us = zip(*view.path)
    ax.plot(ts, us, color="red", lw=1.5, label="best alignment")
    if symbols is not None:
        ax.set_yticks(range(num_pos))
        ax.set_yticklabels(["<s>"] + [symbols[t] for t in view.tokens], fontsize=7)
    ax.set_xlabel("encoder frame t")
    ax.set_ylabel("token position u")
    ax.set_title(title or "RNN-T lattice: occupation probability (simple loss)")
    ax.legend(loc="upper left", fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.03)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out
