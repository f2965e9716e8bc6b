"""``encoder.output_lengths`` (used to filter utterances without running the encoder) equals what it outputs."""

import pytest
import torch

from asrkit.models.build import build_transducer
from asrkit.models.presets import PRESETS
from asrkit.training.loop import encoder_frames_fn


@pytest.mark.parametrize("name", ["zipformer-xs", "conformer-lite-xs", "lstm-xs"])
def test_output_lengths_match_the_encoder(name):
    model = build_transducer(PRESETS[name]()).eval()
    frames = encoder_frames_fn(model)
    for t in (9, 10, 11, 37, 100, 251):
        _, lens = model.run_encoder(torch.zeros(1, t, 80), torch.tensor([t]))
        assert frames(t) == int(lens[0]) == int(model.encoder.output_lengths(torch.tensor([t]))[0])


class _NoLengths(torch.nn.Module):
    """An encoder that does not declare ``output_lengths`` (forces the probing path)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x, x_lens):
        return self.inner(x, x_lens)


def test_probing_fallback_for_encoders_without_output_lengths():
    model = build_transducer(PRESETS["conformer-lite-xs"]()).eval()
    expected = encoder_frames_fn(model)
    model.encoder = _NoLengths(model.encoder)
    probed = encoder_frames_fn(model)
    for t in (9, 10, 37, 100):
        assert probed(t) == expected(t)
    assert probed(3) == 0  # too short for the front-end: reported as 0 frames, so the utterance is filtered
