#!/usr/bin/env bash
# Staged recipe for the offline synthetic-speech corpus: dev/test on espeak-ng voices unseen in training, and a
# second test set spoken by a TTS engine left out of training entirely (leave-one-engine-out).
# Each stage is one `asrkit` call; finished work is skipped on re-runs (--force redoes it).
set -euo pipefail

stage=0
stop_stage=8
hours=2.0                       # hours of synthetic audio (train+dev+test)
seed=0
train_speakers=100
generated_voices=0              # training speakers with randomly generated voice variants
engine_mix="espeak=1"           # engine=share ... (space-separated): the TTS engines of the training speakers
eval_engine=flite               # the engine left out of training (dev_<engine>, test_<engine>); none = no such set
recipe=recipes/zipformer-xs.yaml
exp_dir=exp/zipformer-xs
vocab_size=100
epoch=""                        # epoch to decode/export (default: the recipe's num_epochs)
avg=2
method=modified_beam_search   # the method whose WER stage 8 prints (greedy_search is always decoded too)
blank_penalty=0.5             # chosen on the dev voices (docs/experiments.md); 0 = off
num_jobs=2
world_size=auto                 # training processes; auto: one per GPU, on CPU 2 single-thread ones (2+ cores)
force=""
work_dir=""                     # where data/ and exp/ go (default: this script's directory)
train_args=()

usage() {
  cat <<USAGE
Usage: egs/synth/run.sh [--stage N] [--stop-stage M] [options]

Stages:
  0  generate the synthetic corpus + manifests   (asrkit prepare synth)
  1  fbank features, speed perturbation on train (asrkit prepare fbank)
  2  sentencepiece tokenizer                     (asrkit prepare tokenizer)
  3  train                                       (asrkit train)
  4  average checkpoints                         (asrkit average)
  5  decode the test sets                        (asrkit decode: greedy_search and --method; unseen voices,
                                                  and the left-out engine's)
  6  export pretrained.pt + ONNX                  (asrkit export)
  7  transcribe two test files with the export   (asrkit transcribe)
  8  print the WERs: the left-out engine's, then the unseen voices' of the training engines (last line)

Options:
  --hours H           corpus size in hours (default $hours)
  --seed S            corpus seed (default $seed)
  --train-speakers N  training speakers (default $train_speakers)
  --generated-voices N  how many of them speak with a randomly generated espeak-ng voice variant (default
                      $generated_voices; dev/test speakers and all texts stay the same)
  --engine-mix "E=S ..."  TTS engines of the training speakers and their shares (default "$engine_mix"; engines:
                      espeak, flite, festival, pico; espeak is required)
  --eval-engine E     engine left out of training, for the second test set (default $eval_engine; none = off; it must
                      not be in --engine-mix)
  --recipe FILE       training preset, relative to the repository root (default $recipe)
  --exp-dir DIR       experiment directory (default $exp_dir)
  --vocab-size N      tokenizer vocabulary bound (default $vocab_size)
  --epoch E --avg N   which checkpoints to average/decode/export (default: the last epoch, avg $avg; a run stopped
                      mid-epoch by its time budget uses its newest checkpoint-N.pt and averages over the last
                      N checkpoint intervals instead)
  --method M          decoding method whose WER stage 8 prints (default $method; greedy_search is decoded too)
  --blank-penalty P   subtracted from the blank logit when decoding (default $blank_penalty)
  --num-jobs J        parallel processes for data preparation (default $num_jobs)
  --world-size N|auto training processes (DDP; default $world_size: one per GPU, or on a CPU machine with 2+ cores
                      two single-thread processes, each with batches of the recipe's max_duration)
  --train-args "..."  extra arguments for asrkit train (e.g. "--set num_epochs=2")
  --work-dir DIR       where data/ and exp/ are written (default: egs/synth)
  --force             redo finished stages
USAGE
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib/stages.sh"
start_recipe "$@"

mix_args=()
for item in $engine_mix; do mix_args+=(--engine-mix "$item"); done
test_sets=(test)                  # decoded in stage 5; the last one's WER is printed last
extra_splits=()
if [ "$eval_engine" != none ]; then
  test_sets=("test_$eval_engine" test)
  extra_splits=(--split "dev_$eval_engine" --split "test_$eval_engine")
fi
if run_stage 0; then
  log "stage 0: synthetic corpus ($hours h, seed $seed, $train_speakers training speakers ($engine_mix)," \
    "$generated_voices generated, left-out engine $eval_engine)"
  timed asrkit prepare synth --corpus-dir data/synth --manifest-dir data/manifests --hours "$hours" --seed "$seed" \
    --train-speakers "$train_speakers" --generated-voices "$generated_voices" "${mix_args[@]}" \
    --eval-engine "$eval_engine" --num-jobs "$num_jobs"
fi
if run_stage 1; then
  log "stage 1: fbank"
  timed asrkit prepare fbank --prefix synth --split train --split dev --split test "${extra_splits[@]}" \
    --speed-perturb train --manifest-dir data/manifests --output-dir data/fbank --num-jobs "$num_jobs" $force
fi
if run_stage 2; then
  log "stage 2: tokenizer"
  timed asrkit prepare tokenizer --cuts data/fbank/synth_cuts_train.jsonl.gz --lang-dir data/lang \
    --vocab-size "$vocab_size" --model-type unigram $force
fi
if run_stage 3; then
  log "stage 3: train ($recipe, --world-size $world_size)"
  [ -z "$force" ] || rm -rf "$exp_dir"
  timed asrkit train --recipe "$recipe" --exp-dir "$exp_dir" --lang-dir data/lang \
    --train-cuts data/fbank/synth_cuts_train.jsonl.gz --valid-cuts data/fbank/synth_cuts_dev.jsonl.gz \
    --world-size "$world_size" --resume "${train_args[@]}"
fi
select_checkpoints
penalty=$(printf '%g' "$blank_penalty")
report="$selection"  # the name asrkit decode gives the reports
[ "$penalty" = 0 ] || report="$selection-blank-penalty-$penalty"
if run_stage 4; then
  log "stage 4: average ($selection)"
  timed asrkit average "${select_args[@]}"
fi
if run_stage 5; then
  for m in $(printf '%s\n' greedy_search "$method" | awk '!seen[$0]++'); do
    log "stage 5: decode ($m)"
    timed asrkit decode "${select_args[@]}" --lang-dir data/lang --method "$m" --blank-penalty "$penalty" \
      $(printf -- '--cuts data/fbank/synth_cuts_%s.jsonl.gz ' "${test_sets[@]}")
  done
fi
if run_stage 6; then
  log "stage 6: export"
  timed asrkit export "${select_args[@]}" --lang-dir data/lang --format pretrained --format onnx \
    --output-dir "$exp_dir/exported"
fi
if run_stage 7; then
  log "stage 7: transcribe two test files"
  mapfile -t wavs < <(find data/synth -name '*.wav' -path '*test*' | sort | head -n 2)
  [ ${#wavs[@]} -gt 0 ] || mapfile -t wavs < <(find data/synth -name '*.wav' | sort | head -n 2)
  timed asrkit transcribe --model "$exp_dir/exported/pretrained.pt" --blank-penalty "$penalty" "${wavs[@]}"
fi
if run_stage 8; then
  for set in "${test_sets[@]}"; do
    summary="$exp_dir/$method/wer-summary-$set-$report.txt"
    [ -f "$summary" ] || { echo "run.sh: $summary not found (run stage 5)" >&2; exit 1; }
    wer=$(awk 'NR==2 {print $2}' "$summary")
    greedy="$exp_dir/greedy_search/wer-summary-$set-$report.txt"
    [ "$method" = greedy_search ] || [ ! -f "$greedy" ] || log "greedy_search: %WER $(awk 'NR==2 {print $2}' "$greedy")"
    if [ "$set" = test ]; then
      log "test set (unseen voices of the training engines), $method, $(basename "$summary")"
      echo "%WER = $wer"
    else
      log "test set of the engine left out of training ($eval_engine), $method, $(basename "$summary")"
      echo "%WER[$set] = $wer"
    fi
  done
fi
