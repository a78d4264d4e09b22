#!/bin/sh
# Builds and runs the routed-experts benchmark against its in-process GEMM roofline.
# Usage (from the package root): Benchmarks/routed_experts/run.sh [threads] [reps] [workload]
set -e
out="${TMPDIR:-/tmp}/bench_routed_experts"
cflags="-O3 -march=native -std=c11 -fopenmp -ISources/CMoEKernels/include -ISources/CMoEKernels"
for f in Benchmarks/routed_experts/bench_routed_experts.c Sources/CMoEKernels/moe_dispatch.c Sources/CMoEKernels/moe_threads.c Sources/CMoEKernels/moe_gemm.c; do
  clang $cflags -c "$f" -o "$out.$(basename "$f" .c).o"
done
# Link without -fopenmp (it asks for -lomp); the runtime is Debian's libomp5.
clang "$out".*.o -o "$out" -lopenblas -lomp5 -lm
rm -f "$out".*.o
exec "$out" "$@"
