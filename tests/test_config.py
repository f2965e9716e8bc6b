from pathlib import Path

import pytest

from asrkit.config import TrainConfig, load_train_config, parse_override, save_yaml, train_config_from_dict
from asrkit.errors import ConfigError
from asrkit.utils.dataclass_io import to_dict

RECIPES = sorted(Path(__file__).resolve().parents[1].joinpath("recipes").glob("*.yaml"))


def test_round_trip_through_yaml(tmp_path):
    cfg = TrainConfig()
    cfg.optim.base_lr = 0.01
    save_yaml(cfg, tmp_path / "c.yaml")
    again = load_train_config(tmp_path / "c.yaml")
    assert again == cfg
    assert train_config_from_dict(to_dict(cfg)) == cfg


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "r.yaml").write_text("optim:\n  base_lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"optim.*base_lrr") as info:
        load_train_config(tmp_path / "r.yaml")
    assert "base_lr" in info.value.hint


def test_wrong_type_and_bad_choice(tmp_path):
    (tmp_path / "r.yaml").write_text("num_epochs: three\n")
    with pytest.raises(ConfigError, match="num_epochs"):
        load_train_config(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text("loss:\n  rnnt_type: fancy\n")
    with pytest.raises(ConfigError, match="rnnt_type.*fancy"):
        load_train_config(tmp_path / "r.yaml")


def test_overrides_and_tuples(tmp_path):
    (tmp_path / "r.yaml").write_text("model:\n  encoder:\n    type: zipformer\n")
    cfg = load_train_config(tmp_path / "r.yaml", {"num_epochs": 3, "model.encoder.zipformer.num_heads": [2, 2]})
    assert cfg.num_epochs == 3
    assert cfg.model.encoder.zipformer.num_heads == (2, 2)
    assert parse_override("optim.base_lr=0.02") == ("optim.base_lr", 0.02)
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_every_preset_loads(recipe):
    load_train_config(recipe)


def test_a_recipe_can_extend_a_base_recipe(tmp_path):
    from asrkit.config import load_train_config

    (tmp_path / "base.yaml").write_text("model:\n  joiner: {dim: 64}\n  predictor: {embedding_dim: 32}\nseed: 1\n")
    (tmp_path / "variant.yaml").write_text("base: base.yaml\nmodel:\n  joiner: {dim: 128}\nseed: 2\n")
    cfg = load_train_config(tmp_path / "variant.yaml", {"num_epochs": 3})
    assert (cfg.model.joiner.dim, cfg.model.predictor.embedding_dim, cfg.seed, cfg.num_epochs) == (128, 32, 2, 3)

    (tmp_path / "loop-a.yaml").write_text("base: loop-b.yaml\n")
    (tmp_path / "loop-b.yaml").write_text("base: loop-a.yaml\n")
    with pytest.raises(ConfigError, match="form a cycle"):
        load_train_config(tmp_path / "loop-a.yaml")
    (tmp_path / "orphan.yaml").write_text("base: gone.yaml\n")
    with pytest.raises(ConfigError, match="gone.yaml does not exist"):
        load_train_config(tmp_path / "orphan.yaml")
    (tmp_path / "typo.yaml").write_text("base: base.yaml\nmodel: {joiner: {dimm: 3}}\n")
    with pytest.raises(ConfigError, match="dimm"):
        load_train_config(tmp_path / "typo.yaml")
