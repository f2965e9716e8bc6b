"""Load a model from any exported format and transcribe audio files.

:func:`load_model` accepts

* ``pretrained.pt`` (or a training checkpoint with ``"model"`` and ``"config"``),
* a TorchScript export (``jit_script.pt`` or its directory),
* an ONNX export directory (``encoder.onnx``, ``decoder.onnx``, ``joiner.onnx``, ``tokens.txt``),

and returns an :class:`InferenceModel`: the same ``encode``/``predict``/``join`` API for all
three, so every search in :mod:`asrkit.decoding` runs on any of them.

Shape legend: N batch, T frames, T' encoder frames, C context size, J joiner dim, V vocab.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asrkit.errors import CheckpointError, ConfigError

PRETRAINED_NAMES = ("pretrained.pt",)
JIT_NAMES = ("jit_script.pt",)


class InferenceModel:
    """A loaded model plus its detokeniser.

    Attributes:
        format: ``"pretrained"``, ``"torchscript"`` or ``"onnx"``.
        blank_id, unk_id, vocab_size, context_size, recurrent_predictor: search facts.
        tokenizer: object with ``decode(list[list[int]]) -> list[str]`` and ``symbols``.
        device: where input tensors go.
    """

    format: str = ""

    def __init__(self, meta: dict[str, Any], tokenizer: Any, device: torch.device) -> None:
        self.blank_id = int(meta["blank_id"])
        self.vocab_size = int(meta["vocab_size"])
        self.context_size = int(meta["context_size"])
        self.recurrent_predictor = bool(meta.get("recurrent_predictor", False))
        self.tokenizer = tokenizer
        self.unk_id = getattr(tokenizer, "unk_id", None)
        self.device = device

    @property
    def symbols(self) -> list[str]:
        return list(self.tokenizer.symbols)

    def encode(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, T, 80), x_lens (N,) -> (encoder_out (N, T', J), encoder_out_lens (N,))."""
        raise NotImplementedError

    def predict(self, y: torch.Tensor, need_pad: bool = False) -> torch.Tensor:
        """y (N, C) int64 -> (N, 1, J) with need_pad=False."""
        raise NotImplementedError

    def join(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        """encoder_out (N, J), decoder_out (N, J) -> logits (N, V)."""
        raise NotImplementedError

    def decode_tokens(self, tokens: list[list[int]]) -> list[str]:
        """Token ids -> texts."""
        return self.tokenizer.decode(tokens)


class TorchInferenceModel(InferenceModel):
    """A ``Transducer`` (from ``pretrained.pt``) or a TorchScript module."""

    def __init__(self, net: Any, meta: dict[str, Any], tokenizer: Any, fmt: str, device: torch.device) -> None:
        super().__init__(meta, tokenizer, device)
        self.net = net
        self.format = fmt
        self.ctc_head = True if meta.get("has_ctc_head") else None
        self._traced = bool(meta.get("traced", False))

    def encode(self, x, x_lens):
        return self.net.encode(x.to(self.device), x_lens.to(self.device))

    def predict(self, y, need_pad: bool = False):
        if self._traced:  # need_pad was fixed at export to what search passes for this predictor
            return self.net.predict(y.to(self.device))
        return self.net.predict(y.to(self.device), need_pad)

    def join(self, encoder_out, decoder_out):
        return self.net.join(encoder_out, decoder_out)

    def run_encoder(self, x, x_lens):
        return self.net.run_encoder(x.to(self.device), x_lens.to(self.device))

    def ctc_log_probs(self, raw):
        return self.net.ctc_log_probs(raw)


class OnnxInferenceModel(InferenceModel):
    """An ONNX export run with onnxruntime (CPU)."""

    format = "onnx"

    def __init__(self, sessions: dict[str, Any], meta: dict[str, Any], tokenizer: Any) -> None:
        super().__init__(meta, tokenizer, torch.device("cpu"))
        self.sessions = sessions

    @staticmethod
    def _run(sess: Any, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        outs = sess.run(None, {k: v.detach().cpu().numpy() for k, v in feeds.items()})
        return [torch.from_numpy(np.asarray(o)) for o in outs]

    def encode(self, x, x_lens):
        enc, lens = self._run(self.sessions["encoder"], {"x": x.float(), "x_lens": x_lens.to(torch.int64)})
        return enc, lens

    def predict(self, y, need_pad: bool = False):
        if need_pad:
            raise ValueError("ONNX decoders take exactly context_size tokens (need_pad=False)")
        (out,) = self._run(self.sessions["decoder"], {"y": y.to(torch.int64)})
        return out.unsqueeze(1)

    def join(self, encoder_out, decoder_out):
        (logit,) = self._run(self.sessions["joiner"], {"encoder_out": encoder_out.float(),
                                                       "decoder_out": decoder_out.float()})
        return logit


# ---------------------------------------------------------------------------------- loading
def _tokenizer_for_dir(directory: Path, blank_id: int) -> Any:
    """``bpe.model`` when present (exact SentencePiece detokenisation), else ``tokens.txt``."""
    from asrkit.export.tokens import TokenTable, read_tokens_txt

    if (directory / "bpe.model").is_file():
        from asrkit.data.tokenizer import Tokenizer

        return Tokenizer.load(directory / "bpe.model")
    return TokenTable(read_tokens_txt(directory / "tokens.txt"), blank_id=blank_id)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/__torch__" in n or n.endswith("/constants.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _load_pretrained(path: Path, device: torch.device) -> TorchInferenceModel:
    from asrkit.data.tokenizer import Tokenizer
    from asrkit.export.common import model_metadata
    from asrkit.export.pretrained import build_model_from_config
    from asrkit.training.checkpoint import load_checkpoint

    payload = load_checkpoint(path, required_keys=("model", "config"))
    if not isinstance(payload["config"], dict):
        raise CheckpointError(f"{path}: 'config' is not a mapping")
    try:
        net = build_model_from_config(payload["config"], where=str(path))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid model config: {exc}") from None
    try:
        net.load_state_dict(payload["model"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match its config: {first}") from None
    net.to(device).eval()
    if "tokenizer" in payload:
        try:
            tokenizer = Tokenizer.from_bytes(bytes(payload["tokenizer"]))
        except Exception as exc:
            raise CheckpointError(f"{path}: embedded tokenizer is corrupt: {exc}") from None
    else:  # a training checkpoint: look for the tokenizer next to it
        try:
            tokenizer = _tokenizer_for_dir(path.parent, int(net.blank_id))
            if hasattr(tokenizer, "fingerprint"):
                from asrkit.data.tokenizer import check_tokenizer_matches

                check_tokenizer_matches(tokenizer, payload["config"].get("model", {}), path.parent / "bpe.model",
                                        path)
        except CheckpointError:
            raise CheckpointError(f"{path}: a training checkpoint has no tokenizer; put bpe.model or tokens.txt "
                                  f"next to it, or export it with `asrkit export --format pretrained`") from None
    return TorchInferenceModel(net, model_metadata(net), tokenizer, "pretrained", device)


def _load_torchscript(path: Path, device: torch.device) -> TorchInferenceModel:
    from asrkit.export.torchscript import METADATA_NAME

    extra = {METADATA_NAME: ""}
    try:
        net = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: cannot load TorchScript model (truncated or corrupt?): {first}") from None
    if extra[METADATA_NAME]:
        meta = json.loads(extra[METADATA_NAME])
    else:  # scripted elsewhere: read what the module exposes
        meta = {"blank_id": net.blank_id, "vocab_size": net.vocab_size, "context_size": net.context_size}
    net.eval()
    return TorchInferenceModel(net, meta, _tokenizer_for_dir(path.parent, int(meta["blank_id"])), "torchscript",
                               device)


def _load_onnx(directory: Path, int8: bool, num_threads: int) -> OnnxInferenceModel:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        from asrkit.errors import MissingDependencyError

        raise MissingDependencyError("onnxruntime", "onnx", "running ONNX models") from exc
    suffix = ".int8.onnx" if int8 else ".onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sessions = {}
    for name in ("encoder", "decoder", "joiner"):
        path = directory / f"{name}{suffix}"
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the ONNX export directory")
        try:
            sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"{path}: onnxruntime cannot load it (truncated or corrupt?): {first}") from None
    meta_dec = dict(sessions["decoder"].get_modelmeta().custom_metadata_map)
    meta_enc = dict(sessions["encoder"].get_modelmeta().custom_metadata_map)
    try:
        meta = {
            "blank_id": int(meta_enc.get("blank_id", 0)),
            "vocab_size": int(meta_dec["vocab_size"]),
            "context_size": int(meta_dec["context_size"]),
        }
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{directory / ('decoder' + suffix)}: metadata lacks vocab_size/context_size") from exc
    return OnnxInferenceModel(sessions, meta, _tokenizer_for_dir(directory, meta["blank_id"]))


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    int8: bool = False,
    num_threads: int = 1,
) -> InferenceModel:
    """Load a model for inference from any exported format.

    Args:
        path: ``pretrained.pt`` / a checkpoint, ``jit_script.pt``, or an export directory
            (ONNX if it has ``encoder.onnx``, else TorchScript, else ``pretrained.pt``).
        device: torch device for pretrained/TorchScript models (ONNX runs on CPU).
        int8: for ONNX exports, load the ``*.int8.onnx`` files.
        num_threads: onnxruntime intra-op threads.

    Returns:
        An :class:`InferenceModel`.

    Raises:
        CheckpointError: missing, truncated or corrupt model files (one line naming the file).
    """
    p = Path(path)
    dev = torch.device(device)
    if not p.exists():
        raise CheckpointError(f"{p}: model file or directory not found")
    if p.is_dir():
        if (p / "encoder.onnx").is_file() or (p / "encoder.int8.onnx").is_file():
            return _load_onnx(p, int8, num_threads)
        for name in JIT_NAMES:
            if (p / name).is_file():
                return _load_torchscript(p / name, dev)
        for name in PRETRAINED_NAMES:
            if (p / name).is_file():
                return _load_pretrained(p / name, dev)
        raise CheckpointError(
            f"{p}: no model found (expected encoder.onnx, {', '.join(JIT_NAMES)} or {', '.join(PRETRAINED_NAMES)})")
    if p.suffix == ".onnx":
        return _load_onnx(p.parent, int8 or p.name.endswith(".int8.onnx"), num_threads)
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: model file is empty (0 bytes)")
    if _is_torchscript(p):
        return _load_torchscript(p, dev)
    return _load_pretrained(p, dev)


# ---------------------------------------------------------------------------------- transcribe
def _features(path: str | Path) -> torch.Tensor:
    from asrkit.data.audio import read_audio_resampled
    from asrkit.data.features import SAMPLE_RATE, compute_fbank

    return compute_fbank(read_audio_resampled(path, SAMPLE_RATE), SAMPLE_RATE)


@dataclass(frozen=True)
class FileError:
    """An input file that could not be transcribed, and why (one line)."""

    path: str
    reason: str


@dataclass
class TranscriptionReport:
    """What :func:`transcribe_files` did with each input file.

    Attributes:
        transcripts: one row per readable file, in input order, as :func:`transcribe` returns them.
        errors: unreadable files, in input order.
        too_short: readable files shorter than the model's minimum input (their transcript is empty).
        min_seconds: that minimum, in seconds.
    """

    transcripts: list[tuple] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    too_short: list[str] = field(default_factory=list)
    min_seconds: float = 0.0


def transcribe_files(
    model: str | Path | InferenceModel,
    audio_paths: Sequence[str | Path],
    method: str = "greedy_search",
    batch_size: int = 8,
    timestamps: bool = False,
    segment_seconds: float = 60.0,
    **opts: Any,
) -> TranscriptionReport:
    """Transcribe many files, surviving bad ones: every readable file gets a transcript, every unreadable one
    an entry in ``errors`` naming the file and the reason; nothing is raised for a bad file.

    Audio shorter than the model's minimum input (see :func:`asrkit.decoding.utterances.min_input_frames`) is
    valid input: its transcript is empty, as sherpa-onnx gives, and it is listed in ``too_short``. Long files are
    decoded in segments of at most ``segment_seconds`` (see :func:`asrkit.decoding.utterances.pause_cuts`).

    Args: as :func:`transcribe`.

    Raises:
        CheckpointError / ConfigError: the model cannot be loaded, or an unknown method/option (nothing can be
            transcribed then).
    """
    from asrkit.data.features import FRAME_SHIFT_S
    from asrkit.errors import DataError

    from asrkit.decoding.utterances import min_input_frames

    loaded = _prepare_search(model, method, batch_size, opts)
    min_frames = min_input_frames(loaded)
    report = TranscriptionReport(min_seconds=min_frames * FRAME_SHIFT_S)
    feats: dict[int, torch.Tensor] = {}
    for i, path in enumerate(audio_paths):
        try:
            f = _features(path)
        except DataError as exc:
            report.errors.append(FileError(str(path), str(exc)))
            continue
        feats[i] = f
    decoded = _decode_features(loaded, feats, audio_paths, method, batch_size, timestamps, min_frames,
                               segment_seconds, opts)
    report.transcripts = [decoded[i] for i in sorted(decoded)]
    report.too_short = [str(audio_paths[i]) for i in sorted(feats) if feats[i].shape[0] < min_frames]
    return report


def transcribe(
    model: str | Path | InferenceModel,
    audio_paths: Sequence[str | Path],
    method: str = "greedy_search",
    batch_size: int = 8,
    timestamps: bool = False,
    segment_seconds: float = 60.0,
    **opts: Any,
) -> list[tuple]:
    """Transcribe audio files; the first unreadable file raises (see :func:`transcribe_files` for bulk runs).

    Files are read (any sample rate, resampled to 16 kHz), turned into fbank exactly as
    sherpa-onnx does, sorted by length and decoded ``batch_size`` at a time. Audio shorter than the model's
    minimum input gets an empty transcript. Files longer than ``segment_seconds`` are cut at pauses into
    segments no longer than that (whole-utterance attention needs memory and time growing with the square of
    the length: 5 minutes take ~16 GB with zipformer-xs) and the segments' transcripts joined; 0: never cut.

    Args:
        model: a model path for :func:`load_model`, or an already loaded model.
        audio_paths: audio files (wav/flac/ogg/sph).
        method: ``greedy_search``, ``modified_beam_search``, ``beam_search`` (or
            ``ctc_greedy_search`` for pretrained/TorchScript models with a CTC head).
        batch_size: utterances per forward pass.
        timestamps: also return per-token ``(symbol, seconds)`` pairs.
        **opts: search options, e.g. ``beam_size=4``.

    Returns:
        In input order, ``(path, text)`` or, with ``timestamps``, ``(path, text,
        [(token, start_seconds), ...])``.

    Raises:
        DataError: an audio file is missing, empty or corrupt (naming the file).
        CheckpointError: the model cannot be loaded.
        ConfigError: unknown method or option.
    """
    from asrkit.decoding.utterances import min_input_frames

    loaded = _prepare_search(model, method, batch_size, opts)
    feats = dict(enumerate(_features(p) for p in audio_paths))  # read everything first: a bad file fails fast
    decoded = _decode_features(loaded, feats, audio_paths, method, batch_size, timestamps, min_input_frames(loaded),
                               segment_seconds, opts)
    return [decoded[i] for i in range(len(audio_paths))]


def _prepare_search(model: str | Path | InferenceModel, method: str, batch_size: int, opts: dict) -> InferenceModel:
    """Check the search settings (before loading anything), then load the model."""
    from asrkit.decoding.search import check_options, get_search_function

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    get_search_function(method)
    check_options(method, opts)
    return model if isinstance(model, InferenceModel) else load_model(model)


def _decode_features(loaded: InferenceModel, feats: dict[int, torch.Tensor], audio_paths: Sequence[str | Path],
                     method: str, batch_size: int, timestamps: bool, min_frames: int, segment_seconds: float,
                     opts: dict) -> dict[int, tuple]:
    """Decode ``feats`` (input index -> (T, 80) features), longest first, ``batch_size`` files at a time, with
    :func:`asrkit.decoding.utterances.search_utterances` (too short: empty; longer than ``segment_seconds``: in
    segments cut at pauses).

    Returns input index -> ``(path, text)`` or ``(path, text, [(token, seconds), ...])``.
    """
    from asrkit.data.features import FRAME_SHIFT_S
    from asrkit.decoding.utterances import search_utterances

    segment_frames = int(segment_seconds / FRAME_SHIFT_S) if segment_seconds > 0 else 0
    order = sorted(feats, key=lambda i: feats[i].shape[0], reverse=True)
    results: dict[int, tuple] = {}
    for first in range(0, len(order), batch_size):
        idx = order[first:first + batch_size]
        tokens, seconds = search_utterances(loaded, [feats[i] for i in idx], method, min_frames, segment_frames,
                                            return_timestamps=timestamps, **opts)
        for k, (i, text) in enumerate(zip(idx, loaded.decode_tokens(tokens))):
            path = str(audio_paths[i])
            if timestamps:
                results[i] = (path, text, [(loaded.symbols[t], s) for t, s in zip(tokens[k], seconds[k])])
            else:
                results[i] = (path, text)
    return results


def align_file(model_path: str | Path, audio_path: str | Path, text: str | None = None, plot: Path | None = None,
               prune_range: int = 5) -> list[tuple[str, float]]:
    """Align ``text`` (default: the greedy hypothesis) to one audio file with a ``pretrained.pt`` model.

    Returns ``[(token, start seconds), ...]`` along the best alignment; with ``plot``, also draws the lattice
    (:func:`asrkit.decoding.align.plot_lattice`).
    """
    from asrkit.data.features import pad_features
    from asrkit.decoding.align import lattice_view, plot_lattice
    from asrkit.decoding.search import run_search
    from asrkit.decoding.timestamps import frames_to_seconds
    from asrkit.errors import ExportError

    loaded = load_model(model_path)
    net = getattr(loaded, "net", None)
    if loaded.format != "pretrained" or net is None:
        raise ExportError(f"{model_path}: alignment needs pretrained.pt (the simple-loss projections are not "
                          f"exported to {loaded.format})")
    feats = _features(audio_path)
    if text is None:
        x, x_lens = pad_features([feats])
        tokens = run_search(loaded, x, x_lens, "greedy_search")[0][0]
    else:
        tokens = loaded.tokenizer.encode([text])[0]
    view = lattice_view(net, feats, tokens, prune_range=prune_range)
    if plot is not None:
        plot_lattice(view, plot, symbols=loaded.symbols, title=f"{Path(audio_path).name}: {loaded.decode_tokens([tokens])[0]}")
    frames = [frame for _, frame in view.emissions]
    seconds = frames_to_seconds(frames, feats.shape[0], view.occupation.shape[1] - 1)
    return [(loaded.symbols[tok], sec) for (tok, _), sec in zip(view.emissions, seconds)]
