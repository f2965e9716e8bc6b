"""TorchScript streaming export: a causal transducer's chunk-wise API in one scripted file.

``jit_script_streaming.pt`` holds a scripted :class:`~asrkit.models.transducer.streaming.StreamingTransducer`:
``streaming_encode(x, x_lens, states)``, ``get_init_states(batch_size)``, ``predict``, ``join`` and the
attributes ``chunk_size``, ``left_context_frames``, ``window``, ``shift``, ``state_batch_dims``. Load it with
``torch.jit.load`` (no asrkit needed) or hand it to :func:`asrkit.decoding.streaming.decode_streaming`, which
decodes with it exactly as with the eager model. The ``asrkit.json`` extra file records the search facts and the
chunking. ``tokens.txt`` and ``bpe.model`` go beside it.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from asrkit.export.common import model_metadata, write_tokenizer_files
from asrkit.export.torchscript import METADATA_NAME

STREAMING_JIT_FILENAME = "jit_script_streaming.pt"


def export_torchscript_streaming(
    model: nn.Module,
    out_dir: str | Path,
    tokenizer_path: str | Path,
    chunk_size: Optional[int] = None,
    left_context_frames: Optional[int] = None,
) -> Path:
    """Script and save the chunk-wise API of a causal transducer with its tokens.

    Args:
        model: a ``Transducer`` with a causal Zipformer2 encoder (not modified; a CPU eval-mode copy is exported).
        out_dir: output directory (created).
        tokenizer_path: the ``bpe.model`` the model was trained with.
        chunk_size / left_context_frames: decoding-time chunking in 50 Hz frames, fixed in the file (``None``: the
            first entries of the model's config).

    Returns:
        Path of ``jit_script_streaming.pt``.

    Raises:
        ConfigError: the model cannot stream with this chunking.
        ExportError: the tokenizer does not match the model.
    """
    from asrkit.models.transducer.streaming import StreamingTransducer

    out = Path(out_dir)
    net = copy.deepcopy(model).to("cpu").eval()
    net.encoder.set_decoding_chunk(chunk_size, left_context_frames)
    wrapper = StreamingTransducer(net).eval()
    meta = model_metadata(net)
    meta.update(streaming=True, chunk_size=wrapper.chunk_size, left_context_frames=wrapper.left_context_frames)
    out.mkdir(parents=True, exist_ok=True)
    write_tokenizer_files(tokenizer_path, out, meta["vocab_size"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's own deprecation notices
        module = torch.jit.script(wrapper)
    path = out / STREAMING_JIT_FILENAME
    tmp = path.with_name(f".{path.name}.tmp")
    torch.jit.save(module, str(tmp), _extra_files={METADATA_NAME: json.dumps(meta)})
    tmp.replace(path)
    return path
