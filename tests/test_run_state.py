"""What a checkpoint must carry for an exact resume, checked against the presets people run.

The slow end-to-end check (SIGKILL of the 2-process demo training, then --resume) is in tests/test_faults.py; these
tests keep its preconditions true when someone adds a module, an augmentation or a stateful trainer component.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from asrkit.config import load_train_config
from asrkit.data.augment import build_feature_augment
from asrkit.models import set_batch_count
from asrkit.models.build import build_transducer
from asrkit.training import distributed as D
from asrkit.training.loop import Trainer, TrainJob
from asrkit.training.run_state import (
    TRAINING_STATE_ATTRIBUTES,
    load_module_training_state,
    module_training_state,
    process_state,
    restore_process_state,
    state_for_rank,
)

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted((REPO / "recipes").glob("*.yaml"))
PLAIN = (bool, int, float, str, type(None), tuple)


def _plain_attributes(model: torch.nn.Module) -> dict[tuple[str, str], object]:
    """Every plain (non-tensor, non-module) attribute of every module, by (module path, attribute)."""
    out = {}
    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr.startswith("_") or attr == "training" or not isinstance(value, PLAIN):
                continue
            out[(name, attr)] = value
    return out


def _train_steps(model: torch.nn.Module, steps: int, feature_dim: int, vocab_size: int) -> None:
    model.train()
    for step in range(1, steps + 1):
        set_batch_count(model, step * 100.0)
        x = torch.randn(2, 120, feature_dim)
        x_lens = torch.tensor([120, 96])
        y = torch.randint(1, vocab_size, (2, 4))
        losses = model(x, x_lens, y, torch.tensor([4, 3]), prune_range=3, loss_backend="torch")
        total = losses.simple_loss + losses.pruned_loss
        if losses.ctc_loss is not None:
            total = total + losses.ctc_loss
        total.backward()
        model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_attribute_training_changes_is_declared_and_saved(preset):
    """A module attribute that training changes is state: it must be in ``training_state_attributes`` (so
    checkpoints save it), or a resumed run silently differs from an uninterrupted one."""
    cfg = load_train_config(preset)
    cfg.model.vocab_size = 40
    torch.manual_seed(0)
    random.seed(0)
    model = build_transducer(cfg.model)
    before = _plain_attributes(model)
    _train_steps(model, steps=6, feature_dim=cfg.model.feature_dim, vocab_size=40)
    after = _plain_attributes(model)
    changed = {key for key in before if before[key] != after[key]}
    declared = {(name, attr) for name, module in model.named_modules()
                for attr in getattr(type(module), TRAINING_STATE_ATTRIBUTES, ())}
    undeclared = sorted(changed - declared)
    assert not undeclared, f"{preset.name}: training changes {undeclared[:5]} but no checkpoint saves them"
    saved = module_training_state(model)
    for name, attr in changed:
        assert saved[name][attr] == after[(name, attr)]


def test_module_training_state_round_trips_and_refuses_another_architecture():
    cfg = load_train_config(REPO / "recipes" / "zipformer-xs.yaml")
    cfg.model.vocab_size = 40
    model = build_transducer(cfg.model)
    whitens = [m for m in model.modules() if "prob" in getattr(type(m), TRAINING_STATE_ATTRIBUTES, ())]
    assert whitens, "the demo preset has whiteners whose probability is training state"
    saved = module_training_state(model)
    for m in whitens:
        m.prob = -1.0
    load_module_training_state(model, saved)
    assert all(m.prob == m.max_prob for m in whitens)
    other = load_train_config(REPO / "recipes" / "zipformer-s.yaml")
    other.model.vocab_size = 40
    with pytest.raises(KeyError, match="does not match the model"):
        load_module_training_state(build_transducer(other.model), saved)


def test_the_demo_augmentation_draws_only_from_the_saved_random_streams():
    """Mel warping and SpecAugment of the demo preset: restoring the process state reproduces the augmented batch
    exactly (their draws come from the streams a checkpoint saves), and without the restore it differs."""
    cfg = load_train_config(REPO / "recipes" / "zipformer-xs.yaml")
    augment = build_feature_augment(cfg.data)
    model = torch.nn.Linear(1, 1)
    x = torch.randn(3, 200, 80)
    segments = torch.tensor([[0, 0, 200], [1, 0, 180], [2, 0, 150]], dtype=torch.int32)
    state = process_state(model)
    first = augment(x.clone(), supervision_segments=segments)
    second = augment(x.clone(), supervision_segments=segments)
    assert not torch.equal(first, second)
    restore_process_state(model, state)
    assert torch.equal(augment(x.clone(), supervision_segments=segments), first)


def test_resuming_with_another_number_of_processes_says_it_is_not_exact(caplog):
    states = [{"rng": "rank0"}, {"rng": "rank1"}]
    assert state_for_rank(states, 1, 2) == {"rng": "rank1"}
    with caplog.at_level("WARNING"):
        assert state_for_rank(states, 0, 1) == {"rng": "rank0"}
    assert "not bit-identical" in caplog.text
