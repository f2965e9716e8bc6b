"""Models: encoders (Zipformer2, conformer_lite, LSTM), predictors, joiner and the Transducer.

Public entry points: :func:`build_transducer`, :func:`count_parameters`, :class:`ModelConfig`, the presets in
:mod:`asrkit.models.presets`, and :func:`set_batch_count` (call it every training step: Zipformer's dropout and
layer-skip rates follow batch-count schedules; a no-op for models without schedules).
"""

from asrkit.models.build import ENCODERS, PREDICTORS, build_transducer, count_parameters
from asrkit.models.config import (
    ConformerLiteConfig,
    EncoderConfig,
    JoinerConfig,
    LstmEncoderConfig,
    ModelConfig,
    PredictorConfig,
    ZipformerConfig,
)
from asrkit.models.transducer import Transducer, TransducerLosses
from asrkit.models.zipformer.scaling import set_batch_count

__all__ = [
    "ENCODERS",
    "PREDICTORS",
    "ConformerLiteConfig",
    "EncoderConfig",
    "JoinerConfig",
    "LstmEncoderConfig",
    "ModelConfig",
    "PredictorConfig",
    "Transducer",
    "TransducerLosses",
    "ZipformerConfig",
    "build_transducer",
    "count_parameters",
    "set_batch_count",
]
