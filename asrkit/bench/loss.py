"""Benchmark: pruned vs full RNN-T loss, per backend (mean step time and peak memory).

Protocol (scaled to a small CPU machine):

* ``(T, U)`` pairs from a fixed-seed distribution shaped like LibriSpeech train-clean-100 after
  4x subsampling: ``T`` in 31..680 (mean ~318), ``U`` in 2..151 (mean ~68).
* Vocabulary 500, encoder/predictor outputs of dim 512, joiner ``Linear(512, 500)(tanh(enc + dec))``;
  the pruned recipe adds icefall's two ``Linear(512, 500)`` "simple" projections, the smoothed
  loss (``lm_only_scale=0.25, am_only_scale=0``), ``prune_range=5``, ``reduction="sum"``.
* Utterances sorted by length, cut into batches of at most ``max_frames`` frames (sum of ``T``);
  a fixed-seed shuffle of those batches gives the steps (the same ones for every configuration).
  One extra warm-up step comes first.  A step is loss + backward; inputs are made beforehand.
* Each configuration runs in a fresh subprocess with ``torch.set_num_threads(threads)``.
  Peak memory is the rise of that process's resident-set high-water mark over the steps: the
  kernel's ``VmHWM`` is reset to the current RSS (``/proc/self/clear_refs``) after the warm-up
  step and read after the last, so it captures every allocation of the timed steps (torch's CPU
  allocator, C++ extensions and glibc alike) but not imports, one-time initialisation or the
  inputs.  Falls back to ``ru_maxrss``.
* The machine is shared, so each pruned configuration runs ``repeats`` times (interleaved with
  the others) and its fastest run is reported; full configurations, which are far from their
  targets, run once.
  Memory comes from a separate run with ``MALLOC_MMAP_THRESHOLD_=131072``, so every large tensor
  is its own mapping returned to the OS when freed: RSS then tracks live memory instead of heap
  fragmentation.  (That setting slows allocation-heavy code, so times come from runs with the
  default allocator.)
* ``--device cuda``: inputs and projections live on the GPU, each step ends with a device
  synchronisation, and peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps
  minus what was allocated before them (the inputs), from the timing runs themselves.

Run: ``asrkit bench loss`` (or ``python -m asrkit.bench.loss``), ``--quick`` for a smoke test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

#: configuration name -> (kind, backend)
CONFIGS: dict[str, tuple[str, str]] = {
    "ours-pruned": ("pruned", "torch"),
    "fast_rnnt-pruned": ("pruned", "fast_rnnt"),
    "ours-full": ("full", "torch"),
    "ours-full-sub-batched": ("sub_batched", "torch"),
    "fast_rnnt-full": ("full", "fast_rnnt"),
    "torchaudio-full": ("full", "torchaudio"),
}

# icefall's pruned-loss settings
PRUNE_RANGE = 5
LM_ONLY_SCALE = 0.25
AM_ONLY_SCALE = 0.0
SIMPLE_LOSS_SCALE = 0.5


@dataclass(frozen=True)
class Setting:
    """Everything a worker needs to rebuild the same batches."""

    num_steps: int
    max_frames: int
    seed: int
    threads: int
    dim: int = 512
    vocab: int = 500
    length_scale: float = 1.0  # < 1 shrinks T and U (quick mode)
    sub_batch_nodes: int = 100_000
    device: str = "cpu"


def sample_lengths(n: int, seed: int, length_scale: float = 1.0) -> list[tuple[int, int]]:
    """``n`` (T, U) pairs: ``T = 31 + 649 * Beta(2.2, 2.78)`` (mean ~318) and
    ``U = T * N(0.214, 0.04)`` clipped to 2..151 (mean ~68), optionally scaled down."""
    import numpy as np

    rng = np.random.default_rng(seed)
    T = 31 + np.round(649 * rng.beta(2.2, 2.78, size=n)).astype(int)
    ratio = rng.normal(68 / 318, 0.04, size=n).clip(0.02, 0.45)
    U = np.clip(np.round(T * ratio), 2, 151).astype(int)
    if length_scale != 1.0:
        T = np.maximum(2, np.round(T * length_scale)).astype(int)
        U = np.clip(np.round(U * length_scale), 1, None).astype(int)
        U = np.minimum(U, T)
    return [(int(t), int(u)) for t, u in zip(T, U)]


def make_batches(setting: Setting) -> list[list[tuple[int, int]]]:
    """Length-sorted batches capped at ``max_frames`` total frames; a fixed-seed shuffle, first
    ``num_steps + 1`` of them (the first is the warm-up)."""
    import numpy as np

    lengths = sorted(sample_lengths(4000, setting.seed, setting.length_scale))
    batches: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    frames = 0
    for t, u in lengths:
        if current and frames + t > setting.max_frames:
            batches.append(current)
            current, frames = [], 0
        current.append((t, u))
        frames += t
    if current:
        batches.append(current)
    order = np.random.default_rng(setting.seed + 1).permutation(len(batches))
    return [batches[i] for i in order[: setting.num_steps + 1]]


# --------------------------------------------------------------------------- worker side


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _make_inputs(batch: list[tuple[int, int]], setting: Setting, gen):
    import torch

    B = len(batch)
    T = max(t for t, _ in batch)
    U = max(u for _, u in batch)
    enc = torch.randn(B, T, setting.dim, generator=gen)
    dec = torch.randn(B, U + 1, setting.dim, generator=gen)
    symbols = torch.randint(1, setting.vocab, (B, U), generator=gen)
    boundary = torch.zeros(B, 4, dtype=torch.int64)
    boundary[:, 2] = torch.tensor([u for _, u in batch])
    boundary[:, 3] = torch.tensor([t for t, _ in batch])
    return enc, dec, symbols, boundary


def _step_fn(kind: str, backend: str, setting: Setting):
    """Return ``step(enc, dec, symbols, boundary) -> loss value`` (does backward)."""
    import torch

    from asrkit import loss as L

    gen = torch.Generator().manual_seed(setting.seed + 7)
    out = torch.nn.Linear(setting.dim, setting.vocab)
    simple_am = torch.nn.Linear(setting.dim, setting.vocab)
    simple_lm = torch.nn.Linear(setting.dim, setting.vocab)
    for lin in (out, simple_am, simple_lm):
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * setting.dim**-0.5)
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=gen) * 0.1)
        lin.to(setting.device)

    def joiner(e, d):
        return out(torch.tanh(e + d))

    if kind == "pruned":

        def step(enc, dec, symbols, boundary):
            simple, (px_grad, py_grad) = L.rnnt_loss_smoothed(
                lm=simple_lm(dec), am=simple_am(enc), symbols=symbols, termination_symbol=0,
                lm_only_scale=LM_ONLY_SCALE, am_only_scale=AM_ONLY_SCALE, boundary=boundary,
                reduction="sum", return_grad=True, backend=backend,
            )
            ranges = L.get_rnnt_prune_ranges(px_grad, py_grad, boundary, PRUNE_RANGE, backend=backend)
            am_p, lm_p = L.do_rnnt_pruning(enc, dec, ranges, backend=backend)
            pruned = L.rnnt_loss_pruned(joiner(am_p, lm_p), symbols, ranges, 0, boundary,
                                        reduction="sum", backend=backend)
            total = SIMPLE_LOSS_SCALE * simple + pruned
            total.backward()
            return float(pruned.detach())

    elif kind == "full" and backend == "torchaudio":
        import torchaudio

        def step(enc, dec, symbols, boundary):
            logits = joiner(enc.unsqueeze(2), dec.unsqueeze(1))
            loss = torchaudio.functional.rnnt_loss(
                logits, symbols.int(), boundary[:, 3].int(), boundary[:, 2].int(), blank=0,
                reduction="sum",
            )
            loss.backward()
            return float(loss.detach())

    elif kind == "full":

        def step(enc, dec, symbols, boundary):
            logits = joiner(enc.unsqueeze(2), dec.unsqueeze(1))
            loss = L.rnnt_loss(logits, symbols, 0, boundary, reduction="sum", backend=backend)
            loss.backward()
            return float(loss.detach())

    elif kind == "sub_batched":

        def step(enc, dec, symbols, boundary):
            loss = L.rnnt_loss_sub_batched(
                enc, dec, joiner, symbols, 0, boundary, reduction="sum",
                max_nodes=setting.sub_batch_nodes, params=list(out.parameters()), backend=backend,
            )
            loss.backward()
            return float(loss.detach())

    else:
        raise ValueError(f"unknown kind {kind!r}")
    return step


def run_worker(config: str, setting: Setting) -> dict:
    """Run one configuration in this process; return its measurements."""
    import torch

    torch.set_num_threads(setting.threads)
    on_gpu = torch.device(setting.device).type == "cuda"
    kind, backend = CONFIGS[config]
    step = _step_fn(kind, backend, setting)
    gen = torch.Generator().manual_seed(setting.seed + 11)
    batches = make_batches(setting)
    inputs = [tuple(t.to(setting.device) for t in _make_inputs(b, setting, gen)) for b in batches]
    for enc, dec, _, _ in inputs:
        enc.requires_grad_(True)
        dec.requires_grad_(True)

    times, losses = [], []
    exact, base_kib = False, 0
    for i, (enc, dec, symbols, boundary) in enumerate(inputs):
        if i == 1:
            # Measure from after the warm-up step: one-time initialisation (thread pools, lazy
            # library loads, CUDA context and kernels) is not part of the per-step memory.
            if on_gpu:
                torch.cuda.synchronize()
                base_kib = torch.cuda.memory_allocated() // 1024
                torch.cuda.reset_peak_memory_stats()
            else:
                exact = _reset_peak_rss()
                base_kib = _rss_kib("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        losses.append(step(enc, dec, symbols, boundary))
        if on_gpu:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        if i > 0:  # the first batch is the warm-up
            times.append(elapsed)
        enc.grad = dec.grad = None
    if on_gpu:
        peak_kib, method = torch.cuda.max_memory_allocated() // 1024, "torch.cuda.max_memory_allocated"
    else:
        peak_kib = _rss_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        method = "VmHWM reset" if exact else "ru_maxrss"
    return {
        "config": config,
        "kind": kind,
        "backend": backend,
        "steps": len(times),
        "mean_ms": 1000 * sum(times) / max(len(times), 1),
        "min_ms": 1000 * min(times) if times else float("nan"),
        "peak_mib": (peak_kib - base_kib) / 1024,
        "loss_sum": sum(losses[1:]),
        "frames": sum(t for b in batches[1:] for t, _ in b),
        "memory_method": method,
        "device": setting.device,
    }


# --------------------------------------------------------------------------- driver side


def _available(config: str, on_gpu: bool = False) -> bool:
    backend = CONFIGS[config][1]
    if backend == "torch":
        return True
    if importlib.util.find_spec(backend) is None:
        return False
    if on_gpu and backend == "fast_rnnt":
        from asrkit.loss.backends import supports_cuda

        return supports_cuda(backend)
    return True


def _run_subprocess(name: str, setting: Setting, for_memory: bool) -> dict:
    cmd = [sys.executable, "-m", "asrkit.bench.loss", "--worker", name,
           "--setting", json.dumps(asdict(setting))]
    env = dict(os.environ)
    if for_memory:
        # A fixed mmap threshold makes glibc serve every large tensor with its own mapping and
        # give it back on free, so RSS follows the live bytes (no heap-fragmentation noise).
        # It also makes each large allocation fault its pages in afresh, so timings come from
        # separate runs with the default allocator.
        env.update(MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_loss(
    num_steps: int = 6,
    max_frames: int = 1500,
    seed: int = 0,
    backends: tuple[str, ...] | list[str] | None = None,
    quick: bool = False,
    threads: int = 1,
    configs: list[str] | None = None,
    repeats: int = 3,
    device: str = "cpu",
) -> list[dict]:
    """Measure every available configuration, each in a fresh subprocess.

    Args:
        num_steps: timed steps per configuration (after one warm-up step).
        max_frames: frames (after subsampling) per batch.
        seed: seed of the length distribution and of the inputs.
        backends: subset of ``("torch", "fast_rnnt", "torchaudio")``; default all installed.
        quick: tiny smoke-test setting (short utterances, dim 64, vocab 50, 2 steps).
        threads: ``torch.set_num_threads`` in each worker.
        configs: explicit configuration names (default: all of :data:`CONFIGS` that apply).
        repeats: runs of each *pruned* configuration (interleaved; the fastest counts, the
            memory comes from one extra run per configuration).  Full configurations run once.
        device: ``cpu``, ``cuda[:N]`` or ``auto`` (on CUDA, memory comes from the timing runs).

    Returns:
        One dict per configuration: config, kind, backend, steps, mean_ms, min_ms, peak_mib,
        loss_sum, frames, memory_method, plus ``time_vs_ref``/``mem_vs_ref`` ratios against
        fast_rnnt-pruned (or ours-pruned when fast_rnnt is missing).
    """
    from asrkit.training.distributed import pick_device

    resolved = pick_device(device, 0)  # auto -> cuda:0 or cpu; a GPU torch cannot see is a clear error here
    device, on_gpu = str(resolved), resolved.type == "cuda"
    if quick:
        setting = Setting(num_steps=min(num_steps, 2), max_frames=min(max_frames, 300), seed=seed,
                          threads=threads, dim=64, vocab=50, length_scale=0.1, sub_batch_nodes=2000,
                          device=device)
        repeats = 1
    else:
        setting = Setting(num_steps=num_steps, max_frames=max_frames, seed=seed, threads=threads, device=device)
    names = [c for c in (configs or CONFIGS) if backends is None or CONFIGS[c][1] in backends]
    names = [c for c in names if _available(c, on_gpu)]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    # Pruned configurations are short and their ratio target is tight: they run `repeats`
    # times, interleaved, and the fastest run counts (the machine is shared; background load
    # only ever adds time).  Full configurations are far from their targets and run once.
    for round_ in range(max(repeats, 1)):
        for name in names:
            if round_ > 0 and CONFIGS[name][0] != "pruned":
                continue
            try:
                runs[name].append(_run_subprocess(name, setting, for_memory=False))
            except RuntimeError as err:
                if CONFIGS[name][1] == "torch":
                    raise
                # another library's loss that this installation cannot run (e.g. a torchaudio without
                # rnnt_loss): say so and leave it out of the table
                print(f"{name} left out: {str(err).strip().splitlines()[-1]}", file=sys.stderr)
                names = [n for n in names if n != name]
    rows = []
    for name in names:
        best = min(runs[name], key=lambda r: r["mean_ms"])
        memory = min(runs[name], key=lambda r: r["peak_mib"]) if on_gpu else _run_subprocess(name, setting, True)
        rows.append({**best, "peak_mib": memory["peak_mib"], "memory_method": memory["memory_method"],
                     "timing_runs": len(runs[name])})
    _add_ratios(rows)
    return rows


def _add_ratios(rows: list[dict]) -> None:
    by_name = {r["config"]: r for r in rows}
    ref = by_name.get("fast_rnnt-pruned") or by_name.get("ours-pruned")
    for r in rows:
        r["reference"] = ref["config"] if ref else None
        r["time_vs_ref"] = r["mean_ms"] / ref["mean_ms"] if ref else float("nan")
        r["mem_vs_ref"] = r["peak_mib"] / ref["peak_mib"] if ref and ref["peak_mib"] > 0 else float("nan")


def format_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`bench_loss` rows, plus the target ratios."""
    if not rows:
        return "(no configuration could run)"
    ref = rows[0].get("reference")
    lines = [
        f"| configuration | mean step (ms) | peak memory (MiB) | time / {ref} | memory / {ref} |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['mean_ms']:.0f} | {r['peak_mib']:.0f} | "
            f"{r['time_vs_ref']:.2f} | {r['mem_vs_ref']:.2f} |"
        )
    by_name = {r["config"]: r for r in rows}
    notes = []

    def ratio(a: str, b: str, key: str) -> float:
        return by_name[a][key] / by_name[b][key] if by_name[b][key] else math.nan

    if "ours-pruned" in by_name and "fast_rnnt-pruned" in by_name:
        notes.append(
            f"ours-pruned / fast_rnnt-pruned: time {ratio('ours-pruned', 'fast_rnnt-pruned', 'mean_ms'):.2f}x "
            f"(target <= 1.2), memory {ratio('ours-pruned', 'fast_rnnt-pruned', 'peak_mib'):.2f}x (target <= 1.1)"
        )
    for full in ("ours-full", "ours-full-sub-batched", "fast_rnnt-full", "torchaudio-full"):
        pruned = "ours-pruned" if full.startswith("ours") else f"{full.split('-')[0]}-pruned"
        if pruned not in by_name:
            pruned = "ours-pruned"
        if full in by_name and pruned in by_name:
            notes.append(
                f"{full} / {pruned}: time {ratio(full, pruned, 'mean_ms'):.1f}x, "
                f"memory {ratio(full, pruned, 'peak_mib'):.1f}x (target >= 4)"
            )
    if notes:
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    parser.add_argument("--num-steps", type=int, default=6)
    parser.add_argument("--max-frames", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--configs", nargs="*", default=None, choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.worker:
        setting = Setting(**json.loads(args.setting))
        print(json.dumps(run_worker(args.worker, setting)))
        return
    rows = bench_loss(num_steps=args.num_steps, max_frames=args.max_frames, seed=args.seed,
                      quick=args.quick, threads=args.threads, configs=args.configs,
                      repeats=args.repeats, device=args.device)
    print(format_table(rows))


if __name__ == "__main__":
    main()
