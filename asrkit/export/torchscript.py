"""TorchScript export: one scripted module with ``encode``/``predict``/``join`` (and
``run_encoder``/``ctc_log_probs``) methods, loadable with ``torch.jit.load`` without asrkit.

Files in ``out_dir``: ``jit_script.pt`` (with an ``asrkit.json`` extra file holding the model
metadata), ``tokens.txt`` and ``bpe.model``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from asrkit.errors import ExportError
from asrkit.export.common import model_metadata, write_tokenizer_files

JIT_FILENAME = "jit_script.pt"
METADATA_NAME = "asrkit.json"


def export_torchscript(model: torch.nn.Module, out_dir: str | Path, tokenizer_path: str | Path) -> Path:
    """Script ``model`` and save it with its tokens.

    Args:
        model: a ``Transducer`` (not modified; a CPU eval-mode copy is scripted).
        out_dir: output directory (created).
        tokenizer_path: the ``bpe.model`` the model was trained with.

    Returns:
        Path of ``jit_script.pt``.

    Raises:
        ExportError: the model cannot be scripted.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model).to("cpu").eval()
    meta = model_metadata(net)
    write_tokenizer_files(tokenizer_path, out, meta["vocab_size"])
    try:
        scripted = torch.jit.script(net)
    except Exception as exc:  # torch.jit raises a variety of frontend errors
        first = str(exc).strip().splitlines()[0]
        raise ExportError(f"cannot script {type(model).__name__} for TorchScript: {first}") from exc
    path = out / JIT_FILENAME
    tmp = path.with_name(f".{path.name}.tmp")
    torch.jit.save(scripted, str(tmp), _extra_files={METADATA_NAME: json.dumps(meta)})
    tmp.replace(path)
    return path
