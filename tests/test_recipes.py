"""Every preset in recipes/ loads strictly, builds, and its model section equals the Python preset."""

from pathlib import Path

import pytest

from asrkit.config import load_train_config
from asrkit.models.build import build_transducer, count_parameters
from asrkit.models.presets import PRESETS

RECIPES = sorted(Path(__file__).resolve().parents[1].joinpath("recipes").glob("*.yaml"))


def test_there_are_presets():
    names = {r.stem for r in RECIPES}
    assert {"zipformer-xs", "zipformer-s", "zipformer-m", "zipformer-l", "conformer-lite-xs", "lstm-xs"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_matches_preset_and_builds(recipe):
    cfg = load_train_config(recipe)
    if recipe.stem in PRESETS:
        assert cfg.model == PRESETS[recipe.stem](), "recipe and asrkit.models.presets drifted apart"
    if recipe.stem.endswith("-xs"):
        model = build_transducer(cfg.model)
        assert 1_000_000 < count_parameters(model) < 5_000_000


@pytest.mark.parametrize("name", ["zipformer-xs", "zipformer-s", "zipformer-m", "zipformer-l"])
def test_streaming_presets_are_their_offline_preset_made_causal(name):
    from dataclasses import replace

    offline = load_train_config(Path(__file__).resolve().parents[1] / "recipes" / f"{name}.yaml")
    streaming = load_train_config(Path(__file__).resolve().parents[1] / "recipes" / f"{name}-streaming.yaml")
    # The utterance mean is unknown while audio arrives: its causal counterpart is the running mean.
    causal_norm = {"utterance_mean": "running_mean", "none": "none"}[offline.model.encoder.feature_norm]
    assert streaming.model.encoder.zipformer.causal and streaming.model.encoder.feature_norm == causal_norm
    zipformer = replace(offline.model.encoder.zipformer, causal=True)
    encoder = replace(offline.model.encoder, zipformer=zipformer, feature_norm=causal_norm)
    assert streaming.model == replace(offline.model, encoder=encoder)
    assert (streaming.optim, streaming.data, streaming.num_epochs) == (offline.optim, offline.data, offline.num_epochs)
