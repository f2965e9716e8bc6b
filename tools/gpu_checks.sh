#!/usr/bin/env bash
# The GPU checks (docs/benchmarks.md, "GPU"), for a machine with a CUDA GPU where asrkit and its dependencies
# import (any torch with CUDA; asrkit's own torch pin is for the CPU machines). Never part of `make test`.
#
#   bash tools/gpu_checks.sh tests OUT_DIR                      # pytest -m cuda: loss, model, AMP, trainer, decoding
#   bash tools/gpu_checks.sh bench OUT_DIR TRAIN_CUTS LANG_DIR  # loss (fused vs wavefront recursion) and training
#                                                               # throughput (fp32/fp16/bf16, LibriSpeech-shaped)
#
# Each part writes its logs into OUT_DIR and exits non-zero when a check fails.
set -uo pipefail
part=${1:?usage: gpu_checks.sh tests|bench OUT_DIR [TRAIN_CUTS LANG_DIR]}
out=${2:?output directory}
PY=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} | tee "$out/gpu.txt"

case "$part" in
tests)
    $PY -m pytest -q -m cuda -p no:cacheprovider -o addopts="" -rfEs tests 2>&1 | tee "$out/pytest-cuda.log"
    ;;
bench)
    cuts=${3:?training cuts with features}
    lang=${4:?lang directory}
    status=0
    # the built-in loss with the fused Triton recursion, and (baseline, same machine) with the wavefront one
    for kernel in auto wavefront; do
        for frames in 1500 10000; do
            echo "## bench loss --device cuda --max-frames $frames (ASRKIT_MI_KERNEL=$kernel)" | tee -a "$out/bench-loss.md"
            ASRKIT_MI_KERNEL=$kernel $PY -m asrkit.cli.main bench loss --device cuda --max-frames "$frames" \
                --num-steps 10 --repeats 2 2>&1 | tee -a "$out/bench-loss.md" || status=1
        done
    done
    # LibriSpeech-shaped batches (12 s utterances, 1000 s per batch), fp32 / fp16 / bf16 side by side
    echo "## zipformer-m, LibriSpeech-shaped, fp32,fp16,bf16" | tee -a "$out/bench-train.txt"
    $PY -m asrkit.cli.main bench train --recipe recipes/zipformer-m.yaml --train-cuts "$cuts" --lang-dir "$lang" \
        --device cuda --steps 20 --warmup 5 --librispeech-shaped --utt-seconds 12 --batch-seconds 1000 \
        --precision fp32,fp16,bf16 2>&1 | tee -a "$out/bench-train.txt" || status=1
    # recipe and precision (zipformer-m's recipe trains in fp16; fp32 and bf16 are overrides)
    for setting in "zipformer-m use_fp16=false" "zipformer-m use_fp16=true" "zipformer-m use_fp16=false,use_bf16=true" \
                   "zipformer-xs use_fp16=false"; do
        recipe=${setting%% *}
        overrides=()
        for kv in $(tr , ' ' <<<"${setting#* }"); do overrides+=(--set "$kv"); done
        echo "## $setting" >>"$out/bench-train.log"
        if $PY -m asrkit.cli.main bench train --recipe "recipes/$recipe.yaml" --train-cuts "$cuts" --lang-dir "$lang" \
            --device cuda --steps 20 --warmup 5 "${overrides[@]}" >>"$out/bench-train.log" 2>&1; then
            echo "$setting: $(tail -n 1 "$out/bench-train.log")" | tee -a "$out/bench-train.txt"
        else
            echo "$setting: FAILED (see bench-train.log)" | tee -a "$out/bench-train.txt"
            status=1
        fi
    done
    exit $status
    ;;
*)
    echo "unknown part $part (tests | bench)" >&2
    exit 2
    ;;
esac
