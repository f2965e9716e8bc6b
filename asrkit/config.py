"""Configuration dataclasses, one per stage, loaded strictly from YAML recipes.

A recipe file (``recipes/*.yaml``) holds a :class:`TrainConfig` (model + optimization + data loading).
``asrkit train`` resolves it (vocab size from the tokenizer, command-line overrides), writes the result to
``<exp-dir>/config.yaml`` and embeds it in every checkpoint, so later stages (``average``, ``decode``,
``export``) never repeat model flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import yaml

from asrkit.errors import ConfigError
from asrkit.models.config import ModelConfig
from asrkit.utils.dataclass_io import from_dict, to_dict


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule."""

    name: Literal["scaled_adam", "adamw"] = "scaled_adam"
    base_lr: float = 0.045
    weight_decay: float = 0.0
    clipping_scale: float = 2.0  # ScaledAdam: clip at this multiple of the median recent grad norm
    max_grad_norm: float = 5.0  # AdamW: plain norm clipping
    scheduler: Literal["eden", "warmup_inverse_sqrt"] = "eden"  # warmup_inverse_sqrt: for AdamW
    lr_batches: float = 7500.0  # Eden's B
    lr_epochs: float = 3.5  # Eden's E
    warmup_batches: int = 500
    # > 0 (needs max_steps or max_minutes): over this last fraction of the training budget the learning rate falls
    # linearly to 0, on top of the schedule (a budget-aware cool-down)
    cooldown_fraction: float = 0.0


@dataclass
class LossConfig:
    """Pruned RNN-T loss (+ optional CTC) and icefall's warm-up weighting of its two parts."""

    backend: Literal["auto", "torch", "fast_rnnt", "k2"] = "auto"
    rnnt_type: Literal["regular", "modified", "constrained"] = "regular"
    prune_range: int = 5
    lm_scale: float = 0.25  # lm_only_scale of the smoothed simple loss
    am_scale: float = 0.0  # am_only_scale of the smoothed simple loss
    simple_loss_scale: float = 0.5  # weight of the simple loss after warm-up
    warm_step: int = 2000  # batches over which the pruned loss is faded in
    ctc_loss_scale: float = 0.0  # > 0 needs model.ctc_head: true
    # k2's emission-delay regulariser (>= 0) on the simple and the pruned loss: rewards emitting each symbol on
    # an earlier frame, trading accuracy for latency in streaming models (icefall uses 0.015 to 0.1); 0: off
    delay_penalty: float = 0.0


@dataclass
class DataConfig:
    """Batching, filtering and augmentation of training data."""

    max_duration: float = 200.0  # seconds of audio per batch (per process)
    num_buckets: int = 10
    shuffle: bool = True
    min_utterance_duration: float = 0.3
    max_utterance_duration: float = 20.0
    # Vocal tract length perturbation: each training utterance's mel axis is stretched by a random factor in
    # [1 - mel_warp, 1 + mel_warp] (asrkit.data.augment.MelWarp); 0 disables it.
    mel_warp: float = 0.0
    spec_augment: bool = True
    num_frame_masks: int = 2
    frame_mask_size: int = 20
    num_feature_masks: int = 2
    feature_mask_size: int = 15
    time_warp_factor: int = 40
    musan_cuts: Optional[str] = None  # a MUSAN cut set with features; mixed in as noise when set
    # On-the-fly acoustic augmentation (asrkit.data.acoustic), all off by default: each training utterance gets
    # each effect with its probability; an utterance that gets any is loaded as audio and its fbank recomputed.
    tempo_prob: float = 0.0  # speaking-rate change, pitch kept (WSOLA)
    tempo_range: tuple[float, float] = (0.85, 1.15)  # rate factor (>1 faster)
    pitch_prob: float = 0.0  # pitch shift, duration kept
    pitch_semitones: float = 3.0  # largest shift up or down
    reverb_prob: float = 0.0  # lhotse's reverberation with a simulated room impulse response
    noise_prob: float = 0.0  # additive noise at a random SNR
    noise_snr: tuple[float, float] = (5.0, 30.0)  # dB
    noise_types: tuple[str, ...] = ("white", "pink", "brown", "hum", "babble")  # babble: other batch utterances
    band_limit_prob: float = 0.0  # a low-pass at a random cut-off, or a telephone channel
    band_limit_cutoff: tuple[float, float] = (2500.0, 7000.0)  # Hz
    telephone_share: float = 0.3  # of the band-limited utterances: 300-3400 Hz + mu-law instead of a low-pass
    gain_prob: float = 0.0  # level change
    gain_db: tuple[float, float] = (-20.0, 6.0)
    skip_bad_audio: bool = False  # drop (log + count) unreadable utterances instead of stopping with an error
    num_workers: int = 1


@dataclass
class DecodeConfig:
    """Decoding-time chunking of a causal model (``asrkit decode --chunk-size/--left-context-frames/--streaming``).

    ``chunk_size`` / ``left_context_frames`` (50 Hz frames; ``None``: the first entries of the model's
    ``encoder.zipformer`` config) replace the trained values for simulated streaming (whole utterances, chunked
    attention masks) and for chunk-wise ``streaming`` decoding, which runs ``num_decode_streams`` utterances as
    live streams, a new one joining as soon as one ends.
    """

    chunk_size: Optional[int] = None
    left_context_frames: Optional[int] = None
    streaming: bool = False
    num_decode_streams: int = 8

    @property
    def chunked(self) -> bool:
        """True when the model's chunking is overridden or decoding is chunk-wise."""
        return self.streaming or self.chunk_size is not None or self.left_context_frames is not None


@dataclass
class TrainConfig:
    """Everything that defines a training run except where its files live."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    num_epochs: int = 10
    seed: int = 42
    average_period: int = 100  # update the running-average model every this many batches
    save_every_n: int = 0  # 0 = only epoch checkpoints
    keep_last_k: int = 5
    log_interval: int = 25
    max_nonfinite_batches: int = 20  # abort when more batches than this have a non-finite loss
    use_fp16: bool = False
    use_bf16: bool = False
    max_minutes: float = 0.0  # > 0: stop (after writing a checkpoint) once training ran this long
    max_steps: int = 0  # > 0: stop (after writing a checkpoint) after this many optimizer steps in total
    # Zipformer's regularization schedules (layer skipping, bypass, dropout) advance by one unit per this many
    # seconds of training audio (icefall: 600). Their warm-ups last ~4000-20000 units: a run of a few thousand
    # steps needs a small value, or it trains entirely in the heavily regularized warm-up regime.
    schedule_reference_duration: float = 600.0
    # Before epoch 1, run forward + backward on the most memory-hungry batches the sampler can produce, to fail
    # in seconds (with a hint) rather than hours later. -1: only on GPUs.
    preflight: int = -1


def load_train_config(path: str | Path, overrides: Optional[dict] = None) -> TrainConfig:
    """Load a recipe YAML strictly into a :class:`TrainConfig`.

    Args:
        path: the YAML file.
        overrides: dotted keys -> values applied on top, e.g. ``{"num_epochs": 3, "optim.base_lr": 0.01}``.

    Raises:
        ConfigError: naming the file and the offending key.
    """
    path = Path(path)
    data = _read_recipe(path, ())
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        return from_dict(TrainConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", hint=exc.hint) from None


def _read_recipe(path: Path, chain: tuple[Path, ...]) -> dict:
    """A recipe's YAML as a dict, with ``base: other.yaml`` (a path relative to the recipe) resolved: the base
    recipe is read first and this file's keys are merged into it, nested sections key by key. A variant of a preset
    (e.g. its streaming version) is then only the keys that differ."""
    if not path.is_file():
        raise ConfigError(f"recipe file {path} does not exist", hint="see recipes/ for the presets")
    if path.resolve() in chain:
        raise ConfigError(f"{path}: 'base' recipes form a cycle: {' -> '.join(p.name for p in chain + (path,))}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    merged = _read_recipe(path.parent / str(base), chain + (path.resolve(),))
    _merge_into(merged, data)
    return merged


def _merge_into(target: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = value


def train_config_from_dict(data: dict) -> TrainConfig:
    """Rebuild a :class:`TrainConfig` stored in a checkpoint or ``config.yaml``."""
    return from_dict(TrainConfig, data)


def save_yaml(obj, path: Path) -> None:
    """Write a dataclass (or dict) as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))


def parse_override(text: str) -> tuple[str, object]:
    """Parse ``key.sub=value`` (value parsed as YAML) from ``--set`` command-line options."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set optim.base_lr=0.01")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def _set_dotted(data: dict, key: str, value) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key}: {part} is not a mapping")
    node[parts[-1]] = value
