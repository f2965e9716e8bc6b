"""Stage "decode": decode test cut sets with a selected model and write icefall-style WER reports."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

log = logging.getLogger(__name__)


def test_set_name(cuts_path: Path) -> str:
    """``data/fbank/synth_cuts_test.jsonl.gz`` -> ``test`` (the split name)."""
    name = Path(cuts_path).name
    for ext in (".jsonl.gz", ".jsonl", ".json.gz", ".json"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return name.split("_cuts_")[-1]


def decode_test_sets(
    exp_dir: Path,
    selection,
    test_cuts: Sequence[Path],
    lang_dir: Path,
    method: str = "greedy_search",
    search_opts: dict[str, Any] | None = None,
    max_duration: float = 300.0,
    device: str = "cpu",
    progress: bool = True,
    timestamps: bool = False,
    int8: bool = False,
    lm: Path | None = None,
    lm_scale: float = 0.3,
    skip_bad_audio: bool = False,
    report: dict[str, dict] | None = None,
    decode_config=None,
) -> dict[str, float]:
    """Decode each cut set; write ``recogs-/errs-/wer-summary-<set>-<selection>.txt`` under
    ``{exp_dir}/{method}/`` and return {test set name: WER %}. A non-zero ``blank_penalty`` search option
    appends ``-blank-penalty-<value>`` to ``<selection>``; an ``lm`` (ARPA token n-gram model, for shallow fusion in
    modified beam search) appends ``-<lm file stem>-scale-<lm_scale>``.

    With ``timestamps``, also ``timestamps-<set>-<selection>.txt``: ``cut_id<TAB>token@seconds ...`` per line.

    With ``skip_bad_audio``, utterances whose audio or features cannot be read are left out (the WER is over
    the decoded ones) and listed, one line each with the file and the reason, in ``skipped-<set>-<selection>.txt``;
    without it the first one stops decoding with a DataError naming it. ``report``, when given, is filled with
    ``{set name: {"decoded": n, "skipped": k, "skipped_file": path or None}}``.
    ``selection`` may also be the path of an exported model (pretrained.pt, TorchScript, ONNX directory; ``int8``
    picks the quantized ONNX files); its reports are named after the format instead of the checkpoints.

    ``decode_config`` (a :class:`~asrkit.config.DecodeConfig`) sets a causal model's decoding chunk size and left
    context (simulated streaming) or decodes chunk-wise (``streaming``); it appends ``-chunk-C-left-L``
    (``-streaming``) to ``<selection>``.
    """
    from asrkit.config import DataConfig
    from asrkit.data.datamodule import AsrDataset, load_cuts, make_loader, make_sampler
    from asrkit.data.tokenizer import Tokenizer, check_tokenizer_matches
    from asrkit.decoding.driver import decode_cuts
    from asrkit.decoding.scoring import save_results
    from asrkit.decoding.streaming import apply_decode_config, decode_cuts_streaming
    from asrkit.training.selection import load_selected_model

    from asrkit.training.distributed import pick_device

    from asrkit.config import DecodeConfig

    decode_config = decode_config or DecodeConfig()
    if isinstance(selection, Path):  # an exported model (any format) instead of checkpoints
        from asrkit.errors import ConfigError
        from asrkit.inference import load_model

        if decode_config.chunked:
            raise ConfigError("--chunk-size/--left-context-frames/--streaming need --epoch/--iter checkpoints, not "
                              "an exported --model")

        model = load_model(selection, device=pick_device(device, 0), int8=int8, num_threads=2)
        tokenizer = model.tokenizer
        tag = f"{model.format}{'-int8' if int8 and model.format == 'onnx' else ''}"
    else:
        tokenizer = Tokenizer.load(lang_dir)
        model, config = load_selected_model(exp_dir, selection, device=pick_device(device, 0))
        check_tokenizer_matches(tokenizer, config.get("model", {}), lang_dir, exp_dir)
        tag = selection.suffix + apply_decode_config(model, decode_config)
    search_opts = dict(search_opts or {})
    if search_opts.get("blank_penalty"):
        tag += f"-blank-penalty-{search_opts['blank_penalty']:g}"
    if lm is not None:
        from asrkit.lm import NgramLM, TokenLMScorer

        scorer = TokenLMScorer(NgramLM.read_arpa(lm), tokenizer.symbols, tokenizer.blank_id)
        log.info("LM %s: order %d, %d of %d tokens listed, scale %g", lm, scorer.lm.order, scorer.covered,
                 len(scorer.symbols), lm_scale)
        search_opts.update(lm=scorer, lm_scale=lm_scale)
        tag += f"-{_stem(lm)}-scale-{lm_scale:g}"
    out_dir = Path(exp_dir) / method
    wers = {}
    data_cfg = DataConfig(max_duration=max_duration, shuffle=False)
    for path in test_cuts:
        name = test_set_name(path)
        cuts = load_cuts(path).to_eager()
        dataset = AsrDataset(tokenizer, skip_bad_audio=skip_bad_audio)
        loader = make_loader(dataset, make_sampler(cuts, data_cfg, train=False, seed=0))
        stamps: dict | None = {} if timestamps else None
        if decode_config.streaming:
            results = decode_cuts_streaming(model, loader, tokenizer, method, decode_config.num_decode_streams,
                                            progress=progress, timestamps=stamps, **search_opts)
        else:
            results = decode_cuts(model, loader, tokenizer, method, progress=progress, timestamps=stamps,
                                  **search_opts)
        key = f"{name}-{tag}"
        if stamps is not None:
            _write_timestamps(out_dir / f"timestamps-{key}.txt", stamps)
        skipped_file = None
        if dataset.skipped:
            skipped_file = out_dir / f"skipped-{key}.txt"
            skipped_file.parent.mkdir(parents=True, exist_ok=True)
            skipped_file.write_text("".join(line + "\n" for line in dataset.skipped), encoding="utf-8")
            log.warning("%s: %d utterances skipped (unreadable audio), listed in %s", name, len(dataset.skipped),
                        skipped_file)
        if not results:
            from asrkit.errors import DataError

            raise DataError(f"{path}: no utterance could be decoded ({len(dataset.skipped)} unreadable)")
        speakers, voices = speakers_and_voices(cuts)
        wers[name] = save_results(out_dir, key, results, setting=f"{method}-{tag}", speakers=speakers, voices=voices)
        if report is not None:
            report[name] = {"decoded": len(results), "skipped": len(dataset.skipped), "skipped_file": skipped_file}
        log.info("%s %s: WER %.2f%% (%d utterances), reports in %s", name, method, wers[name], len(results), out_dir)
    return wers


def speakers_and_voices(cuts: Iterable) -> tuple[dict[str, str], dict[str, str]]:
    """(cut id -> speaker, speaker -> voice) from the cuts' first supervisions; the voice is the TTS engine and voice
    the synthetic corpus records in ``custom`` (``"espeak en+klatt"``), absent for recorded speech."""
    speakers: dict[str, str] = {}
    voices: dict[str, str] = {}
    for cut in cuts:
        sup = cut.supervisions[0] if cut.supervisions else None
        if sup is None or sup.speaker is None:
            continue
        speakers[cut.id] = sup.speaker
        custom = sup.custom or {}
        if "engine" in custom or "voice" in custom:
            voices[sup.speaker] = " ".join(str(custom[k]) for k in ("engine", "voice") if k in custom)
    return speakers, voices


def _stem(path: Path) -> str:
    """``data/lang/lm-3gram.arpa.gz`` -> ``lm-3gram``."""
    name = Path(path).name
    for ext in (".gz", ".arpa"):
        name = name.removesuffix(ext)
    return name


def _write_timestamps(path: Path, stamps: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for cut_id in sorted(stamps):
            f.write(cut_id + "\t" + " ".join(f"{tok}@{sec:.2f}" for tok, sec in stamps[cut_id]) + "\n")
