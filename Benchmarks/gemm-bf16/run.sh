#!/usr/bin/env bash
# GEMM with bf16 operands (moe_sgemm_bf16) against OpenBLAS sgemm (moe_sgemm) on training
# shapes, one process, interleaved, medians: builds Benchmarks/gemm/gemm.c against the working tree's
# Sources/CMoEKernels and prints a Markdown table.
#
#   Benchmarks/gemm-bf16/run.sh [THREADS=2] [ROUNDS=9]
#
# The bf16 path is the portable one (rounded operands, sgemm) unless
# SPARSEMOE_BF16_GEMM=avx512bf16 selects the AVX-512 BF16 kernel (moe_gemm_bf16.h).
# Needs clang (Swift's is fine) and Debian's libopenblas-dev, libomp-dev.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
SRC="$REPO/Sources/CMoEKernels"
(cd "$TMP" && clang -fopenmp -O3 -std=c11 -I"$SRC/include" -I"$SRC" -c "$SRC"/*.c "$REPO/Benchmarks/gemm/gemm.c")
clang "$TMP"/*.o -o "$TMP/gemm" -lopenblas -liomp5 -lm
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u '+%Y-%m-%d %H:%M UTC')"
"$TMP/gemm" "${1:-2}" "${2:-9}" bf16
