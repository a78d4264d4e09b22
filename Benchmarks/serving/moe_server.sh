#!/usr/bin/env bash
# SparseMoE's `moe serve` under load: starts it on 127.0.0.1 with one model, runs
# loadgen.py at the given concurrency levels, stops it, and writes the JSON results.
#
#   Benchmarks/serving/moe_server.sh MODEL_DIR [--dtype int4] [--concurrency 1,4,16]
#       [--max-batch N] [--requests 16] [--time-limit 120] [--prompt-tokens 32]
#       [--max-tokens 32] [--threads 2] [--port P] [--out FILE.json] [--moe PATH]
#       [-- LOADGEN ARGS...]
#
# Server: `moe serve --model MODEL_DIR --dtype D --max-batch N --port P` with
# --max-batch defaulting to the highest concurrency and SPARSEMOE_NUM_THREADS=THREADS.
# Requests as in llama_server.sh (token-id prompts, temperature 0, streaming,
# "ignore_eos": true, which a server that ignores unknown fields ignores: then
# finish_reason "stop" in the report shows requests that ended at EOS). Arguments
# after `--` go to loadgen.py.
#
# moe: --moe PATH, else $MOE, else .build/release/moe, else `moe` on PATH.
# Output: FILE.json (default Benchmarks/serving/results/moe-<model name>-<dtype>.json)
# and the server's log beside it. Exit status: loadgen.py's.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"

MODEL=""
DTYPE="int4"
CONCURRENCY="1,4,16"
MAX_BATCH=""
REQUESTS=16
TIME_LIMIT=120
PROMPT=32
GEN=32
THREADS=2
PORT=""
OUT=""
MOE_BIN="${MOE:-}"
LOADGEN_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dtype) DTYPE="$2"; shift 2 ;;
        --concurrency) CONCURRENCY="$2"; shift 2 ;;
        --max-batch) MAX_BATCH="$2"; shift 2 ;;
        --requests) REQUESTS="$2"; shift 2 ;;
        --time-limit) TIME_LIMIT="$2"; shift 2 ;;
        --prompt-tokens) PROMPT="$2"; shift 2 ;;
        --max-tokens) GEN="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --moe) MOE_BIN="$2"; shift 2 ;;
        --) shift; LOADGEN_ARGS=("$@"); break ;;
        -h|--help) usage 0 ;;
        -*) echo "moe_server.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$MODEL" ] || { echo "moe_server.sh: one MODEL_DIR expected, got also $1" >&2; exit 2; }
           MODEL="$1"; shift ;;
    esac
done
[ -n "$MODEL" ] || usage
[ -d "$MODEL" ] || { echo "moe_server.sh: model directory $MODEL not found" >&2; exit 1; }
for v in PROMPT GEN THREADS REQUESTS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "moe_server.sh: expected a positive integer for $v, got '${!v}'" >&2; exit 2; }
done
[[ "$CONCURRENCY" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "moe_server.sh: --concurrency: expected e.g. 1,4,16, got '$CONCURRENCY'" >&2; exit 2; }
MAX_BATCH="${MAX_BATCH:-$(max_of "$CONCURRENCY")}"
[[ "$MAX_BATCH" =~ ^[1-9][0-9]*$ ]] || { echo "moe_server.sh: --max-batch: expected a positive integer, got '$MAX_BATCH'" >&2; exit 2; }

if [ -z "$MOE_BIN" ]; then
    if [ -x "$REPO/.build/release/moe" ]; then MOE_BIN="$REPO/.build/release/moe"
    elif command -v moe >/dev/null 2>&1; then MOE_BIN="$(command -v moe)"
    else echo "moe_server.sh: no moe binary (swift build -c release, or --moe PATH)" >&2; exit 1
    fi
fi
"$MOE_BIN" serve --help >/dev/null 2>&1 || { echo "moe_server.sh: $MOE_BIN has no 'serve' command" >&2; exit 1; }

NAME="$(basename "${MODEL%/}")"
OUT="${OUT:-$HERE/results/moe-$NAME-$DTYPE.json}"
mkdir -p "$(dirname "$OUT")"
LOG="${OUT%.json}.server.log"
PORT="${PORT:-$(free_port)}"
ARGS=(serve --model "$MODEL" --dtype "$DTYPE" --max-batch "$MAX_BATCH" --port "$PORT")
echo "starting: SPARSEMOE_NUM_THREADS=$THREADS $MOE_BIN ${ARGS[*]}" >&2
SPARSEMOE_NUM_THREADS="$THREADS" "$MOE_BIN" "${ARGS[@]}" >"$LOG" 2>&1 &
PID=$!
trap 'stop_server "$PID"' EXIT
wait_health "$PORT" "$PID" 600 "$LOG"

RC=0
python3 "$HERE/loadgen.py" --url "http://127.0.0.1:$PORT" --concurrency "$CONCURRENCY" \
    --requests "$REQUESTS" --time-limit "$TIME_LIMIT" --prompt-tokens "$PROMPT" \
    --max-tokens "$GEN" --temperature 0 --ignore-eos \
    --label "moe serve $NAME $DTYPE (max-batch $MAX_BATCH, t $THREADS)" \
    --meta engine=moe --meta "model=$MODEL" --meta "dtype=$DTYPE" \
    --meta "server_args=${ARGS[*]}" --meta "threads=$THREADS" \
    --json "$OUT" "${LOADGEN_ARGS[@]}" || RC=$?
stop_server "$PID"
trap - EXIT
echo "server log: $LOG" >&2
exit "$RC"
