"""What on-the-fly acoustic augmentation costs the data pipeline: CPU seconds per second of training audio.

Loads every cut of a manifest through :class:`asrkit.data.datamodule.AsrDataset` in batches of the configured
``max_duration``, once with stored features only and once per augmentation setting, in one thread, and reports
process CPU time (not wall time, so other programs on a shared machine distort it little) per audio second.
Compare the figure with the training step's own cost (``asrkit bench train``: audio seconds per second) to get the
share of throughput the augmentation takes when it runs in the training process (``num_workers: 0``).

Run as::

    python -m asrkit.data.acoustic_bench --cuts data/fbank/synth_cuts_train.jsonl.gz --lang-dir data/lang \\
        --set noise_prob=1.0 --set reverb_prob=0.2,noise_prob=0.2,band_limit_prob=0.2
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from asrkit.config import DataConfig

__all__ = ["loading_cost", "main"]


def loading_cost(cuts, tokenizer, cfg: DataConfig, seed: int = 0, repeats: int = 1) -> tuple[float, float]:
    """``(CPU seconds, audio seconds)`` to load ``cuts`` ``repeats`` times through the dataset with ``cfg``'s
    acoustic augmentation (epochs 1..repeats)."""
    from asrkit.data.acoustic import build_acoustic_augment
    from asrkit.data.datamodule import AsrDataset, make_sampler

    cpu = audio = 0.0
    for epoch in range(1, repeats + 1):
        dataset = AsrDataset(tokenizer, acoustic=build_acoustic_augment(cfg, seed, epoch))
        sampler = make_sampler(cuts, cfg, train=True, seed=seed)
        sampler.set_epoch(epoch)
        for batch_cuts in sampler:
            t0 = time.process_time()
            batch = dataset[batch_cuts]
            cpu += time.process_time() - t0
            audio += float(batch.feature_lens.sum()) / 100.0
    return cpu, audio


def _parse_setting(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        out[key] = float(value)
    return out


def main(argv: list[str] | None = None) -> None:
    import torch

    from asrkit.data.datamodule import load_cuts
    from asrkit.data.tokenizer import Tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", type=Path, required=True)
    parser.add_argument("--lang-dir", type=Path, default=Path("data/lang"))
    parser.add_argument("--set", action="append", default=[], dest="settings",
                        help="comma-separated data.* probabilities, e.g. noise_prob=1.0,gain_prob=0.5 (repeatable)")
    parser.add_argument("--max-duration", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cuts = load_cuts(args.cuts).to_eager()
    tokenizer = Tokenizer.load(args.lang_dir)
    base_cfg = DataConfig(max_duration=args.max_duration, spec_augment=False)
    print("| data.* setting | CPU s per audio s | x stored features |")
    print("|---|---:|---:|")
    base = None
    for text in ["", *args.settings]:
        cpu, audio = loading_cost(cuts, tokenizer, replace(base_cfg, **_parse_setting(text)), repeats=args.repeats)
        cost = cpu / max(audio, 1e-9)
        base = cost if base is None else base
        print(f"| {text or '(none: stored features)'} | {cost:.4f} | {cost / base:.1f} |")


if __name__ == "__main__":
    main()
