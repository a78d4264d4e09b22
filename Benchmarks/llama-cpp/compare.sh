#!/usr/bin/env bash
# SparseMoE against llama.cpp on the same weights: prefill and decode tokens/s at bf16,
# int8 (llama.cpp Q8_0) and int4 (llama.cpp Q4_0), plus the machine's read bandwidth.
#
#   Benchmarks/llama-cpp/compare.sh MODEL_DIR [--threads 2] [--reps 3] [--rounds 1] [--dtypes bf16,int8,int4]
#                                   [--llama-cpp DIR] [--moe PATH]
#
# MODEL_DIR is a Hugging Face OLMoE folder (from `moe init` or make_random_olmoe.py).
# It is never modified: the GGUF files go to MODEL_DIR.gguf/ (bf16.gguf from
# convert_hf_to_gguf.py, q8_0.gguf and q4_0.gguf from llama-quantize), reused when present.
# llama.cpp is built by build.sh into DIR (default $HOME/.cache/sparsemoe-llama.cpp).
#
# Output: one JSON line per (engine, dtype) with engine, dtype, prefill_tokens_per_second
# (prompt of 128), decode_tokens_per_second (64 tokens after those 128), weights_bytes
# (file size), and for llama.cpp
# bytes_read_per_token and the fraction of the bandwidth limit; one read_bandwidth line;
# then the ratio table SparseMoE / llama.cpp (Markdown); each dtype runs llama.cpp and then
# SparseMoE back to back. --rounds R repeats every dtype's pair R times, alternating which
# engine goes first (llama.cpp first in odd rounds), and the table then gives each engine's
# median over the rounds and the median and range of the per-round ratios: on a host whose
# speed drifts over minutes, the ratio of two runs seconds apart is what holds. Every line
# carries its "round". All lines are also appended to
# MODEL_DIR.gguf/results.jsonl. SparseMoE's side runs when `moe bench --help` lists
# --model (moe: --moe PATH, else $MOE, else .build/release/moe, else `moe` on PATH).
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }
[ $# -ge 1 ] || usage
MODEL_DIR=""
THREADS=2
REPS=3
ROUNDS=1
DTYPES="bf16,int8,int4"
PROMPT=128
GEN=64
LLAMA_DIR="${LLAMA_CPP_DIR:-$HOME/.cache/sparsemoe-llama.cpp}"
MOE_BIN="${MOE:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) THREADS="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --dtypes) DTYPES="$2"; shift 2 ;;
        --llama-cpp) LLAMA_DIR="$2"; shift 2 ;;
        --moe) MOE_BIN="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) echo "compare.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$MODEL_DIR" ] || { echo "compare.sh: one MODEL_DIR expected, got also $1" >&2; exit 2; }
           MODEL_DIR="$1"; shift ;;
    esac
done
[ -n "$MODEL_DIR" ] || usage
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --rounds must be a positive integer, got '$ROUNDS'" >&2; exit 2; }
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --reps must be a positive integer, got '$REPS'" >&2; exit 2; }
PAIRS=()
IFS=',' read -r -a DTYPE_LIST <<< "$DTYPES"
for d in "${DTYPE_LIST[@]}"; do
    case "$d" in
        bf16) PAIRS+=(bf16:BF16) ;;
        int8) PAIRS+=(int8:Q8_0) ;;
        int4) PAIRS+=(int4:Q4_0) ;;
        *) echo "compare.sh: --dtypes takes bf16, int8, int4 (comma-separated), got '$d'" >&2; exit 2 ;;
    esac
done
MODEL_DIR="${MODEL_DIR%/}"
for f in config.json tokenizer.json; do
    [ -f "$MODEL_DIR/$f" ] || { echo "compare.sh: $MODEL_DIR/$f not found (expected a Hugging Face folder)" >&2; exit 1; }
done

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SRC="$LLAMA_DIR/src"
BIN="$SRC/build/bin"
PY="$LLAMA_DIR/venv/bin/python"
if [ ! -x "$BIN/llama-bench" ] || [ ! -x "$BIN/llama-quantize" ] || [ ! -x "$PY" ]; then
    "$HERE/build.sh" "$LLAMA_DIR" >&2
fi
export LLAMA_CPP_SRC="$SRC"

OUT="$MODEL_DIR.gguf"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
RUN_LINES="$(mktemp)"
trap 'rm -f "$RUN_LINES"' EXIT
emit() { echo "$1"; echo "$1" >> "$RESULTS"; echo "$1" >> "$RUN_LINES"; }

# 0. The machine, and how busy it is (other processes on the cores distort every figure).
emit "$("$PY" -c '
import json, os, platform, re
info = open("/proc/cpuinfo").read()
model = re.search(r"model name\s*:\s*(.*)", info)
flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())
simd = sorted(f for f in flags if f.startswith("avx") or f in ("fma", "f16c"))
print(json.dumps({"bench": "machine", "cpu": model.group(1) if model else platform.machine(),
    "cpus": os.cpu_count(), "simd": simd, "load_average_1m": os.getloadavg()[0]}))
')"

# 1. Read bandwidth with the same thread count.
cc -O3 -march=native -fopenmp "$HERE/bandwidth.c" -o "$LLAMA_DIR/bandwidth"
BW_LINE="$(OMP_NUM_THREADS="$THREADS" OMP_PROC_BIND=spread "$LLAMA_DIR/bandwidth" 2 10)"
emit "$BW_LINE"
BANDWIDTH="$(echo "$BW_LINE" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["gigabytes_per_second"])')"

# 2. GGUF files: bf16 from the converter, Q8_0 and Q4_0 from llama-quantize.
if [ ! -s "$OUT/bf16.gguf" ]; then
    echo "converting $MODEL_DIR to $OUT/bf16.gguf" >&2
    "$PY" "$HERE/convert.py" --llama-cpp "$SRC" "$MODEL_DIR" --outtype bf16 --outfile "$OUT/bf16.gguf.part" >&2
    mv "$OUT/bf16.gguf.part" "$OUT/bf16.gguf"
fi
for q in Q8_0 Q4_0; do
    lower="$(echo "$q" | tr 'A-Z' 'a-z')"
    if [ ! -s "$OUT/$lower.gguf" ]; then
        echo "quantizing to $q" >&2
        "$BIN/llama-quantize" "$OUT/bf16.gguf" "$OUT/$lower.gguf.part" "$q" "$THREADS" >&2
        mv "$OUT/$lower.gguf.part" "$OUT/$lower.gguf"
    fi
done

# 3. Per dtype, llama-bench and SparseMoE's `moe bench` (when it has the --model flag),
#    back to back (llama.cpp first in odd rounds, SparseMoE first in even ones): this host's speed drifts over minutes, and a dtype's two engines measured
#    minutes apart compared the drift as much as the engines.
#    llama-bench: prefill of $PROMPT tokens; decode of $GEN tokens after a context of $PROMPT
#    tokens (-d), as `moe bench` decodes after its prompt; $REPS repetitions each.
if [ -z "$MOE_BIN" ]; then
    if [ -x "$REPO/.build/release/moe" ]; then MOE_BIN="$REPO/.build/release/moe"
    elif command -v moe >/dev/null 2>&1; then MOE_BIN="$(command -v moe)"; fi
fi
MOE_SIDE=0
THREAD_FLAG=()
if [ -n "$MOE_BIN" ] && "$MOE_BIN" bench --help 2>&1 | grep -- --model >/dev/null; then
    MOE_SIDE=1
    if "$MOE_BIN" bench --help 2>&1 | grep -- --threads >/dev/null; then THREAD_FLAG=(--threads "$THREADS"); fi
elif [ -z "$MOE_BIN" ]; then
    echo "note: SparseMoE's side skipped: no moe binary (build it with swift build -c release, or pass --moe PATH)" >&2
else
    echo "note: SparseMoE's side skipped: \`$MOE_BIN bench --help\` lists no --model flag yet" >&2
fi
run_llama() {  # dtype type file round
    echo "round $4: llama-bench $2" >&2
    "$BIN/llama-bench" -m "$3" -p "$PROMPT" -n 0 -t "$THREADS" -r "$REPS" -o json > "$OUT/bench-$1-prefill.json"
    "$BIN/llama-bench" -m "$3" -p 0 -n "$GEN" -d "$PROMPT" -t "$THREADS" -r "$REPS" -o json > "$OUT/bench-$1-decode.json"
    emit "$("$PY" "$HERE/report.py" llama-bench "$OUT/bench-$1-prefill.json" "$OUT/bench-$1-decode.json" \
        --dtype "$1" --type "$2" --gguf "$3" --bandwidth "$BANDWIDTH" --round "$4")"
}
run_moe() {  # dtype round
    [ "$MOE_SIDE" = 1 ] || return 0
    echo "round $2: moe bench $1" >&2
    OMP_NUM_THREADS="$THREADS" "$MOE_BIN" bench --model "$MODEL_DIR" --dtype "$1" "${THREAD_FLAG[@]}" --json \
        | grep '^{' | while IFS= read -r line; do
            emit "$(echo "$line" | ROUND="$2" "$PY" -c 'import json,os,sys; r=json.load(sys.stdin); r.setdefault("engine","SparseMoE"); r["round"]=int(os.environ["ROUND"]); print(json.dumps(r))')"
        done
}
for round in $(seq 1 "$ROUNDS"); do
    for pair in "${PAIRS[@]}"; do
        dtype="${pair%%:*}"; type="${pair##*:}"
        file="$OUT/$(echo "$type" | tr 'A-Z' 'a-z').gguf"
        if [ $((round % 2)) = 1 ]; then
            run_llama "$dtype" "$type" "$file" "$round"; run_moe "$dtype" "$round"
        else
            run_moe "$dtype" "$round"; run_llama "$dtype" "$type" "$file" "$round"
        fi
    done
done

# 4. Ratio table of this run's lines.
echo
"$PY" "$HERE/report.py" table "$RUN_LINES"
