#!/usr/bin/env bash
# Whether OpenBLAS's sgemm kernels give the same bits for a product computed whole and in two
# pieces (split.c), for each kernel family this OpenBLAS can run (OPENBLAS_CORETYPE; the CPU
# must have the instructions: by default all five on an AVX-512 machine, Haswell and Zen on
# others).
#
#   Benchmarks/gemm-split/run.sh [TRIALS=120] [CORETYPES="SkylakeX Haswell Zen Cooperlake SapphireRapids"]
#
# Needs a C compiler and Debian's libopenblas-dev. Takes about a minute per kernel family.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
[[ "${1:-120}" =~ ^[1-9][0-9]*$ ]] || { echo "gemm-split: TRIALS must be a positive integer, got '$1'" >&2; exit 2; }
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
cc -O2 "$HERE/split.c" -o "$TMP/split" -lopenblas
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u '+%Y-%m-%d %H:%M UTC')"
if grep -qw avx512f /proc/cpuinfo; then ALL="SkylakeX Haswell Zen Cooperlake SapphireRapids"; else ALL="Haswell Zen"; fi
for core in ${2:-$ALL}; do
    echo "$core, both pieces ≥ 32 rows, the other dimension a multiple of 16:"
    OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE="$core" "$TMP/split" "${1:-120}" 32 1
done
