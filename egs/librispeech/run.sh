#!/usr/bin/env bash
# Staged LibriSpeech recipe (icefall's prepare.sh + zipformer training), for a GPU machine.
# Each stage is one `asrkit` call; finished work is skipped on re-runs (--force redoes it).
set -euo pipefail

stage=0
stop_stage=10
dl_dir=download                 # archives already here (LibriSpeech/*.tar.gz, musan.tar.gz) are reused
full_libri=false                # false: train-clean-100; true: all 960 h
recipe=recipes/zipformer-m.yaml
exp_dir=exp/zipformer-m
vocab_size=500
epoch=""
avg=9
world_size=1
num_jobs=8
use_musan=true
force=""
work_dir=""

usage() {
  cat <<USAGE
Usage: egs/librispeech/run.sh [--stage N] [--stop-stage M] [options]

Stages:
  0  download LibriSpeech (+ MUSAN)                    (asrkit prepare download)
  1  LibriSpeech manifests                             (asrkit prepare manifests librispeech)
  2  MUSAN manifests                                   (asrkit prepare manifests musan)
  3  fbank for LibriSpeech, speed perturbation on train (asrkit prepare fbank)
  4  fbank for MUSAN (10 s windows, mixed in as noise)  (asrkit prepare fbank --window 10)
  5  BPE tokenizer (vocab 500)                          (asrkit prepare tokenizer)
  6  train                                              (asrkit train)
  7  average                                            (asrkit average)
  8  decode test-clean + test-other (greedy, modified beam search) (asrkit decode)
  9  export pretrained.pt + ONNX                        (asrkit export)
  10 print the WER summaries

Options (icefall names where they exist): --dl-dir DIR, --full-libri true|false, --recipe FILE, --exp-dir DIR,
  --vocab-size N, --epoch E, --avg N, --world-size N|auto (GPUs; auto: all), --num-jobs J, --use-musan true|false,
  --work-dir DIR, --force
USAGE
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib/stages.sh"
start_recipe "$@"
libri_flag=(); [ "$full_libri" = true ] && libri_flag=(--full-libri)
train_parts=(train-clean-100); [ "$full_libri" = true ] && train_parts=(train-clean-100 train-clean-360 train-other-500)
eval_parts=(dev-clean dev-other test-clean test-other)

if run_stage 0; then
  log "stage 0: download into $dl_dir"
  timed asrkit prepare download librispeech --dl-dir "$dl_dir" "${libri_flag[@]}"
  [ "$use_musan" = true ] && timed asrkit prepare download musan --dl-dir "$dl_dir"
fi
if run_stage 1; then
  log "stage 1: LibriSpeech manifests"
  timed asrkit prepare manifests librispeech --corpus-dir "$dl_dir/LibriSpeech" --output-dir data/manifests \
    --num-jobs "$num_jobs"
fi
if run_stage 2 && [ "$use_musan" = true ]; then
  log "stage 2: MUSAN manifests"
  timed asrkit prepare manifests musan --corpus-dir "$dl_dir/musan" --output-dir data/manifests
fi
if run_stage 3; then
  log "stage 3: fbank (LibriSpeech)"
  split_args=(); for p in "${train_parts[@]}" "${eval_parts[@]}"; do split_args+=(--split "$p"); done
  sp_args=(); for p in "${train_parts[@]}"; do sp_args+=(--speed-perturb "$p"); done
  timed asrkit prepare fbank --prefix librispeech "${split_args[@]}" "${sp_args[@]}" \
    --manifest-dir data/manifests --output-dir data/fbank --num-jobs "$num_jobs" $force
fi
if run_stage 4 && [ "$use_musan" = true ]; then
  log "stage 4: fbank (MUSAN)"
  timed asrkit prepare fbank --prefix musan --split music --split noise --split speech --window 10 \
    --manifest-dir data/manifests --output-dir data/fbank --num-jobs "$num_jobs" $force
fi
if run_stage 5; then
  log "stage 5: BPE tokenizer"
  timed asrkit prepare tokenizer --cuts data/fbank/librispeech_cuts_train-clean-100.jsonl.gz --lang-dir data/lang \
    --vocab-size "$vocab_size" --model-type bpe $force
fi
if run_stage 6; then
  log "stage 6: train ($recipe, $world_size GPU(s))"
  cut_args=(); for p in "${train_parts[@]}"; do cut_args+=(--train-cuts "data/fbank/librispeech_cuts_$p.jsonl.gz"); done
  musan_args=(); [ "$use_musan" = true ] && musan_args=(--set data.musan_cuts=data/fbank/musan_cuts_noise.jsonl.gz)
  timed asrkit train --recipe "$recipe" --exp-dir "$exp_dir" --lang-dir data/lang "${cut_args[@]}" \
    --valid-cuts data/fbank/librispeech_cuts_dev-clean.jsonl.gz --world-size "$world_size" --resume \
    "${musan_args[@]}"
fi
select_checkpoints
if run_stage 7; then
  log "stage 7: average ($selection)"
  timed asrkit average "${select_args[@]}"
fi
if run_stage 8; then
  for method in greedy_search modified_beam_search; do
    log "stage 8: decode ($method)"
    timed asrkit decode "${select_args[@]}" --lang-dir data/lang --method "$method" --device auto \
      --cuts data/fbank/librispeech_cuts_test-clean.jsonl.gz --cuts data/fbank/librispeech_cuts_test-other.jsonl.gz
  done
fi
if run_stage 9; then
  log "stage 9: export"
  timed asrkit export "${select_args[@]}" --lang-dir data/lang --format pretrained --format onnx \
    --output-dir "$exp_dir/exported"
fi
if run_stage 10; then
  cat "$exp_dir"/*/wer-summary-test-*.txt
fi
