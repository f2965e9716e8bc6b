"""TorchScript export: one module with ``encode``/``predict``/``join`` (and ``run_encoder``/
``ctc_log_probs`` for CTC models) methods, loadable with ``torch.jit.load`` without asrkit.

The model is scripted (``torch.jit.script``) when it can be; otherwise (e.g. an encoder with
Python-only training code) its inference methods are traced, and the traced module is checked
against the eager model on inputs of other lengths before it is saved. A traced module's
``predict`` takes only ``y`` (its ``need_pad`` is fixed at export: False for stateless
predictors, True for recurrent ones); the ``asrkit.json`` extra file records which kind it is.

Files in ``out_dir``: ``jit_script.pt``, ``tokens.txt`` and ``bpe.model``.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from asrkit.errors import ExportError
from asrkit.export.common import model_metadata, replaced_as_a_whole, write_tokenizer_files

log = logging.getLogger(__name__)

JIT_FILENAME = "jit_script.pt"
METADATA_NAME = "asrkit.json"


class _Traceable(nn.Module):
    """The inference methods of a Transducer with tensor-only arguments, for tracing.

    It holds the Transducer's parts rather than the Transducer itself: tracing a module whose
    class marks methods ``@torch.jit.export`` would try to *script* them (and fail the same
    way scripting did). The composition below mirrors ``Transducer.encode/predict/join``;
    :func:`_trace` checks the traced module against the real model, so a drift is caught.
    """

    def __init__(self, model: nn.Module, recurrent: bool) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.predictor = model.predictor
        self.joiner = model.joiner
        self.ctc_head = model.ctc_head
        self.recurrent = recurrent

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(x, x_lens)

    def encode(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        raw, lens = self.encoder(x, x_lens)
        return self.joiner.encoder_proj(raw), lens

    def run_encoder(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder(x, x_lens)

    def predict(self, y: Tensor) -> Tensor:
        return self.joiner.decoder_proj(self.predictor(y, self.recurrent))

    def join(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        return self.joiner(encoder_out, decoder_out)

    def ctc_log_probs(self, raw: Tensor) -> Tensor:
        return self.ctc_head(raw)


def _example_inputs(net: nn.Module, meta: dict[str, Any], frames: int, seed: int) -> dict[str, tuple]:
    g = torch.Generator().manual_seed(seed)
    feature_dim = int(getattr(getattr(net, "encoder", None), "feature_dim", 80) or 80)
    x = torch.randn(2, frames, feature_dim, generator=g)
    x_lens = torch.tensor([frames, frames * 2 // 3], dtype=torch.int64)
    width = meta["context_size"] + (3 if meta["recurrent_predictor"] else 0)
    y = torch.randint(0, meta["vocab_size"], (2, width), generator=g)
    with torch.no_grad():
        enc, _ = net.encode(x, x_lens)
        raw, _ = net.run_encoder(x, x_lens)
        dec = net.predict(y, need_pad=meta["recurrent_predictor"])
    inputs = {"encode": (x, x_lens), "predict": (y,), "join": (enc[:, 0], dec[:, -1])}
    if meta["has_ctc_head"]:
        inputs["run_encoder"] = (x, x_lens)
        inputs["ctc_log_probs"] = (raw,)
    return inputs


def _trace(net: nn.Module, meta: dict[str, Any]) -> torch.jit.ScriptModule:
    wrapper = _Traceable(net, meta["recurrent_predictor"]).eval()
    with torch.no_grad():
        traced = torch.jit.trace_module(wrapper, _example_inputs(net, meta, 120, 0), check_trace=False)
        # a trace may bake in shapes: compare with the eager model on other lengths
        for frames, seed in ((77, 1), (203, 2)):
            for name, args in _example_inputs(net, meta, frames, seed).items():
                if name == "predict":
                    want = net.predict(*args, need_pad=meta["recurrent_predictor"])
                else:
                    want = getattr(net, name)(*args)
                got = getattr(traced, name)(*args)
                want = want if isinstance(want, tuple) else (want,)
                got = got if isinstance(got, tuple) else (got,)
                if any(w.shape != g.shape or not torch.allclose(w, g, atol=1e-4, rtol=1e-4) for w, g in zip(want, got)):
                    raise ExportError(f"traced {name} differs from the model on {frames}-frame inputs; "
                                      f"the model is neither scriptable nor traceable")
    return traced


def export_torchscript(model: nn.Module, out_dir: str | Path, tokenizer_path: str | Path) -> Path:
    """Save ``model`` as TorchScript with its tokens.

    Args:
        model: a ``Transducer`` (not modified; a CPU eval-mode copy is exported).
        out_dir: output directory (created).
        tokenizer_path: the ``bpe.model`` the model was trained with.

    Returns:
        Path of ``jit_script.pt``.

    Raises:
        ExportError: the model can be neither scripted nor faithfully traced.
    """
    net = copy.deepcopy(model).to("cpu").eval()
    meta = model_metadata(net)
    with replaced_as_a_whole(out_dir) as staging:
        write_tokenizer_files(tokenizer_path, staging, meta["vocab_size"])
        torch.jit.save(_script_or_trace(net, meta), str(staging / JIT_FILENAME),
                       _extra_files={METADATA_NAME: json.dumps(meta)})
    return Path(out_dir) / JIT_FILENAME


def _script_or_trace(net: nn.Module, meta: dict) -> torch.jit.ScriptModule:
    """``torch.jit.script(net)``, or traced inference methods where scripting fails (``meta["traced"]`` says)."""
    try:
        module = torch.jit.script(net)
        meta["traced"] = False
    except Exception as exc:  # torch.jit raises a variety of frontend errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("cannot script %s (%s); tracing its inference methods instead", type(net).__name__, first)
        module = _trace(net, meta)
        meta["traced"] = True
    return module
