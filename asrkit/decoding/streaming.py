"""Chunk-wise (streaming) transducer decoding with a causal Zipformer2 encoder.

The model is a :class:`~asrkit.models.transducer.streaming.StreamingTransducer` (:func:`as_streaming` wraps a
``Transducer``; a TorchScript streaming export loads as one). A :class:`DecodeStream` is one utterance: features
arrive in pieces (:meth:`DecodeStream.accept_features`), the encoder runs one chunk at a time carrying its caches,
and the search state (greedy or modified beam) carries over from chunk to chunk.
:func:`decode_chunk` advances a batch of streams of any ages by one chunk; :func:`decode_streaming` decodes a
whole set through a pool of ``num_streams`` live streams, a new utterance joining as soon as one ends.

The result equals "simulated streaming" (:func:`~asrkit.decoding.search.run_search` on the whole utterance,
whose causal encoder uses the same chunk mask and left context) token for token.

Shape legend: B streams, T input frames, F feature bins, N chunk size (50 Hz frames), J joiner dim.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from asrkit.decoding.driver import add_results
from asrkit.decoding.greedy_search import GreedyStream, greedy_result, greedy_search_step
from asrkit.decoding.hypothesis import SearchOutput
from asrkit.decoding.modified_beam_search import BeamStream, beam_result, modified_beam_search_step
from asrkit.decoding.search import model_device
from asrkit.decoding.timestamps import frames_to_seconds
from asrkit.errors import ConfigError
from asrkit.models.zipformer.encoder import stack_states, unstack_states

PAD_VALUE = -23.025850929940457
"""ln(1e-10): what the input window is padded with after a stream's last frame (masked, never seen)."""


@dataclass(frozen=True)
class StreamingSearch:
    """A search that runs block by block: ``start(model)`` makes one utterance's state, ``step(model,
    encoder_out, encoder_out_lens, states, **opts)`` advances a batch of them, ``result(model, states,
    return_timestamps, **opts)`` reads off the best hypotheses."""

    start: Callable[[Any], Any]
    step: Callable[..., None]
    result: Callable[..., Any]


STREAMING_SEARCHES: dict[str, StreamingSearch] = {
    "greedy_search": StreamingSearch(GreedyStream.start, greedy_search_step, greedy_result),
    "modified_beam_search": StreamingSearch(BeamStream.start, modified_beam_search_step, beam_result),
}
"""Methods :func:`decode_streaming` supports."""

_STEP_POSITIONAL = {"model", "encoder_out", "encoder_out_lens", "streams", "cache"}


def get_streaming_search(method: str, opts: dict[str, Any]) -> StreamingSearch:
    """The block-wise search registered under ``method``, after checking its options.

    Raises:
        ConfigError: unknown method or option, listing the valid ones.
    """
    if method not in STREAMING_SEARCHES:
        raise ConfigError(f"decoding method {method!r} has no streaming version",
                          hint=f"valid streaming methods: {', '.join(STREAMING_SEARCHES)}")
    search = STREAMING_SEARCHES[method]
    valid = [p for p in inspect.signature(search.step).parameters if p not in _STEP_POSITIONAL]
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise ConfigError(f"streaming {method} does not accept option(s) {', '.join(unknown)}",
                          hint=f"valid options: {', '.join(valid)}")
    return search


def as_streaming(model: Any) -> Any:
    """``model`` if it already has the streaming API (``streaming_encode``: a StreamingTransducer, eager or
    TorchScript), else a :class:`~asrkit.models.transducer.streaming.StreamingTransducer` around the
    ``Transducer`` (sharing its parameters, in eval mode).

    Raises:
        ConfigError: the model's encoder cannot stream.
    """
    if hasattr(model, "streaming_encode"):
        return model
    from asrkit.models.transducer.streaming import StreamingTransducer

    return StreamingTransducer(model).eval()


class DecodeStream:
    """One utterance decoded chunk by chunk.

    Args:
        model: a streaming model (:func:`as_streaming`).
        search_state: the search's per-utterance state (``StreamingSearch.start(model)``).
        utt_id: a name for results and error messages.
        device: where the encoder states live.
    """

    def __init__(self, model: Any, search_state: Any, utt_id: str = "", device: torch.device | str = "cpu") -> None:
        self.utt_id = utt_id
        self.window, self.shift = int(model.window), int(model.shift)
        self.states: list[torch.Tensor] = [s.to(device) for s in model.get_init_states(1)]
        self.search = search_state
        self.num_chunks = 0
        self.num_frames = 0  # encoder output frames so far
        self._buffer: torch.Tensor | None = None  # input frames from the next chunk's first frame on
        self._input_done = False

    def accept_features(self, features: torch.Tensor) -> None:
        """Append frames (T, F) that arrived."""
        if self._input_done:
            raise ValueError(f"stream {self.utt_id!r}: features after input_finished()")
        if features.dim() != 2:
            raise ValueError(f"stream {self.utt_id!r}: features must be (T, F), got shape {tuple(features.shape)}")
        self._buffer = features if self._buffer is None else torch.cat([self._buffer, features], dim=0)

    def input_finished(self) -> None:
        """No more features: the last (partial) chunk may be decoded."""
        self._input_done = True

    @property
    def buffered_frames(self) -> int:
        return 0 if self._buffer is None else self._buffer.size(0)

    @property
    def ready(self) -> bool:
        """True when the next chunk can be decoded: a full input window, or the end of the input with frames
        that still give output."""
        n = self.buffered_frames
        return n >= self.window or (self._input_done and n >= 9)  # (n - 7) // 2 >= 1 output frame

    @property
    def done(self) -> bool:
        """True when the input is finished and every chunk decoded."""
        return self._input_done and not self.ready

    def next_chunk(self) -> tuple[torch.Tensor, int]:
        """The next chunk's input window (window, F), padded with ln(1e-10), and its number of real frames;
        advances the buffer by one chunk shift."""
        assert self._buffer is not None and self.ready, f"stream {self.utt_id!r} is not ready"
        piece = self._buffer[: self.window]
        valid = piece.size(0)
        if valid < self.window:
            piece = torch.nn.functional.pad(piece, (0, 0, 0, self.window - valid), value=PAD_VALUE)
        self._buffer = self._buffer[self.shift :]
        return piece, valid


class StreamResult(NamedTuple):
    """Tokens (and encoder-frame timestamps) of one utterance decoded chunk-wise, and its encoder frames."""

    utt_id: str
    tokens: list[int]
    timestamps: list[int]
    num_frames: int


@torch.no_grad()
def decode_chunk(model: Any, streams: list[DecodeStream], method: str = "greedy_search", **opts: Any) -> None:
    """Advance ready streams of any ages by one chunk each, in one batched encoder call.

    Args:
        model: a streaming model (:func:`as_streaming`).
        streams: streams whose ``ready`` is True, all made for ``method``.
        method: a name in :data:`STREAMING_SEARCHES`.
        **opts: the search's options (``max_sym_per_frame``, ``beam_size``, ``blank_penalty``, ``unk_id``...).
    """
    search = get_streaming_search(method, opts)
    if not streams:
        return
    device = streams[0].states[0].device
    batch_dims = list(model.state_batch_dims)
    pieces, lens = zip(*(s.next_chunk() for s in streams))
    x = torch.stack(pieces).to(device)  # (B, window, F)
    x_lens = torch.tensor(lens, dtype=torch.int64, device=device)
    out, out_lens, states = model.streaming_encode(x, x_lens, stack_states([s.states for s in streams], batch_dims))
    search.step(model, out, out_lens, [s.search for s in streams], **opts)
    for s, st, n in zip(streams, unstack_states(states, batch_dims), out_lens.tolist()):
        s.states = st
        s.num_chunks += 1
        s.num_frames += n


def stream_result(model: Any, stream: DecodeStream, method: str, **opts: Any) -> StreamResult:
    """The best hypothesis of a stream so far (a partial result while it is live, the final one when done)."""
    extra = {k: opts[k] for k in ("lm", "lm_scale") if k in opts}  # the beam's final choice uses the LM too
    out = get_streaming_search(method, opts).result(model, [stream.search], True, **extra)
    assert isinstance(out, SearchOutput)
    return StreamResult(stream.utt_id, out.tokens[0], out.timestamps[0], stream.num_frames)


@torch.no_grad()
def decode_streaming(
    model: Any,
    utterances: Iterable[tuple[str, torch.Tensor]],
    method: str = "greedy_search",
    num_streams: int = 4,
    device: torch.device | str = "cpu",
    **opts: Any,
) -> list[StreamResult]:
    """Decode utterances chunk by chunk through a pool of ``num_streams`` live streams.

    Each utterance's features are fed whole (as a file decoder does); every call decodes one chunk of each live
    stream, and a new utterance takes a finished stream's place before the next call, so streams of different
    ages share the batch.

    Args:
        model: a ``Transducer`` with a causal Zipformer2 encoder (eval mode is set here) or a streaming model
            (:func:`as_streaming`, a TorchScript streaming export).
        utterances: ``(utt_id, features (T, F))`` pairs.
        method: ``greedy_search`` or ``modified_beam_search``.
        num_streams: most streams decoded together (>= 1).
        device: where the model is.
        **opts: the search's options.

    Returns:
        One :class:`StreamResult` per utterance, in input order.

    Raises:
        ConfigError: unknown method/option, a non-causal model or an unstreamable chunk configuration.
    """
    if num_streams < 1:
        raise ConfigError(f"num_decode_streams must be >= 1, got {num_streams}")
    search = get_streaming_search(method, opts)
    if isinstance(model, torch.nn.Module):
        model.eval()
    model = as_streaming(model)
    pending = iter(utterances)
    order: list[str] = []
    finished: dict[str, StreamResult] = {}
    live: list[DecodeStream] = []
    exhausted = False
    while True:
        while True:  # retire finished streams (new ones too: an utterance may be too short for any output), refill
            for s in [s for s in live if s.done]:
                finished[s.utt_id] = stream_result(model, s, method, **opts)
                live.remove(s)
            if exhausted or len(live) >= num_streams:
                break
            item = next(pending, None)
            if item is None:
                exhausted = True
                continue
            stream = DecodeStream(model, search.start(model), str(item[0]), device)
            stream.accept_features(item[1].to(device))
            stream.input_finished()
            order.append(stream.utt_id)
            live.append(stream)
        if not live:
            break
        decode_chunk(model, live, method, **opts)
    return [finished[u] for u in order]


def apply_decode_config(model: Any, cfg: Any) -> str:
    """Set a checkpoint model's decoding-time chunking from a :class:`~asrkit.config.DecodeConfig` and return the
    suffix that names its reports (``-chunk-16-left-64``, plus ``-streaming`` for chunk-wise decoding; ``""``
    when nothing is chunked).

    Raises:
        ConfigError: the model has no causal Zipformer2 encoder, or the values are invalid.
    """
    if not cfg.chunked:
        return ""
    encoder = getattr(model, "encoder", None)
    if not hasattr(encoder, "set_decoding_chunk") or hasattr(model, "streaming_encode"):
        raise ConfigError("--chunk-size/--left-context-frames/--streaming need a checkpoint of a zipformer model "
                          "trained with causal: true", hint="exported models keep their chunking as exported")
    encoder.set_decoding_chunk(cfg.chunk_size, cfg.left_context_frames)
    if cfg.streaming:
        encoder.streaming_chunk_config()  # fail before decoding anything
    tag = f"-chunk-{encoder.chunk_size[0]}-left-{encoder.left_context_frames[0]}"
    return tag + ("-streaming" if cfg.streaming else "")


@torch.no_grad()
def decode_cuts_streaming(
    model: Any,
    batches: Iterable[Any],
    tokenizer: Any,
    method: str = "greedy_search",
    num_streams: int = 8,
    progress: bool = True,
    timestamps: dict | None = None,
    **opts: Any,
) -> list[tuple[str, list[str], list[str]]]:
    """:func:`~asrkit.decoding.driver.decode_cuts` for chunk-wise decoding: the utterances of ``batches`` go
    through :func:`decode_streaming` (``num_streams`` live streams) and come back as ``[(cut_id, ref_words,
    hyp_words), ...]`` in batch order (``timestamps`` filled as there)."""
    from tqdm import tqdm

    unk_id = getattr(tokenizer, "unk_id", None)  # <unk> is never emitted (as in icefall/sherpa-onnx)
    if "unk_id" not in opts:
        opts = {**opts, "unk_id": unk_id}
    get_streaming_search(method, opts)  # fail on a bad method/option before touching any data
    refs: dict[str, tuple[str, int]] = {}

    def utterances() -> Iterable[tuple[str, torch.Tensor]]:
        for batch in tqdm(batches, desc=f"decode (streaming {method})", unit="batch", disable=not progress):
            if batch is None:  # every utterance had unreadable audio (skipped and counted by the dataset)
                continue
            for cut_id, text, feats, n in zip(batch.cut_ids, batch.texts, batch.features, batch.feature_lens.tolist()):
                refs[str(cut_id)] = (text, n)
                yield str(cut_id), feats[:n]

    out = decode_streaming(model, utterances(), method, num_streams, model_device(model), **opts)
    ids = [r.utt_id for r in out]
    results: list[tuple[str, list[str], list[str]]] = []
    seconds = [frames_to_seconds(r.timestamps, refs[r.utt_id][1], r.num_frames) for r in out]
    add_results(results, timestamps, tokenizer, ids, [refs[i][0] for i in ids], [r.tokens for r in out], seconds)
    return results
