"""export_model: checkpoint selection -> all formats, as `asrkit export` runs it."""

from __future__ import annotations

import pytest
import torch

from asrkit.errors import ConfigError
from test_export_formats import exported, tiny_model  # noqa: F401  (fixture)


@pytest.fixture()
def exp_dir(exported, tmp_path):  # noqa: F811
    from asrkit.config import TrainConfig
    from asrkit.training.checkpoint import save_checkpoint
    from asrkit.utils.dataclass_io import to_dict

    model, cfg = tiny_model(exported["tokenizer"].vocab_size, seed=5)
    save_checkpoint(tmp_path / "exp" / "epoch-1.pt", {"model": model.state_dict(),
                                                      "config": to_dict(TrainConfig(model=cfg))})
    lang = tmp_path / "lang"
    lang.mkdir()
    (lang / "bpe.model").write_bytes(exported["bpe"].read_bytes())
    return tmp_path / "exp", lang, model


def test_export_model_writes_every_format(exp_dir):
    from asrkit.decoding.search import run_search
    from asrkit.export.stage import export_model
    from asrkit.inference import load_model
    from asrkit.training.selection import Selection

    exp, lang, model = exp_dir
    paths = export_model(exp, Selection(epoch=1), lang, ["pretrained", "torchscript", "onnx"], exp / "exported",
                         int8=False)
    assert [p.name for p in paths] == ["pretrained.pt", "jit_script.pt", "onnx"]
    torch.manual_seed(0)
    x, lens = torch.randn(2, 90, 80), torch.tensor([90, 64])
    ref, _, _ = run_search(model, x, lens, "greedy_search", unk_id=exported_unk(lang))
    for p in paths:
        assert run_search(load_model(p), x, lens, "greedy_search")[0] == ref


def test_unknown_format_lists_valid_ones(exp_dir):
    from asrkit.export.stage import export_model
    from asrkit.training.selection import Selection

    exp, lang, _ = exp_dir
    with pytest.raises(ConfigError) as err:
        export_model(exp, Selection(epoch=1), lang, ["tflite"], exp / "out")
    assert "onnx" in err.value.hint and "torchscript" in err.value.hint


def exported_unk(lang) -> int:
    from asrkit.data.tokenizer import Tokenizer

    return Tokenizer.load(lang / "bpe.model").unk_id


def _with_stored_config(exp, edit) -> None:
    from asrkit.training.checkpoint import load_checkpoint, save_checkpoint

    path = exp / "epoch-1.pt"
    ckpt = load_checkpoint(path)
    edit(ckpt["config"])
    save_checkpoint(path, ckpt)


def test_checkpoint_with_training_keys_of_another_version_still_loads(exp_dir):
    """Training-only keys added or removed by another asrkit version must not block decoding a checkpoint."""
    from asrkit.training.selection import Selection, load_selected_model

    exp, _, model = exp_dir
    _with_stored_config(exp, lambda c: c["data"].update(echo_prob=0.5))  # a key this version does not know
    loaded, _ = load_selected_model(exp, Selection(epoch=1))
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_checkpoint_with_an_unknown_model_key_is_an_error(exp_dir):
    from asrkit.training.selection import Selection, load_selected_model

    exp, _, _ = exp_dir
    _with_stored_config(exp, lambda c: c["model"].update(mystery_layer=3))
    with pytest.raises(ConfigError, match="mystery_layer"):
        load_selected_model(exp, Selection(epoch=1))
