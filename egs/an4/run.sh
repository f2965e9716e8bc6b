#!/usr/bin/env bash
# Staged recipe for CMU AN4 (~1 h of alphanumeric speech; 948 train / 130 test utterances).
# Each stage is one `asrkit` call; finished work is skipped on re-runs (--force redoes it).
set -euo pipefail

stage=0
stop_stage=8
dl_dir=download                 # an4_sphere.tar.gz is downloaded (or found) here
recipe=recipes/an4.yaml
exp_dir=exp/an4
vocab_size=48                   # small unigram vocabulary: letters, digits and a few word pieces
epoch=""
avg=5
world_size=1
num_jobs=2
force=""
work_dir=""

usage() {
  cat <<USAGE
Usage: egs/an4/run.sh [--stage N] [--stop-stage M] [options]

Stages:
  0  download + extract an4_sphere.tar.gz        (asrkit prepare download an4)
  1  manifests (NIST SPHERE read via libsndfile) (asrkit prepare manifests an4)
  2  fbank, speed perturbation on train          (asrkit prepare fbank)
  3  unigram tokenizer                           (asrkit prepare tokenizer)
  4  train                                       (asrkit train)
  5  average                                     (asrkit average)
  6  decode test: greedy + modified beam search  (asrkit decode)
  7  export pretrained.pt + ONNX                  (asrkit export)
  8  print the test WERs

Options: --dl-dir DIR, --recipe FILE, --exp-dir DIR, --vocab-size N, --epoch E, --avg N,
         --world-size N|auto (processes; auto: one per GPU), --num-jobs J, --work-dir DIR, --force
USAGE
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib/stages.sh"
start_recipe "$@"

if run_stage 0; then
  log "stage 0: download AN4 into $dl_dir"
  timed asrkit prepare download an4 --dl-dir "$dl_dir"
fi
if run_stage 1; then
  log "stage 1: manifests"
  timed asrkit prepare manifests an4 --corpus-dir "$dl_dir/an4" --output-dir data/manifests
fi
if run_stage 2; then
  log "stage 2: fbank"
  timed asrkit prepare fbank --prefix an4 --split train --split test --speed-perturb train \
    --manifest-dir data/manifests --output-dir data/fbank --num-jobs "$num_jobs" $force
fi
if run_stage 3; then
  log "stage 3: tokenizer"
  timed asrkit prepare tokenizer --cuts data/fbank/an4_cuts_train.jsonl.gz --lang-dir data/lang \
    --vocab-size "$vocab_size" --model-type unigram $force
fi
if run_stage 4; then
  log "stage 4: train ($recipe, $world_size process(es))"
  timed asrkit train --recipe "$recipe" --exp-dir "$exp_dir" --lang-dir data/lang \
    --train-cuts data/fbank/an4_cuts_train.jsonl.gz --valid-cuts data/fbank/an4_cuts_test.jsonl.gz \
    --world-size "$world_size" --resume
fi
select_checkpoints
if run_stage 5; then
  log "stage 5: average ($selection)"
  timed asrkit average "${select_args[@]}"
fi
if run_stage 6; then
  for method in greedy_search modified_beam_search; do
    log "stage 6: decode ($method)"
    timed asrkit decode "${select_args[@]}" --lang-dir data/lang --method "$method" \
      --cuts data/fbank/an4_cuts_test.jsonl.gz
  done
fi
if run_stage 7; then
  log "stage 7: export"
  timed asrkit export "${select_args[@]}" --lang-dir data/lang --format pretrained --format onnx \
    --output-dir "$exp_dir/exported"
fi
if run_stage 8; then
  cat "$exp_dir"/*/wer-summary-test-*.txt
fi
