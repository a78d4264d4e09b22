#!/usr/bin/env bash
# Data parallel over real networking: two network namespaces of this script's making joined by a
# veth pair (10.77.0.1 ↔ 10.77.0.2), one rank in each, Open MPI over TCP alone (--mca btl
# tcp,self; its out-of-band channel on the veth too), launched without ssh: mpirun runs in the
# first namespace and starts its daemon in the second through an agent that is `ip netns exec`.
# The 2-rank losses must equal 1 process's within 1e-5 relative. Then the same 2 ranks over
# loopback TCP in the root namespace. Needs root with CAP_NET_ADMIN (`ip netns add`); without
# it the namespace part is skipped with a message and the loopback part still runs.
# Opt-in (not part of Tests/MPI/run.sh): about a minute.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
command -v mpirun >/dev/null || { echo "netns: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
swift build --product moe 2>&1 | tail -n 1
moe="$(swift build --show-bin-path)/moe"
work="$(mktemp -d)"
a="moe-netns-a-$$" b="moe-netns-b-$$"
cleanup() { ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
args=(train --steps 6 --batch-size 4 --seq 32 --threads 1 --eval-every 0 --lr 1e-3 --quiet)  # lr: see Tests/MPI/run.sh
losses() { grep -E '^ {4,}"train_loss"' "$1/summary.json" | sed 's/.*: //; s/,$//'; }
compare() {  # compare NAME FOLDER: the losses of FOLDER against 1 process
    paste <(losses "$work/one") <(losses "$2") | awk -v name="$1" '
        { n++; d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > worst) worst = r; if (r > 1e-5) bad++ }
        END { if (n < 6) { print "netns: " name ": expected the losses of 6 steps, got " n; exit 1 }
              if (bad) { print "netns: " name ": " bad " losses differ from 1 process by more than 1e-5 relative"; exit 1 }
              printf "netns: %s: 6 losses equal 1 process'\''s (worst relative difference %.2g)\n", name, worst }'
}
"$moe" "${args[@]}" --out "$work/one" > "$work/one.log"

passed=0
if ip netns add "$a" 2>"$work/netns.err"; then
    ip netns add "$b"
    ip link add "veth-$$-a" type veth peer name "veth-$$-b"
    ip link set "veth-$$-a" netns "$a"
    ip link set "veth-$$-b" netns "$b"
    ip -n "$a" addr add 10.77.0.1/24 dev "veth-$$-a"
    ip -n "$b" addr add 10.77.0.2/24 dev "veth-$$-b"
    for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
    ip -n "$a" link set "veth-$$-a" up
    ip -n "$b" link set "veth-$$-b" up
    # The launch agent: Open MPI calls it like ssh (`agent HOST command…`); HOST picks the namespace.
    cat > "$work/agent.sh" <<AGENT
#!/bin/sh
host="\$1"; shift
echo "\$host" >> "$work/agent.calls"
case "\$host" in
    10.77.0.1) ns="$a" ;;
    10.77.0.2) ns="$b" ;;
    *) echo "netns agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" /bin/sh -c "\$*"
AGENT
    chmod +x "$work/agent.sh"
    start=$SECONDS
    timeout 300 ip netns exec "$a" mpirun --host 10.77.0.1,10.77.0.2 -np 2 --map-by node \
        --mca plm_rsh_agent "$work/agent.sh" --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 \
        --mca oob_tcp_if_include 10.77.0.0/24 -x PATH -x LD_LIBRARY_PATH \
        "$moe" "${args[@]}" --parallel data --collective-timeout 120 --out "$work/netns" > "$work/netns.log" 2>&1 \
        || { echo "netns: 2 ranks in 2 namespaces failed:" >&2; cat "$work/netns.log" >&2; exit 1; }
    compare "2 ranks in 2 network namespaces over a veth pair (TCP, $((SECONDS - start)) s)" "$work/netns"
    # The second rank was started in the second namespace, and the gradients crossed the veth:
    # at least 6 steps × 2(N−1)/N · 4 bytes · trained parameters arrived there.
    grep -qx 10.77.0.2 "$work/agent.calls" || { echo "netns: the launch agent was never asked for 10.77.0.2" >&2; exit 1; }
    rx=$(ip netns exec "$b" cat "/sys/class/net/veth-$$-b/statistics/rx_bytes")
    params=$(grep -E '"trainable_params"' "$work/netns/summary.json" | grep -oE '[0-9]+')
    (( rx >= 6 * 4 * params )) || { echo "netns: only $rx bytes arrived over the veth, expected ≥ $((6 * 4 * params))" >&2; exit 1; }
    echo "netns: $rx bytes arrived in the second namespace over the veth (6 steps of gradients: $((6 * 4 * params)))"
    passed=$((passed + 1))
else
    echo "netns: this machine does not allow network namespaces ($(cat "$work/netns.err")); skipping the two-namespace run"
fi
# Loopback TCP in this namespace: no shared memory between the ranks.
timeout 300 mpirun --oversubscribe -np 2 --mca btl tcp,self "$moe" "${args[@]}" --parallel data --collective-timeout 120 \
    --out "$work/loopback" > "$work/loopback.log" 2>&1 || { echo "netns: 2 ranks over loopback TCP failed:" >&2; cat "$work/loopback.log" >&2; exit 1; }
compare "2 ranks over loopback TCP" "$work/loopback"
passed=$((passed + 1))
echo "netns: $passed passed, 0 failed"
