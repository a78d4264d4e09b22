#!/usr/bin/env bash
# float32 GEMM: moe_sgemm's AVX-512 kernel against its OpenBLAS path (moe_gemm_f32.h) on
# training shapes, one process, interleaved, medians: builds Benchmarks/gemm/gemm.c against the working tree's
# Sources/CMoEKernels and prints a Markdown table. Needs a CPU with AVX-512.
#
#   Benchmarks/gemm-f32/run.sh [THREADS=2] [ROUNDS=9]
#
# Needs clang (Swift's is fine) and Debian's libopenblas-dev, libomp-dev.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
SRC="$REPO/Sources/CMoEKernels"
(cd "$TMP" && clang -fopenmp -O3 -std=c11 -I"$SRC/include" -I"$SRC" -c "$SRC"/*.c "$REPO/Benchmarks/gemm/gemm.c")
clang "$TMP"/*.o -o "$TMP/gemm" -lopenblas -liomp5 -lm
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u '+%Y-%m-%d %H:%M UTC')"
"$TMP/gemm" "${1:-2}" "${2:-9}" f32
