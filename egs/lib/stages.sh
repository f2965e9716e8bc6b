# Helpers shared by the egs/*/run.sh scripts (sourced, not executed). No logic beyond sequencing.

# log MESSAGE: a time-stamped line on stdout
log() { echo "$(date '+%H:%M:%S') [$(basename "$(dirname "$0")")] $*"; }

# run_stage N: true when stage N lies in [stage, stop_stage]
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# timed CMD...: run CMD and log how long it took
timed() { local t0=$SECONDS; "$@"; log "stage took $((SECONDS - t0)) s"; }

# recipe_epochs FILE: num_epochs of a recipe YAML
recipe_epochs() {
  python3 -c "import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get('num_epochs', 10))" "$1"
}

# resolve_from_root PATH: PATH made absolute relative to the repository root
resolve_from_root() { case "$1" in /*) echo "$1" ;; *) echo "$root/$1" ;; esac; }

# last_epoch EXP_DIR: the highest N with EXP_DIR/epoch-N.pt (empty when there is none)
last_epoch() {
  local n
  n=$(find "$1" -maxdepth 1 -name 'epoch-*.pt' 2>/dev/null | sed -n 's/.*epoch-\([0-9]\+\)\.pt$/\1/p' | sort -n | tail -n 1)
  echo "$n"
}

# select_checkpoints: sets epoch/avg/select_args for the stages after training (uses $epoch, $avg, $exp_dir,
# $recipe): --epoch if given, else the last finished epoch (a time-capped run may stop before the recipe's
# num_epochs), else the recipe's num_epochs.
select_checkpoints() {
  [ -n "$epoch" ] || epoch=$(last_epoch "$exp_dir")
  [ -n "$epoch" ] || epoch=$(recipe_epochs "$recipe")
  [ "$avg" -le "$epoch" ] || avg=$epoch
  select_args=(--exp-dir "$exp_dir" --epoch "$epoch" --avg "$avg" --use-averaged-model)
}
