#!/usr/bin/env bash
# Data- and expert-parallel training under Open MPI train like one process: `moe train` on 1
# process, `mpirun -np 2 moe train --parallel data` and `mpirun -np 2 moe train --parallel expert`
# on the same global batches must give losses within 1e-5 relative at every step; setups every
# rank rejects (batch 4 over 3 ranks; 8 experts over 3 expert-parallel ranks), ranks started with
# different flags, and a rank killed mid-run must each end the job with a message naming the
# cause, never hang. Needs mpirun (openmpi-bin libopenmpi-dev). Tests/MPI/netns.sh (run by .ci/run after this script) runs
# 2 ranks over TCP in two network namespaces.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
command -v mpirun >/dev/null || { echo "mpi: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
swift build --product moe 2>&1 | tail -n 1
moe="$(swift build --show-bin-path)/moe"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Running as root needs these two; --oversubscribe lets 2 ranks share fewer cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
args=(train --steps 6 --batch-size 4 --seq 32 --threads 1 --eval-every 0 --quiet)
# Data parallelism at lr 1e-3 (the default until tiny-moe's recipe moved to 2e-3; see the note below).
"$moe" "${args[@]}" --lr 1e-3 --out "$work/one" > "$work/one.log"
timeout 600 mpirun --oversubscribe -np 2 "$moe" "${args[@]}" --lr 1e-3 --parallel data --collective-timeout 120 --out "$work/two" > "$work/two.log"
# Expert parallelism at a lower learning rate: AdamW's first steps turn rounding noise in near-zero
# gradients into parameter differences of about the learning rate, and at 1e-3 those can flip a
# near-tied top-k choice within 6 steps (seen here: one slot at step 4), after which no two
# implementations agree to 1e-5. At 3e-4 the routing stays the same and the comparison is fair.
"$moe" "${args[@]}" --lr 3e-4 --out "$work/one-expert" > "$work/one-expert.log"
timeout 600 mpirun --oversubscribe -np 2 "$moe" "${args[@]}" --lr 3e-4 --parallel expert --collective-timeout 120 --out "$work/expert" > "$work/expert.log"
losses() { grep -E '^ {4,}"train_loss"' "$1/summary.json" | sed 's/.*: //; s/,$//'; }
compare() {  # reference run, parallel run
    paste <(losses "$work/$1") <(losses "$work/$2") | awk -v what="$2" '
        { n++; d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1)
          printf "mpi: %s: loss %d: 1 rank %s, 2 ranks %s, relative difference %.2g\n", what, n, $1, $2, r
          if (r > 1e-5) bad++ }
        END { if (n < 6) { print "mpi: " what ": expected the losses of 6 steps, got " n; exit 1 }
              if (bad) { print "mpi: " what ": " bad " losses differ by more than 1e-5 relative"; exit 1 } }'
}
compare one two
compare one-expert expert
# Rank 0 wrote the full model: the expert-parallel run's checkpoint holds every expert.
cmp <(ls "$work/one/model") <(ls "$work/expert/model") || { echo "mpi: expert-parallel model folder differs in its files" >&2; exit 1; }
# A bad setup ends every rank with a message, in bounded time.
if timeout 300 mpirun --oversubscribe -np 3 "$moe" "${args[@]}" --parallel data --collective-timeout 30 --out "$work/three" > "$work/three.log" 2>&1; then
    echo "mpi: batch 4 over 3 ranks was accepted" >&2; cat "$work/three.log" >&2; exit 1
fi
grep -q "batch_size" "$work/three.log" || { echo "mpi: no message naming batch_size:" >&2; cat "$work/three.log" >&2; exit 1; }
if timeout 300 mpirun --oversubscribe -np 3 "$moe" "${args[@]}" --batch-size 6 --parallel expert --collective-timeout 30 --out "$work/three-ep" > "$work/three-ep.log" 2>&1; then
    echo "mpi: 8 experts over 3 expert-parallel ranks were accepted" >&2; cat "$work/three-ep.log" >&2; exit 1
fi
grep -q "num_experts" "$work/three-ep.log" || { echo "mpi: no message naming num_experts:" >&2; cat "$work/three-ep.log" >&2; exit 1; }
# Ranks started with different flags (MPMD: one rank with --lr 1e-3, one with 2e-3) end at startup,
# before any training and well before the collective timeout, with a message naming the field.
start=$SECONDS
if timeout 300 mpirun --oversubscribe -np 1 "$moe" "${args[@]}" --lr 1e-3 --parallel data --collective-timeout 60 --out "$work/mismatch" \
        : -np 1 "$moe" "${args[@]}" --lr 2e-3 --parallel data --collective-timeout 60 --out "$work/mismatch" > "$work/mismatch.log" 2>&1; then
    echo "mpi: ranks with different --lr were accepted" >&2; cat "$work/mismatch.log" >&2; exit 1
fi
grep -q "learning_rate (rank 0: 0.001" "$work/mismatch.log" || { echo "mpi: no message naming learning_rate:" >&2; cat "$work/mismatch.log" >&2; exit 1; }
(( SECONDS - start < 60 )) || { echo "mpi: the mismatch took $((SECONDS - start)) s to end (collective timeout 60 s)" >&2; exit 1; }
echo "mpi: mismatched --lr ended in $((SECONDS - start)) s: $(grep -m1 -o 'learning_rate (rank 0: [^;]*' "$work/mismatch.log")"
# A rank killed mid-run (rank 1 sends itself SIGKILL after step 3; the variable is read by rank 1
# alone) ends the job with a message in bounded time, never a hang: Open MPI notices the dead
# process and ends the others, or the others' collective times out (20 s) and they abort.
start=$SECONDS
if SPARSEMOE_DEBUG_EXIT_AT_STEP=3 timeout 300 mpirun --oversubscribe -x SPARSEMOE_DEBUG_EXIT_AT_STEP -np 2 "$moe" "${args[@]}" \
        --parallel data --collective-timeout 20 --out "$work/killed" > "$work/killed.log" 2>&1; then
    echo "mpi: the job with a killed rank succeeded" >&2; cat "$work/killed.log" >&2; exit 1
fi
(( SECONDS - start < 120 )) || { echo "mpi: the job with a killed rank took $((SECONDS - start)) s to end" >&2; exit 1; }
grep -qE "timed out after|exited on signal 9|killed|exiting improperly" "$work/killed.log" \
    || { echo "mpi: no message about the dead rank:" >&2; cat "$work/killed.log" >&2; exit 1; }
echo "mpi: a killed rank ended the job in $((SECONDS - start)) s: $(grep -m1 -E 'timed out after|exited on signal 9|killed|exiting improperly' "$work/killed.log")"
echo "mpi: 6 passed, 0 failed"
