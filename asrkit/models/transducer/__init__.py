"""Transducer model pieces: predictors, joiner, CTC head and the :class:`Transducer` itself."""

from asrkit.models.transducer.ctc import CtcHead
from asrkit.models.transducer.joiner import Joiner
from asrkit.models.transducer.model import Transducer, TransducerLosses
from asrkit.models.transducer.predictor import PAD_TOKEN, LstmPredictor, StatelessPredictor

__all__ = [
    "CtcHead",
    "Joiner",
    "LstmPredictor",
    "PAD_TOKEN",
    "StatelessPredictor",
    "Transducer",
    "TransducerLosses",
]
