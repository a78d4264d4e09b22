#!/bin/sh
# Runs `moe bench --workload all --json` N times back to back (release build) and prints,
# per workload, every invocation's forward and forward + backward ×roofline and spreads,
# with their min and max: how much the headline ratios move from run to run.
# Usage (package root): scripts/bench-stability.sh [N] [OUT_DIR] [moe bench options...]
#   N        invocations (default 5)
#   OUT_DIR  where the raw JSON lines go, one file per invocation (default: a new temp folder)
# Example: scripts/bench-stability.sh 5 /tmp/stability --skip-dense-total
#          scripts/bench-stability.sh --report /tmp/stability   # the tables again, from OUT_DIR/run*.jsonl
# Run it on a quiet machine: anything else running (a build, another benchmark) shows up
# as spread and as ratios that move.
set -e
n=5
out=""
if [ "${1:-}" = "--report" ]; then
  out="${2:?usage: scripts/bench-stability.sh --report OUT_DIR}"
  n=$(ls "$out"/run*.jsonl | wc -l)
  report="--report"
  shift 2
else
  case "${1:-}" in [0-9]*) n="$1"; shift ;; esac
  case "${1:-}" in "" | -*) ;; *) out="$1"; shift ;; esac
  [ -n "$out" ] || out="$(mktemp -d)"
  mkdir -p "$out"
  swift build -c release --product moe >/dev/null
  i=1
  while [ "$i" -le "$n" ]; do
    echo "[bench-stability] invocation $i/$n at $(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" >&2
    .build/release/moe bench --workload all --json "$@" >"$out/run$i.jsonl" 2>"$out/run$i.log"
    i=$((i + 1))
  done
fi
python3 - "$out" "$n" "${report:-}$*" <<'PY'
import json, sys
out, n, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = {}
for i in range(1, n + 1):
    for line in open(f"{out}/run{i}.jsonl"):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if "forward_vs_roofline" in r and "sweep" not in r:
            rows.setdefault(r["workload"], []).append(r)
if extra == "--report":
    print(f"{n} invocations of `moe bench --workload all --json` read from {out}/run*.jsonl")
else:
    cmd = "moe bench --workload all --json" + (" " + extra if extra else "")
    print(f"{n} × `{cmd}`; raw lines: {out}/run*.jsonl")
def table(title, key, fmt, note=""):
    print(f"\n{title}{note}")
    print(f"{'workload':<20}" + "".join(f"{'#' + str(i):>7}" for i in range(1, n + 1)) + f"{'min':>8}{'max':>7}{'max−min':>9}")
    for w, rs in rows.items():
        v = [r[key] for r in rs]
        print(f"{w:<20}" + "".join(f"{fmt(x):>7}" for x in v) + f"{fmt(min(v)):>8}{fmt(max(v)):>7}{fmt(max(v) - min(v)):>9}")
ratio = lambda x: f"{x:.2f}"
pct = lambda x: f"{100 * x:.0f}%"
table("forward ×roofline (op GFLOP/s ÷ grouped-sgemm roofline GFLOP/s, medians)", "forward_vs_roofline", ratio)
table("forward + backward ×roofline", "forward_backward_vs_roofline", ratio)
table("forward_spread ((max − min) / median of the op's timed runs)", "forward_spread", pct)
table("forward_backward_spread", "forward_backward_spread", pct)
if all("control_forward_spread" in r for rs in rows.values() for r in rs):
    table("machine control spread, forward rounds (each thread's own fixed sgemm, same rounds)", "control_forward_spread", pct)
    table("machine control spread, forward + backward rounds", "control_forward_backward_spread", pct)
print("\nspread warnings (> 10 %) per invocation, all measurements (op, references, variants)")
print(f"{'workload':<20}" + "".join(f"{'#' + str(i):>7}" for i in range(1, n + 1)))
for w, rs in rows.items():
    print(f"{w:<20}" + "".join(f"{len(r.get('warnings') or []):>7}" for r in rs))
PY
