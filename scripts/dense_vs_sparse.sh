#!/bin/sh
# Trains the MoE preset and its dense twin (same active parameters) on the same data
# and seed, then prints a markdown table from their summary.json files.
# Usage (package root): scripts/dense_vs_sparse.sh DATA_FILE [STEPS] [PRESET] [OUT_DIR]
set -e
data="${1:?usage: scripts/dense_vs_sparse.sh DATA_FILE [STEPS] [PRESET] [OUT_DIR]}"
steps="${2:-600}"
preset="${3:-tiny-moe}"
out="${4:-runs/dense-vs-sparse}"
swift build -c release --product moe >/dev/null
for ffn in moe dense; do
  .build/release/moe train --config "$preset" --ffn "$ffn" --data "$data" --steps "$steps" \
    --eval-every 100 --out "$out/$ffn" --quiet
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = [json.load(open(f"{out}/{ffn}/summary.json")) for ffn in ("moe", "dense")]
print("| model | total params | active params | forward FLOPs/token | train loss | validation loss | tokens/s |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['model']} ({r['ffn']}) | {r['total_params']:,} | {r['active_params']:,} | "
          f"{r['forward_flops_per_token'] / 1e6:.2f} M | {r['train_loss']:.4f} | {r['val_loss']:.4f} | "
          f"{r['tokens_per_second']:,.0f} |")
PY
