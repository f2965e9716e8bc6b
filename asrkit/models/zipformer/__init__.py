"""Zipformer2 encoder. Use :func:`build_zipformer` (from a :class:`~asrkit.models.config.ZipformerConfig`) and call
:func:`set_batch_count` from the training loop so the scheduled dropout/skip rates advance."""

from __future__ import annotations

from asrkit.errors import ConfigError
from asrkit.models.config import ZipformerConfig
from asrkit.models.zipformer.encoder import Zipformer2, chunk_attention_mask
from asrkit.models.zipformer.scaling import ScheduledFloat, set_batch_count

PER_STACK_FIELDS = (
    "num_encoder_layers",
    "encoder_dim",
    "encoder_unmasked_dim",
    "feedforward_dim",
    "num_heads",
    "cnn_module_kernel",
)


def _per_stack(cfg: ZipformerConfig, name: str, n: int) -> tuple[int, ...]:
    value = tuple(getattr(cfg, name))
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise ConfigError(
            f"model.encoder.zipformer.{name}: has {len(value)} entries but downsampling_factor has {n}",
            hint="give one value per stack, or a single value for all stacks",
        )
    return value


def validate_zipformer_config(cfg: ZipformerConfig) -> dict[str, tuple[int, ...]]:
    """Check a Zipformer config and return its per-stack tuples broadcast to the number of stacks.

    Raises:
        ConfigError: naming the offending ``model.encoder.zipformer.*`` key.
    """
    key = "model.encoder.zipformer"
    n = len(cfg.downsampling_factor)
    if n == 0 or any(d < 1 for d in cfg.downsampling_factor):
        raise ConfigError(f"{key}.downsampling_factor: need positive factors, got {cfg.downsampling_factor}")
    stacks = {name: _per_stack(cfg, name, n) for name in PER_STACK_FIELDS}
    for i, (dim, unmasked, kernel) in enumerate(
        zip(stacks["encoder_dim"], stacks["encoder_unmasked_dim"], stacks["cnn_module_kernel"])
    ):
        if unmasked > dim:
            raise ConfigError(f"{key}.encoder_unmasked_dim[{i}]: {unmasked} exceeds encoder_dim[{i}] = {dim}")
        if kernel % 2 != 1:
            raise ConfigError(f"{key}.cnn_module_kernel[{i}]: must be odd, got {kernel}")
    if any(dim % 4 for dim in stacks["encoder_dim"]):
        raise ConfigError(f"{key}.encoder_dim: every entry must be divisible by 4, got {stacks['encoder_dim']}")
    if cfg.pos_dim % 2:
        raise ConfigError(f"{key}.pos_dim: must be even, got {cfg.pos_dim}")
    if cfg.causal:
        max_ds = max(cfg.downsampling_factor)
        for c in cfg.chunk_size:
            if c == 0 or c < -1 or (c > 0 and c % max_ds):
                raise ConfigError(
                    f"{key}.chunk_size: {c} must be -1 or a positive multiple of max(downsampling_factor) = {max_ds}"
                )
        for c in cfg.chunk_size:
            for left in cfg.left_context_frames:
                if c <= 0 or left < 0:
                    continue
                chunks = max(left // c, 1)
                for i, (k, ds) in enumerate(zip(stacks["cnn_module_kernel"], cfg.downsampling_factor)):
                    if c * chunks < (k // 2) * ds:
                        raise ConfigError(
                            f"{key}.left_context_frames: {left} frames with chunk_size {c} give less left context than "
                            f"stack {i}'s convolution needs ({(k // 2) * ds} frames)"
                        )
    return stacks


def build_zipformer(cfg: ZipformerConfig, feature_dim: int, feature_norm: str = "none") -> Zipformer2:
    """Build a :class:`Zipformer2` encoder from its config (raises ConfigError on invalid values)."""
    stacks = validate_zipformer_config(cfg)
    return Zipformer2(
        feature_dim=feature_dim,
        downsampling_factor=tuple(cfg.downsampling_factor),
        query_head_dim=cfg.query_head_dim,
        value_head_dim=cfg.value_head_dim,
        pos_head_dim=cfg.pos_head_dim,
        pos_dim=cfg.pos_dim,
        subsampling_channels=cfg.subsampling_channels,
        dropout=cfg.dropout,
        causal=cfg.causal,
        chunk_size=tuple(cfg.chunk_size),
        left_context_frames=tuple(cfg.left_context_frames),
        feature_norm=feature_norm,
        **stacks,
    )


__all__ = ["ScheduledFloat", "Zipformer2", "build_zipformer", "chunk_attention_mask", "set_batch_count", "validate_zipformer_config"]
