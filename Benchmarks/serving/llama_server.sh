#!/usr/bin/env bash
# llama.cpp's llama-server under load: starts it on 127.0.0.1 with one GGUF, runs
# loadgen.py at the given concurrency levels, stops it, and writes the JSON results.
#
#   Benchmarks/serving/llama_server.sh GGUF [--concurrency 1,4,16] [--parallel N]
#       [--requests 16] [--time-limit 120] [--prompt-tokens 32] [--max-tokens 32]
#       [--threads 2] [--port P] [--out FILE.json] [--llama-cpp DIR] [-- LOADGEN ARGS...]
#
# Server: --parallel N slots (default: the highest concurrency), continuous batching,
# -t/-tb THREADS, context N x (prompt + max tokens + 8) so that every slot holds one
# request (the 8 cover a BOS token and rounding), --cache-ram 0 (no prompt cache kept
# across requests: loadgen's prompts differ anyway), no web UI, HTTP threads N + 4.
# Requests: token-id prompts of --prompt-tokens, "ignore_eos": true (each request
# generates exactly --max-tokens), temperature 0, streaming. Arguments after `--` go
# to loadgen.py (e.g. --soak 300, --concurrency is taken from this script's flag).
#
# Output: FILE.json (default Benchmarks/serving/results/llama-server-<gguf name>.json)
# and the server's log beside it (FILE.server.log). llama-server is built by
# Benchmarks/llama-cpp/build.sh into DIR (default $HOME/.cache/sparsemoe-llama.cpp)
# when missing. Exit status: loadgen.py's (1 when any request failed or was unfinished).
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"

GGUF=""
CONCURRENCY="1,4,16"
PARALLEL=""
REQUESTS=16
TIME_LIMIT=120
PROMPT=32
GEN=32
THREADS=2
PORT=""
OUT=""
LLAMA_DIR="${LLAMA_CPP_DIR:-$HOME/.cache/sparsemoe-llama.cpp}"
LOADGEN_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --concurrency) CONCURRENCY="$2"; shift 2 ;;
        --parallel) PARALLEL="$2"; shift 2 ;;
        --requests) REQUESTS="$2"; shift 2 ;;
        --time-limit) TIME_LIMIT="$2"; shift 2 ;;
        --prompt-tokens) PROMPT="$2"; shift 2 ;;
        --max-tokens) GEN="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --llama-cpp) LLAMA_DIR="$2"; shift 2 ;;
        --) shift; LOADGEN_ARGS=("$@"); break ;;
        -h|--help) usage 0 ;;
        -*) echo "llama_server.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$GGUF" ] || { echo "llama_server.sh: one GGUF expected, got also $1" >&2; exit 2; }
           GGUF="$1"; shift ;;
    esac
done
[ -n "$GGUF" ] || usage
[ -f "$GGUF" ] || { echo "llama_server.sh: GGUF file $GGUF not found" >&2; exit 1; }
for v in PROMPT GEN THREADS REQUESTS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "llama_server.sh: expected a positive integer for $v, got '${!v}'" >&2; exit 2; }
done
[[ "$CONCURRENCY" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "llama_server.sh: --concurrency: expected e.g. 1,4,16, got '$CONCURRENCY'" >&2; exit 2; }
PARALLEL="${PARALLEL:-$(max_of "$CONCURRENCY")}"
[[ "$PARALLEL" =~ ^[1-9][0-9]*$ ]] || { echo "llama_server.sh: --parallel: expected a positive integer, got '$PARALLEL'" >&2; exit 2; }

SERVER="$LLAMA_DIR/src/build/bin/llama-server"
if [ ! -x "$SERVER" ]; then
    "$HERE/../llama-cpp/build.sh" "$LLAMA_DIR" >&2
fi
NAME="$(basename "$GGUF" .gguf)"
OUT="${OUT:-$HERE/results/llama-server-$NAME.json}"
mkdir -p "$(dirname "$OUT")"
LOG="${OUT%.json}.server.log"
PORT="${PORT:-$(free_port)}"
CTX=$(( PARALLEL * (PROMPT + GEN + 8) ))
VERSION="$("$SERVER" --version 2>&1 | grep -m 1 -i version || echo unknown)"

ARGS=(-m "$GGUF" --host 127.0.0.1 --port "$PORT" --parallel "$PARALLEL" --cont-batching
      --ctx-size "$CTX" --threads "$THREADS" --threads-batch "$THREADS"
      --threads-http $(( PARALLEL + 4 )) --cache-ram 0 --no-webui --metrics)
echo "starting: $SERVER ${ARGS[*]}" >&2
"$SERVER" "${ARGS[@]}" >"$LOG" 2>&1 &
PID=$!
trap 'stop_server "$PID"' EXIT
wait_health "$PORT" "$PID" 600 "$LOG"

RC=0
python3 "$HERE/loadgen.py" --url "http://127.0.0.1:$PORT" --concurrency "$CONCURRENCY" \
    --requests "$REQUESTS" --time-limit "$TIME_LIMIT" --prompt-tokens "$PROMPT" \
    --max-tokens "$GEN" --temperature 0 --ignore-eos \
    --label "llama-server $NAME (np $PARALLEL, t $THREADS)" \
    --meta engine=llama-server --meta "gguf=$GGUF" --meta "version=$VERSION" \
    --meta "server_args=${ARGS[*]}" --json "$OUT" "${LOADGEN_ARGS[@]}" || RC=$?
stop_server "$PID"
trap - EXIT
echo "server log: $LOG" >&2
exit "$RC"
