"""ONNX export compatible with sherpa-onnx's offline transducer recognizer.

Files in ``out_dir``:

* ``encoder.onnx``: ``x`` (N, T, 80) float32, ``x_lens`` (N,) int64 -> ``encoder_out``
  (N, T', J) with the joiner's encoder projection folded in, ``encoder_out_lens`` (N,) int64.
  Metadata ``model_type=zipformer2`` (sherpa-onnx picks its transducer recognizer from it),
  ``version``, ``model_author``, ``comment``, ``feature_dim`` and asrkit's model facts.
* ``decoder.onnx``: ``y`` (N, context_size) int64 -> ``decoder_out`` (N, J). Metadata
  ``vocab_size`` and ``context_size`` (sherpa-onnx exits the process when they are missing).
  Token ``-1`` (sherpa-onnx's "no history") maps to a zero embedding, as in training.
* ``joiner.onnx``: ``encoder_out`` (N, J), ``decoder_out`` (N, J) -> ``logit`` (N, V).
  Metadata ``joiner_dim``.
* ``*.int8.onnx``: the same with weights dynamically quantised to int8 (onnxruntime).
* ``tokens.txt`` and ``bpe.model``.

Batch and time axes are dynamic. Every file is loaded back with onnxruntime and its metadata
checked before the export is declared done, since sherpa-onnx cannot report a bad file
gracefully. Shape legend: N batch, T frames, T' encoder frames, J joiner dim, V vocab.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from asrkit.errors import ExportError, MissingDependencyError
from asrkit.export.common import model_metadata, replaced_as_a_whole, write_tokenizer_files

OPSET = 17
ENCODER_META_REQUIRED = ("model_type", "version")
DECODER_META_REQUIRED = ("vocab_size", "context_size")
JOINER_META_REQUIRED = ("joiner_dim",)
IO_NAMES = {
    "encoder": (["x", "x_lens"], ["encoder_out", "encoder_out_lens"]),
    "decoder": (["y"], ["decoder_out"]),
    "joiner": (["encoder_out", "decoder_out"], ["logit"]),
}


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.encode(x, x_lens)


class _Decoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, y: Tensor) -> Tensor:
        return self.model.predict(y, need_pad=False).squeeze(1)


class _Joiner(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        return self.model.join(encoder_out, decoder_out)


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "onnx", "onnx", "ONNX export") from exc
    return onnx, onnxruntime


def _add_metadata(path: Path, meta: dict[str, Any]) -> None:
    onnx, _ = _require_onnx()
    proto = onnx.load(str(path))
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in meta.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
    onnx.save(proto, str(path))


def _export(module: nn.Module, args: tuple, path: Path, name: str, dynamic_axes: dict,
            io_names: tuple[list[str], list[str]] | None = None) -> None:
    inputs, outputs = io_names or IO_NAMES[name]
    try:
        torch.onnx.export(
            module, args, str(path), dynamo=False, opset_version=OPSET,
            input_names=inputs, output_names=outputs, dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    except Exception as exc:  # the exporter raises many error types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"cannot export the {name} to ONNX: {first}") from exc


def _quantize(src: Path, dst: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime's quantizer logs one INFO line per tensor on the root logger: keep the recipe logs readable
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        # reduce_range (7-bit weights): x86 CPUs without VNNI (AVX2 only, e.g. the 2-core AMD EPYC machines) compute
        # u8 x s8 products with saturating 16-bit sums, which took the tiny test model's encoder output 18 % away
        # from fp32; 7-bit weights cannot saturate (1.8 %), and VNNI machines lose almost nothing
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                         reduce_range=True)
    finally:
        root.setLevel(level)


def validate_onnx_export(out_dir: str | Path, int8: bool = False) -> dict[str, dict[str, str]]:
    """Load every file of an ONNX export with onnxruntime and check names and metadata.

    Args:
        out_dir: the export directory.
        int8: validate the ``*.int8.onnx`` files instead of the float ones.

    Returns:
        ``{"encoder": metadata, "decoder": ..., "joiner": ...}``.

    Raises:
        ExportError: a file is missing, cannot be loaded, has other input/output names or
            lacks metadata sherpa-onnx requires.
    """
    out = Path(out_dir)
    suffix = ".int8.onnx" if int8 else ".onnx"
    required = {"encoder": ENCODER_META_REQUIRED, "decoder": DECODER_META_REQUIRED, "joiner": JOINER_META_REQUIRED}
    found: dict[str, dict[str, str]] = {}
    for name, keys in required.items():
        found[name] = validate_onnx_file(out / f"{name}{suffix}", IO_NAMES[name], keys)
    check_tokens_file(out, found["decoder"])
    return found


def validate_onnx_file(path: Path, io_names: tuple[list[str], list[str]], required: tuple[str, ...]) -> dict[str, str]:
    """Load one ONNX file with onnxruntime; check its input/output names and that ``required`` metadata keys
    are present. Returns its metadata.

    Raises:
        ExportError: the file is missing, cannot be loaded, has other names or lacks metadata.
    """
    _, ort = _require_onnx()
    if not path.is_file():
        raise ExportError(f"{path}: missing from the ONNX export")
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path}: onnxruntime cannot load it: {str(exc).splitlines()[0]}") from exc
    inputs, outputs = io_names
    got_in = [i.name for i in sess.get_inputs()]
    got_out = [o.name for o in sess.get_outputs()]
    if got_in != inputs or got_out != outputs:
        raise ExportError(f"{path}: inputs {got_in} / outputs {got_out}, expected {inputs} / {outputs}")
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    missing = [k for k in required if k not in meta]
    if missing:
        raise ExportError(f"{path}: metadata lacks {', '.join(missing)} (sherpa-onnx requires it)")
    return meta


def check_tokens_file(out: Path, decoder_meta: dict[str, str]) -> None:
    """``out/tokens.txt`` exists and has the decoder's ``vocab_size`` lines.

    Raises:
        ExportError: it is missing or its size differs.
    """
    if not (out / "tokens.txt").is_file():
        raise ExportError(f"{out / 'tokens.txt'}: missing from the ONNX export")
    num_tokens = sum(1 for line in (out / "tokens.txt").read_text(encoding="utf-8").splitlines() if line.strip())
    if int(decoder_meta["vocab_size"]) != num_tokens:
        raise ExportError(f"{out}: decoder vocab_size {decoder_meta['vocab_size']} differs from tokens.txt")


def export_onnx(
    model: nn.Module,
    out_dir: str | Path,
    tokenizer_path: str | Path,
    int8: bool = True,
    feature_dim: int = 80,
) -> Path:
    """Export ``model`` as ``encoder.onnx``/``decoder.onnx``/``joiner.onnx`` for sherpa-onnx.

    Args:
        model: a ``Transducer`` with a stateless predictor (not modified; a CPU copy is exported).
        out_dir: output directory (created).
        tokenizer_path: the ``bpe.model`` the model was trained with.
        int8: also write dynamically quantised ``*.int8.onnx`` files.
        feature_dim: fbank bins the encoder takes.

    Returns:
        ``out_dir``.

    Raises:
        ExportError: recurrent predictor (sherpa-onnx's offline transducer needs a stateless
            one), an export failure, or an export that does not validate.
        MissingDependencyError: onnx/onnxruntime are not installed.
    """
    net, common = prepare_onnx_export(model)
    x = torch.randn(2, 100, feature_dim)
    x_lens = torch.tensor([100, 73], dtype=torch.int64)
    with torch.no_grad():
        enc, _ = net.encode(x, x_lens)
    joiner_dim = int(enc.size(-1))
    with replaced_as_a_whole(out_dir) as out:  # a killed export leaves the previous one intact
        write_tokenizer_files(tokenizer_path, out, common["vocab_size"])
        _export(_Encoder(net), (x, x_lens), out / "encoder.onnx", "encoder", {
            "x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "encoder_out": {0: "N", 1: "T_out"},
            "encoder_out_lens": {0: "N"},
        })
        _add_metadata(out / "encoder.onnx", {
            "model_type": "zipformer2", "version": 1, "feature_dim": feature_dim, "joiner_dim": joiner_dim, **common})
        finish_onnx_export(net, out, common, int8, validate_onnx_export)
    return Path(out_dir)


def finish_onnx_export(net: nn.Module, out: Path, common: dict[str, Any], int8: bool,
                       validate: Callable[..., Any]) -> None:
    """After the encoder: write decoder and joiner, validate the export with ``validate(out, int8=...)``, and with
    ``int8`` quantise all three files and validate those too (shared by the offline and streaming exports)."""
    export_decoder_joiner(net, out, common)
    validate(out)
    if int8:
        quantize_export(out)
        validate(out, int8=True)


def prepare_onnx_export(model: nn.Module, comment: str = "") -> tuple[nn.Module, dict[str, Any]]:
    """Checks shared by the offline and streaming ONNX exports: refuse a recurrent predictor; returns (a CPU
    eval-mode copy of ``model``, the metadata every file gets). Writes nothing.

    Raises:
        ExportError: recurrent predictor.
        MissingDependencyError: onnx/onnxruntime are not installed.
    """
    _require_onnx()
    net = copy.deepcopy(model).to("cpu").eval()
    meta = model_metadata(net)
    if meta["recurrent_predictor"]:
        raise ExportError(
            "ONNX export needs a stateless predictor: sherpa-onnx's transducers feed the decoder only the "
            "last context_size tokens", hint="use --format torchscript or pretrained for LSTM-predictor models")
    common = {
        "model_author": "asrkit",
        "comment": comment or "asrkit transducer (encoder_out includes the joiner encoder projection)",
        **{k: int(v) for k, v in meta.items()},
    }
    return net, common


def export_decoder_joiner(net: nn.Module, out: Path, common: dict[str, Any]) -> int:
    """Write ``decoder.onnx`` and ``joiner.onnx`` of a stateless-predictor transducer (CPU, eval mode) with the
    metadata sherpa-onnx's offline and online recognizers read (``common`` added to both); returns the
    joiner dim J."""
    context_size = int(net.context_size)
    y = torch.full((2, context_size), net.blank_id, dtype=torch.int64)
    y[0, :-1] = -1
    with torch.no_grad():
        dec = net.predict(y, need_pad=False).squeeze(1)
    joiner_dim = int(dec.size(-1))
    enc = torch.randn(2, joiner_dim)
    meta = {"joiner_dim": joiner_dim, **common}
    _export(_Decoder(net), (y,), out / "decoder.onnx", "decoder", {"y": {0: "N"}, "decoder_out": {0: "N"}})
    _add_metadata(out / "decoder.onnx", meta)
    _export(_Joiner(net), (enc, dec), out / "joiner.onnx", "joiner",
            {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logit": {0: "N"}})
    _add_metadata(out / "joiner.onnx", meta)
    return joiner_dim


def quantize_export(out: Path) -> None:
    """Write ``*.int8.onnx`` beside ``encoder.onnx``, ``decoder.onnx`` and ``joiner.onnx`` (metadata kept)."""
    for name in ("encoder", "decoder", "joiner"):
        _quantize(out / f"{name}.onnx", out / f"{name}.int8.onnx")
        # quantisation may drop the metadata: copy it over
        _add_metadata(out / f"{name}.int8.onnx", _read_metadata(out / f"{name}.onnx"))


def _read_metadata(path: Path) -> dict[str, str]:
    onnx, _ = _require_onnx()
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}
