"""Load a streaming export as a model :mod:`asrkit.decoding.streaming` drives chunk by chunk.

Two formats: the TorchScript streaming export (``jit_script_streaming.pt``, a scripted StreamingTransducer) and
the streaming ONNX export for sherpa-onnx (a directory with a chunk-wise ``encoder.onnx``), run here with
onnxruntime through :class:`OnnxStreamingTransducer`. Both offer the StreamingTransducer API: ``streaming_encode``,
``get_init_states``, ``predict``, ``join`` and ``window``/``shift``/``state_batch_dims``/``blank_id``/...

Shape legend: B streams, W input frames per chunk call, F feature bins, N chunk size (50 Hz), J joiner dim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from asrkit.errors import CheckpointError


class OnnxStreamingTransducer:
    """A streaming ONNX export (:mod:`asrkit.export.onnx_streaming`) with the StreamingTransducer API.

    The ONNX encoder has no ``x_lens`` (sherpa-onnx always passes full windows): a stream's last, padded window
    is encoded as is and only its real output frames are returned, so the search never sees the padding.

    Args:
        inference: an ``OnnxInferenceModel`` of the export's files (its decoder and joiner serve predict/join).
        encoder: an onnxruntime ``InferenceSession`` of the chunk-wise ``encoder.onnx``.
        meta: the encoder's metadata.
    """

    def __init__(self, inference: Any, encoder: Any, meta: dict[str, str]) -> None:
        from asrkit.models.zipformer.encoder import LAYER_STATE_BATCH_DIMS

        self.inference = inference
        self.blank_id = inference.blank_id
        self.vocab_size = inference.vocab_size
        self.context_size = inference.context_size
        self.recurrent_predictor = False
        self.tokenizer = inference.tokenizer
        self.unk_id = inference.unk_id
        self.window, self.shift = int(meta["T"]), int(meta["decode_chunk_len"])
        self.chunk_size = int(meta.get("chunk_size", self.shift // 2))
        self.left_context_frames = int(meta.get("left_context_frames", -1))
        num_layers = sum(int(v) for v in meta["num_encoder_layers"].split(","))
        self.state_batch_dims = list(LAYER_STATE_BATCH_DIMS) * num_layers + [0, 0]
        self._encoder = encoder
        self._inputs = [i.name for i in encoder.get_inputs()]
        self._state_shapes = [list(i.shape) for i in encoder.get_inputs()[1:]]

    def get_init_states(self, batch_size: int = 1) -> list[torch.Tensor]:
        """Zero states for ``batch_size`` streams (the last, processed lengths, int64), as sherpa-onnx makes them."""
        states = []
        n = len(self._state_shapes)
        for i, (shape, dim) in enumerate(zip(self._state_shapes, self.state_batch_dims)):
            shape = [batch_size if j == dim else int(s) for j, s in enumerate(shape)]
            states.append(torch.zeros(shape, dtype=torch.int64 if i == n - 1 else torch.float32))
        return states

    def streaming_encode(
        self, x: torch.Tensor, x_lens: torch.Tensor, states: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """x (B, W, F), x_lens (B,), states -> (encoder_out (B, N/2, J), encoder_out_lens (B,), new states)."""
        from asrkit.models.zipformer.subsampling import subsampled_lengths

        outs = self.inference._run(self._encoder, dict(zip(self._inputs, [x.float(), *states])))
        out = outs[0]
        lens = ((subsampled_lengths(x_lens.to(torch.int64)).clamp(min=0) + 1) // 2).clamp(max=out.size(1))
        return out, lens, outs[1:]

    def predict(self, y: torch.Tensor, need_pad: bool = False) -> torch.Tensor:
        return self.inference.predict(y, need_pad)

    def join(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        return self.inference.join(encoder_out, decoder_out)


def load_streaming_model(path: str | Path, int8: bool = False, num_threads: int = 1) -> tuple[Any, Any]:
    """Load a streaming export: ``jit_script_streaming.pt`` (or its directory) or a streaming ONNX directory.

    Returns:
        (streaming model for :func:`~asrkit.decoding.streaming.decode_chunk`, tokenizer with ``decode``).

    Raises:
        CheckpointError: the path is no streaming export (naming what was found).
    """
    from asrkit.export.torchscript_streaming import STREAMING_JIT_FILENAME

    p = Path(path)
    if p.is_dir() and (p / STREAMING_JIT_FILENAME).is_file():
        p = p / STREAMING_JIT_FILENAME
    if p.is_file() and p.name.endswith(".pt"):
        return _load_torchscript_streaming(p)
    if p.is_dir() and (p / "encoder.onnx").is_file():
        from asrkit.export.onnx import _read_metadata
        from asrkit.inference import _load_onnx

        import onnxruntime as ort

        encoder_path = p / ("encoder.int8.onnx" if int8 else "encoder.onnx")
        meta = _read_metadata(encoder_path)
        if meta.get("streaming") != "1" or "T" not in meta:
            raise CheckpointError(f"{p}: an offline ONNX export, not a streaming one",
                                  hint="export with asrkit export --format onnx --streaming")
        inference = _load_onnx(p, int8, num_threads)  # checks every file; its decoder and joiner are used
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        encoder = ort.InferenceSession(str(encoder_path), opts, providers=["CPUExecutionProvider"])
        model = OnnxStreamingTransducer(inference, encoder, meta)
        return model, model.tokenizer
    raise CheckpointError(f"{p}: not a streaming export (expected {STREAMING_JIT_FILENAME} or a directory made by "
                          "asrkit export --format onnx --streaming)")


def _load_torchscript_streaming(path: Path) -> tuple[Any, Any]:
    from asrkit.export.torchscript import METADATA_NAME
    from asrkit.inference import _tokenizer_for_dir

    extra = {METADATA_NAME: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: torch.jit cannot load it: {first}") from None
    meta = json.loads(extra[METADATA_NAME] or "{}")
    if not meta.get("streaming"):
        raise CheckpointError(f"{path}: a TorchScript model without the streaming API",
                              hint="export with asrkit export --format torchscript --streaming")
    return module.eval(), _tokenizer_for_dir(path.parent, int(meta["blank_id"]))
