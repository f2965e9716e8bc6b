#!/usr/bin/env bash
# Staged recipe for the offline synthetic-speech corpus: trained on espeak-ng voices with festival (kal_diphone) and
# SVOX Pico speakers on top; dev/test on espeak-ng voices unseen in training, and a second test set spoken by a TTS
# engine left out of training entirely (flite: leave-one-engine-out).
# Each stage is one `asrkit` call; finished work is skipped on re-runs (--force redoes it).
set -euo pipefail

stage=0
stop_stage=8
hours=2.0                       # hours of synthetic audio (train+dev+test)
seed=0
train_speakers=100
train_hours=""                  # hours of the training split ("" = what --hours leaves after dev and test)
generated_voices=0              # training speakers with randomly generated voice variants
engine_mix="espeak=4 festival=1 pico=1"  # engine=share ... (space-separated): the TTS engines of the training speakers
engines_on_top=true             # true: the other engines add speakers and hours on top of the espeak-ng ones
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
streaming_recipe=recipes/zipformer-xs-streaming.yaml   # stages 9-14: the causal preset
streaming_exp_dir=exp/zipformer-xs-streaming
chunk_size=16                   # stages 11-12: 50 Hz frames per chunk (16 = 320 ms)
left_context_frames=64          # stages 11-12: left context in 50 Hz frames (64 = 1.28 s)
num_decode_streams=8            # stage 11: live streams decoded together chunk by chunk
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
Streaming stages (not run by default: --stage 9 --stop-stage 14, after stages 0-2), the causal model:
  9  train --streaming-recipe                    (asrkit train)
  10 average checkpoints                         (asrkit average)
  11 decode the test sets as simulated streaming (asrkit decode --chunk-size C --left-context-frames L)
     and chunk by chunk with encoder caches      (... --streaming --num-decode-streams N)
  12 export streaming ONNX + TorchScript          (asrkit export --streaming)
  13 transcribe two test files as live streams   (asrkit transcribe --streaming: partials, then final)
  14 print the WERs of stage 11: simulated, then chunk-wise (last line)

Options:
  --hours H           corpus size in hours (default $hours)
  --seed S            corpus seed (default $seed)
  --train-speakers N  training speakers; with --engines-on-top true the espeak-ng ones (default $train_speakers)
  --train-hours H     hours of the training split, with --engines-on-top false (default: what --hours leaves after
                      dev and test, which do not change with it)
  --generated-voices N  how many of them speak with a randomly generated espeak-ng voice variant (default
                      $generated_voices; dev/test speakers and all texts stay the same)
  --engine-mix "E=S ..."  TTS engines of the training speakers and their shares (default "$engine_mix"; engines:
                      espeak, flite, festival, pico, rhvoice; espeak is required)
  --engines-on-top true|false  true: the other engines of --engine-mix come on top of the --train-speakers
                      espeak-ng speakers and their hours; false: they share them (default $engines_on_top)
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
  --train-args "..."  extra arguments for asrkit train, both models (e.g. "--set num_epochs=2")
  --streaming-recipe FILE  causal preset of stages 9-14 (default $streaming_recipe)
  --streaming-exp-dir DIR  its experiment directory (default $streaming_exp_dir)
  --chunk-size C --left-context-frames L  decoding and export chunking of stages 11-12 in 50 Hz frames
                      (default $chunk_size and $left_context_frames: 320 ms chunks, 1.28 s of left context)
  --num-decode-streams N  streams decoded together in stage 11 (default $num_decode_streams)
  --work-dir DIR       where data/ and exp/ are written (default: egs/synth)
  --force             redo finished stages
USAGE
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib/stages.sh"
start_recipe "$@"
streaming_recipe=$(resolve_from_root "$streaming_recipe")

mix_args=()
for item in $engine_mix; do mix_args+=(--engine-mix "$item"); done
case "$engines_on_top" in
  true) on_top_args=(--engines-on-top) ;;
  false) on_top_args=() ;;
  *) echo "$(basename "$0"): --engines-on-top takes true or false, got '$engines_on_top'" >&2; exit 1 ;;
esac
test_sets=(test)                  # decoded in stage 5; the last one's WER is printed last
extra_splits=()
if [ "$eval_engine" != none ]; then
  test_sets=("test_$eval_engine" test)
  extra_splits=(--split "dev_$eval_engine" --split "test_$eval_engine")
fi
penalty=$(printf '%g' "$blank_penalty")
given_epoch="$epoch" given_avg="$avg"

# use_model RECIPE EXP_DIR: the model the training, averaging, decoding and export stages below work on; its
# checkpoints are selected (select_checkpoints) after its training stage.
use_model() { recipe=$1 exp_dir=$2 epoch="$given_epoch" avg="$given_avg"; }

# report_name TAG: the name asrkit decode gives the reports of the selection decoded with the options TAG stands for
report_name() {
  local name="$selection$1"
  [ "$penalty" = 0 ] || name="$name-blank-penalty-$penalty"
  echo "$name"
}

train_stage() {
  log "stage $1: train ($recipe, --world-size $world_size)"
  [ -z "$force" ] || rm -rf "$exp_dir"
  timed asrkit train --recipe "$recipe" --exp-dir "$exp_dir" --lang-dir data/lang \
    --train-cuts data/fbank/synth_cuts_train.jsonl.gz --valid-cuts data/fbank/synth_cuts_dev.jsonl.gz \
    --world-size "$world_size" --resume "${train_args[@]}"
}

average_stage() {
  log "stage $1: average ($selection)"
  timed asrkit average "${select_args[@]}"
}

# decode_stage N OPTION...: every test set with greedy search and --method, with extra asrkit decode OPTIONs
decode_stage() {
  local n=$1 m
  shift
  for m in $(printf '%s\n' greedy_search "$method" | awk '!seen[$0]++'); do
    log "stage $n: decode ($m${*:+ $*})"
    timed asrkit decode "${select_args[@]}" --lang-dir data/lang --method "$m" --blank-penalty "$penalty" "$@" \
      $(printf -- '--cuts data/fbank/synth_cuts_%s.jsonl.gz ' "${test_sets[@]}")
  done
}

# transcribe_stage N MODEL OPTION...: two test files with the export MODEL
transcribe_stage() {
  local n=$1 model=$2 wavs
  shift 2
  log "stage $n: transcribe two test files${*:+ ($*)}"
  mapfile -t wavs < <(find data/synth -name '*.wav' -path '*test*' | sort | head -n 2)
  [ ${#wavs[@]} -gt 0 ] || mapfile -t wavs < <(find data/synth -name '*.wav' | sort | head -n 2)
  timed asrkit transcribe --model "$model" --blank-penalty "$penalty" "$@" "${wavs[@]}"
}

# print_wers TAG [LABEL]: the --method WER of every test set decoded with the options TAG stands for, the unseen
# voices' last: "%WER[test_<engine>, LABEL] = x", then "%WER[LABEL] = y" ("%WER = y" without a LABEL)
print_wers() {
  local tag=$1 label=${2:-} set summary greedy name wer
  name=$(report_name "$tag")
  for set in "${test_sets[@]}"; do
    summary="$exp_dir/$method/wer-summary-$set-$name.txt"
    [ -f "$summary" ] || { echo "run.sh: $summary not found (run the decoding stage)" >&2; exit 1; }
    wer=$(awk 'NR==2 {print $2}' "$summary")
    greedy="$exp_dir/greedy_search/wer-summary-$set-$name.txt"
    [ "$method" = greedy_search ] || [ ! -f "$greedy" ] || log "greedy_search: %WER $(awk 'NR==2 {print $2}' "$greedy")"
    if [ "$set" = test ]; then
      log "test set (unseen voices of the training engines), $method, $(basename "$summary")," \
        "per voice: $(basename "${summary/wer-summary-/wer-by-speaker-}")"
      echo "%WER${label:+[$label]} = $wer"
    else
      log "test set of the engine left out of training ($eval_engine), $method, $(basename "$summary")"
      echo "%WER[$set${label:+, $label}] = $wer"
    fi
  done
}

if run_stage 0; then
  log "stage 0: synthetic corpus ($hours h, seed $seed, $train_speakers training speakers ($engine_mix," \
    "other engines on top: $engines_on_top), $generated_voices generated, left-out engine $eval_engine)"
  timed asrkit prepare synth --corpus-dir data/synth --manifest-dir data/manifests --hours "$hours" --seed "$seed" \
    --train-speakers "$train_speakers" ${train_hours:+--train-hours "$train_hours"} \
    --generated-voices "$generated_voices" "${mix_args[@]}" "${on_top_args[@]}" \
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

# The offline model (full-context attention)
if run_stage 3; then train_stage 3; fi
select_checkpoints
if run_stage 4; then average_stage 4; fi
if run_stage 5; then decode_stage 5; fi
if run_stage 6; then
  log "stage 6: export"
  timed asrkit export "${select_args[@]}" --lang-dir data/lang --format pretrained --format onnx \
    --output-dir "$exp_dir/exported"
fi
if run_stage 7; then transcribe_stage 7 "$exp_dir/exported/pretrained.pt"; fi
if run_stage 8; then print_wers ""; fi

# The streaming model (causal: chunk-causal convolutions, chunked attention), decoded at one chunk size
[ "$stop_stage" -ge 9 ] || exit 0
chunking=(--chunk-size "$chunk_size" --left-context-frames "$left_context_frames")
chunk_tag="chunk-$chunk_size-left-$left_context_frames"
use_model "$streaming_recipe" "$streaming_exp_dir"
if run_stage 9; then train_stage 9; fi
select_checkpoints
if run_stage 10; then average_stage 10; fi
if run_stage 11; then
  decode_stage 11 "${chunking[@]}"
  decode_stage 11 "${chunking[@]}" --streaming --num-decode-streams "$num_decode_streams"
fi
if run_stage 12; then
  log "stage 12: streaming export ($chunk_tag)"
  timed asrkit export "${select_args[@]}" --lang-dir data/lang --format onnx --format torchscript --streaming \
    "${chunking[@]}" --output-dir "$exp_dir/exported"
fi
if run_stage 13; then transcribe_stage 13 "$exp_dir/exported/onnx-streaming" --streaming; fi
if run_stage 14; then
  print_wers "-$chunk_tag" "$chunk_tag"
  print_wers "-$chunk_tag-streaming" "$chunk_tag-streaming"
fi
