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
  [ -d "$1" ] || return 0
  find "$1" -maxdepth 1 -name 'epoch-*.pt' | sed -n 's/.*epoch-\([0-9]\+\)\.pt$/\1/p' | sort -n | tail -n 1
}

# newest_batch_checkpoint EXP_DIR: the highest N with EXP_DIR/checkpoint-N.pt (empty when there is none)
newest_batch_checkpoint() {
  [ -d "$1" ] || return 0
  find "$1" -maxdepth 1 -name 'checkpoint-*.pt' | sed -n 's/.*checkpoint-\([0-9]\+\)\.pt$/\1/p' | sort -n | tail -n 1
}

# select_checkpoints: sets select_args (the --epoch/--iter/--avg flags of average/decode/export) and selection (the
# suffix those commands give their output files) from $epoch, $avg, $exp_dir and $recipe.
# - --epoch E given: epochs E-avg+1..E, running-average model.
# - otherwise the last finished epoch (else the recipe's num_epochs), unless training stopped mid-epoch (a time
#   budget, SIGTERM): then the newest checkpoint-N.pt is newer than that epoch's file and the selection is
#   --iter N with the running-average model over the last $avg checkpoint intervals (save_every_n batches each;
#   fewer when fewer checkpoints exist), so the partial epoch is not thrown away.
select_checkpoints() {
  local given="$epoch" n count
  [ -n "$epoch" ] || epoch=$(last_epoch "$exp_dir")
  n=$(newest_batch_checkpoint "$exp_dir")
  if [ -z "$given" ] && [ -n "$n" ] && { [ -z "$epoch" ] || [ "$exp_dir/checkpoint-$n.pt" -nt "$exp_dir/epoch-$epoch.pt" ]; }
  then
    count=$(find "$exp_dir" -maxdepth 1 -name 'checkpoint-*.pt' | wc -l)
    if [ "$count" -ge 2 ]; then
      [ "$avg" -lt "$count" ] || avg=$((count - 1))
      select_args=(--exp-dir "$exp_dir" --iter "$n" --avg "$avg" --use-averaged-model)
      selection="iter-$n-avg-$avg-use-averaged-model"
    else
      avg=1
      select_args=(--exp-dir "$exp_dir" --iter "$n" --avg 1)
      selection="iter-$n-avg-1"
    fi
    return
  fi
  [ -n "$epoch" ] || epoch=$(recipe_epochs "$recipe")
  [ "$avg" -le "$epoch" ] || avg=$epoch
  select_args=(--exp-dir "$exp_dir" --epoch "$epoch" --avg "$avg" --use-averaged-model)
  selection="epoch-$epoch-avg-$avg-use-averaged-model"
}

# parse_options "$@": the recipe's command line, Kaldi style. `--some-name VALUE` sets the variable some_name, which
# the recipe must have given a default (so a misspelt option is an error, not a new variable); an array variable
# takes VALUE split on spaces; a name in the array flag_options takes no value and is set to "--some-name";
# -h/--help print the recipe's usage and exit.
parse_options() {
  local name var
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --?*) ;;
      *) echo "$(basename "$0"): unexpected argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    name="${1#--}"
    var="${name//-/_}"
    if [[ "$var" == *[!a-z0-9_]* || " here root flag_options " == *" $var "* ]] || ! declare -p "$var" >/dev/null 2>&1
    then
      echo "$(basename "$0"): unknown option $1 (see --help)" >&2
      exit 2
    fi
    if [[ " ${flag_options[*]:-} " == *" $var "* ]]; then
      printf -v "$var" '%s' "$1"
      shift
      continue
    fi
    if [ $# -lt 2 ]; then
      echo "$(basename "$0"): option $1 needs a value (see --help)" >&2
      exit 2
    fi
    if [[ "$(declare -p "$var")" == "declare -a"* ]]; then
      read -r -a "$var" <<<"$2"
    else
      printf -v "$var" '%s' "$2"
    fi
    shift 2
  done
}

# start_recipe "$@": what every egs/*/run.sh does first, after setting its defaults and $here (its own folder):
# parse the command line (--force is a flag), set $root (the repository), make $recipe absolute and enter the
# work directory (--work-dir, default $here).
start_recipe() {
  flag_options=(force)
  parse_options "$@"
  root="$(cd "$here/../.." && pwd)"
  recipe=$(resolve_from_root "$recipe")
  mkdir -p "${work_dir:-$here}"
  cd "${work_dir:-$here}"
}
