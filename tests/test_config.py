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
