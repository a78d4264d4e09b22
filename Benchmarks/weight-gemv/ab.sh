#!/usr/bin/env bash
# A/B of the weight kernels between two versions of the sources, W in cache, one thread:
# builds gemv.c against Sources/CMoEKernels of each version (a git revision, or "work" for
# the working tree) and runs them interleaved, ROUNDS rounds; prints per case the median
# G weight-rows/s of each and the ratio B / A (above 1: B is faster).
#
#   Benchmarks/weight-gemv/ab.sh [A=HEAD] [B=work]    # env: FORMATS="3 4" MS="1 4 16"
#                                                     #      LEVELS="2 3" ROUNDS=5
# Needs clang (Swift's is fine) and Debian's libopenblas-dev, libomp-dev.
set -euo pipefail
A="${1:-HEAD}"; B="${2:-work}"
FORMATS="${FORMATS:-3 4}"; MS="${MS:-1 4 16}"; LEVELS="${LEVELS:-2 3}"; ROUNDS="${ROUNDS:-5}"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
build() { # build VERSION NAME
    local src="$TMP/$2/src"; mkdir -p "$src/include" "$TMP/$2/obj"
    if [ "$1" = work ]; then
        cp "$REPO"/Sources/CMoEKernels/*.[ch] "$src/"; cp "$REPO"/Sources/CMoEKernels/include/*.h "$src/include/"
    else
        git -C "$REPO" archive "$1" Sources/CMoEKernels | tar -x -C "$TMP/$2"
        cp "$TMP/$2"/Sources/CMoEKernels/*.[ch] "$src/"; cp "$TMP/$2"/Sources/CMoEKernels/include/*.h "$src/include/"
    fi
    (cd "$TMP/$2/obj" && clang -fopenmp -O3 -std=c11 -I"$src/include" -I"$src" -c "$src"/*.c "$REPO/Benchmarks/weight-gemv/gemv.c")
    clang "$TMP/$2"/obj/*.o -o "$TMP/$2/gemv" -lopenblas -liomp5 -lm
}
for rev in "$A" "$B"; do
    [ "$rev" = work ] || git -C "$REPO" rev-parse --verify -q "$rev^{commit}" >/dev/null \
        || { echo "ab.sh: '$rev' is not a git revision of $REPO (or 'work' for the working tree)" >&2; exit 2; }
done
build "$A" a; build "$B" b
echo "A = $A, B = $B; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "| format | m | level | A G weight-rows/s | B G weight-rows/s | B / A |"
echo "|---|---|---|---|---|---|"
for f in $FORMATS; do for m in $MS; do for l in $LEVELS; do
    ra=(); rb=()
    for r in $(seq "$ROUNDS"); do
        ra+=("$(OMP_NUM_THREADS=1 "$TMP/a/gemv" "$f" "$m" "$l" | awk '{print $5}')")
        rb+=("$(OMP_NUM_THREADS=1 "$TMP/b/gemv" "$f" "$m" "$l" | awk '{print $5}')")
    done
    python3 - "$f" "$m" "$l" "${ra[*]}" "${rb[*]}" <<'PY'
import statistics, sys
f, m, l, a, b = sys.argv[1:]
names = {"1": "bf16", "2": "f16", "3": "int8", "4": "int4", "0": "f32"}
ma = statistics.median(map(float, a.split())); mb = statistics.median(map(float, b.split()))
print(f"| {names.get(f, f)} | {m} | {'AVX-512' if l == '3' else 'AVX2' if l == '2' else 'scalar'} | {ma:.1f} | {mb:.1f} | {mb / ma:.2f} |")
PY
done; done; done
