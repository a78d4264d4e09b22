#!/usr/bin/env bash
# One of our GEMM kernels against OpenBLAS sgemm on training shapes, one process, interleaved,
# medians (gemm.c): builds it against the working tree's Sources/CMoEKernels and prints a
# Markdown table.
#
#   Benchmarks/gemm/run.sh bf16|f32 [THREADS=2] [ROUNDS=9]
#
# bf16: moe_sgemm_bf16 on the path it chooses (moe_gemm_bf16.h; SPARSEMOE_BF16_GEMM=portable|
# avx512bf16|amx picks another). f32: moe_sgemm on our AVX-512 kernel (moe_gemm_f32.h; needs a
# CPU with AVX-512). Needs clang (Swift's is fine) and Debian's libopenblas-dev, libomp-dev.
set -euo pipefail
MODE="${1:-}"
[[ "$MODE" == bf16 || "$MODE" == f32 ]] || { echo "gemm: the first argument must be bf16 or f32, got '$MODE'" >&2; exit 2; }
[[ "${2:-2}" =~ ^[1-9][0-9]*$ ]] || { echo "gemm: THREADS must be a positive integer, got '$2'" >&2; exit 2; }
[[ "${3:-9}" =~ ^[1-9][0-9]*$ && "${3:-9}" -le 64 ]] || { echo "gemm: ROUNDS must be an integer from 1 to 64, got '$3'" >&2; exit 2; }
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
SRC="$REPO/Sources/CMoEKernels"
(cd "$TMP" && clang -fopenmp -O3 -std=c11 -I"$SRC/include" -I"$SRC" -c "$SRC"/*.c "$REPO/Benchmarks/gemm/gemm.c")
clang "$TMP"/*.o -o "$TMP/gemm" -lopenblas -liomp5 -lm
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u '+%Y-%m-%d %H:%M UTC')"
"$TMP/gemm" "${2:-2}" "${3:-9}" "$MODE"
