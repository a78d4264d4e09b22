#!/usr/bin/env bash
# The attention kernels of the working tree against those of revision REV (its
# Sources/CMoEKernels/moe_attention.c compiled beside them under other names), forward + backward,
# one process, interleaved repeats, on tiny-moe's and medium-moe's training shapes: medians, the
# paired ratio new ÷ old, and whether the results have the same bits.
#
#   Benchmarks/attention-ab/run.sh REV [THREADS=2]
#
# Needs clang (Swift's is fine), git, and Debian's libopenblas-dev, libomp-dev.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
SRC="$REPO/Sources/CMoEKernels"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
git -C "$REPO" rev-parse -q --verify "$1^{commit}" >/dev/null || { echo "attention-ab: '$1' is not a revision of this repository" >&2; exit 2; }
[[ "${2:-2}" =~ ^[1-9][0-9]*$ ]] || { echo "attention-ab: THREADS must be a positive integer, got '$2'" >&2; exit 2; }
git -C "$REPO" show "$1:Sources/CMoEKernels/moe_attention.c" > "$TMP/old_attention.c" 2>/dev/null \
    || { echo "attention-ab: revision $1 has no Sources/CMoEKernels/moe_attention.c" >&2; exit 2; }
RENAME=(-Dmoe_attention_forward=old_attention_forward -Dmoe_attention_backward=old_attention_backward
        -Dmoe_attention_segments_forward=old_attention_segments_forward
        -Dmoe_attention_backward_workspace_size=old_attention_backward_workspace_size)
(cd "$TMP" && clang -fopenmp -O3 -std=c11 -I"$SRC/include" -I"$SRC" -c "$SRC"/*.c "$REPO/Benchmarks/attention-ab/bench.c"
 clang -fopenmp -O3 -std=c11 -I"$SRC/include" -I"$SRC" "${RENAME[@]}" -c old_attention.c -o old_attention.o)
clang "$TMP"/*.o -o "$TMP/bench" -lopenblas -liomp5 -lm
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u '+%Y-%m-%d %H:%M UTC'); old = $1"
export SPARSEMOE_NUM_THREADS="${2:-2}" OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-}"
[ -n "$OPENBLAS_CORETYPE" ] || unset OPENBLAS_CORETYPE
"$TMP/bench" 16 128 4 32 400   # tiny-moe: batch 16 × 128, 4 heads of 32
"$TMP/bench" 4 512 8 64 40     # medium-moe: batch 4 × 512, 8 heads of 64
