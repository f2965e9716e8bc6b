"""``loss.delay_penalty``: from the config through the training loop into both pruned-loss terms, where it
changes the loss."""

from __future__ import annotations

import pytest
import torch
from test_training import prepared, tiny_config  # noqa: F401  (fixture)

from asrkit.errors import ConfigError


def _model_and_batch():
    from asrkit.models.build import build_transducer

    torch.manual_seed(0)
    model = build_transducer(tiny_config().model).eval()
    x, x_lens = torch.randn(2, 120, 80), torch.tensor([120, 95])
    y = torch.randint(1, model.vocab_size, (2, 6))
    return model, x, x_lens, y, torch.tensor([6, 4])


def test_delay_penalty_changes_both_losses():
    model, *batch = _model_and_batch()
    with torch.no_grad():
        base = model(*batch)
        same = model(*batch, delay_penalty=0.0)
        penalised = model(*batch, delay_penalty=0.5)
    assert torch.equal(base.simple_loss, same.simple_loss) and torch.equal(base.pruned_loss, same.pruned_loss)
    assert not torch.isclose(penalised.simple_loss, base.simple_loss)
    assert not torch.isclose(penalised.pruned_loss, base.pruned_loss)


def test_config_value_reaches_the_loss(prepared, tmp_path, monkeypatch):  # noqa: F811
    import asrkit.loss as loss_pkg
    from asrkit.training.loop import TrainJob, train

    seen: list[tuple[str, float]] = []
    for name in ("rnnt_loss_smoothed", "rnnt_loss_pruned"):
        original = getattr(loss_pkg, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            seen.append((_name, kwargs.get("delay_penalty", 0.0)))
            return _original(*args, **kwargs)

        monkeypatch.setattr(loss_pkg, name, spy)
    cfg = tiny_config(max_steps=1)
    cfg.loss.delay_penalty = 0.25
    train(TrainJob(exp_dir=tmp_path / "exp", train_cuts=prepared["train"], lang_dir=prepared["lang"], device="cpu",
                   progress=False), cfg)
    assert {n for n, _ in seen} == {"rnnt_loss_smoothed", "rnnt_loss_pruned"}
    assert all(d == 0.25 for _, d in seen), seen


def test_negative_delay_penalty_is_refused(prepared, tmp_path):  # noqa: F811
    from asrkit.training.loop import TrainJob, train

    cfg = tiny_config(max_steps=1)
    cfg.loss.delay_penalty = -0.1
    with pytest.raises(ConfigError, match="loss.delay_penalty"):
        train(TrainJob(exp_dir=tmp_path / "exp", train_cuts=prepared["train"], lang_dir=prepared["lang"],
                       device="cpu", progress=False), cfg)
