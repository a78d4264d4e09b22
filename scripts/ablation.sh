#!/bin/sh
# The dense-vs-sparse recipe ablation of docs/scaling.md ("A default that pays"): trains
# every recipe on every corpus with every seed, JOBS runs at a time (one thread each),
# skipping runs that already have a result.json, then prints the table.
#
# Usage (package root):
#   scripts/ablation.sh OUT_DIR "CORPORA" "RECIPES"
#   CORPORA: text files, or `synthetic` for the built-in corpus
#   RECIPES: `moe` (tiny-moe), `dense` (its dense twin) or TransformerConfig JSON files
# Environment: STEPS (1500), SEEDS ("0 1 2"), JOBS (2), EVAL_BATCHES (64), MOE (.build/release/moe),
# TRAIN_ARGS (more `moe train` options for every run, e.g. "--lr 2e-3"; use its own OUT_DIR)
# Example:
#   scripts/ablation.sh runs/ablation "synthetic tinyshakespeare.txt" \
#     "moe dense Benchmarks/ablation/fine16-shared.json"
set -e
out="${1:?usage: scripts/ablation.sh OUT_DIR \"CORPORA\" \"RECIPES\"}"
corpora="${2:?list the corpora: text files or synthetic}"
recipes="${3:?list the recipes: moe, dense or config JSON files}"
steps="${STEPS:-1500}"; seeds="${SEEDS:-0 1 2}"; jobs="${JOBS:-2}"
eval_batches="${EVAL_BATCHES:-64}"; moe="${MOE:-.build/release/moe}"
table="$(dirname "$0")/ablation_table.py"
[ -x "$moe" ] || swift build -c release --product moe >/dev/null
mkdir -p "$out"
list="$out/jobs.txt"; : > "$list"
for corpus in $corpora; do
  name=$(basename "$corpus" .txt)
  [ "$corpus" = synthetic ] || [ -f "$corpus" ] || { echo "no such corpus file: $corpus" >&2; exit 1; }
  for recipe in $recipes; do
    case "$recipe" in
      moe) rname=moe; args="--config tiny-moe" ;;
      dense) rname=dense; args="--config tiny-moe --ffn dense" ;;
      *.json) [ -f "$recipe" ] || { echo "no such recipe file: $recipe" >&2; exit 1; }
              rname=$(basename "$recipe" .json); args="--config $recipe" ;;
      *) echo "unknown recipe '$recipe': moe, dense or a .json config" >&2; exit 1 ;;
    esac
    [ "$corpus" = synthetic ] || args="$args --data $corpus"
    args="$args ${TRAIN_ARGS:-}"
    for seed in $seeds; do
      dir="$out/$name/$rname-s$seed"
      [ -f "$dir/result.json" ] && continue
      echo "$dir|$args --seed $seed" >> "$list"
    done
  done
done
echo "$(wc -l < "$list") runs to train ($jobs at a time, $steps steps each); finished ones are skipped" >&2
# One line per run: DIR|ARGS. Each run logs to DIR.log; a failed run is reported, the others go on.
# A finished run leaves DIR/result.json: its summary.json without the per-step history and the
# expert loads (a few hundred bytes, the file the table reads and the one worth keeping).
tr '\n' '\0' < "$list" | xargs -0 -r -P "$jobs" -I{} sh -c '
  dir="${1%%|*}"; args="${1#*|}"
  mkdir -p "$(dirname "$dir")"
  if "$2" train $args --steps "$3" --threads 1 --eval-every "$3" --eval-batches "$4" \
       --quiet --force --out "$dir" > "$dir.log" 2>&1
  then python3 "$5" --result "$dir" && echo "done   $dir" >&2
  else echo "FAILED $dir (see $dir.log)" >&2; fi
' run {} "$moe" "$steps" "$eval_batches" "$table"
python3 "$table" "$out"
