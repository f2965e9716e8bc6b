"""Model export: ``pretrained.pt``, TorchScript and ONNX (sherpa-onnx compatible).

Example::

    from asrkit.export import export_onnx, export_pretrained, export_torchscript
    export_pretrained(model, config, "data/lang/bpe.model", "exp/pretrained.pt")
    export_torchscript(model, "exp/jit", "data/lang/bpe.model")
    export_onnx(model, "exp/onnx", "data/lang/bpe.model", int8=True)
"""

from asrkit.export.onnx import export_onnx, validate_onnx_export
from asrkit.export.pretrained import export_pretrained
from asrkit.export.torchscript import export_torchscript

__all__ = ["export_onnx", "export_pretrained", "export_torchscript", "validate_onnx_export"]
