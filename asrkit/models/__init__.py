"""Models: encoders (Zipformer2, conformer_lite, LSTM), predictors, joiner and the Transducer.

Public entry points: :func:`build_transducer`, :func:`count_parameters`, :class:`ModelConfig` and the presets in
:mod:`asrkit.models.presets`.
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
]
